"""In-cluster subject tokens against real kube-apiservers laid out as platforms lay them out.

- kubeadm and kind: `--service-account-issuer=https://kubernetes.default.svc.cluster.local`
  (resolvable only inside the cluster) and the JWKS published at the advertise address;
- EKS and GKE: the issuer is a public HTTPS origin with its own CA, not the cluster, that
  serves discovery and the cluster's keys (`--service-account-jwks-uri` there).

With `keys: {kubernetes: {cluster: X}}` the exchanger reads the keys from cluster X's own API
server, so exchanges work in every layout, and no origin but that server ever sees a
credential. The status command and the per-issuer health and metrics are checked here too,
against the same control planes (two more apiservers for this module, ~10 s each).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.verify import HttpsKeyFetcher, IssuerConfig, KubernetesCluster
from kubegate.errors import Code, ExchangeError
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger
from tests.support.fixtures_kube import require_binaries
from tests.support.keyserver import KeyServer, Reply
from tests.support.kube import Cluster, admin_api_client
from tests.support.oidc import GitHubActionsIssuer, JWKSFault
from tests.support.pki import TestCA

KUBEADM_ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "kubegate"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
KUBEGATE = [sys.executable, "-m", "kubegate"]


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A started control plane, admin access to it, and what the exchanger authenticates
    with: a token file of a service account (as in deploy/base), never the admin."""

    plane: ControlPlane
    cluster: Cluster
    token_file: Path

    def cluster_entry(self, name: str = "in-cluster") -> dict[str, Any]:
        return {"name": name, "server": self.plane.url, "caFile": str(self.plane.ca_path),
                "credentials": {"tokenFile": str(self.token_file)}}


def _start_layout(folder: Path, **options: Any) -> Iterator[Layout]:
    plane = ControlPlane(require_binaries(), folder, **options)
    plane.start()
    api = admin_api_client(plane)
    try:
        cluster = Cluster(plane=plane, api=api)
        namespace = cluster.create_namespace("kubegate")
        cluster.create_service_account(namespace, "kubegate-exchanger")
        cluster.rbac.create_cluster_role_binding({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "kubegate-exchanger-test"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "kubegate-exchanger",
                          "namespace": namespace}],
        })
        token_file = folder / "exchanger-token"
        token_file.write_text(
            cluster.request_token(namespace, "kubegate-exchanger", seconds=3600).token)
        token_file.chmod(0o600)
        yield Layout(plane=plane, cluster=cluster, token_file=token_file)
    finally:
        api.close()
        plane.stop()


@pytest.fixture(scope="module")
def kubeadm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """kubeadm's and kind's defaults: the in-cluster issuer name, JWKS at the advertise address,
    no anonymous discovery."""
    yield from _start_layout(tmp_path_factory.mktemp("kubeadm"), issuer=KUBEADM_ISSUER)


@pytest.fixture(scope="module")
def public_ca() -> TestCA:
    return TestCA("kubegate-test-public-issuer-ca")


@pytest.fixture(scope="module")
def public_issuer(public_ca: TestCA,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServer]:
    """The public origin of an EKS- or GKE-like issuer (its own CA); it serves discovery and
    the cluster's JWKS once the cluster runs, and records whatever it is sent."""
    server = KeyServer(public_ca, tmp_path_factory.mktemp("public-issuer"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def public_ca_file(public_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return public_ca.write(tmp_path_factory.mktemp("public-ca") / "ca.pem")


@pytest.fixture(scope="module")
def eks(public_issuer: KeyServer,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """An API server whose issuer and JWKS URI are the public origin, not itself."""
    jwks_uri = f"{public_issuer.url}/openid/v1/jwks"
    for layout in _start_layout(tmp_path_factory.mktemp("eks"), issuer=public_issuer.url,
                                jwks_uri=jwks_uri):
        publish(public_issuer, layout.plane, jwks_uri)
        yield layout


def publish(origin: KeyServer, plane: ControlPlane, jwks_uri: str) -> None:
    """What EKS does: the cluster's discovery document and keys, served by the public origin."""
    admin = plane.admin_ssl_context()
    with urllib.request.urlopen(f"{plane.url}/openid/v1/jwks", context=admin,  # noqa: S310
                                timeout=10) as answer:
        jwks = answer.read()
    discovery = {"issuer": origin.url, "jwks_uri": jwks_uri,
                 "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                 "id_token_signing_alg_values_supported": ["ES256"]}
    origin.routes["/.well-known/openid-configuration"] = Reply(body=json.dumps(discovery).encode())
    origin.routes["/openid/v1/jwks"] = Reply(body=jwks)


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    ci: str
    web: str
    mappings: str


def pipeline(cluster: Cluster, issuer: str = "in-cluster",
             grant_cluster: str = "in-cluster") -> Pipeline:
    """Namespaces ci (a pipeline service account) and web (a deployer that may read pods),
    and the mapping from one to the other."""
    ci, web = cluster.create_namespace("ci"), cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    cluster.create_service_account(ci, "pipeline")
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: ci-deploys-web}}
spec:
  issuer: {issuer}
  claims:
  - {{claim: [kubernetes.io, namespace], equals: {ci}}}
  - {{claim: [kubernetes.io, serviceaccount, name], equals: pipeline}}
  grant: {{cluster: {grant_cluster}, namespace: {web}, serviceAccount: deployer, maxLifetime: 15m}}
"""
    return Pipeline(ci=ci, web=web, mappings=mappings)


def pod_token(cluster: Cluster, namespace: str, pod: str) -> str:
    """A projected token of a pipeline pod, as the kubelet gets it."""
    bound = cluster.create_pipeline_pod(namespace, pod, "pipeline")
    return str(cluster.request_token(namespace, "pipeline", audiences=[AUDIENCE],
                                     bound_to=bound).token)


def in_cluster_issuer(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "in-cluster", "url": url, "audiences": [AUDIENCE], "algorithms": ["ES256"],
            "keys": {"kubernetes": {"cluster": "in-cluster", "tokenReview": True}}, **fields}


def health_of(exchanger: TestExchanger, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{exchanger.running.health_port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(answer.status)


def keys_ready(exchanger: TestExchanger, issuer: str) -> float | None:
    return exchanger.running.metrics.registry.get_sample_value(
        "kubegate_issuer_keys_ready", {"issuer": issuer})


# -- kubeadm and kind ---------------------------------------------------------------------------


def test_kubeadm_issuer_does_not_resolve_here() -> None:
    """The premise of the kubeadm cases: the issuer's host is a name of the cluster's DNS, so
    an exchanger outside the cluster cannot reach it (inside a cluster it would: skip)."""
    try:
        socket.getaddrinfo("kubernetes.default.svc.cluster.local", 443)
    except OSError:
        return
    pytest.skip("kubernetes.default.svc.cluster.local resolves here (running in a cluster)")


def test_kubeadm_layout_exchanges_a_pod_token_with_keys_from_the_api_server(
    kubeadm: Layout, start_test_exchanger: StartExchanger,
) -> None:
    setup = pipeline(kubeadm.cluster)
    exchanger = start_test_exchanger(
        issuers=[in_cluster_issuer(KUBEADM_ISSUER)], clusters=[kubeadm.cluster_entry()],
        mappings=setup.mappings, healthListen="127.0.0.1:0")
    subject = pod_token(kubeadm.cluster, setup.ci, "build-1")
    with exchanger.client() as client:
        credential = client.exchange(subject)
    assert credential.mapping == "ci-deploys-web"
    assert credential.cluster.namespace == setup.web
    assert keys_ready(exchanger, "in-cluster") == 1
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health_of(exchanger, "kubegate.issuer/in-cluster") == serving


def test_a_service_account_without_rbac_of_its_own_reads_the_keys(
    kubeadm: Layout, tmp_path: Path,
) -> None:
    """deploy/ grants no access to /openid/v1/jwks: every service account has it through the
    default `system:service-account-issuer-discovery` binding."""
    namespace = kubeadm.cluster.create_namespace("bare")
    kubeadm.cluster.create_service_account(namespace, "bare")
    token_file = tmp_path / "token"
    token_file.write_text(kubeadm.cluster.request_token(namespace, "bare").token)
    client = KubernetesClient(server=kubeadm.plane.url, ca_file=kubeadm.plane.ca_path,
                              credentials=ClusterCredentials(token_file=token_file))
    try:
        fetcher = HttpsKeyFetcher(cluster_jwks=lambda _, timeout:
                                  client.open_service_account_jwks(timeout))
        issuer = IssuerConfig(name="in-cluster", url=KUBEADM_ISSUER, audiences=(AUDIENCE,),
                              algorithms=("ES256",),
                              key_source=KubernetesCluster(cluster="in-cluster"))
        assert fetcher.fetch_jwks(issuer)["keys"][0]["alg"] == "ES256"
    finally:
        client.close()


# -- EKS and GKE: a public issuer with its own CA ------------------------------------------------


def test_public_issuer_layout_reads_the_cluster_keys_and_sends_the_issuer_nothing(
    eks: Layout, public_issuer: KeyServer, public_ca_file: Path,
    start_test_exchanger: StartExchanger,
) -> None:
    setup = pipeline(eks.cluster)
    public_issuer.requests.clear()
    exchanger = start_test_exchanger(
        issuers=[in_cluster_issuer(public_issuer.url, caFile=str(public_ca_file))],
        clusters=[eks.cluster_entry()], mappings=setup.mappings)
    subject = pod_token(eks.cluster, setup.ci, "build-1")
    with exchanger.client() as client:
        credential = client.exchange(subject)
    assert credential.cluster.service_account == "deployer"
    assert public_issuer.requests == []  # no discovery, no key request, no credential


def test_public_issuer_by_discovery_uses_its_own_ca_and_gets_no_credential(
    eks: Layout, public_issuer: KeyServer, public_ca_file: Path,
    start_test_exchanger: StartExchanger,
) -> None:
    """An issuer that is not a configured cluster: discovery with the issuer's caFile, while
    the exchanger holds a bearer token for the cluster it issues on."""
    setup = pipeline(eks.cluster, issuer="eks")
    public_issuer.requests.clear()
    exchanger = start_test_exchanger(
        issuers=[{"name": "eks", "url": public_issuer.url, "audiences": [AUDIENCE],
                  "algorithms": ["ES256"], "caFile": str(public_ca_file)}],
        clusters=[eks.cluster_entry()], mappings=setup.mappings)
    subject = pod_token(eks.cluster, setup.ci, "build-2")
    with exchanger.client() as client:
        assert client.exchange(subject).mapping == "ci-deploys-web"
    assert "/.well-known/openid-configuration" in public_issuer.paths
    assert "/openid/v1/jwks" in public_issuer.paths
    assert public_issuer.authorizations == []


# -- key failures are visible --------------------------------------------------------------------


def test_failing_keys_name_the_issuer_and_show_in_health_and_metrics(
    kubeadm: Layout, oidc_ca: TestCA, start_test_exchanger: StartExchanger, tmp_path: Path,
) -> None:
    setup = pipeline(kubeadm.cluster)
    with GitHubActionsIssuer(oidc_ca, folder=tmp_path) as github:
        github.set_jwks_fault(JWKSFault.DOWN)
        exchanger = start_test_exchanger(
            issuers=[in_cluster_issuer(KUBEADM_ISSUER),
                     {"name": "github", "url": github.url, "audiences": [AUDIENCE],
                      "caFile": str(github.ca_path)}],
            clusters=[kubeadm.cluster_entry()], mappings=setup.mappings,
            healthListen="127.0.0.1:0")
        with exchanger.client(attempts=1) as client, pytest.raises(ExchangeError) as refused:
            client.exchange(github.mint(audience=AUDIENCE))
    assert refused.value.code is Code.UNAVAILABLE
    assert refused.value.reason == "KEYS_UNAVAILABLE"
    assert "github" in refused.value.message
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)
    assert health_of(exchanger, "kubegate.issuer/github") == not_serving
    assert health_of(exchanger, "kubegate.issuer/in-cluster") == serving
    assert health_of(exchanger, "") == serving  # one issuer's outage is not the replica's
    assert keys_ready(exchanger, "github") == 0
    assert keys_ready(exchanger, "in-cluster") == 1


# -- kubegate status -----------------------------------------------------------------------------


def test_status_shows_keys_clusters_and_mappings(
    kubeadm: Layout, oidc_ca: TestCA, tmp_path: Path,
) -> None:
    setup = pipeline(kubeadm.cluster)
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "web.yaml").write_text(setup.mappings)
    (mappings / "bad.yaml").write_text(setup.mappings.replace("ci-deploys-web", "bad")
                                       .replace("issuer: in-cluster", "issuer: nobody"))
    with GitHubActionsIssuer(oidc_ca, folder=tmp_path) as github:
        github.set_jwks_fault(JWKSFault.DOWN)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "listen": "127.0.0.1:0", "stateDir": str(tmp_path / "state"),
            "mappings": str(mappings),
            "issuers": [in_cluster_issuer(KUBEADM_ISSUER),
                        {"name": "github", "url": github.url, "audiences": [AUDIENCE],
                         "caFile": str(github.ca_path)}],
            "clusters": [kubeadm.cluster_entry(),
                         {"name": "gone", "server": "https://127.0.0.1:9",
                          "caFile": str(kubeadm.plane.ca_path),
                          "credentials": {"tokenFile": str(kubeadm.token_file)}}],
        }))
        text = subprocess.run([*KUBEGATE, "status", "--config", str(config)],  # noqa: S603
                              capture_output=True, text=True, timeout=60, check=False)
        as_json = subprocess.run(  # noqa: S603
            [*KUBEGATE, "status", "--config", str(config), "--output", "json"],
            capture_output=True, text=True, timeout=60, check=False)

    assert text.returncode == 1, text.stderr
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    issuers = {issuer["name"]: issuer for issuer in report["issuers"]}
    assert issuers["in-cluster"]["state"] == "ok"
    assert issuers["in-cluster"]["source"] == "cluster in-cluster"
    assert issuers["in-cluster"]["keys"] >= 1
    assert issuers["github"]["state"] == "failing"
    assert "503" in issuers["github"]["error"]
    clusters = {cluster["name"]: cluster for cluster in report["clusters"]}
    assert clusters["in-cluster"]["reachable"] is True
    assert clusters["in-cluster"]["version"].startswith("v1.")
    assert clusters["in-cluster"]["user"].endswith(":kubegate-exchanger")
    assert clusters["gone"]["reachable"] is False
    (files,) = report["mappings"]
    assert (files["loaded"], files["rejected"]) == (0, 1)  # one bad file holds back the folder
    assert "nobody" in files["problems"][0]

    lines = text.stdout.splitlines()
    assert any(line.split()[:2] == ["in-cluster", "ok"] for line in lines), text.stdout
    assert any(line.split()[:2] == ["github", "failing"] for line in lines), text.stdout
    assert any(line.split()[:2] == ["gone", "unreachable"] for line in lines), text.stdout
    token = kubeadm.token_file.read_text()
    assert token not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
