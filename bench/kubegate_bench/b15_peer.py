"""Benchmark 15: kubegate against its peer, Dex v2.45.1's OAuth 2.0 Token Exchange, in the
same run, driven by the same Go load generator (bench/loadgen, so the client's cost flatters
neither side and is reported) with the same distinct RS256 subject tokens, both on TLS; and the
floors under both: the plain Go exchange (bench/goexchange: the same job natively) and PyJWT's
verify of one such token in-process (the minimal verify with kubegate's own library).

All three servers are started first and stay up (idle ones cost next to nothing); the loads
then take turns, kubegate, Dex, Go at concurrency 16, then the same at 64, then kubegate's
RFC 8693 HTTPS endpoint at 16: on a shared machine whose load drifts, neighbours in time are
the fairest comparison. Each load presents the tokens in order from where that server's
previous load stopped, so no server sees a token again before every other one in the pool
(kubegate's verified-token cache holds 4096; Dex and the Go floor cache nothing).
CPU per exchange is the server's whole process tree (workers included) over every call the
load made; RSS is the tree's peak during the concurrency-64 load.

Targets (issue 17): kubegate/Dex throughput >= 1.2 at concurrency 16 and 64; kubegate/Dex
CPU per exchange <= 1.0; kubegate / plain Go CPU per exchange <= 3.0; p99 at 64 / Dex's
<= 1.0; the exchanger's RSS (all workers) under load <= 200 MiB.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jwt

from kubegate_bench import exchangers
from kubegate_bench.common import Context, Outcome, best_per_call
from kubegate_bench.peer_dex import LocalTLS, Upstream, local_tls, start_dex
from kubegate_bench.peer_procs import (
    LoadResult,
    dex_binary,
    dex_version,
    loadgen_dir,
    run_load,
    tree_pids,
)
from kubegate_bench.peer_report import report
from kubegate_bench.procs import KUBEGATE, free_port, start_process, wait_for_line
from kubegate_bench.tokens import AUDIENCE, BenchIssuer, github_mapping

TITLE = "kubegate vs Dex (peer) token exchange, Go load generator, with floors"
GRANT = '{cluster: bench, namespace: web, user: "ci:octo-org/web", maxLifetime: 15m}'
CONCURRENCY = (16, 64)
POOL = {"full": 8000, "quick": 4000, "smoke": 40}  # distinct subject tokens
_GRPC_LINE = re.compile(r"gRPC:\s+\S+:(\d+)")


@dataclass(kw_only=True)
class _Target:
    """A running server and how the load generator reaches it."""

    name: str
    pid: int
    args: list[str]
    offset: int = 0  # the next token this server has not seen


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="15", title=TITLE)
    folder = ctx.work / "b15"
    folder.mkdir(parents=True, exist_ok=True)
    tools, dex = loadgen_dir(), dex_binary()
    tls = local_tls(folder / "tls")
    issuer = BenchIssuer()
    loads: dict[str, list[LoadResult]] = {}
    with Upstream(tls, issuer.jwk) as upstream, contextlib.ExitStack() as stack:
        tokens = _mint(issuer, upstream.url, POOL[ctx.mode], folder / "tokens.txt")
        kubegate, https = _start_kubegate(stack, folder, issuer, upstream.url, tokens)
        peer = start_dex(dex, folder / "dex", tls, upstream.url)
        stack.callback(peer.stop)
        targets = [kubegate,
                   _Target(name="dex", pid=peer.pid, args=peer.loadgen_args(tls.ca_file, tokens)),
                   _start_go(stack, folder, tls, issuer, upstream.url, tokens)]
        for level in CONCURRENCY:
            for target in targets:
                loads.setdefault(target.name, []).append(_load(ctx, tools, target, level))
        workers = len(tree_pids(kubegate.pid))
        https.offset = kubegate.offset
        loads[https.name] = [_load(ctx, tools, https, CONCURRENCY[0])]
    floor_us = _pyjwt_verify_us(ctx, issuer, upstream.url, tokens)
    report(outcome, loads, floor_us=floor_us, workers=workers,
           dex=f"Dex {dex_version()} token exchange")
    return outcome


def _mint(issuer: BenchIssuer, url: str, count: int, path: Path) -> Path:
    path.write_text("".join(issuer.mint(extra={"iss": url}) + "\n" for _ in range(count)))
    path.chmod(0o600)
    return path


def _load(ctx: Context, tools: Path, target: _Target, level: int) -> LoadResult:
    result = run_load(loadgen=tools / "loadgen", target=target.name, server_pid=target.pid,
                      args=target.args, concurrency=level, seconds=ctx.sizes.load_seconds,
                      warmup=ctx.sizes.load_warmup, offset=target.offset)
    target.offset += result.calls
    return result


def _start_kubegate(stack: contextlib.ExitStack, folder: Path, issuer: BenchIssuer, url: str,
                    tokens: Path) -> tuple[_Target, _Target]:
    """One self-issued exchanger (default workers): its gRPC Exchange and HTTPS endpoint."""
    cluster, self_issued = exchangers.self_issued_cluster()
    http_port = free_port()
    config = exchangers.write_config(
        folder / "kubegate", issuers=[{**issuer.issuer_entry(), "url": url}],
        clusters=[cluster], mappings=github_mapping("web-deploy", GRANT),
        selfIssued=self_issued, rateLimit=exchangers.UNLIMITED,
        httpListen=f"127.0.0.1:{http_port}")
    server = exchangers.start("b15-kubegate", folder / "kubegate", config, [  # every core,
        *KUBEGATE, "serve", "--config", str(config), "--log-level", "WARNING"])  # as Dex
    stack.callback(server.stop)
    common = ["-ca", str(server.ca_file), "-tokens", str(tokens)]
    return (_Target(name="kubegate", pid=server.pid,
                    args=["-mode", "grpc", "-target", server.target, *common]),
            _Target(name="kubegate-https", pid=server.pid,
                    args=["-mode", "https-form", "-target",
                          f"https://127.0.0.1:{http_port}/oauth2/token", *common]))


def _start_go(stack: contextlib.ExitStack, folder: Path, tls: LocalTLS, issuer: BenchIssuer,
              url: str, tokens: Path) -> _Target:
    jwks = folder / "go-jwks.json"
    jwks.write_text(json.dumps({"keys": [issuer.jwk]}))
    command = [str(loadgen_dir() / "goexchange"), "-listen", "127.0.0.1:0",
               "-cert", str(tls.cert_file), "-key", str(tls.key_file), "-jwks", str(jwks),
               "-issuer", url, "-audience", AUDIENCE, "-audit", str(folder / "go-audit.log"),
               "-require", "ref=refs/heads/main", "-require", "environment=production"]
    process = start_process("b15-goexchange", command, folder)
    stack.callback(process.stop)
    port = wait_for_line(process, _GRPC_LINE).group(1)
    return _Target(name="go", pid=process.popen.pid,
                   args=["-mode", "grpc", "-target", f"127.0.0.1:{port}", "-ca",
                         str(tls.ca_file), "-tokens", str(tokens)])


def _pyjwt_verify_us(ctx: Context, issuer: BenchIssuer, url: str, tokens: Path) -> float:
    """PyJWT's RS256 decode of one of the tokens, in-process: microseconds per call."""
    token = tokens.read_text().split("\n", 1)[0]
    key = issuer.key.public_key()

    def verify() -> None:
        jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=url)

    return best_per_call(verify, ctx.sizes.verify_rounds, ctx.sizes.repeats) * 1e6
