"""Benchmark 6: memory. The exchanger's peak RSS under benchmark 1's load at concurrency 64
(at most 120 MiB; beside the bare gRPC service under the same load), and the sidecar's RSS
when idle, beside an idle bare Python interpreter, both read from /proc: over the RFC 8693
HTTPS route (`--server https://...`, no gRPC) at most 30 MiB (issue 17), over gRPC at most
40 MiB (issue 6; `import grpc` alone is about 30).

It measures nothing under load itself: it reads what benchmarks 1 and 5 recorded, so it
needs them in the same run.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping

from kubegate_bench.common import Context, Outcome, Row
from kubegate_bench.procs import PYTHON, rss_mib

TITLE = "memory: exchanger under load, sidecar idle"
MAX_EXCHANGER_MIB, MAX_SIDECAR_MIB, MAX_HTTPS_SIDECAR_MIB = 120.0, 40.0, 30.0


def idle_interpreter_rss() -> float:
    """RSS of a bare `python` that only sleeps."""
    child = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return rss_mib(child.pid)
    finally:
        child.kill()
        child.wait()


def run(ctx: Context, outcomes: Mapping[str, Outcome]) -> Outcome:
    outcome = Outcome(bench="6", title=TITLE)
    load = outcomes.get("1")
    rss = load.data.get("rss_mib", {}) if load is not None else {}
    top = max(ctx.sizes.concurrency)
    outcome.rows.append(Row(
        bench="6", name=f"exchanger RSS under load (concurrency {top}, peak)",
        value=rss.get("exchange"), unit="MiB", baseline="bare gRPC service, same load",
        baseline_value=rss.get("echo"), check="value<=", target=MAX_EXCHANGER_MIB,
        note="" if rss else "benchmark 1 did not run"))
    sidecar = outcomes.get("5")
    data = sidecar.data if sidecar is not None else {}
    idle, https_idle = data.get("sidecar_idle_rss_mib"), data.get("sidecar_https_idle_rss_mib")
    after = data.get("sidecar_rss_after_mib")
    bare = idle_interpreter_rss()
    missing = "" if sidecar is not None else "benchmark 5 did not run"
    outcome.rows.append(Row(
        bench="6", name="sidecar RSS, idle, exchanging over HTTPS (no gRPC)", value=https_idle,
        unit="MiB", baseline="idle bare python", baseline_value=bare,
        check="value<=", target=MAX_HTTPS_SIDECAR_MIB, note=missing))
    outcome.rows.append(Row(
        bench="6", name="sidecar RSS, idle, exchanging over gRPC", value=idle, unit="MiB",
        baseline="idle bare python", baseline_value=bare,
        check="value<=", target=MAX_SIDECAR_MIB,
        note=f"{after:.1f} MiB after benchmark 5's load" if after else missing))
    outcome.data = {"exchanger_mib": rss, "sidecar_idle_mib": idle,
                    "sidecar_https_idle_mib": https_idle, "sidecar_after_mib": after}
    return outcome
