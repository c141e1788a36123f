"""bench/out/bench.png: throughput by concurrency and latency distributions (benchmark 1),
the TokenRequest and socket latency distributions (3, 5), and every ratio against its target.
matplotlib with the Agg backend: no display needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.ticker import NullFormatter  # noqa: E402

from kubegate_bench.common import Outcome  # noqa: E402

Axes = Any


def _cdf(ax: Axes, samples: Sequence[float], label: str, **style: Any) -> None:
    if not samples:
        return
    ordered = sorted(samples)
    n = len(ordered)
    ax.plot(ordered, [(i + 1) / n for i in range(n)], label=label, **style)


def _log_x(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _empty(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)


def _throughput(ax: Axes, data: Mapping[str, Any]) -> None:
    levels = data["concurrency"]
    for name, style in (("echo", "--o"), ("exchange", "-o")):
        ax.plot(levels, data["throughput"][name], style,
                label="bare gRPC service" if name == "echo" else "self-issued exchange")
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set(title="1: throughput by concurrency", xlabel="concurrent clients",
           ylabel="requests/s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def _latency(ax: Axes, data: Mapping[str, Any]) -> None:
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, level in enumerate(data["concurrency"]):
        colour = colours[index % len(colours)]
        _cdf(ax, data["latencies_ms"]["exchange"].get(str(level), []), f"exchange c={level}",
             color=colour)
        _cdf(ax, data["latencies_ms"]["echo"].get(str(level), []), f"echo c={level}",
             color=colour, linestyle="--")
    _log_x(ax)
    ax.set(title="1: latency distribution (CDF)", xlabel="ms", ylabel="fraction of calls")
    ax.legend(fontsize=7)


def _distributions(ax: Axes, series: Mapping[str, Sequence[float]], title: str) -> None:
    for name, samples in series.items():
        _cdf(ax, samples, name)
    _log_x(ax)
    ax.set(title=title, xlabel="ms", ylabel="fraction of calls")
    ax.legend(fontsize=7)


def _ratios(ax: Axes, outcomes: Mapping[str, Outcome]) -> None:
    rows = [row for key in sorted(outcomes) for row in outcomes[key].rows
            if row.ratio is not None and row.check.startswith("ratio") and row.target]
    if not rows:
        _empty(ax, "ratios to baseline")
        return
    labels = [f"{row.bench}: {row.name.split(', ')[0][:26]}{_suffix(row.name)}" for row in rows]
    positions = range(len(rows))
    colours = ["tab:green" if row.met else "tab:red" for row in rows]
    ax.barh(positions, [row.ratio for row in rows], color=colours)
    ax.scatter([row.target for row in rows], positions, marker="|", s=300, color="black",
               label="target", zorder=3)
    ax.set_yticks(list(positions), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set(title="ratios to same-run baselines (green: target met)", xlabel="ratio")
    ax.legend(fontsize=7)


def _suffix(name: str) -> str:
    """The distinguishing tail of a row name (its concurrency, path or cache state)."""
    parts = name.split(", ")
    return f", {parts[1].strip()[:22]}" if len(parts) > 1 else ""


def draw(outcomes: Mapping[str, Outcome], path: Path, title: str) -> None:
    figure, axes = plt.subplots(2, 3, figsize=(19, 10),
                                gridspec_kw={"width_ratios": [1, 1, 1.25]})
    b1 = outcomes.get("1")
    if b1 is not None and b1.data.get("concurrency"):
        _throughput(axes[0][0], b1.data)
        _latency(axes[0][1], b1.data)
    else:
        _empty(axes[0][0], "1: throughput by concurrency")
        _empty(axes[0][1], "1: latency distribution")
    b3 = outcomes.get("3")
    if b3 is not None and b3.data.get("latencies_ms"):
        _distributions(axes[0][2], b3.data["latencies_ms"], "3: TokenRequest paths (CDF)")
    else:
        _empty(axes[0][2], "3: TokenRequest paths")
    b5 = outcomes.get("5")
    if b5 is not None and b5.data.get("socket_latencies_ms"):
        _distributions(axes[1][0], b5.data["socket_latencies_ms"],
                       "5: GET /v1/credential over the socket (CDF)")
    else:
        _empty(axes[1][0], "5: socket latency")
    if b5 is not None and b5.data.get("cold_start_ms"):
        _distributions(axes[1][1], {**b5.data["cold_start_ms"],
                                    **{f"kubectl {k}": v for k, v in
                                       b5.data.get("kubectl_ms", {}).items()}},
                       "5: process runs (CDF)")
    else:
        _empty(axes[1][1], "5: cold start and kubectl")
    _ratios(axes[1][2], outcomes)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
