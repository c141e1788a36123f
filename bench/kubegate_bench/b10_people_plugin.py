"""Benchmark 10: kubectl for people. The exec plugin of a `kubegate login --exec-kubeconfig`
kubeconfig (`kubegate login ... --output exec-credential`) on its cached path, against the
pipeline's plugin `kubegate credential` reading a running sidecar's socket.

- people, cached: the person's ID token is fresh in the login cache and the credential it was
  exchanged for is fresh in the credential cache, so the call reads two small files, hashes
  the ID token for the key and prints the ExecCredential: no sign-in, no exchange, no grpc;
- baseline: `kubegate credential --socket PATH` against a sidecar that holds a credential
  (the sidecar exchanges with the same exchanger, through a CI mapping);
- floor: `python -c pass`.

Target: the people plugin's cached call at most 2x `kubegate credential` (issue 13), and no
exchange made by the cached calls (the exchanger's audit log is counted). Runs alternate
people, baseline, floor, so a busy machine disturbs all three alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kubegate.login.store import CachedLogin, LoginCache
from kubegate_bench import exchangers
from kubegate_bench.common import Context, Outcome, Row, median
from kubegate_bench.procs import PYTHON, Process, start_process
from kubegate_bench.tokens import BenchIssuer, github_mapping

TITLE = "kubectl for people: cached login exec plugin vs kubegate credential"
MAX_TO_CREDENTIAL = 2.0
PEOPLE_ISSUER = "https://sso.bench.example"
CLIENT_ID = "kubegate-cli"
KUBEGATE = str(Path(sys.executable).parent / "kubegate")
PEOPLE_MAPPING = """\
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: sre}
spec:
  issuer: corp
  claims:
  - {claim: groups, contains: sre-leads}
  - {claim: email_verified, equals: true}
  grant: {cluster: bench, namespace: ops, user: {claim: email, prefix: "oidc:"},
          groups: [{claim: groups, prefix: "oidc:"}], maxLifetime: 15m}
"""
CI_GRANT = ('{cluster: bench, namespace: web, user: "ci:octo-org/web", '
            'groups: ["kubegate:deployers"], maxLifetime: 15m}')


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="10", title=TITLE)
    folder = ctx.work / "b10"
    folder.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer()
    people = {**issuer.issuer_entry(), "name": "corp", "url": PEOPLE_ISSUER,
              "audiences": [CLIENT_ID], "kind": "oidc"}
    cluster, self_issued = exchangers.self_issued_cluster()
    config = exchangers.write_config(
        folder / "exchanger", issuers=[issuer.issuer_entry(), people], clusters=[cluster],
        mappings=github_mapping("web-deploy", CI_GRANT) + PEOPLE_MAPPING,
        selfIssued=self_issued)
    exchanger = exchangers.start("b10-exchanger", folder / "exchanger", config)
    sidecar: Process | None = None
    try:
        home = folder / "home"
        _sign_in(issuer, home / "cache")
        plugin = [KUBEGATE, "login", "--issuer", PEOPLE_ISSUER, "--client-id", CLIENT_ID,
                  "--server", exchanger.target, "--ca-file", str(exchanger.ca_file),
                  "--role", "sre", "--output", "exec-credential"]
        socket_path = folder / "run" / "kubegate.sock"
        sidecar = _start_sidecar(folder, issuer, exchanger, socket_path)
        credential = [KUBEGATE, "credential", "--socket", str(socket_path)]
        _measure(ctx, outcome, plugin, credential, home, folder / "exchanger" / "audit.log")
    finally:
        if sidecar is not None:
            sidecar.stop()
        exchanger.stop()
    return outcome


def _sign_in(issuer: BenchIssuer, cache: Path) -> None:
    """What `kubegate login` leaves behind: a fresh ID token (and a refresh token) in the login
    cache of this person, 0600 in a 0700 folder."""
    now = int(time.time())
    id_token = issuer.mint(extra={
        "iss": PEOPLE_ISSUER, "aud": CLIENT_ID, "sub": "CgVhbGljZRIFbG9jYWw",
        "email": "alice@example.com", "email_verified": True,
        "groups": ["sre-leads", "engineers"], "exp": now + 3600})
    store = LoginCache(cache / "login")
    store.prepare()
    store.store(CachedLogin(issuer=PEOPLE_ISSUER, client_id=CLIENT_ID, id_token=id_token,
                            refresh_token="unused-in-this-benchmark",  # noqa: S106
                            expiry=now + 3600, who="alice@example.com"))


def _start_sidecar(folder: Path, issuer: BenchIssuer, exchanger: exchangers.ExchangerProcess,
                   socket_path: Path) -> Process:
    token_file = folder / "ci-token"
    token_file.write_text(issuer.mint())
    token_file.chmod(0o600)
    sidecar = start_process("b10-sidecar", [
        KUBEGATE, "sidecar", "--server", exchanger.target, "--ca-file", str(exchanger.ca_file),
        "--token-file", str(token_file), "--socket", str(socket_path), "--role", "web-deploy",
        "--log-level", "WARNING"], folder)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sidecar.popen.poll() is not None:
            raise RuntimeError(f"the sidecar exited:\n{sidecar.log_tail()}")
        if socket_path.exists() and _call([KUBEGATE, "credential", "--socket",
                                           str(socket_path)], folder, check=False) >= 0:
            return sidecar
        time.sleep(0.2)
    sidecar.stop()
    raise RuntimeError(f"the sidecar did not serve a credential:\n{sidecar.log_tail()}")


def _measure(ctx: Context, outcome: Outcome, plugin: Sequence[str],
             credential: Sequence[str], home: Path, audit_log: Path) -> None:
    _call(plugin, home)  # the first call exchanges and fills the credential cache
    before = _allowed(audit_log)
    samples: dict[str, list[float]] = {"people": [], "credential": [], "floor": []}
    for _ in range(ctx.sizes.exec_calls):
        samples["people"].append(_timed(plugin, home))
        samples["credential"].append(_timed(credential, home))
        samples["floor"].append(_timed([PYTHON, "-c", "pass"], home))
    exchanged = _allowed(audit_log) - before
    people, baseline, floor = (median(samples[k]) for k in ("people", "credential", "floor"))
    outcome.rows += [
        Row(bench="10", name="people exec plugin (kubegate login), cached call, median",
            value=people, unit="ms", baseline="kubegate credential (sidecar socket)",
            baseline_value=baseline, check="ratio<=", target=MAX_TO_CREDENTIAL,
            note=f"interpreter start alone: {floor:.1f} ms"),
        Row(bench="10", name=f"exchanges made by {ctx.sizes.exec_calls} cached people calls",
            value=float(exchanged), unit="", check="value==", target=0.0),
    ]
    outcome.data["people_plugin_ms"] = samples


def _timed(argv: Sequence[str], home: Path) -> float:
    started = time.perf_counter()
    _call(argv, home)
    return (time.perf_counter() - started) * 1000


def _call(argv: Sequence[str], home: Path, *, check: bool = True) -> int:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60,
                          env={**os.environ, "HOME": str(home),
                               "KUBEGATE_CACHE_DIR": str(home / "cache")})
    if done.returncode != 0 or (argv[0] != PYTHON and "ExecCredential" not in done.stdout):
        if not check:
            return -1
        raise RuntimeError(f"{' '.join(argv[:2])} exited {done.returncode}: "
                           f"{done.stderr.strip()}")
    return done.returncode


def _allowed(audit_log: Path) -> int:
    text = audit_log.read_text() if audit_log.exists() else ""
    return sum(1 for line in text.splitlines()
               if line.strip() and json.loads(line).get("decision") == "allow")
