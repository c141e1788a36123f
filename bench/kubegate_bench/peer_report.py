"""Benchmark 15's rows and plot data, from its loads (see b15_peer for how they were made).

Rules of this module: every target of issue 17 is a row with its check, whatever was
measured; a row whose figure could not be measured says so in its note rather than vanish;
latency samples go to the plot data with their count, so the plot can refuse to draw a
distribution from too few.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from kubegate_bench.common import Outcome, Row
from kubegate_bench.peer_procs import LoadResult

MIN_THROUGHPUT_RATIO = 1.2
MAX_CPU_VS_DEX, MAX_CPU_VS_GO, MAX_P99_VS_DEX = 1.0, 3.0, 1.0
MAX_RSS_MIB = 200.0
GO = "plain Go exchange (floor)"


def _cpu_us(loads: Sequence[LoadResult]) -> float:
    """Server CPU per exchange over all the loads together."""
    calls = sum(load.calls for load in loads)
    return sum(load.server_cpu_seconds for load in loads) / calls * 1e6 if calls else math.nan


def _client_us(loads: Sequence[LoadResult]) -> float:
    requests = sum(int(load.report["requests"]) for load in loads)
    cpu = sum(float(load.report["client_cpu_seconds"]) for load in loads)
    return cpu / requests * 1e6 if requests else math.nan


def _errors(*loads: LoadResult) -> str:
    counts: dict[str, int] = {}
    for load in loads:
        for kind, count in load.report["errors"].items():
            counts[f"{load.target} {kind}"] = counts.get(f"{load.target} {kind}", 0) + count
    return "errors " + ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else ""


def _reused(*loads: LoadResult) -> str:
    reused = {load.target: int(load.report["tokens_reused"]) for load in loads
              if int(load.report["tokens_reused"])}
    return ("tokens presented again " + ", ".join(f"{k} {v}" for k, v in reused.items())
            if reused else "")


def _notes(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def report(outcome: Outcome, loads: Mapping[str, list[LoadResult]], *, floor_us: float,
           workers: int, dex: str) -> None:
    kube, peer, go = loads["kubegate"], loads["dex"], loads["go"]
    for k, d, g in zip(kube, peer, go, strict=True):
        outcome.rows.append(Row(
            bench="15", name=f"kubegate exchange throughput, concurrency {k.concurrency}",
            value=k.throughput, unit="req/s", baseline=dex, baseline_value=d.throughput,
            check="ratio>=", target=MIN_THROUGHPUT_RATIO,
            note=_notes(f"{GO} {g.throughput:,.0f} req/s", _errors(k, d, g), _reused(k, d, g))))
    outcome.rows.append(Row(
        bench="15", name="kubegate server CPU per exchange, c16+c64", value=_cpu_us(kube),
        unit="us", baseline=dex, baseline_value=_cpu_us(peer), check="ratio<=",
        target=MAX_CPU_VS_DEX,
        note=f"server tree: {workers} process{'' if workers == 1 else 'es'}"))
    outcome.rows.append(Row(
        bench="15", name="kubegate server CPU per exchange vs native, c16+c64",
        value=_cpu_us(kube), unit="us", baseline=GO, baseline_value=_cpu_us(go),
        check="ratio<=", target=MAX_CPU_VS_GO))
    top_k, top_d = kube[-1], peer[-1]
    outcome.rows.append(Row(
        bench="15", name=f"kubegate p99 latency, concurrency {top_k.concurrency}",
        value=float(top_k.report["p99_ms"]), unit="ms", baseline=dex,
        baseline_value=float(top_d.report["p99_ms"]), check="ratio<=", target=MAX_P99_VS_DEX,
        note=f"p50 {top_k.report['p50_ms']:.1f} vs {top_d.report['p50_ms']:.1f} ms"))
    outcome.rows.append(Row(
        bench="15", name=f"exchanger memory under load, all workers, each page once (PSS, "
        f"c{top_k.concurrency}, peak)",
        value=top_k.peak_pss_mib, unit="MiB", baseline=dex,
        baseline_value=top_d.peak_pss_mib, check="value<=", target=MAX_RSS_MIB,
        note=f"RSS summed over the processes, shared pages once per process: "
             f"{top_k.peak_rss_mib:.0f} MiB; {GO} {go[-1].peak_pss_mib:.0f} MiB"))
    _info_rows(outcome, loads, floor_us=floor_us, dex=dex)
    outcome.data = _data(loads, floor_us)


def _info_rows(outcome: Outcome, loads: Mapping[str, list[LoadResult]], *, floor_us: float,
               dex: str) -> None:
    kube, peer, go = loads["kubegate"], loads["dex"], loads["go"]
    for d, g in zip(peer, go, strict=True):
        outcome.rows.append(Row(
            bench="15", name=f"Dex exchange throughput, concurrency {d.concurrency}",
            value=d.throughput, unit="req/s", baseline=GO, baseline_value=g.throughput))
    outcome.rows.append(Row(
        bench="15", name="Dex server CPU per exchange, c16+c64", value=_cpu_us(peer),
        unit="us", baseline=GO, baseline_value=_cpu_us(go)))
    https = loads.get("kubegate-https", [])
    if https:
        h = https[0]
        outcome.rows.append(Row(
            bench="15", name=f"kubegate RFC 8693 HTTPS throughput, concurrency {h.concurrency}",
            value=h.throughput, unit="req/s", baseline=dex, baseline_value=peer[0].throughput,
            note=_notes(f"CPU {h.server_cpu_us:,.0f} us/exchange", _errors(h))))
    outcome.rows.append(Row(
        bench="15", name="PyJWT RS256 verify of one subject token, in-process (floor)",
        value=floor_us, unit="us", baseline="kubegate server CPU per exchange",
        baseline_value=_cpu_us(kube),
        note="ratio: the share of kubegate's exchange that the bare verify is"))
    outcome.rows.append(Row(
        bench="15", name="load generator CPU per call (kubegate gRPC)",
        value=_client_us(kube), unit="us", baseline="same loadgen against Dex (HTTPS form)",
        baseline_value=_client_us(peer), note=f"against the Go floor {_client_us(go):.0f} us"))


def _data(loads: Mapping[str, list[LoadResult]], floor_us: float) -> dict[str, Any]:
    return {
        "concurrency": [load.concurrency for load in loads["kubegate"]],
        "throughput": {name: [load.throughput for load in ls] for name, ls in loads.items()},
        "server_cpu_us": {name: _cpu_us(ls) for name, ls in loads.items()},
        "client_cpu_us": {name: _client_us(ls) for name, ls in loads.items()},
        "peak_pss_mib": {name: max(load.peak_pss_mib for load in ls)
                         for name, ls in loads.items()},
        "peak_rss_mib": {name: max(load.peak_rss_mib for load in ls)
                         for name, ls in loads.items()},
        "pyjwt_verify_us": floor_us,
        "latencies_ms": {name: {str(load.concurrency): load.report.get("latencies_ms") or []
                                for load in ls} for name, ls in loads.items()},
        "requests": {name: {str(load.concurrency): int(load.report["requests"]) for load in ls}
                     for name, ls in loads.items()},
    }
