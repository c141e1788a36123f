"""The scan through its ports, with a fake cluster and a fake SubjectAccessReview: a
candidate is a finding only when the review allows it, the exchanger and system components
are never findings, and what could not be seen is reported, never an empty result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchanger.scan.candidates import Permission
from exchanger.scan.checks import automounting, legacy_tokens, scan
from exchanger.scan.cluster import ListError
from exchanger.scan.review import ReviewError
from exchanger.scan.subjects import DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT, Exchanger
from exchanger.scan.targets import Target, load_targets

REPO = Path(__file__).resolve().parents[3]
WEB = Target(mapping="deploy", file="m.yaml", namespace="web", service_account="deployer")
EXCHANGER_USER = f"system:serviceaccount:{DEPLOY_NAMESPACE}:{DEPLOY_SERVICE_ACCOUNT}"


class FakeReader:
    def __init__(self, objects: dict[str, list[dict[str, Any]]],
                 refused: frozenset[str] = frozenset()) -> None:
        self.objects, self.refused = objects, refused

    def items(self, resource: str, namespace: str = "") -> list[dict[str, Any]]:
        if resource in self.refused:
            raise ListError(resource, namespace, "403 Forbidden: no")
        return [i for i in self.objects.get(resource, [])
                if not namespace or i["metadata"].get("namespace") == namespace]


class FakeReviewer:
    """Allows exactly the (user or first group, verb, resource, namespace) it was given."""

    def __init__(self, allowed: set[tuple[str, str, str, str]], fail: bool = False) -> None:
        self.allowed_set, self.fail = allowed, fail
        self.asked: list[tuple[str, str, str, str]] = []

    def allowed(self, *, user: str, groups: tuple[str, ...], permission: Permission,
                namespace: str) -> bool:
        if self.fail:
            raise ReviewError("403 Forbidden: cannot create subjectaccessreviews")
        key = (user or groups[0], permission.verb, permission.resource, namespace)
        self.asked.append(key)
        return key in self.allowed_set


def role_binding(name: str, namespace: str, role: str,
                 subjects: list[dict[str, str]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "roleRef": {"kind": "Role", "name": role}, "subjects": subjects}


MINT = {"metadata": {"name": "mint", "namespace": "web"},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                   "verbs": ["create"]}]}
SUBJECTS = [
    {"kind": "User", "name": "mallory"},
    {"kind": "ServiceAccount", "name": DEPLOY_SERVICE_ACCOUNT, "namespace": DEPLOY_NAMESPACE},
    {"kind": "Group", "name": "system:masters"},
    {"kind": "ServiceAccount", "name": "token-controller", "namespace": "kube-system"},
    {"kind": "User", "name": "eve"},
]


def cluster(**extra: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {"roles": [MINT], "rolebindings": [role_binding("mint", "web", "mint", SUBJECTS)],
            **extra}


def everyone_can_mint() -> set[tuple[str, str, str, str]]:
    users = ["mallory", EXCHANGER_USER, "system:masters",
             "system:serviceaccount:kube-system:token-controller"]
    return {(u, "create", "serviceaccounts/token", "web") for u in users}


def test_a_candidate_is_a_finding_only_when_the_review_allows_it() -> None:
    reviewer = FakeReviewer(everyone_can_mint())  # eve is bound, but the review says no
    result = scan(reader=FakeReader(cluster()), reviewer=reviewer, targets=[WEB],
                  exchanger=Exchanger.deployed())
    mint = [f for f in result.findings if f.rule == "KG002"]
    assert [f.subject for f in mint] == ["User mallory"]
    assert ("eve", "create", "serviceaccounts/token", "web") in reviewer.asked
    assert str(mint[0].objects[0]) == "ServiceAccount/web/deployer"
    assert "RoleBinding/web/mint" in [str(o) for o in mint[0].objects]
    assert result.complete


def test_the_exchanger_and_system_components_are_never_asked_about() -> None:
    reviewer = FakeReviewer(everyone_can_mint())
    scan(reader=FakeReader(cluster()), reviewer=reviewer, targets=[WEB],
         exchanger=Exchanger.deployed())
    asked = {who for who, *_ in reviewer.asked}
    assert EXCHANGER_USER not in asked
    assert "system:masters" not in asked
    assert "system:serviceaccount:kube-system:token-controller" not in asked


def test_the_exchanger_is_whom_the_config_names_when_it_names_one() -> None:
    reviewer = FakeReviewer(everyone_can_mint())
    result = scan(reader=FakeReader(cluster()), reviewer=reviewer, targets=[WEB],
                  exchanger=Exchanger(users=frozenset({"mallory"})))
    assert {f.subject for f in result.findings if f.rule == "KG002"} == {
        f"ServiceAccount {DEPLOY_NAMESPACE}/{DEPLOY_SERVICE_ACCOUNT}"}


def test_a_refused_list_is_named_and_the_rest_is_still_scanned() -> None:
    secret = {"metadata": {"name": "old", "namespace": "web"}}
    result = scan(reader=FakeReader(cluster(secrets=[secret]),
                                    refused=frozenset({"clusterroles"})),
                  reviewer=FakeReviewer(everyone_can_mint()), targets=[WEB],
                  exchanger=Exchanger.deployed())
    assert not result.complete
    assert [str(c) for c in result.could_not_see] == ["clusterroles: 403 Forbidden: no"]
    assert {f.rule for f in result.findings} >= {"KG001", "KG002"}


def test_a_review_that_cannot_be_made_makes_the_scan_incomplete() -> None:
    result = scan(reader=FakeReader(cluster()), reviewer=FakeReviewer(set(), fail=True),
                  targets=[WEB], exchanger=Exchanger.deployed())
    assert not result.complete
    assert result.could_not_see[0].resource.startswith("subjectaccessreviews")
    assert len(result.could_not_see) == 1
    assert [f for f in result.findings if f.rule == "KG002"] == []


def test_legacy_tokens_say_when_they_were_last_used_or_that_they_never_were() -> None:
    found = legacy_tokens([
        {"metadata": {"name": "a", "namespace": "web",
                      "labels": {"kubernetes.io/legacy-token-last-used": "2025-01-15"},
                      "annotations": {"kubernetes.io/service-account.name": "ci"}}},
        {"metadata": {"name": "b", "namespace": "web"}},
        {"metadata": {"name": "c", "namespace": "web", "labels": {
            "kubernetes.io/legacy-token-invalid-since": "2025-03-01"}}},
    ])
    assert "last used 2025-01-15" in found[0].message
    assert [str(o) for o in found[0].objects] == ["Secret/web/a", "ServiceAccount/web/ci"]
    assert "never used" in found[1].message
    assert [f.severity.value for f in found] == ["high", "high", "low"]


def test_a_pod_automounts_unless_it_or_its_account_says_false() -> None:
    accounts = [{"metadata": {"name": "quiet", "namespace": "web"},
                 "automountServiceAccountToken": False},
                {"metadata": {"name": "loud", "namespace": "web"}}]

    def pod(name: str, account: str, automount: bool | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"serviceAccountName": account}
        if automount is not None:
            spec["automountServiceAccountToken"] = automount
        return {"metadata": {"name": name, "namespace": "web"}, "spec": spec}

    found = automounting(accounts, [pod("p1", "quiet"), pod("p2", "loud"),
                                    pod("p3", "loud", automount=False),
                                    pod("p4", "quiet", automount=True)])
    assert sorted((f.rule, str(f.objects[0])) for f in found) == [
        ("KG010", "Pod/web/p2"), ("KG010", "Pod/web/p4"),
        ("KG011", "ServiceAccount/web/loud")]


def test_mapping_findings_ask_about_the_granted_identity_and_name_the_file(
        tmp_path: Path) -> None:
    mappings = tmp_path / "people.yaml"
    mappings.write_text(
        "apiVersion: kubegate.io/v1alpha1\nkind: TrustMapping\nmetadata: {name: people}\n"
        "spec:\n  issuer: corp\n  claims: [{claim: groups, contains: sre}]\n"
        "  grant: {cluster: c, namespace: ops, user: {claim: email, prefix: 'oidc:'},"
        " groups: [team]}\n")
    targets, problems = load_targets(mappings)
    assert problems == []
    reviewer = FakeReviewer({("team", "list", "secrets", "")})
    result = scan(reader=FakeReader({}), reviewer=reviewer, targets=targets,
                  exchanger=Exchanger.deployed())
    read = [f for f in result.findings if f.rule == "KG013"]
    assert len(read) == 1 and read[0].severity.value == "high"
    assert read[0].file == str(mappings)
    assert "per person" in read[0].message
    assert ("team", "impersonate", "users", "") not in reviewer.asked  # no one is bound


def test_deploy_base_creates_the_service_account_the_scan_takes_for_the_exchanger() -> None:
    import yaml

    account = yaml.safe_load((REPO / "deploy/base/serviceaccount.yaml").read_text())
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == (
        DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT)
