"""Benchmark 15's three panels of bench.png: throughput of kubegate, Dex and the plain Go
exchange at each concurrency; server CPU per exchange beside the floors (Go, PyJWT's verify)
and the load generator's own CPU; latency CDFs at the top concurrency. Same rules as plot.py
(zero-based throughput, CDFs only from enough samples, direction in every title)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubegate_bench.common import Outcome
from kubegate_bench.plot_axes import Axes, cdf, empty, log_x

NAMES = {"kubegate": "kubegate gRPC", "kubegate-https": "kubegate HTTPS", "dex": "Dex",
         "go": "plain Go (floor)"}


def draw(throughput: Axes, cpu: Axes, latency: Axes, outcome: Outcome | None) -> None:
    if outcome is None or not outcome.data.get("concurrency"):
        for ax, title in ((throughput, "15: throughput vs Dex"), (cpu, "15: CPU per exchange"),
                          (latency, "15: latency vs Dex")):
            empty(ax, title)
        return
    _throughput(throughput, outcome.data)
    _cpu(cpu, outcome.data)
    _latency(latency, outcome.data)


def _throughput(ax: Axes, data: Mapping[str, Any]) -> None:
    levels: list[int] = data["concurrency"]
    names = [n for n in ("kubegate", "kubegate-https", "dex", "go") if n in data["throughput"]]
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        values = data["throughput"][name]
        xs = [i + index * width for i in range(len(values))]
        ax.bar(xs, values, width, label=NAMES[name])
        for x, value in zip(xs, values, strict=True):
            ax.text(x, value, f"{value:.0f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(levels))],
                  [f"concurrency {c}" for c in levels])
    ax.set_ylim(bottom=0)
    ax.set(title="15: exchanges/s, same Go loadgen and tokens (higher is better)",
           ylabel="exchanges/s")
    ax.legend(fontsize=7)


def _cpu(ax: Axes, data: Mapping[str, Any]) -> None:
    server: Mapping[str, float] = data["server_cpu_us"]
    client: Mapping[str, float] = data["client_cpu_us"]
    labels = [f"{NAMES[n]} server" for n in server] + ["PyJWT verify, 1 token"]
    values = [*server.values(), data["pyjwt_verify_us"]]
    labels += [f"loadgen vs {NAMES[n]}" for n in client]
    values += list(client.values())
    colours = ["tab:blue"] * len(server) + ["tab:olive"] + ["tab:grey"] * len(client)
    positions = list(range(len(values)))
    ax.barh(positions, values, color=colours)
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=6)
    ax.set_yticks(positions, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(title="15: CPU per exchange, us (lower is better; grey: the client)",
           xlabel="CPU microseconds per exchange")


def _latency(ax: Axes, data: Mapping[str, Any]) -> None:

    top = str(data["concurrency"][-1])
    for name in ("kubegate", "dex", "go"):
        cdf(ax, data["latencies_ms"].get(name, {}).get(top, []), f"{NAMES[name]} c={top}")
    log_x(ax)
    ax.set(title=f"15: latency CDF at concurrency {top} (left is better)", xlabel="ms",
           ylabel="fraction of calls")
    ax.legend(fontsize=6)
