"""Candidates from RBAC objects: which bindings might grant a permission (rbac/v1's matching,
aggregated ClusterRoles, a binding's reach), and what makes a role wild or powerful."""

from __future__ import annotations

from typing import Any

import pytest

from exchanger.scan.candidates import (
    Permission,
    RbacObjects,
    bindings,
    candidates,
    cluster_role_rules,
    powerful_permission,
    rule_grants,
    wildcard_permission,
)
from exchanger.scan.subjects import Subject

TOKEN = Permission(verb="create", resource="serviceaccounts/token", name="deployer")


def rule(verbs: list[str], resources: list[str], groups: list[str] | None = None,
         names: list[str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"verbs": verbs, "resources": resources,
                             "apiGroups": groups if groups is not None else [""]}
    if names is not None:
        found["resourceNames"] = names
    return found


@pytest.mark.parametrize(("policy", "permission", "expected"), [
    (rule(["create"], ["serviceaccounts/token"]), TOKEN, True),
    (rule(["*"], ["serviceaccounts/token"]), TOKEN, True),
    (rule(["create"], ["*"]), TOKEN, True),
    (rule(["create"], ["*/token"]), TOKEN, True),
    (rule(["create"], ["serviceaccounts"]), TOKEN, False),  # the subresource is its own
    (rule(["get"], ["serviceaccounts/token"]), TOKEN, False),
    (rule(["create"], ["serviceaccounts/token"], ["apps"]), TOKEN, False),
    (rule(["create"], ["serviceaccounts/token"], ["*"]), TOKEN, True),
    (rule(["create"], ["serviceaccounts/token"], names=["deployer"]), TOKEN, True),
    (rule(["create"], ["serviceaccounts/token"], names=["other"]), TOKEN, False),
    (rule(["create"], ["pods"], names=["x"]), Permission(verb="create", resource="pods"),
     False),  # resourceNames never match a request naming nothing
    ({"verbs": ["*"], "nonResourceURLs": ["*"]}, TOKEN, False),
])
def test_a_rule_grants_a_permission_as_rbac_v1_matches_it(
        policy: dict[str, Any], permission: Permission, expected: bool) -> None:
    assert rule_grants(policy, permission) is expected


def cluster_role(name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None,
                 selectors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    role: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}, "rules": rules}
    if selectors is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": selectors}
    return role


def test_an_aggregated_cluster_role_holds_the_rules_of_the_roles_it_selects() -> None:
    pods = rule(["create"], ["pods"])
    secrets = rule(["get"], ["secrets"])
    roles = [
        cluster_role("edit", [], selectors=[{"matchLabels": {"aggregate-to-edit": "true"}}]),
        cluster_role("to-edit", [pods], labels={"aggregate-to-edit": "true"}),
        cluster_role("not-selected", [secrets], labels={"aggregate-to-edit": "false"}),
        cluster_role("by-expression", [secrets],
                     labels={"tier": "a"}),
        cluster_role("expr", [], selectors=[{"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]}]}]),
    ]
    resolved = cluster_role_rules(roles)
    assert resolved["edit"] == (pods,)
    assert resolved["expr"] == (secrets,)
    assert resolved["to-edit"] == (pods,)


def binding(kind: str, name: str, role_kind: str, role: str, subjects: list[dict[str, str]],
            namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": kind, "metadata": meta, "roleRef": {"kind": role_kind, "name": role},
            "subjects": subjects}


OBJECTS = RbacObjects(
    cluster_roles=[cluster_role("minter", [rule(["create"], ["serviceaccounts/token"])])],
    roles=[{"metadata": {"name": "local", "namespace": "web"},
            "rules": [rule(["create"], ["serviceaccounts/token"], names=["deployer"])]}],
    cluster_role_bindings=[binding("ClusterRoleBinding", "everywhere", "ClusterRole", "minter",
                                   [{"kind": "User", "name": "alice"}])],
    role_bindings=[
        binding("RoleBinding", "here", "Role", "local",
                [{"kind": "ServiceAccount", "name": "bot"}], namespace="web"),
        binding("RoleBinding", "there", "ClusterRole", "minter",
                [{"kind": "Group", "name": "ops"}], namespace="other"),
        binding("RoleBinding", "dangling", "Role", "missing",
                [{"kind": "User", "name": "bob"}], namespace="web"),
    ])


def test_a_role_binding_reaches_its_namespace_and_a_cluster_role_binding_every_one() -> None:
    found = {(str(s), b.ref.name) for s, b in candidates(bindings(OBJECTS), TOKEN, "web")}
    assert found == {("User alice", "everywhere"), ("ServiceAccount web/bot", "here")}
    cluster_wide = {str(s) for s, _ in candidates(bindings(OBJECTS), TOKEN, None)}
    assert cluster_wide == {"User alice"}


def test_a_service_account_subject_without_namespace_is_in_its_binding_namespace() -> None:
    here = next(b for b in bindings(OBJECTS) if b.ref.name == "here")
    assert here.subjects == (Subject.service_account("web", "bot"),)
    assert here.role.namespace == "web"


def test_a_binding_to_a_missing_role_grants_nothing() -> None:
    dangling = next(b for b in bindings(OBJECTS) if b.ref.name == "dangling")
    assert dangling.rules == ()


def test_wildcards_are_asked_as_wildcards_so_only_a_wildcard_rule_confirms_them() -> None:
    assert wildcard_permission([rule(["*"], ["*"], ["*"])]) == Permission(
        verb="*", resource="*", group="*")
    assert wildcard_permission([rule(["get"], ["pods"]), rule(["*"], ["configmaps"])]) == \
        Permission(verb="*", resource="configmaps")
    assert wildcard_permission([rule(["get", "list"], ["pods"])]) is None
    assert wildcard_permission([{"verbs": ["*"], "nonResourceURLs": ["*"]}]) is None


@pytest.mark.parametrize(("rules", "expected"), [
    ([rule(["get"], ["secrets"])], "get secrets"),
    ([rule(["create"], ["pods"])], "create pods"),
    ([rule(["bind"], ["clusterroles"], ["rbac.authorization.k8s.io"])],
     "bind clusterroles.rbac.authorization.k8s.io"),
    ([rule(["impersonate"], ["users"])], "impersonate users"),
    ([rule(["get", "list", "watch"], ["pods", "configmaps"])], None),
])
def test_a_powerful_role_reads_secrets_runs_pods_grants_roles_or_impersonates(
        rules: list[dict[str, Any]], expected: str | None) -> None:
    found = powerful_permission(rules)
    assert (str(found) if found else None) == expected
