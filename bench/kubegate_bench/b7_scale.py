"""Benchmark 7: many sidecars refreshing against one exchanger: zero expired credentials
served; the exchanger's CPU per refresh (from /proc/<pid>/stat utime+stime deltas).

Time is compressed: the exchanger (`kubegate_bench.serve --time-scale K`) and the simulated
sidecars (`sim_sidecars`) share a clock running K times faster than real time, so a
10-minute credential (the shortest kubegate issues) lives 600/K real seconds and a run of a
few minutes sees many refresh rounds. The sidecars use the real keeper with its default
policy (refresh at half the lifetime, ±10 %, serve until 30 s before expiry); each has an
identity of its own and a fresh subject token per exchange; the exchanger keeps its default
per-identity rate limit and fsyncs its audit log.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from typing import Any

from kubegate_bench import exchangers
from kubegate_bench.common import Context, Outcome, Row
from kubegate_bench.procs import PYTHON, cpu_seconds, open_sockets, peak_rss_mib, rss_mib
from kubegate_bench.tokens import BenchIssuer, github_mapping

TITLE = "scale: simulated sidecars refreshing against one exchanger"
PER_PROCESS = 250
GRANT = ('{cluster: bench, namespace: web, user: "ci:octo-org/web", '
         'groups: ["kubegate:deployers"], maxLifetime: 10m}')


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="7", title=TITLE)
    sizes = ctx.sizes
    folder = ctx.work / "b7"
    folder.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer()
    key_file = issuer.save(folder / "issuer.pem")
    cluster, self_issued = exchangers.self_issued_cluster()
    state = folder / "exchanger"
    config = exchangers.write_config(
        state, issuers=[issuer.issuer_entry()], clusters=[cluster],
        mappings=github_mapping("web-deploy", GRANT), selfIssued=self_issued)
    epoch = time.time()
    exchanger = exchangers.start("b7-exchanger", state, config, argv=[
        PYTHON, "-m", "kubegate_bench.serve", "--config", str(config),
        "--time-scale", str(sizes.time_scale), "--epoch", repr(epoch)])
    try:
        idle = _idle_cpu_per_second(exchanger.pid, min(3.0, sizes.scale_seconds / 5))
        cpu_before = cpu_seconds(exchanger.pid)
        started = time.monotonic()
        reports, sockets = _simulate(ctx, exchanger, key_file, epoch)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(exchanger.pid) - cpu_before
        rss, peak = rss_mib(exchanger.pid), peak_rss_mib(exchanger.pid)
    finally:
        exchanger.stop()
    _report(outcome, ctx, reports, cpu=cpu, idle=idle, elapsed=elapsed, rss=rss, peak=peak)
    outcome.rows[-1].note += f"; {sockets} sockets open late in the run"
    outcome.data["sockets"] = sockets
    return outcome


def _idle_cpu_per_second(pid: int, seconds: float) -> float:
    """What the exchanger spends doing nothing (mapping watcher, key refresher...)."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def _simulate(ctx: Context, exchanger: exchangers.ExchangerProcess, key_file: Any,
              epoch: float) -> tuple[list[dict[str, Any]], int]:
    """The simulators' reports, and how many sockets the exchanger had open late in the run."""
    sizes = ctx.sizes
    processes = max(1, math.ceil(sizes.sidecars / PER_PROCESS))
    children: list[subprocess.Popen[str]] = []
    try:
        for index in range(processes):
            first = index * sizes.sidecars // processes
            last = (index + 1) * sizes.sidecars // processes
            spec = ctx.work / "b7" / f"sim-{index}.json"
            spec.write_text(json.dumps({
                "target": exchanger.target, "ca_file": str(exchanger.ca_file),
                "key_file": str(key_file), "first": first, "count": last - first,
                "epoch": epoch, "scale": sizes.time_scale, "seconds": sizes.scale_seconds}))
            children.append(subprocess.Popen([PYTHON, "-m", "kubegate_bench.sim_sidecars",
                                              str(spec)], stdout=subprocess.PIPE, text=True))
        time.sleep(sizes.scale_seconds * 0.8)
        sockets = open_sockets(exchanger.pid)
        timeout = sizes.scale_seconds + 120
        return [json.loads(child.communicate(timeout=timeout)[0]) for child in children], sockets
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def _report(outcome: Outcome, ctx: Context, reports: list[dict[str, Any]], *, cpu: float,
            idle: float, elapsed: float, rss: float, peak: float) -> None:
    sizes = ctx.sizes
    served = sum(r["served"] for r in reports)
    expired = sum(r["expired"] for r in reports)
    unserved = sum(r["unserved"] for r in reports)
    results: dict[str, int] = {}
    for report in reports:
        for name, count in report["results"].items():
            results[name] = results.get(name, 0) + count
    exchanges = sum(results.values())
    ok = results.get("ok", 0)
    simulated = elapsed * sizes.time_scale
    label = f"{sizes.sidecars} sidecars, {elapsed:.0f} s ({simulated / 60:.0f} simulated min)"
    outcome.rows.append(Row(
        bench="7", name=f"expired credentials served ({label})", value=float(expired),
        unit="count", check="value==", target=0.0,
        note=f"{served} served samples; {unserved} without a credential (startup included)"))
    busy = max(0.0, cpu - idle * elapsed)
    outcome.rows.append(Row(
        bench="7", name="exchanger CPU per refresh", value=cpu / exchanges * 1e6 if exchanges
        else None, unit="us",
        note=f"{busy / exchanges * 1e6 if exchanges else 0:.0f} us net of idle "
             f"({idle * 1000:.0f} CPU-ms/s); {exchanges} exchanges ({ok} ok, "
             f"{exchanges / elapsed:.0f}/s), {cpu:.1f} CPU-s"))
    outcome.rows.append(Row(
        bench="7", name="exchanger RSS at the end (peak)", value=rss, unit="MiB",
        note=f"peak {peak:.1f} MiB"))
    outcome.data = {"sidecars": sizes.sidecars, "seconds": elapsed, "scale": sizes.time_scale,
                    "served": served, "expired": expired, "unserved": unserved,
                    "results": results, "cpu_seconds": cpu, "idle_cpu_per_second": idle,
                    "rss_mib": rss, "peak_mib": peak}
