"""bench/out/bench.png: throughput and latency of benchmark 1, the TokenRequest and socket
latencies (3, 5), kubegate against its peer Dex with the floors (15, see peer_plot), memory
against its absolute targets, and every target of every benchmark on one panel.
matplotlib with the Agg backend: no display needed.

Rules of this module (what keeps the picture honest):
- every row with a target is drawn, absolute targets (ms, MiB) as well as ratios, each as
  measured/target on one log axis where 1 is the target, labelled with which direction is
  better; a target whose figure is missing is drawn as "not measured", never left out;
- a distribution (CDF) is drawn only from at least MIN_SAMPLES samples; fewer are named in
  the legend with their count, median and maximum instead of a curve that would pretend;
- throughput axes start at zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from kubegate_bench import peer_plot  # noqa: E402
from kubegate_bench.common import Outcome, Row  # noqa: E402
from kubegate_bench.plot_axes import MIN_SAMPLES, Axes, cdf, empty, log_x  # noqa: E402
from kubegate_bench.report import target_text  # noqa: E402

DIRECTION = {"ratio>=": "higher is better", "ratio<=": "lower is better",
             "value<=": "lower is better", "value==": "exact"}


def _throughput(ax: Axes, data: Mapping[str, Any]) -> None:
    levels = data["concurrency"]
    for name, style in (("echo", "--o"), ("exchange", "-o")):
        ax.plot(levels, data["throughput"][name], style,
                label="bare gRPC service" if name == "echo" else "self-issued exchange")
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set(title="1: throughput by concurrency (higher is better)",
           xlabel="concurrent clients", ylabel="requests/s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def _latency(ax: Axes, data: Mapping[str, Any]) -> None:
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, level in enumerate(data["concurrency"]):
        colour = colours[index % len(colours)]
        cdf(ax, data["latencies_ms"]["exchange"].get(str(level), []), f"exchange c={level}",
            color=colour)
        cdf(ax, data["latencies_ms"]["echo"].get(str(level), []), f"echo c={level}",
            color=colour, linestyle="--")
    log_x(ax)
    ax.set(title="1: latency CDF (left is better)", xlabel="ms", ylabel="fraction of calls")
    ax.legend(fontsize=6)


def _distributions(ax: Axes, series: Mapping[str, Sequence[float]], title: str) -> None:
    for name, samples in series.items():
        cdf(ax, samples, name)
    log_x(ax)
    ax.set(title=title, xlabel="ms", ylabel="fraction of calls")
    ax.legend(fontsize=6)


def _score(row: Row) -> float | None:
    """measured/target, so that 1 is the target on every row (ratios and absolutes alike)."""
    measured = row.ratio if row.check.startswith("ratio") else row.value
    if measured is None or not row.target:
        return None
    return measured / row.target


def _targets(ax: Axes, outcomes: Mapping[str, Outcome]) -> None:
    rows = [row for key in sorted(outcomes, key=_order) for row in outcomes[key].rows
            if row.check != "info" and row.target is not None]
    if not rows:
        empty(ax, "targets")
        return
    positions = list(range(len(rows)))
    scores = [_score(row) for row in rows]
    drawn = [s if s is not None else 1.0 for s in scores]
    colours = ["lightgrey" if s is None else "tab:green" if row.met else "tab:red"
               for row, s in zip(rows, scores, strict=True)]
    ax.barh(positions, drawn, color=colours, left=0)
    ax.axvline(1.0, color="black", linewidth=1)
    for y, row, score in zip(positions, rows, scores, strict=True):
        ax.text(drawn[y], y, f" {_measured(row) if score is not None else 'not measured'}",
                va="center", fontsize=6)
    ax.set_yticks(positions, [_label(row) for row in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set(title="every target: measured / target\n(1 = the target; green met, red missed)",
           xlabel="measured / target (log)")


def _order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (10**6, key)


def _measured(row: Row) -> str:
    if row.check.startswith("ratio"):
        return f"{row.ratio:.2f}x"
    return f"{row.value:.3g} {row.unit}"


def _label(row: Row) -> str:
    return (f"{row.bench}: {row.name[:44]} [{target_text(row)}, "
            f"{DIRECTION.get(row.check, '')}]")


def _memory(ax: Axes, outcomes: Mapping[str, Outcome]) -> None:
    bars: list[tuple[str, float, float | None]] = []  # label, MiB, target
    for key in sorted(outcomes, key=_order):
        for row in outcomes[key].rows:
            if row.unit == "MiB" and row.value is not None:
                bars.append((f"{row.bench}: {row.name[:34]}", row.value,
                             row.target if row.check == "value<=" else None))
                if row.baseline_value is not None:
                    bars.append((f"{row.bench}:   {row.baseline[:32]}", row.baseline_value, None))
    if not bars:
        empty(ax, "memory (lower is better)")
        return
    positions = list(range(len(bars)))
    ax.barh(positions, [mib for _, mib, _ in bars],
            color=["tab:blue" if target else "tab:grey" for _, _, target in bars])
    for y, (_, mib, target) in enumerate(bars):
        if target:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(mib, y, f" {mib:.0f}", va="center", fontsize=6)
    ax.set_yticks(positions, [label for label, _, _ in bars], fontsize=6)
    ax.invert_yaxis()
    ax.set(title="memory, MiB (lower is better; black: the target)", xlabel="MiB")


def draw(outcomes: Mapping[str, Outcome], path: Path, title: str) -> None:
    figure = plt.figure(figsize=(26, 14))
    grid = figure.add_gridspec(3, 4, width_ratios=[1, 1, 1, 1.5])
    axes = [[figure.add_subplot(grid[r, c]) for c in range(3)] for r in range(3)]
    b1 = outcomes.get("1")
    if b1 is not None and b1.data.get("concurrency"):
        _throughput(axes[0][0], b1.data)
        _latency(axes[0][1], b1.data)
    else:
        empty(axes[0][0], "1: throughput by concurrency")
        empty(axes[0][1], "1: latency distribution")
    b3 = outcomes.get("3")
    if b3 is not None and b3.data.get("latencies_ms"):
        _distributions(axes[0][2], b3.data["latencies_ms"], "3: TokenRequest paths (CDF)")
    else:
        empty(axes[0][2], "3: TokenRequest paths")
    b5 = outcomes.get("5")
    if b5 is not None and b5.data.get("socket_latencies_ms"):
        _distributions(axes[1][0], b5.data["socket_latencies_ms"],
                       "5: GET /v1/credential over the socket (CDF)")
    else:
        empty(axes[1][0], "5: socket latency")
    if b5 is not None and b5.data.get("cold_start_ms"):
        _distributions(axes[1][1], {**b5.data["cold_start_ms"],
                                    **{f"kubectl {k}": v for k, v in
                                       b5.data.get("kubectl_ms", {}).items()}},
                       "5: process runs (CDF)")
    else:
        empty(axes[1][1], "5: cold start and kubectl")
    _memory(axes[1][2], outcomes)
    peer_plot.draw(axes[2][0], axes[2][1], axes[2][2], outcomes.get("15"))
    _targets(figure.add_subplot(grid[:, 3]), outcomes)
    figure.suptitle(f"{title}; CDFs only from >= {MIN_SAMPLES} samples")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
