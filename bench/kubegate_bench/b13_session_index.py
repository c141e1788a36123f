"""Benchmark 13: what the session index costs an exchange, on the real apiserver. Every
TokenRequest exchange now records its session (the index behind `kubegate sessions` and the
reaper): on the embedded default an SQLite insert (no API write), against a cluster a
KubegateSession custom resource (one API write). Target: at most one extra API write per
exchange.

Two exchanger processes, same mappings, issuer and cluster (admin credentials, so their
writes are the apiserver audit log's events of user `admin`), called one after the other in
blocks: benchmark 3's kube exchanger (sessions in SQLite) and one with `access.store:
cluster` (KubegateSessions in namespace `b13`). Each path makes session-Secret exchanges
(GitHub-shaped tokens): a Secret create and a TokenRequest each, plus the index. The API
writes of each block are counted in the audit log (create, update, patch, delete by `admin`),
and the SQLite insert alone is timed in-process, for information.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from exchanger.access.model import Requester, Session
from exchanger.access.sqlite_store import SqliteStores
from kubegate.client.rpc import ExchangeClient
from kubegate_bench import exchangers
from kubegate_bench.cluster import Kubectl
from kubegate_bench.common import Context, Outcome, Row, median, percentile, thin
from kubegate_bench.controlplane import audit_events, cluster_entry
from kubegate_bench.kube_env import GRANT, KubeEnv
from kubegate_bench.tokens import github_mapping

TITLE = "session index: API writes and latency per exchange (real apiserver)"
ROOT = Path(__file__).resolve().parents[2]
CRDS = [ROOT / "deploy" / "base" / f"crd-{kind}.yaml" for kind in ("kubegatesession",
                                                                    "accessrequest")]
STORE_NAMESPACE = "b13"
MAX_EXTRA_WRITES = 1.0
WRITES = frozenset({"create", "update", "patch", "delete"})
ADMIN = "admin"  # the user of the control plane's admin certificate (cluster_entry)
BLOCK = 5


def run(ctx: Context, env: KubeEnv) -> Outcome:
    outcome = Outcome(bench="13", title=TITLE)
    calls = max(BLOCK, ctx.sizes.kube_calls // 2)
    _set_up(env)
    kube_store = _start(ctx, env)
    tokens = iter([env.github.mint() for _ in range(2 * (calls + 2 * BLOCK))])
    clients = {"sqlite": ExchangeClient(env.exchanger.target, ca_file=env.exchanger.ca_file,
                                        attempts=1),
               "cluster": ExchangeClient(kube_store.target, ca_file=kube_store.ca_file,
                                         attempts=1)}
    try:
        latencies, writes, counts = _alternate(env, {
            name: _exchange(client, tokens) for name, client in clients.items()}, calls)
    finally:
        for client in clients.values():
            client.close()
        kube_store.stop()
    insert_ms = _sqlite_inserts(ctx.work / "b13-sqlite", calls)
    outcome.rows += _rows(latencies, writes, counts, insert_ms)
    outcome.data = {"latencies_ms": {name: thin(values) for name, values in latencies.items()}}
    return outcome


def _exchange(client: ExchangeClient, tokens: Iterator[str]) -> Callable[[], object]:
    return lambda: client.exchange(next(tokens))


def _set_up(env: KubeEnv) -> None:
    kubectl = Kubectl(binary=env.plane.kubectl_path, kubeconfig=env.plane.admin_kubeconfig_path)
    for args in (*(("apply", "--server-side", "-f", str(crd)) for crd in CRDS),
                 ("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/kubegatesessions.kubegate.io")):
        done = kubectl.run(*args)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
    if kubectl.run("get", "namespace", STORE_NAMESPACE).returncode != 0:
        kubectl.run("create", "namespace", STORE_NAMESPACE)


def _start(ctx: Context, env: KubeEnv) -> exchangers.ExchangerProcess:
    state = ctx.work / "b13-exchanger"
    config = exchangers.write_config(
        state, mappings=github_mapping("github-deploy", GRANT % env.namespace),
        rateLimit=exchangers.UNLIMITED, issuers=[env.github.issuer_entry()],
        clusters=[cluster_entry(env.plane)],
        access={"store": "cluster", "cluster": {"name": "test",
                                                "namespace": STORE_NAMESPACE}})
    return exchangers.start("b13-exchanger", state, config)


def _writes(env: KubeEnv) -> Counter[str]:
    """The admin user's API writes so far, by resource (and subresource)."""
    writes: Counter[str] = Counter()
    for event in audit_events(env.plane.audit_log_path):
        ref = event.get("objectRef") or {}
        if (event.get("stage") == "ResponseComplete" and event.get("verb") in WRITES
                and (event.get("user") or {}).get("username") == ADMIN):
            resource = ref.get("resource", "")
            writes[f"{resource}/{ref['subresource']}" if ref.get("subresource")
                   else resource] += 1
    return writes


def _settled_writes(env: KubeEnv) -> Counter[str]:
    """The audit log's count once it stops growing (events land just after the answer)."""
    last, deadline = _writes(env), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _writes(env)
        if now == last:
            return now
        last = now
    return last


def _alternate(env: KubeEnv, paths: dict[str, Callable[[], object]], calls: int,
               ) -> tuple[dict[str, list[float]], dict[str, Counter[str]], dict[str, int]]:
    """Blocks of each path in turn; each block's latencies and API writes."""
    for call in paths.values():  # warm: connections, keys, the store's first write
        call()
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    writes: dict[str, Counter[str]] = {name: Counter() for name in paths}
    while min(len(values) for values in latencies.values()) < calls:
        for name, call in paths.items():
            before = _settled_writes(env)
            for _ in range(BLOCK):
                started = time.perf_counter()
                call()
                latencies[name].append((time.perf_counter() - started) * 1000)
            writes[name] += _settled_writes(env) - before
    return latencies, writes, {name: len(values) for name, values in latencies.items()}


def _sqlite_inserts(folder: Path, count: int) -> list[float]:
    """Milliseconds per `SqliteSessionStore.create`, the embedded default's index write."""
    stores = SqliteStores(folder / "access.db")
    caller = Requester(issuer="github", subject="repo:octo-org/web:environment:production")
    samples = []
    try:
        for number in range(count):
            session = Session(id=f"s{number:06}", mapping="github-deploy", cluster="test",
                              namespace="web", caller=caller, token_id=f"j{number}",
                              issued_at=0, expires_at=900, not_after=900,
                              secret=f"web/kubegate-session-s{number:06}")
            started = time.perf_counter()
            stores.sessions.create(session)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        stores.close()
    return samples


def _per_exchange(writes: Counter[str], count: int) -> float:
    return sum(writes.values()) / count if count else float("nan")


def _note(writes: Counter[str], count: int) -> str:
    return ", ".join(f"{resource} {number / count:.2f}"
                     for resource, number in sorted(writes.items()))


def _rows(latencies: dict[str, list[float]], writes: dict[str, Counter[str]],
          counts: dict[str, int], insert_ms: list[float]) -> list[Row]:
    sqlite = _per_exchange(writes["sqlite"], counts["sqlite"])
    cluster = _per_exchange(writes["cluster"], counts["cluster"])
    fast, slow = latencies["sqlite"], latencies["cluster"]
    return [
        Row(bench="13", name="API writes per exchange, sessions in SQLite (embedded default)",
            value=sqlite, unit="writes", note=_note(writes["sqlite"], counts["sqlite"])),
        Row(bench="13", name="API writes per exchange, sessions as KubegateSessions",
            value=cluster, unit="writes", note=_note(writes["cluster"], counts["cluster"])),
        Row(bench="13", name="extra API writes per exchange for the session index",
            value=cluster - sqlite, unit="writes", baseline="sessions in SQLite",
            check="value<=", target=MAX_EXTRA_WRITES,
            note="KubegateSession writes minus the embedded default's"),
        Row(bench="13", name="exchange with KubegateSessions, p50", value=median(slow),
            unit="ms", baseline="exchange with sessions in SQLite", baseline_value=median(fast),
            note=f"p99 {percentile(slow, 0.99):.1f} vs {percentile(fast, 0.99):.1f} ms"),
        Row(bench="13", name="SQLite session insert alone, p50", value=median(insert_ms),
            unit="ms", note=f"p99 {percentile(insert_ms, 0.99):.2f} ms, in-process"),
    ]
