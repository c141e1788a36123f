"""Benchmark 11: the RFC 8693 token endpoint over HTTPS (keep-alive) beside gRPC's Exchange,
on one self-issued exchanger (`kubegate serve` as its own process, both listeners on the same
TLS certificate) and with the same client: closed-loop threads in this process, one
keep-alive HTTPS connection per thread against one shared gRPC channel (opened after the
HTTPS loads: its polling thread would take the GIL from the HTTPS client threads).

Every exchange presents a fresh GitHub-shaped RS256 token (each transport a pool of its own,
taken in order; a row notes how many calls had to reuse one), so both pay a full
verification, match, ES256 signature and fsync'd audit line; what differs is the transport:
TLS + HTTP/1.1 + form + JSON on a thread per connection, against HTTP/2 + protobuf on gRPC's
pool. Target: at least 0.8 of gRPC's exchanges per second.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from exchanger.server import SERVICE_NAME
from exchanger.v1 import exchange_pb2
from kubegate_bench import exchangers
from kubegate_bench.common import Context, Outcome, Row, percentile, thin
from kubegate_bench.procs import cpu_seconds, free_port
from kubegate_bench.tokens import BenchIssuer, github_mapping

TITLE = "RFC 8693 token exchange over HTTPS vs gRPC Exchange"
GRANT = '{cluster: bench, namespace: web, user: "ci:octo-org/web", maxLifetime: 15m}'
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
MIN_RATIO = 0.8
CONCURRENCY = (1, 8)
Call = Callable[[str], None]


class _Tokens:
    """A transport's pool, taken in order across its loads (a token taken twice may be
    answered from the verifier's cache: `reused` counts those)."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens, self._taken, self._lock = tokens, 0, threading.Lock()

    def take(self) -> str:
        with self._lock:
            token = self._tokens[self._taken % len(self._tokens)]
            self._taken += 1
            return token

    @property
    def reused(self) -> int:
        return max(0, self._taken - len(self._tokens))


class _Load:
    """Measured calls of one transport at one concurrency."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.errors = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.reused = 0  # calls that presented a token already presented

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_call_us(self) -> float:
        count = len(self.latencies_ms)
        return self.cpu_seconds / count * 1e6 if count else float("nan")


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="11", title=TITLE)
    folder = ctx.work / "b11"
    folder.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer()
    http_port = free_port()
    cluster, self_issued = exchangers.self_issued_cluster()
    config = exchangers.write_config(
        folder / "exchanger", issuers=[issuer.issuer_entry()], clusters=[cluster],
        mappings=github_mapping("web-deploy", GRANT), selfIssued=self_issued,
        rateLimit=exchangers.UNLIMITED, httpListen=f"127.0.0.1:{http_port}")
    exchanger = exchangers.start("b11-exchanger", folder / "exchanger", config)
    try:
        loads = _measure(ctx, issuer, exchanger, http_port)
    finally:
        exchanger.stop()
    _report(outcome, loads)
    return outcome


def _measure(ctx: Context, issuer: BenchIssuer, exchanger: exchangers.ExchangerProcess,
             http_port: int) -> dict[str, list[_Load]]:
    """HTTPS first, with no gRPC channel in this process yet (its polling thread would compete
    with the HTTPS client threads for the GIL), then gRPC."""
    tokens = {name: _Tokens([issuer.mint() for _ in range(ctx.sizes.token_pool)])
              for name in ("https", "grpc")}
    context = ssl.create_default_context(cafile=str(exchanger.ca_file))
    connections: list[http.client.HTTPSConnection] = []

    def https_call() -> Call:
        connection = http.client.HTTPSConnection("127.0.0.1", http_port, context=context,
                                                 timeout=30)
        connections.append(connection)

        def call(token: str) -> None:
            connection.request("POST", "/oauth2/token", headers=_FORM, body=urlencode({
                "grant_type": GRANT_TYPE, "subject_token_type": JWT, "subject_token": token}))
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        return call

    loads = {"https": [_closed_loop(https_call, tokens["https"], c, ctx, exchanger.pid)
                       for c in CONCURRENCY]}
    for connection in connections:
        connection.close()
    import grpc

    credentials = grpc.ssl_channel_credentials(exchanger.ca_file.read_bytes())
    with grpc.secure_channel(exchanger.target, credentials) as channel:
        stub = channel.unary_unary(f"/{SERVICE_NAME}/Exchange")

        def grpc_call() -> Call:
            def call(token: str) -> None:
                stub(exchange_pb2.ExchangeRequest(subject_token=token).SerializeToString(),
                     timeout=30)
            return call

        loads["grpc"] = [_closed_loop(grpc_call, tokens["grpc"], c, ctx, exchanger.pid)
                         for c in CONCURRENCY]
    reused = {name: pool.reused for name, pool in tokens.items()}
    for name, pool_loads in loads.items():
        pool_loads[-1].reused = reused[name]
    return loads


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _closed_loop(make: Callable[[], Call], tokens: _Tokens, concurrency: int,
                 ctx: Context, server_pid: int) -> _Load:
    """`concurrency` threads calling back to back; latencies after the warm-up only."""
    load, lock = _Load(), threading.Lock()
    start = time.monotonic() + 0.1
    measure_from = start + ctx.sizes.load_warmup
    stop_at = measure_from + ctx.sizes.load_seconds

    def worker() -> None:
        call = make()
        while (now := time.monotonic()) < stop_at:
            try:
                call(tokens.take())
            except Exception:
                with lock:
                    load.errors += 1
                continue
            done = time.monotonic()
            if now >= measure_from:
                with lock:
                    load.latencies_ms.append((done - now) * 1000)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu_before = cpu_seconds(server_pid)
    time.sleep(max(0.0, stop_at - time.monotonic()))
    load.cpu_seconds = cpu_seconds(server_pid) - cpu_before
    for thread in threads:
        thread.join()
    load.seconds = ctx.sizes.load_seconds
    return load


def _report(outcome: Outcome, loads: dict[str, list[_Load]]) -> None:
    for https, grpc_load, concurrency in zip(loads["https"], loads["grpc"], CONCURRENCY,
                                             strict=True):
        errors = https.errors + grpc_load.errors
        notes = [f"errors {errors}"] if errors else []
        if https.reused or grpc_load.reused:
            notes.append(f"tokens reused {https.reused} / {grpc_load.reused}")
        outcome.rows.append(Row(
            bench="11", name=f"HTTPS exchange throughput, concurrency {concurrency}",
            value=https.throughput, unit="req/s", baseline="gRPC Exchange, same exchanger",
            baseline_value=grpc_load.throughput, check="ratio>=", target=MIN_RATIO,
            note="; ".join(notes)))
    one_https, one_grpc = loads["https"][0], loads["grpc"][0]
    outcome.rows.append(Row(
        bench="11", name="HTTPS exchange p50 latency, concurrency 1",
        value=percentile(one_https.latencies_ms, 0.5), unit="ms",
        baseline="gRPC Exchange, same exchanger",
        baseline_value=percentile(one_grpc.latencies_ms, 0.5),
        note=f"p99 {percentile(one_https.latencies_ms, 0.99):.2f} ms vs "
             f"{percentile(one_grpc.latencies_ms, 0.99):.2f} ms"))
    top_https, top_grpc = loads["https"][-1], loads["grpc"][-1]
    outcome.rows.append(Row(
        bench="11", name=f"server CPU per exchange, concurrency {CONCURRENCY[-1]}",
        value=top_https.cpu_per_call_us, unit="us", baseline="gRPC Exchange, same exchanger",
        baseline_value=top_grpc.cpu_per_call_us))
    outcome.data = {
        "concurrency": list(CONCURRENCY),
        "throughput": {name: [load.throughput for load in ls] for name, ls in loads.items()},
        "latencies_ms": {name: {str(c): thin(load.latencies_ms)
                                for c, load in zip(CONCURRENCY, ls, strict=True)}
                         for name, ls in loads.items()},
    }


if __name__ == "__main__":  # a standalone run: python -m kubegate_bench.b11_https
    import tempfile

    from kubegate_bench.common import SIZES

    with tempfile.TemporaryDirectory() as scratch:
        ran = run(Context(mode="quick", sizes=SIZES["quick"], work=Path(scratch),
                          out=Path(scratch)))
        for row in ran.rows:
            print(row.name, f"{row.value:.2f}", row.unit, "vs", row.baseline_value)
