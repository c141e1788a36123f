"""deploy/ against the real apiserver: the kustomize base applies server-side, the CRD becomes
Established and its schema refuses what the file schema refuses, and an exchanger holding
nothing but the `kubegate-exchanger` service account's token and the RBAC of deploy/ (the
base plus the example Roles for one target and one pipeline namespace) reads TrustMappings,
writes their status, issues, revokes, publishes its audit checkpoints, and can do nothing
more: in particular it cannot read a Secret where it grants (it creates and deletes its
session Secrets by name). deploy/examples applies as a folder and makes what its mapping
names; `kubegate mappings explain` with such a config reads the TrustMappings from the
cluster. deploy/base/gateway applies on top: the gateway's config is the exchanger's plus its
section, and its service account may impersonate users, groups and the session extra (the real
API server lets it act as a grant, and refuses service accounts, other extras and uids) and
read what finds a session, nothing more."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import kubernetes.client as k8s
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchanger.audit.signing import load_key
from exchanger.audit.stores import config_map_key
from exchanger.config import build_config
from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.kube.port import MANAGED_BY_LABEL, SESSION_LABEL
from exchanger.server import SERVICE_NAME, RunningExchanger, start_exchanger
from kubegate.cli import main as kubegate_cli
from kubegate.client.rpc import ExchangeClient
from kubegate.errors import ExchangeError
from tests.support.controlplane import ControlPlane
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
EXAMPLES = ROOT / "deploy" / "examples"
EXCHANGER = "system:serviceaccount:kubegate:kubegate-exchanger"
AUDIENCE = "kubegate"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


def admin(plane: ControlPlane) -> Kubectl:
    return Kubectl(binary=plane.kubectl_path, kubeconfig=plane.admin_kubeconfig_path)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def apply_documents(kubectl: Kubectl, folder: Path, documents: list[dict[str, Any]],
                    ) -> subprocess.CompletedProcess[str]:
    path = folder / f"apply-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return kubectl.run("apply", "--server-side", "-f", str(path))


def for_namespace(path: Path, namespace: str, **resource_names: list[str]) -> list[dict[str, Any]]:
    """An example's documents moved to `namespace` (and a Role's resourceNames replaced)."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        for rule in document.get("rules", []):
            if "resourceNames" in rule and "names" in resource_names:
                rule["resourceNames"] = resource_names["names"]
    return documents


@pytest.fixture(scope="module")
def deployed(control_plane: ControlPlane, cluster: Cluster) -> Kubectl:
    """deploy/base applied server-side, the CRD Established."""
    kubectl = admin(control_plane)
    ok(kubectl.run("apply", "--server-side", "-k", str(BASE)))
    ok(kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                   "crd/trustmappings.kubegate.io", "crd/accessrequests.kubegate.io",
                   "crd/kubegatesessions.kubegate.io"))
    return kubectl


@dataclass
class Setup:
    running: RunningExchanger
    exchanger: Kubectl  # kubectl with the exchanger's own token
    ci: str
    web: str
    folder: Path

    def client(self) -> ExchangeClient:
        return ExchangeClient(f"127.0.0.1:{self.running.port}", ca_file=self.running.ca_file)


def mapping_resource(name: str, ci: str, web: str, issuer: str = "in-cluster") -> dict[str, Any]:
    return {
        "apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping",
        "metadata": {"name": name, "namespace": "kubegate"},
        "spec": {"issuer": issuer, "claims": [
            {"claim": ["kubernetes.io", "namespace"], "equals": ci},
            {"claim": ["kubernetes.io", "serviceaccount", "name"], "equals": "pipeline"}],
            "grant": {"cluster": "in-cluster", "namespace": web, "serviceAccount": "deployer",
                      "maxLifetime": "15m"}},
    }


@pytest.fixture(scope="module")
def setup(deployed: Kubectl, cluster: Cluster, control_plane: ControlPlane,
          github_issuer: GitHubActionsIssuer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("deploy")
    ci, web = cluster.create_namespace("ci"), cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_service_account(web, "admin")  # a service account no mapping names
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    cluster.create_service_account(ci, "pipeline")
    ok(apply_documents(deployed, folder, for_namespace(
        EXAMPLES / "target-namespace-rbac.yaml", web, names=["deployer"])))
    ok(apply_documents(deployed, folder, for_namespace(
        EXAMPLES / "pipeline-namespace-rbac.yaml", ci)))
    token = cluster.request_token("kubegate", "kubegate-exchanger", seconds=3600).token
    token_file = folder / "exchanger-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    load_key(folder / "audit-key.pem", create=True)  # as the kubegate-audit-key Secret holds it
    config = build_config({
        "listen": "127.0.0.1:0", "stateDir": str(folder / "state"),
        "healthListen": "127.0.0.1:0",
        "audit": {"checkpoints": {"key": str(folder / "audit-key.pem"), "interval": "1s",
                                  "origin": "kubegate.io/audit/deploy-test",
                                  "configMap": {"namespace": "kubegate"}}},
        "mappingSources": {"files": False,
                           "cluster": {"name": "in-cluster", "namespace": "kubegate"}},
        "issuers": [
            {"name": "in-cluster", "url": control_plane.issuer, "audiences": [AUDIENCE],
             "algorithms": ["ES256"],
             "keys": {"kubernetes": {"cluster": "in-cluster", "tokenReview": True}}},
            {"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
             "caFile": str(github_issuer.ca_path)}],
        "clusters": [{"name": "in-cluster", "server": control_plane.url,
                      "caFile": str(control_plane.ca_path),
                      "credentials": {"tokenFile": str(token_file)}}],
    }, base=folder, environ={}, source="test")
    ok(apply_documents(deployed, folder, [mapping_resource("ci-deploys-web", ci, web)]))
    running = start_exchanger(config)
    try:
        yield Setup(running=running, exchanger=Kubectl.with_token(control_plane, token, folder),
                    ci=ci, web=web, folder=folder)
    finally:
        running.stop(grace=0)


def accepted(kubectl: Kubectl, name: str) -> dict[str, Any] | None:
    result = kubectl.run("get", "trustmapping", name, "-n", "kubegate", "-o", "json")
    if result.returncode != 0:
        return None
    conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Accepted"), None)


def wait_accepted(kubectl: Kubectl, name: str, status: str) -> dict[str, Any]:
    assert poll(lambda: (accepted(kubectl, name) or {}).get("status") == status, 20, 0.2), (
        f"{name}: Accepted is {accepted(kubectl, name)}, not {status}")
    condition = accepted(kubectl, name)
    assert condition is not None
    return condition


# -- the manifests -----------------------------------------------------------------------------


def test_the_base_applies_and_makes_a_two_replica_hardened_deployment(deployed: Kubectl) -> None:
    deployment = json.loads(ok(deployed.run("get", "deployment", "kubegate-exchanger", "-n",
                                            "kubegate", "-o", "json")))
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "kubegate-exchanger"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["serve", "--config", "/etc/kubegate/config.yaml"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["grpc"] == {"port": 8081, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"]["port"] == 8081
    assert container["resources"]["limits"]["memory"]
    config_map = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "config")
    data = json.loads(ok(deployed.run("get", "configmap", config_map, "-n", "kubegate", "-o",
                                      "json")))["data"]["config.yaml"]
    assert data == (BASE / "config.yaml").read_text()
    for kind, name in (("service", "kubegate"), ("poddisruptionbudget", "kubegate-exchanger"),
                       ("serviceaccount", "kubegate-exchanger")):
        ok(deployed.run("get", kind, name, "-n", "kubegate"))


def test_the_api_server_takes_the_sample_and_refuses_schema_violations(
        deployed: Kubectl, tmp_path: Path) -> None:
    ok(deployed.run("apply", "--server-side", "-f", str(EXAMPLES / "trustmapping.yaml")))
    sample = yaml.safe_load((EXAMPLES / "trustmapping.yaml").read_text())
    unknown = copy.deepcopy(sample)
    unknown["metadata"]["name"] = "unknown-field"
    unknown["spec"]["grant"]["clusterAdmin"] = True
    result = apply_documents(deployed, tmp_path, [unknown])
    assert result.returncode != 0
    assert ".spec.grant.clusterAdmin: field not declared in schema" in result.stderr
    no_grant = copy.deepcopy(sample)
    no_grant["metadata"]["name"] = "no-grant"
    del no_grant["spec"]["grant"]
    result = apply_documents(deployed, tmp_path, [no_grant])
    assert result.returncode != 0
    assert "spec.grant: Required value" in result.stderr
    two_operators = copy.deepcopy(sample)
    two_operators["metadata"]["name"] = "two-operators"
    two_operators["spec"]["claims"][0]["glob"] = "8923*"
    result = apply_documents(deployed, tmp_path, [two_operators])
    assert result.returncode != 0
    assert "must validate one and only one schema (oneOf)" in result.stderr



def test_the_examples_apply_as_a_folder_and_create_what_their_mapping_names(
        deployed: Kubectl) -> None:
    """`kubectl apply -f deploy/examples/` on a cluster with the base: the namespaces and
    service accounts the sample TrustMapping and the example Roles name exist, the exchanger
    may issue for the mapping's grant, and the granted account has rights of its own."""
    ok(deployed.run("apply", "--server-side", "-f", str(EXAMPLES)))
    grant = yaml.safe_load((EXAMPLES / "trustmapping.yaml").read_text())["spec"]["grant"]
    target, account = grant["namespace"], grant["serviceAccount"]
    ok(deployed.run("get", "namespace", target))
    ok(deployed.run("get", "serviceaccount", account, "-n", target))
    pipeline = next(yaml.safe_load_all((EXAMPLES / "pipeline-namespace-rbac.yaml").read_text()))
    callers = pipeline["metadata"]["namespace"]
    ok(deployed.run("get", "serviceaccount", "pipeline", "-n", callers))

    def can_i(*request: str, namespace: str, who: str) -> str:
        result = deployed.run("auth", "can-i", *request, "-n", namespace, f"--as={who}")
        return result.stdout.strip()

    assert can_i("create", f"serviceaccounts/{account}", "--subresource=token",
                 namespace=target, who=EXCHANGER) == "yes"
    assert can_i("get", "pods", namespace=callers, who=EXCHANGER) == "yes"
    granted = f"system:serviceaccount:{target}:{account}"
    assert can_i("patch", "deployments.apps", namespace=target, who=granted) == "yes"
    assert can_i("get", "secrets", namespace=target, who=granted) == "no"


# -- the exchanger with exactly deploy/'s RBAC -------------------------------------------------


def test_resources_get_accepted_or_invalid_status_from_the_exchanger(setup: Setup,
                                                                     deployed: Kubectl) -> None:
    condition = wait_accepted(deployed, "ci-deploys-web", "True")
    assert (condition["reason"], condition["message"]) == ("Accepted", "in effect")
    ok(deployed.run("apply", "--server-side", "-f", str(EXAMPLES / "trustmapping.yaml")))
    wait_accepted(deployed, "web-deploy", "True")
    ok(apply_documents(deployed, setup.folder, [
        mapping_resource("unknown-issuer", setup.ci, setup.web, issuer="gitlab")]))
    condition = wait_accepted(deployed, "unknown-issuer", "False")
    assert condition["reason"] == "Invalid"
    assert condition["message"] == ("spec.issuer: unknown issuer 'gitlab' (configured: "
                                    "github, in-cluster)")
    table = ok(deployed.run("get", "trustmappings", "-n", "kubegate"))
    assert re.search(r"^unknown-issuer\s+gitlab\s+in-cluster\s+\S+\s+deployer\s+False",
                     table, re.MULTILINE), table


def test_it_issues_and_revokes_with_only_its_own_rbac(setup: Setup, cluster: Cluster,
                                                      control_plane: ControlPlane) -> None:
    wait_accepted(admin(control_plane), "ci-deploys-web", "True")
    pod = cluster.create_pipeline_pod(setup.ci, "build-1", "pipeline")
    subject = cluster.request_token(setup.ci, "pipeline", audiences=[AUDIENCE],
                                    bound_to=pod).token
    with setup.client() as client:
        credential = client.exchange(subject, role="ci-deploys-web")
    assert credential.cluster.namespace == setup.web
    kubectl = Kubectl.with_token(control_plane, credential.token, setup.folder)
    ok(kubectl.run("get", "pods", "-n", setup.web))
    assert not kubectl.can_i("get", "secrets", setup.web)
    secret = f"kubegate-session-{credential.session_id}"
    ok(admin(control_plane).run("get", "secret", secret, "-n", setup.web))

    cluster.core.delete_namespaced_pod("build-1", setup.ci)
    gone = admin(control_plane)
    assert poll(lambda: gone.run("get", "secret", secret, "-n", setup.web).returncode != 0,
                30), "the session reaper did not delete the session Secret"


def test_it_cannot_read_a_secret_it_did_not_create_and_still_binds_and_revokes_by_name(
        setup: Setup, cluster: Cluster, control_plane: ControlPlane) -> None:
    """No get, list or watch on Secrets where it grants: an application's Secret is refused
    (403), and so is its own session Secret; yet a TokenRequest bound to a Secret it created
    works (the API server looks the Secret up itself) and deleting that Secret by name
    revokes the token."""
    cluster.create_secret(setup.web, "app-credentials")
    for verb in (("get", "secret", "app-credentials"), ("get", "secrets"),
                 ("get", "secrets", "--watch", "--request-timeout=2s")):
        refused = setup.exchanger.run(*verb, "-n", setup.web)
        assert refused.returncode != 0, verb
        assert "(Forbidden)" in refused.stderr, refused.stderr
    client = KubernetesClient(
        server=control_plane.url, ca_file=control_plane.ca_path,
        credentials=ClusterCredentials(token_file=setup.folder / "exchanger-token"))
    session = uuid.uuid4().hex[:12]
    name = f"kubegate-session-{session}"
    try:
        bound = client.create_session_secret(
            setup.web, name, labels={SESSION_LABEL: session, MANAGED_BY_LABEL: "kubegate"},
            annotations={})
        granted = client.request_token(setup.web, "deployer", audiences=(), seconds=600,
                                       bound_to=bound)
        assert cluster.token_review(granted.token).authenticated
        own = setup.exchanger.run("get", "secret", name, "-n", setup.web)
        assert "(Forbidden)" in own.stderr, own.stderr
        client.delete_secret(setup.web, name)
        client.delete_secret(setup.web, name)  # gone already: fine
    finally:
        client.close()
    assert poll(lambda: not cluster.token_review(granted.token).authenticated, 15, 0.5)


def can_i(kubectl: Kubectl, *args: str) -> bool:
    result = kubectl.run("auth", "can-i", *args)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_its_service_account_can_do_nothing_more(setup: Setup) -> None:
    me, ci, web = setup.exchanger, setup.ci, setup.web
    assert can_i(me, "create", "serviceaccounts/deployer", "--subresource=token", "-n", web)
    assert can_i(me, "create", "tokenreviews.authentication.k8s.io")
    assert can_i(me, "watch", "trustmappings.kubegate.io", "-n", "kubegate")
    assert can_i(me, "patch", "trustmappings.kubegate.io", "--subresource=status",
                 "-n", "kubegate")
    assert can_i(me, "get", "pods", "-n", ci)
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        for resource in ("accessrequests.kubegate.io", "kubegatesessions.kubegate.io"):
            assert can_i(me, verb, resource, "-n", "kubegate"), (verb, resource)
    refused = [
        ("create", "serviceaccounts/admin", "--subresource=token", "-n", web),
        ("create", "serviceaccounts/default", "--subresource=token", "-n", web),
        ("create", "serviceaccounts/deployer", "--subresource=token", "-n", ci),
        ("create", "serviceaccounts/kubegate-exchanger", "--subresource=token", "-n",
         "kubegate"),
        ("get", "secrets", "-n", web), ("update", "secrets", "-n", web),
        ("list", "secrets", "-n", web), ("watch", "secrets", "-n", web),
        ("patch", "secrets", "-n", web),
        ("list", "secrets", "--all-namespaces"), ("get", "secrets", "-n", "kubegate"),
        ("create", "pods", "-n", web), ("create", "pods", "-n", ci), ("list", "pods", "-n", ci),
        ("get", "pods", "-n", web), ("update", "trustmappings.kubegate.io", "-n", "kubegate"),
        ("create", "trustmappings.kubegate.io", "-n", "kubegate"),
        ("list", "trustmappings.kubegate.io", "--all-namespaces"),
        ("create", "rolebindings", "-n", web), ("create", "namespaces"),
        ("impersonate", "serviceaccounts", "-n", web), ("*", "*"),
        ("create", "configmaps", "-n", "kubegate"), ("list", "configmaps", "-n", "kubegate"),
        ("get", "configmaps/kubegate-config", "-n", "kubegate"),
        ("patch", "configmaps/kubegate-config", "-n", "kubegate"),
        ("delete", "configmaps/kubegate-audit-checkpoints", "-n", "kubegate"),
        ("update", "configmaps/kubegate-audit-checkpoints", "-n", "kubegate"),
        ("patch", "configmaps/kubegate-audit-checkpoints", "-n", web),
        ("list", "accessrequests.kubegate.io", "--all-namespaces"),
        ("create", "accessrequests.kubegate.io", "-n", web),
        ("get", "kubegatesessions.kubegate.io", "-n", ci),
        ("deletecollection", "accessrequests.kubegate.io", "-n", "kubegate"),
        ("create", "trustmappings.kubegate.io", "-n", web),
    ]
    assert [args for args in refused if can_i(me, *args)] == []


_RULE = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")
ACCESS_VERBS = "get list watch create update patch delete"


def resource_rules(kubectl: Kubectl, namespace: str) -> set[tuple[str, str, str]]:
    """(resource, resource names, verbs) from `kubectl auth can-i --list`."""
    listing = ok(kubectl.run("auth", "can-i", "--list", "-n", namespace))
    return {(m.group(1), m.group(3), m.group(4))
            for line in listing.splitlines()[1:] if (m := _RULE.match(line))}


def test_can_i_list_shows_deploys_rules_and_nothing_else(
        setup: Setup, cluster: Cluster, control_plane: ControlPlane) -> None:
    """Beyond what every service account may do (a fresh one's rules), exactly deploy/'s."""
    fresh = Kubectl.with_token(control_plane, cluster.request_token(setup.web, "admin").token,
                               setup.folder)
    tokenreviews = ("tokenreviews.authentication.k8s.io", "", "create")
    expected = {
        setup.web: {tokenreviews, ("serviceaccounts/token", "deployer", "create"),
                    ("secrets", "", "create delete")},
        setup.ci: {tokenreviews, ("pods", "", "get")},
        "kubegate": {tokenreviews, ("trustmappings.kubegate.io", "", "get list watch"),
                     ("trustmappings.kubegate.io/status", "", "patch"),
                     ("configmaps", "kubegate-audit-checkpoints", "get patch"),
                     ("accessrequests.kubegate.io", "", ACCESS_VERBS),
                     ("kubegatesessions.kubegate.io", "", ACCESS_VERBS)},
        "default": {tokenreviews},
    }
    for namespace, rules in expected.items():
        baseline = resource_rules(fresh, namespace)
        assert resource_rules(setup.exchanger, namespace) - baseline == rules, namespace


def test_it_publishes_audit_checkpoints_with_only_its_own_rbac(
        setup: Setup, control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    """Into the ConfigMap deploy/base ships, with get and patch on it and nothing more."""
    with setup.client() as client, pytest.raises(ExchangeError):
        client.exchange("not-a-jwt")  # a decision, so the log has a head to publish
    kubectl, key = admin(control_plane), config_map_key("kubegate.io/audit/deploy-test")

    def published() -> str:
        found = kubectl.run("get", "configmap", "kubegate-audit-checkpoints", "-n", "kubegate",
                            "-o", "json")
        return str(json.loads(found.stdout).get("data", {}).get(key, "")) \
            if found.returncode == 0 else ""

    assert poll(lambda: bool(published()), 15, 0.2), "no checkpoint in the ConfigMap"
    assert published().startswith("kubegate.io/audit/deploy-test\n")
    assert kubegate_cli(["audit", "verify", str(setup.running.config.audit_log),
                         "--from-configmap", "kubegate/kubegate-audit-checkpoints",
                         "--kubeconfig", str(control_plane.admin_kubeconfig_path),
                         "--key", setup.running.checkpoint_verifier_key]) == 0
    assert ": ok, " in capsys.readouterr().out


def test_admission_limits_its_secrets_to_session_secrets(setup: Setup, cluster: Cluster,
                                                         control_plane: ControlPlane) -> None:
    created = setup.exchanger.run("create", "secret", "generic", "not-a-session", "-n",
                                  setup.web, "--from-literal=a=b")
    assert created.returncode != 0
    assert "may only create and delete its own session Secrets" in created.stderr
    cluster.create_secret(setup.web, "app-secret")
    deleted = setup.exchanger.run("delete", "secret", "app-secret", "-n", setup.web)
    assert deleted.returncode != 0
    assert "may only create and delete its own session Secrets" in deleted.stderr
    ok(admin(control_plane).run("get", "secret", "app-secret", "-n", setup.web))


def test_the_health_listener_is_plaintext_and_serves_health_only(setup: Setup) -> None:
    assert setup.running.health_port
    with grpc.insecure_channel(f"127.0.0.1:{setup.running.health_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        exchange = channel.unary_unary(f"/{SERVICE_NAME}/Exchange")
        with pytest.raises(grpc.RpcError) as refused:
            exchange(b"", timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- mappings explain and validate against the cluster's TrustMappings -----------------------


def test_explain_with_a_cluster_sourced_config_reads_the_trustmappings_from_the_cluster(
        setup: Setup, deployed: Kubectl, control_plane: ControlPlane,
        capsys: pytest.CaptureFixture[str]) -> None:
    """deploy/base's kind of config (TrustMappings only, read with the exchanger's own
    token): explain finds the mapping a pipeline pod gets, and names a refused resource
    without letting it hide the others; `kubectl get trustmappings -o yaml` output is a
    mapping file for validate and explain."""
    ok(apply_documents(deployed, setup.folder, [
        mapping_resource("explain-refused", setup.ci, setup.web, issuer="bitbucket")]))
    config = setup.folder / "explain-config.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "stateDir": str(setup.folder / "explain-state"),
        "mappingSources": {"files": False,
                           "cluster": {"name": "in-cluster", "namespace": "kubegate"}},
        "issuers": [{"name": "in-cluster", "url": control_plane.issuer,
                     "audiences": [AUDIENCE], "algorithms": ["ES256"],
                     "keys": {"kubernetes": {"cluster": "in-cluster"}}}],
        "clusters": [{"name": "in-cluster", "server": control_plane.url,
                      "caFile": str(control_plane.ca_path),
                      "credentials": {"tokenFile": str(setup.folder / "exchanger-token")}}]}))
    claims = setup.folder / "pipeline-claims.json"
    claims.write_text(json.dumps({
        "iss": control_plane.issuer, "aud": [AUDIENCE],
        "sub": f"system:serviceaccount:{setup.ci}:pipeline",
        "kubernetes.io": {"namespace": setup.ci, "serviceaccount": {"name": "pipeline"}}}))
    capsys.readouterr()
    status = kubegate_cli(["mappings", "explain", "--config", str(config), "--claims",
                           str(claims), "--role", "ci-deploys-web"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert any(line.startswith("mapping ci-deploys-web (TrustMapping kubegate/ci-deploys-web")
               for line in out), out
    assert ("invalid, left out: TrustMapping kubegate/explain-refused: spec.issuer: unknown "
            "issuer 'bitbucket' (configured: in-cluster)") in out
    assert out[-1].startswith(f"decision: would grant ci-deploys-web: cluster in-cluster, "
                              f"namespace {setup.web}, service account deployer")

    listed = setup.folder / "listed.yaml"
    listed.write_text(ok(deployed.run("get", "trustmappings", "-n", "kubegate", "-o", "yaml")))
    status = kubegate_cli(["mappings", "validate", "--config", str(config), str(listed)])
    out = capsys.readouterr().out.splitlines()
    errors = [line for line in out if ": error: " in line]
    assert status == 1
    assert any("(explain-refused): error: spec.issuer: unknown issuer 'bitbucket'" in line
               for line in errors), errors
    assert not any("(ci-deploys-web)" in line for line in errors), errors
    status = kubegate_cli(["mappings", "explain", "--config", str(config), "--mappings",
                           str(listed), "--claims", str(claims), "--role", "ci-deploys-web"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0, out
    assert out[-1].startswith("decision: would grant ci-deploys-web:")


# -- deploy/base/gateway -----------------------------------------------------------------------

GATEWAY = BASE / "gateway"
GATEWAY_USER = "system:serviceaccount:kubegate:kubegate-gateway"


@pytest.fixture(scope="module")
def gateway_deployed(deployed: Kubectl) -> Kubectl:
    ok(deployed.run("apply", "--server-side", "-k", str(GATEWAY)))
    return deployed


def test_the_gateway_applies_with_the_exchangers_config_plus_its_section(
        gateway_deployed: Kubectl, tmp_path: Path) -> None:
    deployment = json.loads(ok(gateway_deployed.run(
        "get", "deployment", "kubegate-gateway", "-n", "kubegate", "-o", "json")))
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubegate-gateway"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["gateway", "--config", "/etc/kubegate/config.yaml"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {v["name"]: v for v in pod["volumes"]}["recordings"]["emptyDir"]
    config_map = next(v["configMap"]["name"] for v in pod["volumes"] if v["name"] == "config")
    text = json.loads(ok(gateway_deployed.run("get", "configmap", config_map, "-n", "kubegate",
                                              "-o", "json")))["data"]["config.yaml"]
    both = yaml.safe_load(text)
    assert {k: v for k, v in both.items() if k != "gateway"} == yaml.safe_load(
        (BASE / "config.yaml").read_text())
    settings = build_config(both, base=tmp_path, environ={"HOME": str(tmp_path)},
                            source="deploy/base/gateway/config.yaml").gateway
    assert settings is not None
    assert (settings.cluster, settings.listen) == ("in-cluster", "0.0.0.0:8443")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.metrics_listen == f"0.0.0.0:{ports['metrics']}"  # what the probes ask
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics",
                                                      "scheme": "HTTP"}
    assert settings.audit_log != Path(both["auditLog"])  # a chain of its own
    for kind, name in (("service", "kubegate-gateway"), ("serviceaccount", "kubegate-gateway"),
                       ("poddisruptionbudget", "kubegate-gateway")):
        ok(gateway_deployed.run("get", kind, name, "-n", "kubegate"))


def may(cluster: Cluster, user: str, verb: str, resource: str, *, group: str = "",
        subresource: str = "", name: str = "", namespace: str = "") -> bool:
    """A SubjectAccessReview: exactly the attributes the API server's impersonation filter
    checks (resource userextras, subresource = the extra's key)."""
    review = k8s.AuthorizationV1Api(cluster.api).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts",
                                          "system:serviceaccounts:kubegate"],
                 "resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                        "subresource": subresource, "name": name,
                                        "namespace": namespace}}})
    return bool(review.status.allowed)


def test_the_gateway_may_impersonate_users_groups_and_the_session_extra_only(
        gateway_deployed: Kubectl, cluster: Cluster) -> None:
    assert may(cluster, GATEWAY_USER, "impersonate", "users", name="vendor@example.com")
    assert may(cluster, GATEWAY_USER, "impersonate", "groups", name="vendor-sre")
    assert may(cluster, GATEWAY_USER, "impersonate", "userextras",
               group="authentication.k8s.io", subresource="kubegate.io/session", name="s-1")
    refused = [
        {"verb": "impersonate", "resource": "serviceaccounts", "namespace": "kube-system"},
        {"verb": "impersonate", "resource": "uids", "group": "authentication.k8s.io"},
        {"verb": "impersonate", "resource": "userextras", "group": "authentication.k8s.io",
         "subresource": "scopes"},
        {"verb": "impersonate", "resource": "userextras", "group": "authentication.k8s.io",
         "subresource": "kubegate.io/other"},
        {"verb": "create", "resource": "serviceaccounts", "subresource": "token",
         "namespace": "kubegate", "name": "kubegate-exchanger"},
        {"verb": "get", "resource": "secrets", "namespace": "kubegate"},
        {"verb": "list", "resource": "pods", "namespace": "kubegate"},
        {"verb": "delete", "resource": "kubegatesessions", "group": "kubegate.io",
         "namespace": "kubegate"},
        {"verb": "delete", "resource": "accessrequests", "group": "kubegate.io",
         "namespace": "kubegate"},
        {"verb": "list", "resource": "kubegatesessions", "group": "kubegate.io",
         "namespace": "default"},
    ]
    assert [r for r in refused if may(cluster, GATEWAY_USER, **r)] == []


def test_the_gateways_rules_in_its_namespace_are_deploys_and_nothing_else(
        gateway_deployed: Kubectl, cluster: Cluster, control_plane: ControlPlane,
        tmp_path: Path) -> None:
    gateway = Kubectl.with_token(control_plane, cluster.request_token(
        "kubegate", "kubegate-gateway", seconds=600).token, tmp_path)
    nobody_name = f"nobody-{uuid.uuid4().hex[:6]}"  # the baseline: a fresh account's rules
    cluster.create_service_account("kubegate", nobody_name)
    nobody = Kubectl.with_token(control_plane, cluster.request_token(
        "kubegate", nobody_name, seconds=600).token, tmp_path)
    tokenreviews = ("tokenreviews.authentication.k8s.io", "", "create")
    impersonate = {("users", "", "impersonate"), ("groups", "", "impersonate"),
                   ("userextras.authentication.k8s.io/kubegate.io/session", "", "impersonate")}
    assert resource_rules(gateway, "kubegate") - resource_rules(nobody, "kubegate") == {
        tokenreviews, *impersonate,
        ("trustmappings.kubegate.io", "", "get list watch"),
        ("accessrequests.kubegate.io", "", "get list watch update"),
        ("kubegatesessions.kubegate.io", "", "get list watch create update")}
    assert resource_rules(gateway, "default") - resource_rules(nobody, "default") == {
        tokenreviews, *impersonate}


def test_with_its_own_token_the_gateway_acts_as_a_grant_and_never_as_a_service_account(
        gateway_deployed: Kubectl, cluster: Cluster, control_plane: ControlPlane,
        tmp_path: Path) -> None:
    """What `kubegate gateway` sends upstream (README "Gateway"), through the real API server:
    the grant's rights, not the gateway's; the refused identities are refused by RBAC."""
    namespace = cluster.create_namespace("gw")
    cluster.create_role(namespace, "pod-reader", POD_READER)
    cluster.bind_role(namespace, "pod-reader", group="vendor-sre")
    gateway = Kubectl.with_token(control_plane, cluster.request_token(
        "kubegate", "kubegate-gateway", seconds=600).token, tmp_path)
    grant = ("--as=vendor@example.com", "--as-group=vendor-sre",
             "--as-user-extra=kubegate.io/session=s-42")
    ok(gateway.run("get", "pods", "-n", namespace, *grant))
    assert gateway.run("get", "pods", "-n", namespace).returncode != 0  # not its own right
    denied = gateway.run("get", "secrets", "-n", namespace, *grant)
    assert 'User "vendor@example.com" cannot list resource "secrets"' in denied.stderr
    for refused in (("--as=system:serviceaccount:kube-system:default",),
                    ("--as=vendor@example.com", "--as-user-extra=scopes=all"),
                    ("--as=vendor@example.com", "--as-uid=1234")):
        result = gateway.run("get", "pods", "-n", namespace, *refused)
        assert result.returncode != 0
        assert "cannot impersonate" in result.stderr, result.stderr
