"""Candidates: which bindings might give which subjects a permission, from listed RBAC objects.

This module only narrows the questions; it decides nothing. Every candidate is confirmed by a
SubjectAccessReview (`review.py`) before it becomes a finding, so a rule read too broadly
here costs a review, never a false finding, and RBAC's own evaluation stays the API server's.

Rules of this module:
- pure: RBAC objects in (as the API serves them: camelCase dicts), candidates out;
- matching follows rbac/v1's helpers: `*` matches any verb, group or resource, `*/sub` any
  resource's subresource `sub`, and a rule with resourceNames only a request naming one;
- a ClusterRole with an aggregationRule holds its own rules plus those of every ClusterRole
  its selectors match (what the controller manager would fill in);
- a ClusterRoleBinding reaches every namespace, a RoleBinding its own only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from exchanger.scan.model import ObjectRef
from exchanger.scan.subjects import Subject

Rule = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Permission:
    """One request: `resource` may be `resource/subresource`; `name` "" for any object."""

    verb: str
    resource: str
    group: str = ""
    name: str = ""

    @property
    def base_resource(self) -> str:
        return self.resource.partition("/")[0]

    @property
    def subresource(self) -> str:
        return self.resource.partition("/")[2]

    def __str__(self) -> str:
        group = f".{self.group}" if self.group else ""
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {self.base_resource}{group}" + (
            f"/{self.subresource}" if self.subresource else "") + named


@dataclass(frozen=True, kw_only=True)
class Binding:
    """A (Cluster)RoleBinding with its role's rules resolved. `namespace` "" = cluster-wide."""

    ref: ObjectRef
    namespace: str
    role: ObjectRef
    rules: tuple[Rule, ...]
    subjects: tuple[Subject, ...]


@dataclass(frozen=True, kw_only=True)
class RbacObjects:
    cluster_roles: Sequence[Mapping[str, Any]] = ()
    roles: Sequence[Mapping[str, Any]] = ()
    cluster_role_bindings: Sequence[Mapping[str, Any]] = ()
    role_bindings: Sequence[Mapping[str, Any]] = field(default=())


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def rule_grants(rule: Rule, permission: Permission) -> bool:
    """Whether one PolicyRule covers `permission` (rbac/v1's RuleAllows)."""
    verbs, groups = _names(rule.get("verbs")), _names(rule.get("apiGroups"))
    resources, names = _names(rule.get("resources")), _names(rule.get("resourceNames"))
    if "*" not in verbs and permission.verb not in verbs:
        return False
    if "*" not in groups and permission.group not in groups:
        return False
    if not any(r in ("*", permission.resource) or (
            permission.subresource and r == f"*/{permission.subresource}") for r in resources):
        return False
    return not names or permission.name in names


def grants(rules: Iterable[Rule], permission: Permission) -> bool:
    return any(rule_grants(rule, permission) for rule in rules)


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = set(expression.get("values") or [])
        present = key in labels
        if not {"In": present and labels.get(key) in values,
                "NotIn": not present or labels.get(key) not in values,
                "Exists": present, "DoesNotExist": not present}.get(operator, False):
            return False
    return bool(match_labels or selector.get("matchExpressions"))


def cluster_role_rules(cluster_roles: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Rule, ...]]:
    """Each ClusterRole's rules, aggregated ones with those of the roles they select."""
    resolved: dict[str, tuple[Rule, ...]] = {}
    for role in cluster_roles:
        rules = list(role.get("rules") or [])
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        for other in cluster_roles if selectors else ():
            labels = (other.get("metadata") or {}).get("labels") or {}
            if other is not role and any(_selector_matches(s, labels) for s in selectors):
                rules.extend(other.get("rules") or [])
        resolved[_meta(role)[1]] = tuple(rules)
    return resolved


def _meta(item: Mapping[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def bindings(objects: RbacObjects) -> list[Binding]:
    """Every binding with its role's rules (none when the role does not exist)."""
    cluster_rules = cluster_role_rules(objects.cluster_roles)
    role_rules = {_meta(role): tuple(role.get("rules") or []) for role in objects.roles}
    found: list[Binding] = []
    for kind, items in (("ClusterRoleBinding", objects.cluster_role_bindings),
                        ("RoleBinding", objects.role_bindings)):
        for item in items:
            namespace, name = _meta(item)
            role_ref = item.get("roleRef") or {}
            role_kind, role_name = str(role_ref.get("kind", "")), str(role_ref.get("name", ""))
            rules = (cluster_rules.get(role_name, ()) if role_kind == "ClusterRole"
                     else role_rules.get((namespace, role_name), ()))
            found.append(Binding(
                ref=ObjectRef(kind=kind, namespace=namespace, name=name), namespace=namespace,
                role=ObjectRef(kind=role_kind, name=role_name,
                               namespace=namespace if role_kind == "Role" else ""),
                rules=rules,
                subjects=tuple(Subject.from_rbac(s, namespace) for s in item.get("subjects")
                               or [])))
    return found


def candidates(all_bindings: Iterable[Binding], permission: Permission,
               namespace: str | None) -> Iterator[tuple[Subject, Binding]]:
    """Subjects that may hold `permission` and the binding that may give it. `namespace`
    None asks cluster-wide (ClusterRoleBindings only); a name asks in that namespace."""
    for binding in all_bindings:
        if binding.namespace and binding.namespace != namespace:
            continue
        if grants(binding.rules, permission):
            for subject in binding.subjects:
                yield subject, binding


WILDCARD: Final = "*"

POWERFUL: Final = (
    Permission(verb="get", resource="secrets"),
    Permission(verb="create", resource="pods"),
    Permission(verb="create", resource="serviceaccounts/token"),
    Permission(verb="bind", resource="clusterroles", group="rbac.authorization.k8s.io"),
    Permission(verb="escalate", resource="clusterroles", group="rbac.authorization.k8s.io"),
    Permission(verb="bind", resource="roles", group="rbac.authorization.k8s.io"),
    Permission(verb="escalate", resource="roles", group="rbac.authorization.k8s.io"),
    Permission(verb="impersonate", resource="users"),
    Permission(verb="impersonate", resource="groups"),
    Permission(verb="impersonate", resource="serviceaccounts"),
)
"""What makes a role powerful for a person to hold standing: read Secrets, run pods, mint
tokens, grant roles, or be someone else."""


def wildcard_permission(rules: Iterable[Rule]) -> Permission | None:
    """A request that only a rule with `*` verbs or resources allows (the first such rule's),
    or None when no rule has one."""
    for rule in rules:
        verbs, resources = _names(rule.get("verbs")), _names(rule.get("resources"))
        if resources and (WILDCARD in verbs or WILDCARD in resources):
            groups, names = _names(rule.get("apiGroups")), _names(rule.get("resourceNames"))
            return Permission(
                verb=WILDCARD if WILDCARD in verbs else (verbs or ("",))[0],
                resource=WILDCARD if WILDCARD in resources else (resources or ("",))[0],
                group=WILDCARD if WILDCARD in groups else (groups or ("",))[0],
                name=names[0] if names else "")
    return None


def powerful_permission(rules: Sequence[Rule]) -> Permission | None:
    """The request that shows a role is powerful (wildcards first), or None."""
    wildcard = wildcard_permission(rules)
    if wildcard is not None:
        return wildcard
    return next((p for p in POWERFUL if grants(rules, p)), None)
