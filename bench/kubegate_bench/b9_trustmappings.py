"""Benchmark 9: TrustMappings at scale on the real apiserver. 10,000 resources (quick: 1,000)
exist before an exchanger process starts with `mappingSources.cluster` and a service account
of its own; its status writes are counted in the apiserver's audit log (that user, patch or
update of trustmappings/status).

Targets: time to SERVING (process start to its health service answering SERVING) under 10 s;
status writes until all are Accepted at most one per mapping; none in the idle seconds after;
a deletion, and a spec change, refused by an exchange within 1 s (p99) while the initial
statuses are still being written; the exchanger's peak RSS under 250 MiB.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import kubernetes.client as k8s
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchanger.server import SERVICE_NAME
from kubegate.client.rpc import ExchangeClient
from kubegate.errors import ExchangeError
from kubegate_bench import exchangers
from kubegate_bench.cluster import Kubectl
from kubegate_bench.common import Context, Outcome, Row, percentile, thin
from kubegate_bench.controlplane import audit_events
from kubegate_bench.kube_env import KubeEnv
from kubegate_bench.procs import RssSampler, free_port
from kubegate_bench.tokens import BenchIssuer

TITLE = "TrustMappings at scale: status writes, deletion latency, readiness (real apiserver)"
ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "base" / "crd-trustmapping.yaml"
GROUP, VERSION, PLURAL = "kubegate.io", "v1alpha1", "trustmappings"
WRITE_RATE = 50.0  # exchanger.mappings.cluster.STATUS_WRITE_LIMIT
RULES = [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
         {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]}]


def run(ctx: Context, env: KubeEnv) -> Outcome:
    outcome = Outcome(bench="9", title=TITLE)
    count = ctx.sizes.trustmappings
    namespace, token_file = _set_up(ctx, env)
    user = f"system:serviceaccount:{namespace}:exchanger"
    custom = k8s.CustomObjectsApi(env.cluster.api)
    _create(custom, namespace, count)
    issuer = BenchIssuer()
    exchanger, health_port, started = _start(ctx, env, issuer, namespace, token_file)
    try:
        with RssSampler(pid=exchanger.pid) as rss:
            while not _serving(health_port):
                time.sleep(0.02)
            to_serving = time.monotonic() - started
            client = ExchangeClient(exchanger.target, ca_file=exchanger.ca_file, attempts=1)
            try:
                latencies, backlog = _deletions(ctx, env, custom, client, issuer, namespace,
                                                user)
            finally:
                client.close()
            expected = count - len(latencies["deletion"])
            deadline = time.monotonic() + count / WRITE_RATE + 120
            while _accepted(custom, namespace) < expected and time.monotonic() < deadline:
                time.sleep(1.0)
            settled = _writes(env, user, namespace)
            time.sleep(ctx.sizes.idle_writes_seconds)
            idle = sum(_writes(env, user, namespace).values()) - sum(settled.values())
    finally:
        exchanger.stop()
    outcome.rows += _rows(count, to_serving, latencies, backlog, settled, idle, rss.peak,
                          ctx.sizes.idle_writes_seconds)
    outcome.data = {"refusal_ms": {kind: thin(values) for kind, values in latencies.items()}}
    return outcome


def _set_up(ctx: Context, env: KubeEnv) -> tuple[str, Path]:
    kubectl = Kubectl(binary=env.plane.kubectl_path, kubeconfig=env.plane.admin_kubeconfig_path)
    for args in (("apply", "--server-side", "-f", str(CRD)),
                 ("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/trustmappings.kubegate.io")):
        done = kubectl.run(*args)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
    namespace = env.cluster.create_namespace("tm")
    env.cluster.create_service_account(namespace, "exchanger")
    env.cluster.create_role(namespace, "trustmappings", RULES)
    env.cluster.bind_role(namespace, "trustmappings", service_account=(namespace, "exchanger"))
    token_file = ctx.work / "b9-exchanger-token"
    token_file.write_text(env.cluster.request_token(namespace, "exchanger", seconds=3600).token)
    token_file.chmod(0o600)
    return namespace, token_file


def _mapping(namespace: str, number: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrustMapping",
            "metadata": {"name": f"m{number:05}", "namespace": namespace},
            "spec": {"issuer": "github",
                     "claims": [{"claim": "repository_id", "equals": str(10_000 + number)}],
                     "grant": {"cluster": "bench", "namespace": "web",
                               "user": f"ci:m{number:05}"}}}


def _create(custom: k8s.CustomObjectsApi, namespace: str, count: int) -> None:
    def create(number: int) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                               _mapping(namespace, number))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))


def _start(ctx: Context, env: KubeEnv, issuer: BenchIssuer, namespace: str,
           token_file: Path) -> tuple[exchangers.ExchangerProcess, int, float]:
    cluster, self_issued = exchangers.self_issued_cluster()
    health_port = free_port()
    state = ctx.work / "b9-exchanger"
    config = exchangers.write_config(
        state, mappings="", issuers=[issuer.issuer_entry()], rateLimit=exchangers.UNLIMITED,
        clusters=[cluster, {"name": "api", "server": env.plane.url,
                            "caFile": str(env.plane.ca_path),
                            "credentials": {"tokenFile": str(token_file)}}],
        selfIssued=self_issued, healthListen=f"127.0.0.1:{health_port}",
        mappingSources={"files": False, "cluster": {"name": "api", "namespace": namespace}})
    started = time.monotonic()
    return exchangers.start("b9-exchanger", state, config), health_port, started


def _serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                timeout=2)
    except grpc.RpcError:
        return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _deletions(ctx: Context, env: KubeEnv, custom: k8s.CustomObjectsApi,
               client: ExchangeClient, issuer: BenchIssuer, namespace: str,
               user: str) -> tuple[dict[str, list[float]], int]:
    """Delete some mappings and change others while the statuses are being written; the
    milliseconds until an exchange for each is refused, and the writes still owed then."""
    count, rounds = ctx.sizes.trustmappings, ctx.sizes.mapping_deletions
    latencies: dict[str, list[float]] = {"deletion": [], "change": []}
    for index in range(rounds):
        number = count - 1 - 2 * index
        delete = functools.partial(custom.delete_namespaced_custom_object, GROUP, VERSION,
                                   namespace, PLURAL, f"m{number:05}")
        latencies["deletion"].append(_refused_after(client, issuer, number, delete))
        spec = _mapping(namespace, number - 1)["spec"]
        spec["claims"][0]["equals"] = "changed"
        change = functools.partial(custom.patch_namespaced_custom_object, GROUP, VERSION,
                                   namespace, PLURAL, f"m{number - 1:05}", {"spec": spec})
        latencies["change"].append(_refused_after(client, issuer, number - 1, change))
    backlog = count - len(_writes(env, user, namespace))  # resources not written yet
    return latencies, backlog


def _refused_after(client: ExchangeClient, issuer: BenchIssuer, number: int,
                   act: Callable[[], object]) -> float:
    def exchange() -> bool:
        token = issuer.mint(extra={"repository_id": str(10_000 + number)})
        try:
            client.exchange(token)
        except ExchangeError:
            return False
        return True

    deadline = time.monotonic() + 30
    while not exchange():  # in effect first
        if time.monotonic() > deadline:
            raise RuntimeError(f"m{number:05} never granted")
    act()
    done = time.monotonic()
    while exchange():
        if time.monotonic() - done > 30:
            raise RuntimeError(f"m{number:05} still grants after 30 s")
    return (time.monotonic() - done) * 1000


def _writes(env: KubeEnv, user: str, namespace: str) -> Counter[str]:
    writes: Counter[str] = Counter()
    for event in audit_events(env.plane.audit_log_path):
        ref = event.get("objectRef") or {}
        if (event.get("stage") == "ResponseComplete"
                and (event.get("user") or {}).get("username") == user
                and event.get("verb") in ("patch", "update")
                and ref.get("resource") == PLURAL and ref.get("subresource") == "status"
                and ref.get("namespace") == namespace):
            writes[ref.get("name", "")] += 1
    return writes


def _accepted(custom: k8s.CustomObjectsApi, namespace: str) -> int:
    listed: Any = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return sum(1 for item in listed["items"]
               for condition in (item.get("status") or {}).get("conditions") or []
               if condition.get("type") == "Accepted" and condition.get("status") == "True")


def _rows(count: int, to_serving: float, latencies: dict[str, list[float]], backlog: int,
          settled: Counter[str], idle: int, peak_rss: float, idle_seconds: float) -> list[Row]:
    changed = len(latencies["change"])  # a changed mapping is owed a second write
    per_mapping = (sum(settled.values()) - changed) / count
    rows = [
        Row(bench="9", name=f"time to SERVING, {count} TrustMappings", value=to_serving,
            unit="s", check="value<=", target=10.0, note="process start to health SERVING"),
        Row(bench="9", name="status writes until all Accepted, per mapping", value=per_mapping,
            unit="x", check="value<=", target=1.0,
            note=f"{sum(settled.values())} writes, {changed} changed mappings owed a 2nd"),
        Row(bench="9", name=f"status writes while idle ({idle_seconds:g} s)", value=idle,
            unit="", check="value==", target=0),
        Row(bench="9", name="exchanger RSS, peak", value=peak_rss, unit="MiB",
            check="value<=", target=250.0),
    ]
    for kind, values in latencies.items():
        rows.append(Row(bench="9", name=f"{kind} refused under status backlog, p99",
                        value=percentile(values, 0.99), unit="ms", check="value<=",
                        target=1000.0,
                        note=f"{len(values)} samples; {backlog} statuses still unwritten"))
    return rows
