"""Benchmark 8: the exec plugin kubectl runs before every command (`kubegate exchange
--output exec-credential`, the user of `--exec-kubeconfig` kubeconfigs, the GitHub action and
the GitLab template), cold and cached, as the console script in a new process each time.

- cache miss: an empty cache folder, so the call reads the token file, exchanges over gRPC/TLS
  with a self-issued exchanger (static RS256 keys, no network beyond loopback), and writes
  the cache entry;
- cache hit: the entry is there and fresh: no exchange, no grpc import;
- floor: `python -c pass`, the interpreter's own start.

Targets: a hit costs at most half a miss; at most 4x the floor (benchmark 5 asks 3x of
`kubegate credential`, which only reads a socket: this command first parses and checks the
whole exchange flag set, as a miss does, and hashes the subject token for the key); and the
hits made no exchange (the exchanger's audit log is counted).
Runs alternate miss, hit, floor, so a busy machine disturbs all three alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kubegate_bench import exchangers
from kubegate_bench.common import Context, Outcome, Row, median
from kubegate_bench.procs import PYTHON
from kubegate_bench.tokens import BenchIssuer, github_mapping

TITLE = "exec plugin: cached call vs cache miss (exchange)"
GRANT = ('{cluster: bench, namespace: web, user: "ci:octo-org/web", '
         'groups: ["kubegate:deployers"], maxLifetime: 15m}')
MAX_HIT_TO_MISS, MAX_HIT_TO_FLOOR = 0.5, 4.0


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="8", title=TITLE)
    folder = ctx.work / "b8"
    folder.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer()
    cluster, self_issued = exchangers.self_issued_cluster()
    config = exchangers.write_config(
        folder / "exchanger", issuers=[issuer.issuer_entry()], clusters=[cluster],
        mappings=github_mapping("web-deploy", GRANT), selfIssued=self_issued)
    exchanger = exchangers.start("b8-exchanger", folder / "exchanger", config)
    try:
        token_file = folder / "token"
        token_file.write_text(issuer.mint())
        token_file.chmod(0o600)
        plugin = [str(Path(sys.executable).parent / "kubegate"), "exchange",
                  "--server", exchanger.target, "--ca-file", str(exchanger.ca_file),
                  "--token-file", str(token_file), "--role", "web-deploy",
                  "--output", "exec-credential"]
        audit_log = folder / "exchanger" / "audit.log"
        _measure(ctx, outcome, plugin, folder, audit_log)
    finally:
        exchanger.stop()
    return outcome


def _measure(ctx: Context, outcome: Outcome, plugin: Sequence[str], folder: Path,
             audit_log: Path) -> None:
    warm = folder / "cache-warm"
    _timed(plugin, warm)  # fills the warm cache
    before = _allowed(audit_log)
    samples: dict[str, list[float]] = {"miss": [], "hit": [], "floor": []}
    for number in range(ctx.sizes.exec_calls):
        samples["miss"].append(_timed(plugin, folder / f"cache-cold-{number}"))
        samples["hit"].append(_timed(plugin, warm))
        samples["floor"].append(_timed([PYTHON, "-c", "pass"], warm))
    misses = _allowed(audit_log) - before
    hits_exchanged = misses - ctx.sizes.exec_calls
    hit, miss, floor = (median(samples[name]) for name in ("hit", "miss", "floor"))
    outcome.rows += [
        Row(bench="8", name="exec plugin, cached call, median", value=hit, unit="ms",
            baseline="the same call on an empty cache (exchange)", baseline_value=miss,
            check="ratio<=", target=MAX_HIT_TO_MISS),
        Row(bench="8", name="exec plugin, cached call vs interpreter start, median", value=hit,
            unit="ms", baseline="python -c pass", baseline_value=floor, check="ratio<=",
            target=MAX_HIT_TO_FLOOR),
        Row(bench="8", name=f"exchanges made by {ctx.sizes.exec_calls} cached calls",
            value=float(hits_exchanged), unit="", check="value==", target=0.0,
            note=f"{misses} exchanges in all, one per cold call"),
    ]
    outcome.data["exec_plugin_ms"] = samples


def _timed(argv: Sequence[str], cache: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60,
                          env=_environment(cache))
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or (argv[0] != PYTHON and "ExecCredential" not in done.stdout):
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def _environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "KUBEGATE_CACHE_DIR": str(cache)}


def _allowed(audit_log: Path) -> int:
    text = audit_log.read_text() if audit_log.exists() else ""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return sum(1 for line in lines if line.get("decision") == "allow")
