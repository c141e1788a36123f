"""`kubegate scan` against the real kube-apiserver: every misconfiguration it looks for is
seeded in namespaces of this test's own, found exactly once with its severity, and gone once
README's fixes are applied; SARIF validates against the OASIS schema; a kubeconfig that may
not list RBAC gets an incomplete result (exit 3), never a clean one.

The control plane is shared by the session, so assertions are scoped to the objects and
subjects seeded here (their names carry this module's unique suffix).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client as k8s
import pytest

from tests.support.kube import Cluster, Kubectl

KUBEGATE = str(Path(sys.executable).parent / "kubegate")
SCHEMA = Path(__file__).parents[1] / "data" / "sarif-schema-2.1.0.json"
RBAC = "rbac.authorization.k8s.io"
CERTIFICATES = "certificates.k8s.io"


@dataclass(frozen=True, kw_only=True)
class Seeded:
    suffix: str
    web: str  # where mappings grant service accounts (a pipeline namespace)
    ops: str  # where the people mapping grants (a pipeline namespace)
    tools: str  # where the seeded offenders live
    mappings: Path


def _rule(verbs: list[str], resources: list[str], group: str = "",
          names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [group], "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


def _subject(kind: str, name: str, namespace: str = "") -> dict[str, str]:
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"kind": kind, "name": name, "apiGroup": RBAC}


def _cluster_grant(cluster: Cluster, name: str, rules: list[dict[str, Any]] | None,
                   subject: dict[str, str], role: str = "") -> None:
    """A ClusterRole `name` (unless `role` names an existing one) bound cluster-wide."""
    if rules is not None:
        cluster.rbac.create_cluster_role({"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole",
                                          "metadata": {"name": name}, "rules": rules})
    cluster.rbac.create_cluster_role_binding({
        "apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role or name},
        "subjects": [subject]})


def _namespace_grant(cluster: Cluster, namespace: str, name: str, rules: list[dict[str, Any]],
                     subject: dict[str, str]) -> None:
    cluster.create_role(namespace, name, rules)
    cluster.rbac.create_namespaced_role_binding(namespace, {
        "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name}, "subjects": [subject]})


def _legacy_token(cluster: Cluster, namespace: str, name: str, account: str,
                  last_used: str | None) -> None:
    labels = {"kubernetes.io/legacy-token-last-used": last_used} if last_used else None
    cluster.core.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(
            name=name, labels=labels,
            annotations={"kubernetes.io/service-account.name": account}),
        type="kubernetes.io/service-account-token"))


MAPPINGS = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: deploy-{s}}}
spec:
  issuer: github
  claims: [{{claim: repository_id, equals: "1"}}]
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer}}
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: broad-{s}}}
spec:
  issuer: github
  claims: [{{claim: repository_id, equals: "2"}}]
  grant: {{cluster: test, namespace: {web}, serviceAccount: broad}}
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: reader-{s}}}
spec:
  issuer: github
  claims: [{{claim: repository_id, equals: "3"}}]
  grant: {{cluster: test, namespace: {web}, serviceAccount: reader}}
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: people-{s}}}
spec:
  issuer: corp
  claims: [{{claim: groups, contains: sre}}]
  grant:
    cluster: test
    namespace: {ops}
    user: {{claim: email, prefix: "oidc:"}}
    groups: ["team-{s}"]
"""


def _seed(cluster: Cluster, tmp_path: Path) -> Seeded:
    s = uuid.uuid4().hex[:6]
    web, ops, tools = (cluster.create_namespace(f"scan-{what}-{s}")
                       for what in ("web", "ops", "tools"))
    for name in ("deployer", "broad", "reader", "legacy"):
        cluster.create_service_account(web, name)
    for name in ("minter", "builder", "binder", "hooker", "god", "wild", "nobody"):
        cluster.create_service_account(tools, name)
    sa = {name: _subject("ServiceAccount", name, tools)
          for name in ("minter", "builder", "binder", "hooker", "god", "wild")}
    # KG001: legacy tokens, one used, one never
    _legacy_token(cluster, web, "legacy-used", "legacy", "2025-01-15")
    _legacy_token(cluster, web, "legacy-unused", "legacy", None)
    # KG002: mints deployer's tokens; KG003: impersonates deployer, and the people's group
    _namespace_grant(cluster, web, "mint", [_rule(["create"], ["serviceaccounts/token"],
                                                  names=["deployer"])], sa["minter"])
    _namespace_grant(cluster, web, "impersonate",
                     [_rule(["impersonate"], ["serviceaccounts"], names=["deployer"])],
                     _subject("User", f"imp-{s}"))
    _cluster_grant(cluster, f"scan-impersonate-group-{s}",
                   [_rule(["impersonate"], ["groups"], names=[f"team-{s}"])],
                   _subject("User", f"impg-{s}"))
    # KG004: creates workloads where deployer lives
    _namespace_grant(cluster, web, "build", [_rule(["create"], ["deployments", "jobs"], "apps"),
                                             _rule(["create", "get"], ["pods"])], sa["builder"])
    # KG005: approves client certificates
    _cluster_grant(cluster, f"scan-csr-{s}", [
        _rule(["update"], ["certificatesigningrequests/approval"], CERTIFICATES),
        _rule(["approve"], ["signers"], CERTIFICATES, ["kubernetes.io/kube-apiserver-client"]),
    ], _subject("User", f"csr-{s}"))
    # KG006: binds and escalates; KG007: writes webhooks
    _cluster_grant(cluster, f"scan-bind-{s}", [_rule(["bind", "escalate"], ["clusterroles"],
                                                     RBAC)], sa["binder"])
    _cluster_grant(cluster, f"scan-hook-{s}", [_rule(
        ["create", "patch"], ["validatingwebhookconfigurations"],
        "admissionregistration.k8s.io")], sa["hooker"])
    # KG008: cluster-admin and a wildcard role for service accounts
    _cluster_grant(cluster, f"scan-god-{s}", None, sa["god"], role="cluster-admin")
    _namespace_grant(cluster, tools, "wild", [_rule(["*"], ["configmaps"])], sa["wild"])
    # KG009: a person with cluster-admin, a group reading Secrets in web
    _cluster_grant(cluster, f"scan-alice-{s}", None, _subject("User", f"alice-{s}"),
                   role="cluster-admin")
    _namespace_grant(cluster, web, "ops-secrets", [_rule(["get"], ["secrets"])],
                     _subject("Group", f"ops-{s}"))
    # KG010/KG011: a pipeline pod (and its account) automounting a token
    cluster.core.create_namespaced_pod(web, _pod("runner", automount=None))
    # KG012: broad writes cluster-wide; KG013: reader reads Secrets in web, the people's
    # group reads them everywhere
    _cluster_grant(cluster, f"scan-broad-{s}", [_rule(["create"], ["pods"])],
                   _subject("ServiceAccount", "broad", web))
    _namespace_grant(cluster, web, "reader", [_rule(["get", "list"], ["secrets"])],
                     _subject("ServiceAccount", "reader", web))
    _cluster_grant(cluster, f"scan-team-{s}", [_rule(["list"], ["secrets"])],
                   _subject("Group", f"team-{s}"))
    # deploy/examples' exchanger RBAC for web: expected, never a finding
    _namespace_grant(cluster, web, "kubegate-exchanger", [
        _rule(["create"], ["serviceaccounts/token"], names=["deployer", "broad", "reader"]),
        _rule(["create", "delete", "list"], ["secrets"])],
        _subject("ServiceAccount", "kubegate-exchanger", "kubegate"))
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(MAPPINGS.format(s=s, web=web, ops=ops))
    return Seeded(suffix=s, web=web, ops=ops, tools=tools, mappings=mappings)


def _pod(name: str, *, automount: bool | None) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1PodSpec(
        service_account_name="deployer", automount_service_account_token=automount,
        containers=[k8s.V1Container(name="job", image="example.invalid/job:1")]))


def _fix(cluster: Cluster, seeded: Seeded) -> None:
    """README's fixes: delete legacy tokens and offending bindings, turn automounting off."""
    s, web, tools = seeded.suffix, seeded.web, seeded.tools
    for name in ("legacy-used", "legacy-unused"):
        cluster.core.delete_namespaced_secret(name, web)
    for namespace, name in ((web, "mint"), (web, "impersonate"), (web, "build"),
                            (tools, "wild"), (web, "ops-secrets"), (web, "reader")):
        cluster.rbac.delete_namespaced_role_binding(name, namespace)
    for what in ("impersonate-group", "csr", "bind", "hook", "god", "alice", "broad", "team"):
        cluster.rbac.delete_cluster_role_binding(f"scan-{what}-{s}")
    cluster.core.delete_namespaced_pod("runner", web, grace_period_seconds=0)
    cluster.core.create_namespaced_pod(web, _pod("runner-fixed", automount=False))
    for name in ("deployer", "broad", "reader", "legacy"):
        cluster.core.patch_namespaced_service_account(
            name, web, {"automountServiceAccountToken": False})


def _scan(kubeconfig: Path, mappings: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [KUBEGATE, "scan", "--kubeconfig", str(kubeconfig), "--mappings", str(mappings),
         *args], capture_output=True, text=True, timeout=300, check=False)


def _mine(seeded: Seeded, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings about this test's objects and subjects."""
    return [f for f in findings if seeded.suffix in f["subject"]
            or (not f["subject"] and seeded.suffix in json.dumps(f["objects"]))]


@pytest.fixture(scope="module")
def seeded(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    yield _seed(cluster, tmp_path_factory.mktemp("scan"))


EXPECTED = [  # (rule, severity, subject, first object)
    ("KG001", "high", "ServiceAccount {web}/legacy", "Secret/{web}/legacy-used"),
    ("KG001", "high", "ServiceAccount {web}/legacy", "Secret/{web}/legacy-unused"),
    ("KG002", "high", "ServiceAccount {tools}/minter", "ServiceAccount/{web}/deployer"),
    ("KG003", "high", "User imp-{s}", "ServiceAccount/{web}/deployer"),
    ("KG003", "high", "User impg-{s}", "Group/team-{s}"),
    ("KG004", "medium", "ServiceAccount {tools}/builder", "Namespace/{web}"),
    ("KG005", "high", "User csr-{s}", "ClusterRoleBinding/scan-csr-{s}"),
    ("KG006", "high", "ServiceAccount {tools}/binder", "ClusterRoleBinding/scan-bind-{s}"),
    ("KG007", "high", "ServiceAccount {tools}/hooker", "ClusterRoleBinding/scan-hook-{s}"),
    ("KG008", "high", "ServiceAccount {tools}/god", "ClusterRoleBinding/scan-god-{s}"),
    ("KG008", "medium", "ServiceAccount {tools}/wild", "RoleBinding/{tools}/wild"),
    ("KG009", "high", "User alice-{s}", "ClusterRoleBinding/scan-alice-{s}"),
    ("KG009", "medium", "Group ops-{s}", "RoleBinding/{web}/ops-secrets"),
    ("KG010", "medium", "", "Pod/{web}/runner"),
    ("KG011", "low", "", "ServiceAccount/{web}/deployer"),
    ("KG012", "high", "ServiceAccount {web}/broad", "TrustMapping/broad-{s}"),
    ("KG013", "medium", "ServiceAccount {web}/reader", "TrustMapping/reader-{s}"),
    ("KG013", "high", "a per-person user (from claim email) with groups team-{s}",
     "TrustMapping/people-{s}"),
]


def _ref(obj: dict[str, str]) -> str:
    where = f"{obj['namespace']}/" if obj["namespace"] else ""
    return f"{obj['kind']}/{where}{obj['name']}"


def test_every_seeded_misconfiguration_is_found_once_then_gone_after_the_fixes(
    cluster: Cluster, seeded: Seeded,
) -> None:
    admin = cluster.plane.admin_kubeconfig_path
    result = _scan(admin, seeded.mappings, "-o", "json", "--fail-on", "high")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["could_not_see"] == [] and report["complete"] is True
    mine = _mine(seeded, report["findings"])
    names = {"web": seeded.web, "tools": seeded.tools, "s": seeded.suffix}
    for rule, severity, subject, first in EXPECTED:
        subject, first = subject.format(**names), first.format(**names)
        matching = [f for f in mine if f["rule"] == rule and f["subject"] == subject
                    and _ref(f["object"]) == first]
        assert len(matching) == 1, (rule, subject, first, [
            (f["rule"], f["subject"], _ref(f["object"])) for f in mine])
        assert matching[0]["severity"] == severity, matching[0]
    legacy = [f["message"] for f in mine if f["rule"] == "KG001"]
    assert any("last used 2025-01-15" in m for m in legacy)
    assert any("never used" in m for m in legacy)
    people = next(f for f in mine if f["rule"] == "KG013" and "per-person" in f["subject"])
    assert people["file"] == str(seeded.mappings)
    assert not [f for f in report["findings"] if "kubegate-exchanger" in f["subject"]]

    _fix(cluster, seeded)
    after = _scan(admin, seeded.mappings, "-o", "json", "--fail-on", "none")
    assert after.returncode == 0, after.stderr
    left = _mine(seeded, json.loads(after.stdout)["findings"])
    assert [f for f in left if f["severity"] != "low"] == []


def test_sarif_output_validates_against_the_sarif_2_1_0_schema(
    cluster: Cluster, seeded: Seeded,
) -> None:
    result = _scan(cluster.plane.admin_kubeconfig_path, seeded.mappings, "-o", "sarif",
                   "--fail-on", "none")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(document)
    run = document["runs"][0]
    assert run["tool"]["driver"]["name"] == "kubegate"
    assert run["invocations"][0]["executionSuccessful"] is True
    for rule in run["tool"]["driver"]["rules"]:
        float(rule["properties"]["security-severity"])


CONFIG = """\
listen: 127.0.0.1:0
plaintext: true
stateDir: {folder}/state
mappings: {folder}/no-mappings
issuers:
- {{name: github, url: https://token.actions.githubusercontent.com, audiences: [kubegate]}}
- {{name: corp, url: https://corp.example.com, audiences: [kubegate]}}
clusters:
- name: test
  server: {server}
  caFile: {ca}
  credentials: {{tokenFile: {token}}}
"""


def test_the_exchanger_is_whom_the_configs_credentials_authenticate_as(
    cluster: Cluster, seeded: Seeded, tmp_path: Path,
) -> None:
    cluster.create_service_account(seeded.tools, "exchanger")
    _namespace_grant(cluster, seeded.web, "exchanger-mint", [_rule(
        ["create"], ["serviceaccounts/token"], names=["deployer"])],
        _subject("ServiceAccount", "exchanger", seeded.tools))
    token = tmp_path / "token"
    token.write_text(cluster.request_token(seeded.tools, "exchanger").token)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(folder=tmp_path, server=cluster.plane.url,
                                    ca=cluster.plane.ca_path, token=token))
    admin = cluster.plane.admin_kubeconfig_path

    def minters(*args: str) -> set[str]:
        result = _scan(admin, seeded.mappings, "-o", "json", "--fail-on", "none", *args)
        assert result.returncode == 0, result.stderr
        return {f["subject"] for f in json.loads(result.stdout)["findings"]
                if f["rule"] == "KG002" and seeded.web in _ref(f["object"])}

    # other tests share the cluster and may bind cluster-admin elsewhere: look at these two
    ours = {f"ServiceAccount {seeded.tools}/exchanger",
            "ServiceAccount kubegate/kubegate-exchanger"}
    assert minters() & ours == {f"ServiceAccount {seeded.tools}/exchanger"}
    # with the config, its token's service account is the exchanger, and deploy/base's is not
    assert minters("--config", str(config)) & ours == {
        "ServiceAccount kubegate/kubegate-exchanger"}
    cluster.rbac.delete_namespaced_role_binding("exchanger-mint", seeded.web)


def test_a_kubeconfig_that_may_not_list_rbac_gets_an_incomplete_result_never_a_clean_one(
    cluster: Cluster, seeded: Seeded, tmp_path: Path,
) -> None:
    token = cluster.request_token(seeded.tools, "nobody").token
    kubeconfig = Kubectl.with_token(cluster.plane, token, tmp_path).kubeconfig
    result = _scan(kubeconfig, seeded.mappings, "-o", "json", "--fail-on", "none")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["complete"] is False
    unseen = {entry["resource"]: entry["reason"] for entry in report["could_not_see"]}
    assert unseen["clusterroles"].startswith("403 Forbidden")
    assert "subjectaccessreviews.authorization.k8s.io (create)" in unseen
    assert "INCOMPLETE" in result.stderr

    table = _scan(kubeconfig, seeded.mappings, "--fail-on", "none")
    assert table.returncode == 3
    assert "could not see: clusterroles: 403 Forbidden" in table.stdout
    assert "INCOMPLETE" in table.stdout
