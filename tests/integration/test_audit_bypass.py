"""Bypass findings from the real API server's audit log: a brokered pipeline session, then
deliberate ways around the broker (a client-certificate kubeconfig, a legacy token Secret, a
TokenRequest for the granted account by someone else, a credential used after its session
ended), and exactly the expected findings for the users this test made.

The control plane is shared with other tests: the report reads only events from this test's
start on, and the assertions look only at this test's users.
"""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import kubernetes.client as k8s
import pytest

from exchanger.auditreport.bypass import Allowlist, BypassDetector
from exchanger.auditreport.cluster_log import iter_events
from exchanger.auditreport.join import build_report
from exchanger.auditreport.kubegate_log import read_sessions
from exchanger.auditreport.model import Filters, Finding, Problem, Severity
from tests.support import pki
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import StartExchanger, cluster_entry
from tests.support.kube import Cluster
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

AUDIENCE = "kubegate"
REPOSITORY_ID = "4242"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
LEGACY_ISSUER = "kubernetes/serviceaccount"  # what the token controller signs legacy tokens as


@pytest.fixture
def extra_client_ca(control_plane: ControlPlane) -> Iterator[pki.TestCA]:
    """A CA the API server trusts for client certificates beside its own, for this test
    (the API server reloads --client-ca-file when it changes); removed afterwards."""
    original = control_plane.client_ca_path.read_bytes()
    ca = pki.TestCA("kubegate-test-bypass-ca")
    _replace(control_plane.client_ca_path, original + ca.cert_pem)
    try:
        yield ca
    finally:
        _replace(control_plane.client_ca_path, original)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def call(plane: ControlPlane, path: str, *, token: str = "", context: ssl.SSLContext | None = None,
         body: dict[str, Any] | None = None) -> int:
    """The HTTP status of one request to the API server."""
    request = urllib.request.Request(
        plane.url + path, method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, context=context or plane.ssl_context(),  # noqa: S310
                                    timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def call_for_token(plane: ControlPlane, path: str, context: ssl.SSLContext) -> str:
    request = urllib.request.Request(
        plane.url + path, method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"audiences": [plane.issuer], "expirationSeconds": 600}}).encode())
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:  # noqa: S310
        return str(json.load(answer)["status"]["token"])


def cert_context(plane: ControlPlane, ca: pki.TestCA, user: str, groups: tuple[str, ...],
                 folder: Path) -> ssl.SSLContext:
    cert, key = ca.issue_client(user, groups).write(folder, user)
    context = plane.ssl_context()
    context.load_cert_chain(str(cert), str(key))
    return context


def legacy_token(cluster: Cluster, namespace: str, account: str) -> str:
    """A Secret-based token as the (absent) token controller would make it: signed with the
    service-account key, issuer kubernetes/serviceaccount, stored in its Secret."""
    uid = cluster.create_service_account(namespace, account).metadata.uid
    secret = f"{account}-token"
    prefix = "kubernetes.io/serviceaccount/"
    token = jwt.encode({
        "iss": LEGACY_ISSUER, "sub": f"system:serviceaccount:{namespace}:{account}",
        prefix + "namespace": namespace, prefix + "secret.name": secret,
        prefix + "service-account.name": account, prefix + "service-account.uid": uid,
    }, cluster.plane.sa_key_path.read_bytes(), algorithm="ES256")
    cluster.core.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=secret, annotations={
            "kubernetes.io/service-account.name": account,
            "kubernetes.io/service-account.uid": uid}),
        type="kubernetes.io/service-account-token",
        data={"token": base64.b64encode(token.encode()).decode()}))
    return token


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


def mark_ended(log: Path, copy: Path, session_id: str, at: float) -> None:
    """A copy of the kubegate log where the session was revoked at `at`."""
    line = {"time": rfc3339(at), "decision": "access", "session_id": session_id,
            "access": {"event": "session-revoked"}}
    copy.write_text(log.read_text() + json.dumps(line) + "\n")


def summary(findings: list[Finding], users: set[str]) -> set[tuple[str, Severity, str, int]]:
    return {(f.kind, f.severity, f.user, f.count) for f in findings if f.user in users}


def test_bypasses_of_the_broker_are_found_in_the_real_audit_log(
        control_plane: ControlPlane, cluster: Cluster, start_test_exchanger: StartExchanger,
        github_issuer: GitHubActionsIssuer, extra_client_ca: pki.TestCA,
        tmp_path: Path) -> None:
    started = time.time() - 1
    ns = cluster.create_namespace("bypass")
    cluster.create_service_account(ns, "deployer")
    cluster.create_role(ns, "pod-reader", POD_READER)
    cluster.bind_role(ns, "pod-reader", service_account=(ns, "deployer"))
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)],
        mappings=f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploys}}
spec:
  issuer: github
  claims: [{{claim: repository_id, equals: "{REPOSITORY_ID}"}}]
  grant: {{cluster: test, namespace: {ns}, serviceAccount: deployer, maxLifetime: 15m}}
""")
    pods = f"/api/v1/namespaces/{ns}/pods"

    # the brokered pipeline session: its own actions are no finding
    subject = github_issuer.mint(repository="octo-org/web", repository_id=REPOSITORY_ID,
                                 audience=AUDIENCE)
    with exchanger.client() as client:
        brokered = client.exchange(subject)
    assert call(control_plane, pods, token=brokered.token) == 200
    ended_at = time.time()
    time.sleep(1.5)
    # ... and the same credential again, after the end a copy of kubegate's log records
    assert call(control_plane, pods, token=brokered.token) == 200

    # another session, revoked for real (its Secret goes): once the API server's token cache
    # lets go, it refuses, and a refused credential is no finding
    with exchanger.client() as client:
        revoked = client.exchange(subject)
    cluster.core.delete_namespaced_secret(f"kubegate-session-{revoked.session_id}", ns)
    assert poll(lambda: call(control_plane, pods, token=revoked.token) == 401, 30)

    # a client-certificate kubeconfig in system:masters, and one of a plain user
    root, dev = f"bypass-root-{uuid.uuid4().hex[:6]}", f"bypass-dev-{uuid.uuid4().hex[:6]}"
    as_root = cert_context(control_plane, extra_client_ca, root, ("system:masters",), tmp_path)
    as_dev = cert_context(control_plane, extra_client_ca, dev, ("devs",), tmp_path)
    assert call(control_plane, pods, context=as_root) == 200
    assert call(control_plane, f"/api/v1/namespaces/{ns}/secrets", context=as_root) == 200
    assert call(control_plane, pods, context=as_dev) == 403

    # a TokenRequest for the granted account by someone other than the exchanger, then used
    minted = call_for_token(
        control_plane, f"/api/v1/namespaces/{ns}/serviceaccounts/deployer/token", as_root)
    assert call(control_plane, pods, token=minted) == 200

    # a legacy token Secret used directly
    old = legacy_token(cluster, ns, "old-ci")
    cluster.bind_role(ns, "pod-reader", service_account=(ns, "old-ci"))
    assert call(control_plane, pods, token=old) == 200

    # the audit log has it all (the file backend writes as requests complete)
    assert poll(lambda: any(
        e.get("user", {}).get("username") == f"system:serviceaccount:{ns}:old-ci"
        for e in audit_events(control_plane.audit_log_path)), 10)
    kubegate_log = tmp_path / "kubegate-audit.jsonl"
    mark_ended(exchanger.config.audit_log, kubegate_log, brokered.session_id, ended_at)
    problems: list[Problem] = []
    sessions = read_sessions([kubegate_log], problems)
    detector = BypassDetector(sessions, Allowlist(), exchanger_users=["admin"], grace=0.5)
    report = build_report(sessions, iter_events([control_plane.audit_log_path], problems),
                          filters=Filters(since=started), observers=[detector],
                          problems=problems)

    deployer = f"system:serviceaccount:{ns}:deployer"
    mine = {root, dev, deployer, f"system:serviceaccount:{ns}:old-ci"}
    assert summary(list(report.findings), mine) == {
        ("used-after-end", Severity.HIGH, deployer, 1),
        ("unbrokered-service-account-token", Severity.HIGH, root, 1),
        ("unbrokered-service-account-token", Severity.HIGH, deployer, 1),
        ("client-certificate", Severity.HIGH, root, 2),
        ("client-certificate", Severity.MEDIUM, dev, 1),
        ("legacy-token", Severity.HIGH, f"system:serviceaccount:{ns}:old-ci", 1),
    }
    by_kind = {(f.kind, f.user): f for f in report.findings}
    assert by_kind["used-after-end", deployer].events[0].credential_id == (
        f"JTI={brokered.token_id}")
    assert by_kind["client-certificate", root].message.endswith("(secret-read)")
    assert by_kind["client-certificate", root].events[0].credential_id.startswith("X509SHA256=")
    (joined,) = [s for s in report.sessions if s.session.session_id == brokered.session_id]
    assert joined.action_count == 2
    assert all(f.events[0].credential_id != f"JTI={revoked.token_id}" for f in report.findings)
