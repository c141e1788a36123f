"""The pieces every panel of bench.png draws with: a CDF only from enough samples (the rule
of plot.py), a log x axis, and a panel that says why it is empty. Imported by plot.py and
peer_plot.py alike (neither imports the other for them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.ticker import NullFormatter

from kubegate_bench.common import median

Axes = Any
MIN_SAMPLES = 200  # fewer samples than this: no distribution curve


def cdf(ax: Axes, samples: Sequence[float], label: str, **style: Any) -> None:
    """A CDF of samples, or (too few) a legend entry saying how many there were."""
    if not samples:
        return
    ordered = sorted(samples)
    n = len(ordered)
    if n < MIN_SAMPLES:
        ax.plot([], [], " ", label=f"{label}: n={n} < {MIN_SAMPLES}, no curve "
                                   f"(median {median(ordered):.3g}, max {ordered[-1]:.3g})")
        return
    ax.plot(ordered, [(i + 1) / n for i in range(n)], label=f"{label} (n={n})", **style)


def log_x(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def empty(ax: Axes, title: str, why: str = "not run") -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes)
