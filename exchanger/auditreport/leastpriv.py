"""Least privilege from observed use (the audit2rbac idea): for a session, a mapping or a CI
run, the Role that would have been enough for what its kubegate credentials actually did on
the cluster, and how that compares with what the granted identity may do today.

Rules of this module:
- `LeastPrivilege` is an `EventObserver` of the report: it keeps, per scope key, a set of
  permission keys (namespace, API group, resource[/subresource], verb) with at most
  `MAX_NAMES` + 1 resource names each, never events, so its memory is bounded by what was
  done, not by how often;
- only successful requests of kubegate credentials count (refused ones were not needed);
- verbs are the API server's authorization verbs as its audit log records them; a `list`
  whose URL says `watch=true` is a `watch`;
- resource names are kept for a verb that names its object (get, update, patch, delete, ...)
  when every request of that verb named one and at most `MAX_NAMES` names were touched; never
  for list, watch and create, whose authorization carries no name;
- a request without a namespace (a cluster-scoped resource, or every namespace at once) and
  a non-resource URL belong to the ClusterRole; what every authenticated identity may do
  anyway (discovery, health, self reviews) is left out, like `exchanger.blast` leaves out
  the baseline, so the diff compares like with like;
- rules are merged and sorted deterministically: one API group per rule, verbs of the same
  resources and names together, then resources with the same verbs and names together;
- pure: the granted rights come in through a callable (`exchanger.blast.RightsFinder`
  behind it); a failure to read them is recorded in the section, the report goes on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

import yaml

from exchanger.auditreport.model import BrokeredSession, Filters, Finding, JoinedAction
from exchanger.blast.rights import EVERY_SERVICE_ACCOUNT, Right, RightsFinder, Subject
from kubegate.errors import KubegateError

__all__ = ["MAX_NAMES", "Diff", "LeastPrivilege", "Rule", "Scope", "as_role_yaml", "diff",
           "granted_rights", "least_privilege_section", "manifests", "role_name",
           "scope_for"]

Scope = Literal["session", "mapping", "run"]
SCOPES: Final[tuple[Scope, ...]] = ("session", "mapping", "run")

MAX_NAMES: Final = 5
"""More names than this and a rule holds every name of its resources."""
UNNAMED_VERBS: Final = frozenset({"list", "watch", "create", "deletecollection"})
VERB_ORDER: Final = ("get", "list", "watch", "create", "update", "patch", "delete",
                     "deletecollection")

EVERYONE_URLS: Final = frozenset({"/api", "/apis", "/healthz", "/livez", "/readyz",
                                  "/version", "/openapi"})
"""Non-resource URLs (and everything under them) that `system:discovery` and
`system:public-info-viewer` grant every authenticated identity."""
EVERYONE_RESOURCES: Final = frozenset({
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews")})
"""What `system:basic-user` grants every authenticated identity."""

_ANY: Final = None
Names = frozenset[str] | None  # None: every name
PermissionKey = tuple[str | None, str, str, str]  # namespace (None: cluster), group, resource, verb


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One RBAC policy rule, with where it applies: `namespace` None is the ClusterRole."""

    namespace: str | None
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.verbs:
            raise ValueError("a rule needs verbs")
        if self.non_resource_urls and (self.resources or self.namespace is not None):
            raise ValueError("non-resource URLs go alone into a ClusterRole")

    def as_dict(self) -> dict[str, list[str]]:
        """The rule as RBAC writes it (the fields it has, in RBAC's order)."""
        if self.non_resource_urls:
            return {"nonResourceURLs": list(self.non_resource_urls), "verbs": list(self.verbs)}
        rule = {"apiGroups": list(self.api_groups), "resources": list(self.resources)}
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        return rule | {"verbs": list(self.verbs)}

    def rights(self) -> set[Right]:
        """The rule as `exchanger.blast` rights."""
        if self.non_resource_urls:
            return {Right(verb=verb, group="", resource=url, namespace=None)
                    for verb in self.verbs for url in self.non_resource_urls}
        return {Right(verb=verb, group=group, resource=resource, namespace=self.namespace,
                      names=self.resource_names)
                for verb in self.verbs for group in self.api_groups for resource in self.resources}

    def sort_key(self) -> tuple[Any, ...]:
        return (self.namespace is not None, self.namespace or "", self.non_resource_urls,
                self.api_groups, self.resources, self.resource_names, self.verbs)


def scope_for(filters: Filters) -> Scope:
    """The scope a report asks about: a CI run with `--run`, a mapping with `--mapping`,
    else each session."""
    return "run" if filters.run else "mapping" if filters.mapping else "session"


# -- observing -------------------------------------------------------------------------------


def scope_keys(session: BrokeredSession) -> dict[Scope, str]:
    """The keys a session's actions count under: its id, its mapping, its CI run if any."""
    keys: dict[Scope, str] = {"session": session.session_id, "mapping": session.mapping}
    run = session.ci.get("run_id") or session.ci.get("pipeline_id")
    if run:
        keys["run"] = str(run)
    return keys


def permission_of(action: JoinedAction) -> tuple[PermissionKey, str] | None:
    """What a successful kubegate request needed: its permission key and the name it touched
    (""), or None when it does not count."""
    event = action.event
    if action.session is None or not event.succeeded or not event.verb:
        return None
    url = urlsplit(event.request_uri)
    if not event.resource:
        path = url.path.rstrip("/") or "/"
        if any(path == base or path.startswith(base + "/") for base in EVERYONE_URLS):
            return None
        return (None, "", path, event.verb), ""
    if (event.api_group, event.resource) in EVERYONE_RESOURCES:
        return None
    verb = event.verb
    if verb == "list" and parse_qs(url.query).get("watch", [""])[0] in ("true", "1"):
        verb = "watch"
    resource = f"{event.resource}/{event.subresource}" if event.subresource else event.resource
    return (event.namespace or None, event.api_group, resource, verb), event.name


def _with_name(names: Names, verb: str, name: str) -> Names:
    if names is _ANY or verb in UNNAMED_VERBS or not name:
        return _ANY
    grown = names | {name}
    return grown if len(grown) <= MAX_NAMES else _ANY


@dataclass(kw_only=True)
class LeastPrivilege:
    """An `EventObserver`: records what kubegate sessions did, per session, mapping and run.

    `filters`: the report's session filters (the report hands every event to its observers);
    only the sessions they admit are recorded."""

    filters: Filters = field(default_factory=Filters)
    _seen: dict[tuple[Scope, str], dict[PermissionKey, Names]] = field(
        default_factory=dict, init=False)
    _identities: dict[tuple[Scope, str], dict[tuple[str, ...], BrokeredSession]] = field(
        default_factory=dict, init=False)

    def observe(self, action: JoinedAction) -> None:
        found = permission_of(action)
        if found is None or action.session is None:
            return
        if not self.filters.admits_session(action.session):
            return
        key, name = found
        for scope, scope_key in scope_keys(action.session).items():
            permissions = self._seen.setdefault((scope, scope_key), {})
            names = permissions.get(key, frozenset())
            permissions[key] = _with_name(names, key[3], name)
            identity = _identity(action.session)
            self._identities.setdefault((scope, scope_key), {}).setdefault(
                identity, action.session)

    def findings(self) -> list[Finding]:
        return []

    def roles(self, scope: Scope) -> dict[str, list[Rule]]:
        """Per key of `scope` (session id, mapping name, run id), the rules that would have
        been enough, sorted; keys sorted."""
        return {key: merge(permissions) for (kind, key), permissions
                in sorted(self._seen.items()) if kind == scope}

    def sessions(self, scope: Scope, key: str) -> list[BrokeredSession]:
        """One session per distinct granted identity seen under `key` (first seen)."""
        return list(self._identities.get((scope, key), {}).values())


def _identity(session: BrokeredSession) -> tuple[str, ...]:
    return (session.cluster, session.namespace, session.service_account, session.user,
            *session.groups)


# -- merging ---------------------------------------------------------------------------------


def _verb_order(verb: str) -> tuple[int, str]:
    return (VERB_ORDER.index(verb) if verb in VERB_ORDER else len(VERB_ORDER), verb)


def merge(permissions: Mapping[PermissionKey, Names]) -> list[Rule]:
    """Permission keys as the fewest rules the merge order gives, sorted."""
    verbs: dict[tuple[str | None, str, str, tuple[str, ...]], set[str]] = defaultdict(set)
    for (namespace, group, resource, verb), names in permissions.items():
        verbs[(namespace, group, resource, tuple(sorted(names or ())))].add(verb)
    resources: dict[tuple[str | None, str, tuple[str, ...], tuple[str, ...]], set[str]] = (
        defaultdict(set))
    for (namespace, group, resource, named), verb_set in verbs.items():
        ordered = tuple(sorted(verb_set, key=_verb_order))
        resources[(namespace, group, ordered, named)].add(resource)
    rules = []
    for (namespace, group, ordered, named), resource_set in resources.items():
        urls = tuple(sorted(r for r in resource_set if r.startswith("/")))
        kept = tuple(sorted(r for r in resource_set if not r.startswith("/")))
        if urls:
            rules.append(Rule(namespace=None, verbs=ordered, non_resource_urls=urls))
        if kept:
            rules.append(Rule(namespace=namespace, api_groups=(group,), resources=kept,
                              verbs=ordered, resource_names=named))
    return sorted(rules, key=Rule.sort_key)


# -- manifests -------------------------------------------------------------------------------


def role_name(scope: Scope, key: str) -> str:
    """A valid RBAC object name for the role of a scope key."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", key.lower()).strip("-.") or "unnamed"
    return f"kubegate-observed-{scope}-{cleaned}"[:253].rstrip("-.")


def as_role_yaml(name: str, namespace: str | None, rules: Iterable[Rule]) -> str:
    """A Role in `namespace` (a ClusterRole when None) holding the rules that apply there."""
    kept = sorted((rule for rule in rules if rule.namespace == namespace), key=Rule.sort_key)
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["annotations"] = {"kubegate.io/generated-from": "observed use (kubegate audit "
                                                              "report --least-privilege)"}
    document = {"apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole" if namespace is None else "Role",
                "metadata": metadata, "rules": [rule.as_dict() for rule in kept]}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def manifests(name: str, rules: Iterable[Rule]) -> str:
    """Every Role (one per namespace, sorted) and the ClusterRole the rules need, as one
    multi-document YAML text."""
    listed = list(rules)
    places = sorted({rule.namespace for rule in listed}, key=lambda n: (n is not None, n or ""))
    return "---\n".join(as_role_yaml(name, place, listed) for place in places)


# -- diff against what is granted ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Diff:
    """`unused`: granted but never done; `needed`: done but not granted (empty unless the
    grant changed since); both sorted like `Right.sort_key`."""

    unused: tuple[Right, ...] = ()
    needed: tuple[Right, ...] = ()


def _matches(pattern: str, value: str) -> bool:
    if pattern in ("*", value):
        return True
    head, _, tail = pattern.partition("/")
    value_head, _, value_tail = value.partition("/")
    return bool(tail) and ((head == "*" and tail == value_tail)
                           or (tail == "*" and head == value_head and bool(value_tail)))


def covers(granted: Right, done: Right) -> bool:
    """Whether the granted right allows what the observed right did."""
    if granted.resource.startswith("/") != done.resource.startswith("/"):
        return False
    if granted.resource.startswith("/"):
        url = granted.resource
        resource = url == done.resource or (url.endswith("*") and done.resource.startswith(
            url[:-1]))
    else:
        resource = _matches(granted.resource, done.resource)
    return (granted.verb in ("*", done.verb) and granted.group in ("*", done.group) and resource
            and (granted.namespace is None or granted.namespace == done.namespace)
            and (not granted.names or bool(done.names) and set(done.names) <= set(granted.names)))


def diff(observed: Iterable[Rule], granted: Iterable[Right]) -> Diff:
    """What the granted rights allow that nobody used, and what was done without a grant."""
    done = {right for rule in observed for right in rule.rights()}
    rights = set(granted)
    unused = {g for g in rights if not any(covers(g, d) for d in done)}
    needed = {d for d in done if not any(covers(g, d) for g in rights)}
    return Diff(unused=tuple(sorted(unused, key=Right.sort_key)),
                needed=tuple(sorted(needed, key=Right.sort_key)))


def granted_rights(finder: RightsFinder) -> Callable[[BrokeredSession], set[Right]]:
    """`rights_for` over a RightsFinder: what a session's granted identity may do today in
    its grant's namespace and cluster-wide, beyond what everyone may."""
    def rights_for(session: BrokeredSession) -> set[Right]:
        if session.service_account:
            subject = Subject(user=f"system:serviceaccount:{session.namespace}:"
                                   f"{session.service_account}",
                              baseline_groups=(EVERY_SERVICE_ACCOUNT,))
        else:
            subject = Subject(user=session.user, groups=session.groups)
        return set(finder.rights(subject, session.namespace).rights)
    return rights_for


# -- the report's section --------------------------------------------------------------------


def _right_dict(right: Right) -> dict[str, Any]:
    return {"verb": right.verb, "group": right.group, "resource": right.resource,
            "namespace": right.namespace, "names": list(right.names)}


def _entry(recorder: LeastPrivilege, scope: Scope, key: str, rules: list[Rule],
           rights_for: Callable[[BrokeredSession], set[Right]] | None) -> dict[str, Any]:
    sessions = recorder.sessions(scope, key)
    entry: dict[str, Any] = {
        "key": key, "role_name": role_name(scope, key),
        "mappings": sorted({s.mapping for s in sessions}),
        "identities": sorted({_who(s) for s in sessions}),
        "rules": [{"namespace": rule.namespace} | rule.as_dict() for rule in rules],
        "manifest": manifests(role_name(scope, key), rules), "diff": None, "diff_error": ""}
    if rights_for is None:
        return entry
    try:
        granted: set[Right] = set().union(*(rights_for(s) for s in sessions))
    except KubegateError as error:
        entry["diff_error"] = str(error)
        return entry
    found = diff(rules, granted)
    entry["diff"] = {"unused": [_right_dict(r) for r in found.unused],
                     "needed": [_right_dict(r) for r in found.needed]}
    return entry


def _who(session: BrokeredSession) -> str:
    if session.service_account:
        return f"system:serviceaccount:{session.namespace}:{session.service_account}"
    return session.user


def least_privilege_section(recorder: LeastPrivilege,
                            rights_for: Callable[[BrokeredSession], set[Right]] | None = None,
                            *, scope: Scope = "session") -> dict[str, Any]:
    """The report's least-privilege section (JSON-ready): per key of `scope`, the observed
    rules, their manifest, and when `rights_for` is given the diff with the granted rights."""
    entries = [_entry(recorder, scope, key, rules, rights_for)
               for key, rules in recorder.roles(scope).items()]
    return {"scope": scope, "entries": entries}
