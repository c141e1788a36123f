"""The live audit sink against a real kube-apiserver: the API server's audit webhook backend
(blocking mode, HTTPS with a test CA, the API server presenting a client certificate) posts
every event to `kubegate audit sink`, which joins it with the session a real exchanger issued
and flags what went around the broker.

A pipeline's credential lists pods: its event is written joined to the session (id, mapping,
CI run). The admin's client certificate reads Secrets: its event is written unjoined, marked
`secret-read` and flagged `client-certificate`. The exchanger's own TokenRequest (a
ServiceAccount token named with --exchanger-user) is no finding. The sink's records carry the
same audit ids as the API server's file log, and its metrics count them.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchanger.auditreport.bypass import Allowlist
from exchanger.auditreport.sink import AuditSink
from exchanger.localtls import LocalCA
from kubegate.commands.audit_sink import webhook_kubeconfig
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger
from tests.support.fixtures_kube import require_binaries
from tests.support.kube import Cluster, Kubectl, admin_api_client
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

AUDIENCE = "kubegate"
EXCHANGER_USER = "system:serviceaccount:kubegate:exchanger"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
ARRIVES_WITHIN = 20.0


@dataclass
class Setup:
    plane: ControlPlane
    cluster: Cluster
    sink: AuditSink
    out: Path
    client: ssl.SSLContext  # the API server's client certificate, for GET /metrics
    web: str


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """The sink (TLS, client certificates demanded), then a control plane whose audit
    webhook points at it: the sink must listen before the API server's first event."""
    bin_dir = require_binaries()
    ca = LocalCA("kubegate-test-audit-sink-ca")
    ca_file = ca.write(tmp_path / "sink-ca.crt")
    cert, key = ca.issue_server().write(tmp_path, "sink")
    client_cert, client_key = ca.issue_client("kube-apiserver").write(tmp_path, "apiserver")
    out = tmp_path / "joined.jsonl"
    sink = AuditSink(out, kubegate_logs=[tmp_path / "kubegate-audit.log"],
                     listen="127.0.0.1:0", tls=(cert, key), client_ca=ca_file,
                     allowlist=Allowlist(), exchanger_users=[EXCHANGER_USER]).start()
    webhook = tmp_path / "audit-webhook.kubeconfig"
    webhook.write_text(json.dumps(webhook_kubeconfig(
        url=f"https://127.0.0.1:{sink.port}/audit", ca_file=str(ca_file),
        client_cert=str(client_cert), client_key=str(client_key))))
    (tmp_path / "plane").mkdir()
    plane = ControlPlane(bin_dir, tmp_path / "plane", audit_webhook=webhook)
    api = None
    try:
        plane.start()
        api = admin_api_client(plane)
        cluster = Cluster(plane=plane, api=api)
        web = cluster.create_namespace("web")
        cluster.create_service_account(web, "deployer")
        cluster.create_role(web, "pod-reader", POD_READER)
        cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
        client = ssl.create_default_context(cafile=str(ca_file))
        client.load_cert_chain(str(client_cert), str(client_key))
        yield Setup(plane=plane, cluster=cluster, sink=sink, out=out, client=client, web=web)
    finally:
        if api is not None:
            api.close()
        plane.stop()
        sink.stop()


def start_exchanger(setup: Setup, tmp_path: Path, github_issuer: GitHubActionsIssuer,
                    start_test_exchanger: StartExchanger) -> TestExchanger:
    """An exchanger that calls the cluster as a ServiceAccount (no client certificate), and
    writes its audit log where the sink tails it."""
    cluster = setup.cluster
    cluster.core.create_namespace({"metadata": {"name": "kubegate"}})
    cluster.create_service_account("kubegate", "exchanger")
    cluster.rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubegate-exchanger"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "exchanger", "namespace": "kubegate"}]})
    token_file = tmp_path / "exchanger.token"
    token_file.touch(mode=0o600)
    token_file.write_text(cluster.request_token("kubegate", "exchanger", seconds=3600).token)
    return start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "test", "server": setup.plane.url,
                   "caFile": str(setup.plane.ca_path),
                   "credentials": {"tokenFile": str(token_file)}}],
        auditLog=str(tmp_path / "kubegate-audit.log"), mappings=f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims: [{{claim: ref, equals: refs/heads/main}}]
  grant: {{cluster: test, namespace: {setup.web}, serviceAccount: deployer, maxLifetime: 15m}}
""")


def records(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_bytes().splitlines()]


def find(out: Path, **fields: Any) -> dict[str, Any] | None:
    found = [r for r in records(out) if all(r.get(k) == v for k, v in fields.items())]
    return found[-1] if found else None


def metrics(setup: Setup) -> str:
    url = f"https://127.0.0.1:{setup.sink.port}/metrics"
    with urllib.request.urlopen(url, context=setup.client, timeout=10) as answer:  # noqa: S310
        return str(answer.read().decode())


def test_the_sink_joins_the_api_servers_events_with_kubegate_sessions_live(
        setup: Setup, tmp_path: Path, github_issuer: GitHubActionsIssuer,
        start_test_exchanger: StartExchanger) -> None:
    exchanger = start_exchanger(setup, tmp_path, github_issuer, start_test_exchanger)
    with exchanger.client() as client:
        credential = client.exchange(github_issuer.mint(audience=AUDIENCE))
    pipeline = Kubectl.with_token(setup.plane, credential.token, tmp_path)
    assert pipeline.run("get", "pods", "-n", setup.web).returncode == 0
    admin = Kubectl(binary=setup.plane.kubectl_path,
                    kubeconfig=setup.plane.admin_kubeconfig_path)
    assert admin.run("get", "secrets", "-n", setup.web).returncode == 0

    credential_id = f"JTI={credential.token_id}"
    assert poll(lambda: find(setup.out, credential_id=credential_id, verb="list") is not None
                and find(setup.out, username="admin", resource="secrets") is not None,
                ARRIVES_WITHIN, 0.2), "the sink never wrote the events"

    brokered = find(setup.out, credential_id=credential_id, verb="list")
    assert brokered is not None
    assert (brokered["joined"], brokered["resource"], brokered["namespace"]) == (
        True, "pods", setup.web)
    assert brokered["username"] == f"system:serviceaccount:{setup.web}:deployer"
    assert brokered["session"]["session_id"] == credential.session_id
    assert brokered["session"]["mapping"] == "web-deploy"
    assert brokered["session"]["subject"].startswith("repo:octo-org/octo-repo")
    assert brokered["bypass"] == [] and brokered["privileged"] == ""

    bypass = find(setup.out, username="admin", resource="secrets")
    assert bypass is not None
    assert (bypass["joined"], bypass["session"], bypass["privileged"]) == (
        False, None, "secret-read")
    assert bypass["credential_id"].startswith("X509SHA256=")
    assert bypass["bypass"] == ["client-certificate"]

    minted = find(setup.out, username=EXCHANGER_USER, subresource="token")
    assert minted is not None and minted["issued_credential_id"] == credential_id
    assert minted["bypass"] == []  # the exchanger is no finding

    in_file = {e["auditID"] for e in audit_events(setup.plane.audit_log_path)}
    assert {brokered["audit_id"], bypass["audit_id"], minted["audit_id"]} <= in_file

    text = metrics(setup)
    assert 'kubegate_audit_sink_events_total{joined="true"}' in text
    assert _value(text, 'kubegate_audit_sink_events_total{joined="true"}') >= 1
    assert _value(text, 'kubegate_audit_bypass_events_total{kind="client-certificate"}') >= 1
    assert _value(text, "kubegate_audit_sink_write_failures_total") == 0


def _value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
