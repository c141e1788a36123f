"""TrustMappings at scale against the real API server: 1,000 resources created at once, an
exchanger with its own service account watching them. Its status writes are counted in the
API server's audit log (user = the exchanger, patch or update of trustmappings/status).

- the exchanger is SERVING as soon as the resources are listed, long before their statuses
  are written;
- it writes at most one status per resource until all are Accepted, and none while idle;
- a resource deleted while the statuses are still being written is refused by an exchange
  within a second (every one of several deletions), and so is a changed one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import kubernetes.client as k8s
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchanger.server import MAPPINGS_HEALTH, SERVICE_NAME
from kubegate.errors import ExchangeError
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import TestExchanger, self_issued_entry
from tests.support.hostile import attempt, start_exchanger_in
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "deploy" / "base" / "crd-trustmapping.yaml"
GROUP, VERSION, PLURAL = "kubegate.io", "v1alpha1", "trustmappings"
COUNT = 1000
AUDIENCE = "kubegate"
DELETED = [f"m{number:04}" for number in range(900, 908)]
CHANGED = "m0899"
TARGET_SECONDS = 1.0
EXCHANGER_RULES = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
]


def mapping(namespace: str, number: int) -> dict[str, Any]:
    name = f"m{number:04}"
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrustMapping",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"issuer": "github",
                     "claims": [{"claim": "repository_id", "equals": str(10_000 + number)}],
                     "grant": {"cluster": "local", "namespace": "web", "user": f"ci:{name}"}}}


def create_all(cluster: Cluster, namespace: str, count: int) -> None:
    custom = k8s.CustomObjectsApi(cluster.api)

    def create(number: int) -> None:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                               mapping(namespace, number))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))


def status_writes(plane: ControlPlane, user: str, namespace: str) -> Counter[str]:
    """The exchanger's status writes so far, by resource name."""
    writes: Counter[str] = Counter()
    for event in audit_events(plane.audit_log_path):
        ref = event.get("objectRef") or {}
        if (event.get("stage") == "ResponseComplete"
                and (event.get("user") or {}).get("username") == user
                and event.get("verb") in ("patch", "update")
                and ref.get("resource") == PLURAL and ref.get("subresource") == "status"
                and ref.get("namespace") == namespace):
            writes[ref.get("name", "")] += 1
    return writes


def accepted_count(cluster: Cluster, namespace: str) -> int:
    listed: Any = k8s.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL)
    return sum(1 for item in listed["items"]
               for condition in (item.get("status") or {}).get("conditions") or []
               if condition.get("type") == "Accepted" and condition.get("status") == "True")


@dataclass
class Scale:
    exchanger: TestExchanger
    github: GitHubActionsIssuer
    namespace: str
    user: str
    seconds_to_serving: float

    def exchange(self, number: int) -> object:
        token = self.github.mint(audience=AUDIENCE, repository_id=str(10_000 + number))
        return attempt(self.exchanger, token)


def serving(port: int, service: str = SERVICE_NAME) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def scale(control_plane: ControlPlane, cluster: Cluster, github_issuer: GitHubActionsIssuer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scale]:
    folder = tmp_path_factory.mktemp("trustmapping-scale")
    kubectl = Kubectl(binary=control_plane.kubectl_path,
                      kubeconfig=control_plane.admin_kubeconfig_path)
    assert kubectl.run("apply", "--server-side", "-f", str(CRD)).returncode == 0
    assert kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                       "crd/trustmappings.kubegate.io").returncode == 0
    namespace = cluster.create_namespace("tm")
    cluster.create_service_account(namespace, "exchanger")
    cluster.create_role(namespace, "trustmappings", EXCHANGER_RULES)
    cluster.bind_role(namespace, "trustmappings", service_account=(namespace, "exchanger"))
    token_file = folder / "exchanger-token"
    token_file.write_text(cluster.request_token(namespace, "exchanger", seconds=3600).token)
    token_file.chmod(0o600)
    create_all(cluster, namespace, COUNT)
    started = time.monotonic()
    exchanger = start_exchanger_in(
        folder / "state",
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443",
                   "backend": "selfIssued"},
                  {"name": "api", "server": control_plane.url,
                   "caFile": str(control_plane.ca_path),
                   "credentials": {"tokenFile": str(token_file)}}],
        mappings="", self_issued=self_issued_entry(), healthListen="127.0.0.1:0",
        mappingSources={"files": False, "cluster": {"name": "api", "namespace": namespace}})
    try:
        assert poll(lambda: serving(exchanger.running.health_port), 10, 0.05)
        # the TrustMapping watch reports itself under its own health name
        assert poll(lambda: serving(exchanger.running.health_port, MAPPINGS_HEALTH), 10, 0.05)
        yield Scale(exchanger=exchanger, github=github_issuer, namespace=namespace,
                    user=f"system:serviceaccount:{namespace}:exchanger",
                    seconds_to_serving=time.monotonic() - started)
    finally:
        exchanger.running.stop(grace=0)


def refused_after(scale: Scale, number: int, act: Any) -> float:
    """Seconds from `act()` returning until an exchange for mapping `number` is refused."""
    assert not isinstance(scale.exchange(number), ExchangeError)
    act()
    done = time.monotonic()
    while not isinstance(scale.exchange(number), ExchangeError):
        assert time.monotonic() - done < 10, f"m{number:04} still grants after 10s"
    return time.monotonic() - done


def test_serving_comes_once_listed_and_a_deletion_or_change_is_refused_within_a_second(
        scale: Scale, cluster: Cluster, control_plane: ControlPlane) -> None:
    assert scale.seconds_to_serving < 10
    assert not isinstance(scale.exchange(0), ExchangeError)  # listed: in effect already
    custom = k8s.CustomObjectsApi(cluster.api)
    latencies = [refused_after(scale, int(name[1:]), lambda name=name: (
        custom.delete_namespaced_custom_object(GROUP, VERSION, scale.namespace, PLURAL, name)))
        for name in DELETED]
    spec = mapping(scale.namespace, int(CHANGED[1:]))["spec"]
    spec["claims"][0]["equals"] = "changed"
    latencies.append(refused_after(scale, int(CHANGED[1:]), lambda: (
        custom.patch_namespaced_custom_object(GROUP, VERSION, scale.namespace, PLURAL, CHANGED,
                                              {"spec": spec}))))
    backlog = COUNT - sum(status_writes(control_plane, scale.user, scale.namespace).values())
    assert backlog > 0, "the statuses were all written before the deletions: no backlog"
    assert max(latencies) < TARGET_SECONDS, latencies


def test_at_most_one_status_write_per_resource_and_none_when_idle(
        scale: Scale, cluster: Cluster, control_plane: ControlPlane) -> None:
    expected = COUNT - len(DELETED)
    assert poll(lambda: accepted_count(cluster, scale.namespace) == expected, 120, 1.0)
    settled = status_writes(control_plane, scale.user, scale.namespace)
    assert settled[CHANGED] <= 2  # its first generation, then its second
    assert all(count == 1 for name, count in settled.items() if name != CHANGED), (
        settled.most_common(5))
    assert sum(settled.values()) <= expected + 1
    time.sleep(5)
    assert status_writes(control_plane, scale.user, scale.namespace) == settled
