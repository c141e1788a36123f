"""What every benchmark shares: run sizes per mode, result rows, statistics and timing."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Mode = Literal["full", "quick", "smoke"]
# How a row is judged: a ratio to its baseline at most/at least a number, an absolute value
# at most/exactly a number, or no target at all (reported for information).
Check = Literal["ratio<=", "ratio>=", "value<=", "value==", "info"]


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How much each benchmark does in one mode."""

    concurrency: tuple[int, ...] = (1, 16, 64)
    load_seconds: float = 6.0  # measured window per concurrency and service (b1)
    load_warmup: float = 1.0
    token_pool: int = 6000  # distinct subject tokens (> the verifier's 4096-entry cache)
    verify_rounds: int = 3000  # b2: calls per timing
    repeats: int = 7  # b2/b4: timings per figure; the best is kept
    match_rounds: int = 2000  # b4
    kube_calls: int = 200  # b3: calls per path (half baseline, half exchange)
    socket_calls: int = 3000  # b5: credential GETs over the socket
    cold_starts: int = 20  # b5: runs of each command
    kubectl_runs: int = 20  # b5: runs of kubectl get each way
    exec_calls: int = 20  # b8: exec plugin runs each way (cache miss, cache hit, floor)
    idle_seconds: float = 5.0  # b6: how long the sidecar idles before its RSS is read
    sidecars: int = 1000  # b7
    scale_seconds: float = 180.0
    time_scale: float = 30.0  # b7: simulated seconds per real second
    trustmappings: int = 10_000  # b9
    mapping_deletions: int = 20  # b9: deletions (and as many changes) under the backlog
    idle_writes_seconds: float = 10.0  # b9: how long no status may be written once settled


SIZES: dict[str, Sizes] = {
    "full": Sizes(),
    "quick": Sizes(load_seconds=2.0, load_warmup=0.5, verify_rounds=1500, repeats=5,
                   match_rounds=1000, kube_calls=60, socket_calls=1000, cold_starts=8,
                   kubectl_runs=6, exec_calls=8, idle_seconds=2.0, sidecars=50,
                   scale_seconds=20.0, trustmappings=1000, mapping_deletions=10,
                   idle_writes_seconds=3.0),
    "smoke": Sizes(load_seconds=0.3, load_warmup=0.1, token_pool=40, verify_rounds=30,
                   repeats=2, match_rounds=20, kube_calls=4, socket_calls=20, cold_starts=2,
                   kubectl_runs=1, exec_calls=2, idle_seconds=0.2, sidecars=4, scale_seconds=3.0,
                   time_scale=60.0, trustmappings=20, mapping_deletions=2,
                   idle_writes_seconds=0.5),
}


@dataclass(kw_only=True)
class Row:
    """One line of the table: a measurement, its same-run baseline, their ratio, the target."""

    bench: str
    name: str
    value: float | None
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    check: Check = "info"
    target: float | None = None
    note: str = ""
    ratio: float | None = field(default=None, init=False)
    met: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.value is not None and self.baseline_value:
            self.ratio = self.value / self.baseline_value
        self.met = judge(self.check, self.target, self.value, self.ratio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(check: Check, target: float | None, value: float | None,
          ratio: float | None) -> bool | None:
    if check == "info" or target is None or value is None:
        return None
    if check == "ratio<=":
        return ratio is not None and ratio <= target
    if check == "ratio>=":
        return ratio is not None and ratio >= target
    if check == "value<=":
        return value <= target
    return value == target


@dataclass(kw_only=True)
class Outcome:
    """What one benchmark hands back: its rows, data for the plot, and an error if it broke."""

    bench: str
    title: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "title": self.title, "error": self.error,
                "seconds": round(self.seconds, 2), "rows": [r.to_dict() for r in self.rows],
                "data": self.data}


@dataclass(frozen=True, kw_only=True)
class Context:
    """What the runner gives each benchmark."""

    mode: Mode
    sizes: Sizes
    work: Path  # scratch folder of this run (sockets, configs, logs)
    out: Path  # bench/out: results.json, bench.png, profiles
    profile: bool = False  # run py-spy on the server side of loads (b1)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of samples (fraction in 0..1); nan when there are none."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def best_per_call(call: Callable[[], object], rounds: int, repeats: int) -> float:
    """Seconds per call: the best of `repeats` timings of `rounds` calls (least disturbed)."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, time.perf_counter() - started)
    return best / rounds


def thin(samples: Sequence[float], limit: int = 4000) -> list[float]:
    """At most `limit` samples, evenly taken from the sorted list (for JSON and plots)."""
    ordered = sorted(samples)
    if len(ordered) <= limit:
        return [round(s, 4) for s in ordered]
    step = len(ordered) / limit
    return [round(ordered[int(i * step)], 4) for i in range(limit)]
