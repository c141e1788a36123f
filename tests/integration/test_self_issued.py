"""Self-issued mode against the real kube-apiserver: kubegate signs its own ES256 tokens,
the apiserver trusts them through its structured authentication configuration, RBAC on the
mapped groups decides, and the apiserver's audit log joins each request to its exchange."""

from __future__ import annotations

import json
from collections.abc import Callable

import jwt

from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import StartExchanger, self_issued_entry, trust_self_issued
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitLabCIIssuer
from tests.support.wait import poll


def test_self_issued_token_is_accepted_by_the_apiserver_and_audited_by_jti(
    cluster: Cluster, control_plane: ControlPlane, gitlab_issuer: GitLabCIIssuer,
    start_test_exchanger: StartExchanger, kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    web = cluster.create_namespace("web")
    cluster.create_role(web, "pod-reader", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    cluster.bind_role(web, "pod-reader", group="kubegate:deployers")
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: gitlab-web}}
spec:
  issuer: gitlab
  claims:
  - {{claim: project_id, equals: "4711"}}
  - {{claim: ref_protected, equals: "true"}}
  grant: {{cluster: test, namespace: {web}, user: "ci:my-group/web",
          groups: ["kubegate:deployers"], maxLifetime: 10m}}
"""
    self_issued = self_issued_entry()
    exchanger = start_test_exchanger(
        issuers=[{"name": "gitlab", "url": gitlab_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(gitlab_issuer.ca_path)}],
        clusters=[{"name": "test", "server": control_plane.url,
                   "caFile": str(control_plane.ca_path), "backend": "selfIssued"}],
        mappings=mappings, self_issued=self_issued)
    trust_self_issued(control_plane, exchanger)

    subject = gitlab_issuer.mint(project_path="my-group/web", project_id="4711",
                                 audience="kubegate")
    with exchanger.client() as client:
        credential = client.exchange(subject)
    claims = jwt.decode(credential.token, options={"verify_signature": False})
    assert claims["iss"] == self_issued["issuerUrl"]
    assert claims["sub"] == "ci:my-group/web"
    assert claims["groups"] == ["kubegate:deployers"]
    assert jwt.get_unverified_header(credential.token)["alg"] == "ES256"

    kubectl = kubectl_with_token(credential.token)
    # the apiserver reloads its authentication config and then fetches kubegate's JWKS
    assert poll(lambda: kubectl.run("get", "pods", "-n", web).returncode == 0, 90), \
        kubectl.run("get", "pods", "-n", web).stderr
    whoami = json.loads(kubectl.run("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "ci:my-group/web"
    assert "kubegate:deployers" in whoami["status"]["userInfo"]["groups"]
    assert not kubectl.can_i("get", "secrets", web)
    assert not kubectl.can_i("list", "pods", "default")

    def joined() -> bool:
        return any(
            e.get("user", {}).get("extra", {}).get("authentication.kubernetes.io/credential-id")
            == [f"JTI={credential.token_id}"] and e.get("objectRef", {}).get("namespace") == web
            for e in audit_events(control_plane.audit_log_path))

    assert poll(joined, 15)
    record = exchanger.decisions()[-1]
    assert (record["decision"], record["token_id"], record["grant"]["user"]) == (
        "allow", credential.token_id, "ci:my-group/web")
