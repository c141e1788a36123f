"""End to end against the real kube-apiserver: subject tokens in, TokenRequest tokens out,
with exactly the mapped permissions, revocable, and every decision in the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from exchanger.access.model import SessionEnd
from exchanger.access.sqlite_store import SqliteStores
from kubegate.errors import Code, ExchangeError
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.sidecar import setup_pipeline
from tests.support.wait import poll

POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
AUDIENCE = "kubegate"



def setup_deployer(cluster: Cluster, namespace: str) -> None:
    cluster.create_service_account(namespace, "deployer")
    cluster.create_role(namespace, "pod-reader", POD_READER)
    cluster.bind_role(namespace, "pod-reader", service_account=(namespace, "deployer"))


# -- a pipeline pod's token -------------------------------------------------------------


@pytest.fixture
def pipeline(cluster: Cluster, control_plane: ControlPlane,
             start_test_exchanger: StartExchanger,
             tmp_path: Path) -> tuple[TestExchanger, str, str]:
    """An exchanger trusting the cluster's own service-account tokens; namespaces ci, web."""
    setup = setup_pipeline(cluster, control_plane, start_test_exchanger, tmp_path)
    return setup.exchanger, setup.ci, setup.web


def test_pipeline_pod_token_becomes_a_deployer_token_with_exactly_its_permissions(
    pipeline: tuple[TestExchanger, str, str], cluster: Cluster,
    kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    exchanger, ci, web = pipeline
    pod = cluster.create_pipeline_pod(ci, "build-a", "pipeline")
    subject = cluster.request_token(ci, "pipeline", audiences=[AUDIENCE], bound_to=pod).token
    with exchanger.client() as client:
        credential = client.exchange(subject)

    assert credential.mapping == "ci-deploys-web"
    assert credential.cluster.namespace == web
    assert credential.cluster.service_account == "deployer"
    lifetime = credential.expires_at - time.time()
    assert 600 - 30 <= lifetime <= 900 + 5
    claims = jwt.decode(credential.token, options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{web}:deployer"
    assert claims["jti"] == credential.token_id
    assert claims["kubernetes.io"]["secret"]["name"] == f"kubegate-session-{credential.session_id}"

    kubectl = kubectl_with_token(credential.token)
    listed = kubectl.run("get", "pods", "-n", web)
    assert listed.returncode == 0, listed.stderr
    assert kubectl.can_i("list", "pods", web)
    assert not kubectl.can_i("get", "secrets", web)
    assert not kubectl.can_i("list", "pods", ci)
    assert kubectl.run("get", "secrets", "-n", web).returncode != 0

    allow = exchanger.decisions()[-1]
    assert allow["decision"] == "allow"
    assert allow["token_id"] == credential.token_id
    assert allow["caller"]["sub"] == f"system:serviceaccount:{ci}:pipeline"


def test_deleting_the_pipeline_pod_kills_the_issued_token(
    pipeline: tuple[TestExchanger, str, str], cluster: Cluster,
    kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    exchanger, ci, web = pipeline
    pod = cluster.create_pipeline_pod(ci, "build-2", "pipeline")
    subject = cluster.request_token(ci, "pipeline", audiences=[AUDIENCE], bound_to=pod).token
    with exchanger.client() as client:
        credential = client.exchange(subject)
    kubectl = kubectl_with_token(credential.token)
    assert kubectl.run("get", "pods", "-n", web).returncode == 0

    cluster.core.delete_namespaced_pod("build-2", ci)

    # the session reaper (every 5 s, from the session index) sees the caller pod gone and
    # deletes the session Secret by name, then the apiserver's 10 s token cache expires
    assert poll(lambda: kubectl.run("get", "pods", "-n", web).returncode != 0, 45)
    assert not cluster.token_review(credential.token).authenticated
    store = SqliteStores(exchanger.config.access.sqlite_file or Path("unset"))
    try:
        session = store.sessions.get(credential.session_id)
    finally:
        store.close()
    assert session is not None and session.end_reason is SessionEnd.CALLER_GONE
    assert session.caller_pod.startswith(f"{ci}/build-2/")


def test_deleted_pod_token_is_refused_by_token_review(
    pipeline: tuple[TestExchanger, str, str], cluster: Cluster,
) -> None:
    exchanger, ci, _ = pipeline
    pod = cluster.create_pipeline_pod(ci, "build-3", "pipeline")
    subject = cluster.request_token(ci, "pipeline", audiences=[AUDIENCE], bound_to=pod).token
    cluster.core.delete_namespaced_pod("build-3", ci)

    def refused() -> bool:
        with exchanger.client(attempts=1) as client:
            try:
                client.exchange(subject)
            except ExchangeError as error:
                return error.code is Code.UNAUTHENTICATED
        return False

    assert poll(refused, 20)
    assert exchanger.decisions()[-1]["reason"] == "TOKEN_REVOKED"


def test_token_of_another_service_account_is_denied(
    pipeline: tuple[TestExchanger, str, str], cluster: Cluster,
) -> None:
    exchanger, ci, _ = pipeline
    cluster.create_service_account(ci, "intruder")
    subject = cluster.request_token(ci, "intruder", audiences=[AUDIENCE]).token
    with exchanger.client() as client, pytest.raises(ExchangeError) as denied:
        client.exchange(subject)
    assert denied.value.code is Code.PERMISSION_DENIED
    assert denied.value.reason == "NO_MATCHING_MAPPING"


# -- GitHub Actions -----------------------------------------------------------------------

REPOSITORY_ID = "892301"


@pytest.fixture
def github_exchanger(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    start_test_exchanger: StartExchanger,
) -> tuple[TestExchanger, str]:
    web = cluster.create_namespace("web")
    setup_deployer(cluster, web)
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-production}}
spec:
  issuer: github
  claims:
  - {{claim: repository_id, equals: "{REPOSITORY_ID}"}}
  - {{claim: ref, equals: refs/heads/main}}
  - {{claim: environment, equals: production}}
  - {{claim: event_name, oneOf: [push, workflow_dispatch]}}
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer, maxLifetime: 20m}}
"""
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "algorithms": ["RS256"], "caFile": str(github_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)], mappings=mappings)
    return exchanger, web


def test_github_token_matched_on_repository_id_ref_and_environment_is_allowed(
    github_exchanger: tuple[TestExchanger, str], github_issuer: GitHubActionsIssuer,
    kubectl_with_token: Callable[[str], Kubectl], control_plane: ControlPlane,
) -> None:
    exchanger, web = github_exchanger
    subject = github_issuer.mint(repository="octo-org/web", repository_id=REPOSITORY_ID,
                                 environment="production", audience=AUDIENCE)
    with exchanger.client() as client:
        credential = client.exchange(subject, lifetime=3600)

    assert credential.mapping == "web-production"
    assert credential.expires_at - time.time() <= 20 * 60 + 5  # clamped to the mapping
    assert credential.cluster.server == control_plane.url
    assert credential.cluster.certificate_authority_data == control_plane.ca_pem
    kubectl = kubectl_with_token(credential.token)
    assert kubectl.run("get", "pods", "-n", web).returncode == 0

    # the Kubernetes audit log joins the API call to the exchange through the credential id
    def joined() -> bool:
        return any(
            e.get("user", {}).get("extra", {}).get("authentication.kubernetes.io/credential-id")
            == [f"JTI={credential.token_id}"]
            for e in audit_events(control_plane.audit_log_path))

    assert poll(joined, 15)
    record = exchanger.decisions()[-1]
    assert (record["decision"], record["mapping"], record["token_id"]) == (
        "allow", "web-production", credential.token_id)
    assert record["caller"]["sub"] == "repo:octo-org/web:environment:production"


@pytest.mark.parametrize(("case", "overrides", "status", "reason"), [
    ("another repository_id", {"repository_id": "1"}, "PERMISSION_DENIED",
     "NO_MATCHING_MAPPING"),
    ("a pull_request event", {"event_name": "pull_request", "ref": "refs/pull/7/merge"},
     "PERMISSION_DENIED", "NO_MATCHING_MAPPING"),
    ("a wrong audience", {"audience": "sts.amazonaws.com"}, "UNAUTHENTICATED",
     "WRONG_AUDIENCE"),
    ("an expired token", {"now": time.time() - 3600}, "UNAUTHENTICATED", "TOKEN_EXPIRED"),
])
def test_github_token_outside_the_mapping_is_denied_and_audited(
    github_exchanger: tuple[TestExchanger, str], github_issuer: GitHubActionsIssuer,
    case: str, overrides: dict[str, object], status: str, reason: str,
) -> None:
    exchanger, _ = github_exchanger
    claims: dict[str, object] = {"repository": "octo-org/web", "repository_id": REPOSITORY_ID,
                                 "environment": "production", "audience": AUDIENCE}
    claims.update(overrides)
    subject = github_issuer.mint(**claims)  # type: ignore[arg-type]
    with exchanger.client() as client, pytest.raises(ExchangeError) as denied:
        client.exchange(subject)

    assert (denied.value.code.name, denied.value.reason) == (status, reason), case
    assert subject not in str(denied.value)
    record = exchanger.decisions()[-1]
    assert (record["decision"], record["reason"], record["status"]) == ("deny", reason, status)
    assert record["token_id"] == ""
    assert subject not in exchanger.config.audit_log.read_text()


def test_exchanger_reaches_its_cluster_with_the_credentials_of_a_kubeconfig_file(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    start_test_exchanger: StartExchanger, kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    web = cluster.create_namespace("web")
    setup_deployer(cluster, web)
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "test", "server": control_plane.url,
                   "caFile": str(control_plane.ca_path),
                   "credentials": {"kubeconfig": str(control_plane.admin_kubeconfig_path)}}],
        mappings=f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: any-main}}
spec:
  issuer: github
  claims: [{{claim: ref, equals: refs/heads/main}}]
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer}}
""")
    with exchanger.client() as client:
        credential = client.exchange(github_issuer.mint(audience=AUDIENCE))
    assert kubectl_with_token(credential.token).run("get", "pods", "-n", web).returncode == 0
