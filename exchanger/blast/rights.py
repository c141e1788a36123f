"""Effective rights on a cluster as comparable values, derived from the API server's own
answers (SelfSubjectRulesReviews made while impersonating the granted identity), never from a
re-implementation of RBAC.

A `Right` is (verb, API group, resource[/subresource], namespace or cluster-wide, resource
names it is limited to); a non-resource URL (`/metrics`) is a right whose resource starts
with `/`, always cluster-wide. Wildcards stay as the rule wrote them (`*`), since no finite
set of resources stands for them.

Rules of this module:
- a rules review is per namespace, and also reports what ClusterRoleBindings grant; so an
  identity's rights are read twice: in the grant's namespace, and in `CLUSTER_PROBE`, a
  namespace nobody creates (no RoleBinding can exist there), which leaves the cluster-wide
  rights. The grant's namespace then holds what its review adds to the cluster-wide ones;
- what every identity of its kind may do anyway is left out, so a mapping's radius is what
  it adds: `BASELINE_USER`'s rights (discovery, self reviews, whatever a cluster binds to
  `system:authenticated`), and for a service account also those of the group of every
  service account, `system:serviceaccounts` (the issuer discovery, ClusterTrustBundles);
  rights bound to the service accounts of one namespace are the grant's own;
- a user with groups is one review per group, their rules united: the impersonation header
  is one value per review, and RBAC rules only ever add up (there is no deny), so the union
  is what the user holds with all groups at once;
- a grant whose user (or a group) comes from a claim is "per person": the constant groups
  are reviewed with a placeholder user (`PER_PERSON_USER`), so bindings to one person are not
  seen, and the radius says so;
- the API server's doubts are kept: an `incomplete` answer (another authorizer than RBAC
  takes part) and its evaluation error become notes of the radius;
- pure apart from the `RulesReviewer` port (`kube.py`), which the caller injects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from exchanger.mappings.model import Grant
from exchanger.mappings.subjects import ClaimReference

CLUSTER_PROBE: Final = "kubegate-blast-radius-cluster-scope"
"""The namespace whose rules review leaves only cluster-wide rights (do not create it)."""
BASELINE_USER: Final = "kubegate:blast-radius:anyone"
"""An identity without bindings of its own: what it may do, everyone may."""
PER_PERSON_USER: Final = "kubegate-blast-radius-each-person"
"""The user name (after the grant's prefix) that stands for each person a mapping admits."""

EVERY_SERVICE_ACCOUNT: Final = "system:serviceaccounts"

WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
READ_VERBS: Final = frozenset({"get", "list", "watch", "*"})


@dataclass(frozen=True, kw_only=True)
class Right:
    """One thing an identity may do; `namespace` None is cluster-wide (every namespace and
    the cluster-scoped resources)."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    names: tuple[str, ...] = ()

    def sort_key(self) -> tuple[str, str, str, str, tuple[str, ...]]:
        return (self.namespace or "", self.resource, self.group, self.verb, self.names)


@dataclass(frozen=True, kw_only=True)
class ResourceRule:
    verbs: tuple[str, ...]
    groups: tuple[str, ...]
    resources: tuple[str, ...]
    names: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NonResourceRule:
    verbs: tuple[str, ...]
    urls: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RulesAnswer:
    """A SelfSubjectRulesReview's status, as values."""

    resource_rules: tuple[ResourceRule, ...] = ()
    non_resource_rules: tuple[NonResourceRule, ...] = ()
    incomplete: bool = False
    evaluation_error: str = ""


class RulesReviewer(Protocol):
    """Asks the API server what `user` (with `group`, if any) may do in `namespace`."""

    def review(self, *, user: str, group: str | None, namespace: str) -> RulesAnswer: ...


@dataclass(frozen=True, kw_only=True)
class Subject:
    """Whom a grant makes a credential for, as the reviews impersonate it."""

    user: str
    groups: tuple[str, ...] = ()
    per_person: bool = False
    baseline_groups: tuple[str, ...] = ()
    """The groups every identity of this kind has (beyond `system:authenticated`)."""


def subject_of(grant: Grant) -> Subject:
    """The identity a grant issues: the service account's user (the API server adds its
    groups), or the user and constant groups, with a placeholder for names taken from
    claims."""
    if grant.service_account is not None:
        return Subject(user=f"system:serviceaccount:{grant.namespace}:{grant.service_account}",
                       baseline_groups=(EVERY_SERVICE_ACCOUNT,))
    user = grant.user
    per_person = isinstance(user, ClaimReference) or any(
        isinstance(group, ClaimReference) for group in grant.groups)
    name = user.prefix + PER_PERSON_USER if isinstance(user, ClaimReference) else str(user)
    groups = tuple(group for group in grant.groups if isinstance(group, str))
    return Subject(user=name, groups=groups, per_person=per_person)


Key = tuple[str, str, str, tuple[str, ...]]
"""A right without its place: (verb, group, resource, names)."""


def rule_keys(answer: RulesAnswer) -> set[Key]:
    """Every (verb, group, resource, names) the answer's rules allow, wildcards kept."""
    keys: set[Key] = set()
    for rule in answer.resource_rules:
        names = tuple(sorted(set(rule.names)))
        keys.update((verb, group, resource, names) for verb in rule.verbs
                    for group in rule.groups for resource in rule.resources)
    for other in answer.non_resource_rules:
        keys.update((verb, "", url, ()) for verb in other.verbs for url in other.urls)
    return _without_narrower(keys)


def _without_narrower(keys: set[Key]) -> set[Key]:
    """Drops a right limited to names when the same right holds for every name."""
    whole = {key[:3] for key in keys if not key[3]}
    return {key for key in keys if not key[3] or key[:3] not in whole}


@dataclass(frozen=True, kw_only=True)
class Rights:
    """What a subject may do beyond the baseline, and the reviews' doubts."""

    rights: frozenset[Right]
    notes: tuple[str, ...] = ()


@dataclass(kw_only=True)
class RightsFinder:
    """Reads subjects' rights through a reviewer, asking each question once."""

    reviewer: RulesReviewer
    _answers: dict[tuple[str, str | None, str], RulesAnswer] = field(default_factory=dict)

    def rights(self, subject: Subject, namespace: str) -> Rights:
        """`subject`'s rights in `namespace` and cluster-wide, beyond the baseline's."""
        groups: tuple[str | None, ...] = subject.groups or (None,)
        cluster = self._keys(subject.user, groups, CLUSTER_PROBE)
        local = self._keys(subject.user, groups, namespace)
        baseline: tuple[str | None, ...] = subject.baseline_groups or (None,)
        baseline_cluster = self._keys(BASELINE_USER, baseline, CLUSTER_PROBE)
        baseline_local = self._keys(BASELINE_USER, baseline, namespace)
        found = {_right(key, None) for key in cluster - baseline_cluster}
        found |= {_right(key, namespace) for key in local - cluster - baseline_local}
        notes = self._notes(subject.user, groups, (CLUSTER_PROBE, namespace))
        return Rights(rights=frozenset(found), notes=notes)

    def _answer(self, user: str, group: str | None, namespace: str) -> RulesAnswer:
        question = (user, group, namespace)
        if question not in self._answers:
            self._answers[question] = self.reviewer.review(user=user, group=group,
                                                           namespace=namespace)
        return self._answers[question]

    def _keys(self, user: str, groups: Iterable[str | None], namespace: str) -> set[Key]:
        keys: set[Key] = set()
        for group in groups:
            keys |= rule_keys(self._answer(user, group, namespace))
        return _without_narrower(keys)

    def _notes(self, user: str, groups: Iterable[str | None],
               namespaces: Iterable[str]) -> tuple[str, ...]:
        notes: dict[str, None] = {}
        for namespace in namespaces:
            for group in groups:
                answer = self._answer(user, group, namespace)
                if answer.incomplete:
                    where = "cluster-wide" if namespace == CLUSTER_PROBE else namespace
                    notes[f"the API server's answer is incomplete ({where}): "
                          f"{answer.evaluation_error or 'another authorizer takes part'}"] = None
        return tuple(notes)


def _right(key: Key, namespace: str | None) -> Right:
    verb, group, resource, names = key
    cluster_only = resource.startswith("/")
    return Right(verb=verb, group=group, resource=resource,
                 namespace=None if cluster_only else namespace, names=names)


# -- what is sensitive ---------------------------------------------------------------------

_RBAC: Final = "rbac.authorization.k8s.io"
_IMPERSONATED: Final = frozenset({"users", "groups", "serviceaccounts", "uids", "*"})
_POD_SESSIONS: Final = {"pods/exec": "runs commands in pods", "pods/attach": "attaches to pods",
                        "pods/portforward": "port-forwards into pods"}


def _covers(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value


def _on(right: Right, group: str, resource: str, verbs: Iterable[str]) -> bool:
    return (_covers(right.group, group) and _covers(right.resource, resource)
            and any(_covers(right.verb, verb) for verb in verbs))


def sensitivity(right: Right) -> str | None:
    """Why a right deserves a reviewer's attention (secrets read, exec into pods,
    cluster-wide write, RBAC bind/escalate, impersonation, minting tokens), or None."""
    if right.resource.startswith("/"):
        return None
    checks = (
        (_on(right, "", "secrets", READ_VERBS - {"*"}), "reads secrets"),
        *((_on(right, "", sub, ("create", "get")), why) for sub, why in _POD_SESSIONS.items()),
        (_on(right, _RBAC, "roles", ("bind", "escalate"))
         or _on(right, _RBAC, "clusterroles", ("bind", "escalate")), "RBAC bind/escalate"),
        (any(_on(right, _RBAC, kind, WRITE_VERBS - {"*"}) for kind in (
            "roles", "rolebindings", "clusterroles", "clusterrolebindings")), "writes RBAC"),
        (_covers(right.verb, "impersonate") and (right.resource in _IMPERSONATED or right.resource
                                                  .startswith("userextras")), "impersonates"),
        (_on(right, "", "serviceaccounts/token", ("create",)), "mints service account tokens"),
        (right.namespace is None and right.verb in WRITE_VERBS, "cluster-wide write"),
    )
    reasons = [why for hit, why in checks if hit]
    return ", ".join(dict.fromkeys(reasons)) or None
