"""Benchmark 1: self-issued exchange throughput at concurrency 1, 16 and 64 against a bare
gRPC service with the same server settings (target: at least 0.6 of its throughput), and
p99 latency at 64.

Both servers are separate processes on the same TLS certificate and are driven by the same
load generators (`loadgen`: separate processes, one TLS channel each, pre-serialized
requests). Every exchange presents a different GitHub-shaped RS256 token from a pool larger
than the verifier's cache, so each one is verified in full, matched, signed (ES256), and
audited (one fsync'd line). The exchanger's RSS under the load at 64 feeds benchmark 6.
"""

from __future__ import annotations

import base64
from pathlib import Path

from exchanger.server import MAX_RECEIVE_BYTES, SERVICE_NAME, WORKERS
from exchanger.v1 import exchange_pb2
from kubegate_bench import exchangers, profile
from kubegate_bench.common import Context, Outcome, Row, thin
from kubegate_bench.echo_server import METHOD as ECHO_METHOD
from kubegate_bench.load import LoadResult, Target, run_load
from kubegate_bench.procs import PYTHON, Process, start_exchanger_process
from kubegate_bench.tokens import BenchIssuer, github_mapping

TITLE = "self-issued exchange throughput vs a bare gRPC service"
EXCHANGE_METHOD = f"/{SERVICE_NAME}/Exchange"
GRANT = ('{cluster: bench, namespace: web, user: "ci:octo-org/web", '
         'groups: ["kubegate:deployers"], maxLifetime: 15m}')
MIN_RATIO = 0.6


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="1", title=TITLE)
    folder = ctx.work / "b1"
    folder.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer()
    requests_file = _requests(issuer, ctx.sizes.token_pool, folder / "requests.txt")
    config = _config(issuer, folder / "exchanger")
    exchanger = exchangers.start("b1-exchanger", folder / "exchanger", config)
    echo: Process | None = None
    try:
        response_bytes = _check_exchange(exchanger, requests_file)
        echo, echo_port = start_exchanger_process("b1-echo", config, folder, argv=[
            PYTHON, "-m", "kubegate_bench.echo_server", "--cert", str(exchanger.cert_file),
            "--key", str(exchanger.key_file), "--workers", str(WORKERS),
            "--max-receive", str(MAX_RECEIVE_BYTES), "--response-bytes", str(response_bytes)])
        targets = {
            "echo": Target(address=f"127.0.0.1:{echo_port}", ca_file=exchanger.ca_file,
                           method=ECHO_METHOD, server_pid=echo.popen.pid),
            "exchange": Target(address=exchanger.target, ca_file=exchanger.ca_file,
                               method=EXCHANGE_METHOD, server_pid=exchanger.pid),
        }
        results = _measure(ctx, targets, requests_file, folder)
        if ctx.profile:
            results["exchange, audit fsync off"] = [_without_fsync(ctx, issuer, requests_file,
                                                                   folder)]
    finally:
        if echo is not None:
            echo.stop()
        exchanger.stop()
    _report(outcome, results, response_bytes)
    return outcome


def _config(issuer: BenchIssuer, folder: Path) -> Path:
    cluster, self_issued = exchangers.self_issued_cluster()
    return exchangers.write_config(
        folder, issuers=[issuer.issuer_entry()], clusters=[cluster],
        mappings=github_mapping("web-deploy", GRANT), selfIssued=self_issued,
        rateLimit=exchangers.UNLIMITED)


def _without_fsync(ctx: Context, issuer: BenchIssuer, requests_file: Path,
                   folder: Path) -> LoadResult:
    """Diagnosis (--profile only): the same load at the top concurrency on an exchanger whose
    audit log does not fsync, to show what the fsync under the log's lock costs."""
    state = folder / "exchanger-no-fsync"
    config = _config(issuer, state)
    exchanger = exchangers.start("b1-exchanger-no-fsync", state, config, argv=[
        PYTHON, "-m", "kubegate_bench.serve", "--config", str(config), "--no-audit-fsync"])
    try:
        target = Target(address=exchanger.target, ca_file=exchanger.ca_file,
                        method=EXCHANGE_METHOD, server_pid=exchanger.pid)
        spy = profile.start(exchanger.pid, ctx.out / "profile-b1-exchange-no-fsync.txt",
                            ctx.sizes.load_warmup + ctx.sizes.load_seconds + 1)
        result = run_load(target, requests_file, max(ctx.sizes.concurrency),
                          warmup=ctx.sizes.load_warmup, seconds=ctx.sizes.load_seconds,
                          work=folder, label="no-fsync")
        spy.finish()
        return result
    finally:
        exchanger.stop()


def _requests(issuer: BenchIssuer, count: int, path: Path) -> Path:
    """`count` serialized ExchangeRequests, each with a fresh token, one per line (base64)."""
    lines = [base64.b64encode(exchange_pb2.ExchangeRequest(
        subject_token=issuer.mint()).SerializeToString()).decode() for _ in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_exchange(exchanger: exchangers.ExchangerProcess, requests_file: Path) -> int:
    """One real exchange must succeed; returns the size of its response (the echo's too)."""
    import grpc

    request = base64.b64decode(requests_file.read_text().split()[0])
    roots = exchanger.ca_file.read_bytes()
    with grpc.secure_channel(exchanger.target,
                             grpc.ssl_channel_credentials(root_certificates=roots)) as channel:
        raw: bytes = channel.unary_unary(EXCHANGE_METHOD)(request, timeout=30)
    response = exchange_pb2.ExchangeResponse.FromString(raw)
    if not response.credential:
        raise RuntimeError("the exchanger answered without a credential")
    return len(raw)


def _measure(ctx: Context, targets: dict[str, Target], requests_file: Path,
             folder: Path) -> dict[str, list[LoadResult]]:
    results: dict[str, list[LoadResult]] = {"echo": [], "exchange": []}
    offsets = dict.fromkeys(targets, 0)  # each load goes on where the last one stopped
    top = max(ctx.sizes.concurrency)
    for concurrency in ctx.sizes.concurrency:
        for name, target in targets.items():
            spy = (profile.start(target.server_pid, ctx.out / f"profile-b1-{name}.txt",
                                 ctx.sizes.load_warmup + ctx.sizes.load_seconds + 1)
                   if ctx.profile and concurrency == top else None)
            result = run_load(target, requests_file, concurrency, warmup=ctx.sizes.load_warmup,
                              seconds=ctx.sizes.load_seconds, work=folder, label=name,
                              offset=offsets[name])
            offsets[name] += result.taken
            results[name].append(result)
            if spy is not None:
                spy.finish()
    return results


def _report(outcome: Outcome, results: dict[str, list[LoadResult]], response_bytes: int) -> None:
    for echo, exchange in zip(results["echo"], results["exchange"], strict=True):
        c = exchange.concurrency
        errors = {k: v for r in (echo, exchange) for k, v in r.errors.items()}
        outcome.rows.append(Row(
            bench="1", name=f"exchange throughput, concurrency {c}", value=exchange.throughput,
            unit="req/s", baseline="bare gRPC service", baseline_value=echo.throughput,
            check="ratio>=", target=MIN_RATIO,
            note=f"errors {errors}" if errors else ""))
        outcome.rows.append(Row(
            bench="1", name=f"server CPU per call, concurrency {c}",
            value=exchange.cpu_per_call_us, unit="us", baseline="bare gRPC service",
            baseline_value=echo.cpu_per_call_us))
    for diagnosis in results.get("exchange, audit fsync off", []):
        outcome.rows.append(Row(
            bench="1", name=f"diagnosis: audit fsync off, concurrency {diagnosis.concurrency}",
            value=diagnosis.throughput, unit="req/s", baseline="bare gRPC service",
            baseline_value=results["echo"][-1].throughput,
            note=f"server CPU {diagnosis.cpu_per_call_us:.0f} us/call; not a product setting"))
    top_echo, top_exchange = results["echo"][-1], results["exchange"][-1]
    outcome.rows.append(Row(
        bench="1", name=f"exchange p99 latency, concurrency {top_exchange.concurrency}",
        value=top_exchange.p(0.99), unit="ms", baseline="bare gRPC service",
        baseline_value=top_echo.p(0.99),
        note=f"p50 {top_exchange.p(0.5):.2f} ms vs {top_echo.p(0.5):.2f} ms"))
    outcome.data = {
        "response_bytes": response_bytes,
        "concurrency": [r.concurrency for r in results["exchange"]],
        "throughput": {name: [r.throughput for r in rs] for name, rs in results.items()},
        "latencies_ms": {name: {str(r.concurrency): thin(r.latencies_ms) for r in rs}
                         for name, rs in results.items()},
        "cpu_per_call_us": {name: [r.cpu_per_call_us for r in rs]
                            for name, rs in results.items()},
        "rss_mib": {name: max(rs[-1].server_rss_mib, default=0.0)
                    for name, rs in results.items()},
    }
