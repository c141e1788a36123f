"""Findings about who can do what: paths around the broker (KG002-KG004), ways to mint any
identity (KG005-KG007) and standing wide privilege (KG008, KG009).

Rules of this module:
- a subject is a finding only after a SubjectAccessReview said `allowed` for it (candidates
  only narrow the questions);
- the exchanger and system components are never findings (`subjects.excluded`);
- one finding per rule, subject and target; it names every binding that gave the privilege.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from exchanger.scan import rules
from exchanger.scan.candidates import (
    Binding,
    Permission,
    candidates,
    grants,
    powerful_permission,
    wildcard_permission,
)
from exchanger.scan.model import Finding, ObjectRef, Severity
from exchanger.scan.review import Reviews
from exchanger.scan.subjects import Exchanger, Subject, excluded
from exchanger.scan.targets import Target

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
CERTIFICATES_GROUP: Final = "certificates.k8s.io"
CLIENT_SIGNER: Final = "kubernetes.io/kube-apiserver-client"

WORKLOADS: Final = (
    Permission(verb="create", resource="pods"),
    Permission(verb="create", resource="deployments", group="apps"),
    Permission(verb="create", resource="statefulsets", group="apps"),
    Permission(verb="create", resource="daemonsets", group="apps"),
    Permission(verb="create", resource="replicasets", group="apps"),
    Permission(verb="create", resource="jobs", group="batch"),
    Permission(verb="create", resource="cronjobs", group="batch"),
    Permission(verb="create", resource="replicationcontrollers"),
)
BIND_ESCALATE: Final = tuple(Permission(verb=verb, resource=resource, group=RBAC_GROUP)
                             for verb in ("bind", "escalate")
                             for resource in ("clusterroles", "roles"))
WEBHOOKS: Final = tuple(Permission(verb=verb, resource=resource,
                                   group="admissionregistration.k8s.io")
                        for resource in ("validatingwebhookconfigurations",
                                         "mutatingwebhookconfigurations")
                        for verb in ("create", "update", "patch"))
CSR_ACTIONS: Final = (
    ("approve", Permission(verb="update", resource="certificatesigningrequests/approval",
                           group=CERTIFICATES_GROUP)),
    ("sign", Permission(verb="update", resource="certificatesigningrequests/status",
                        group=CERTIFICATES_GROUP)),
)


@dataclass(frozen=True, kw_only=True)
class Context:
    bindings: Sequence[Binding]
    reviews: Reviews
    exchanger: Exchanger


@dataclass
class _Holder:
    permissions: list[Permission]
    objects: list[ObjectRef]


def who_can(context: Context, permissions: Iterable[Permission],
            namespace: str | None) -> dict[Subject, _Holder]:
    """Subjects (not excluded) that a review confirms hold any of `permissions` in
    `namespace` (None: cluster-wide), with what they hold and the bindings that give it."""
    found: dict[Subject, _Holder] = {}
    for permission in permissions:
        for subject, binding in candidates(context.bindings, permission, namespace):
            if excluded(subject, context.exchanger) or not context.reviews.can(
                    user=subject.user, groups=subject.groups, permission=permission,
                    namespace=namespace or ""):
                continue
            holder = found.setdefault(subject, _Holder([], []))
            if permission not in holder.permissions:
                holder.permissions.append(permission)
            holder.objects.extend(o for o in (binding.ref, binding.role)
                                  if o not in holder.objects)
    return found


def _finding(rule_id: str, subject: Subject, first: ObjectRef, holder: _Holder, message: str,
             *, target: str, severity: Severity | None = None) -> Finding:
    rule = rules.rule(rule_id)
    return Finding(rule=rule_id, severity=severity or rule.severity,
                   objects=(first, *holder.objects), subject=str(subject), target=target,
                   message=message, fix=rule.fix)


def _via(holder: _Holder) -> str:
    return ", ".join(str(o) for o in holder.objects if o.kind.endswith("Binding"))


def mint_tokens(context: Context, targets: Iterable[Target]) -> list[Finding]:
    """KG002: create serviceaccounts/token for a granted service account."""
    found: list[Finding] = []
    for target in targets:
        if target.subject is None:
            continue
        permission = Permission(verb="create", resource="serviceaccounts/token",
                                name=target.service_account)
        for subject, holder in who_can(context, [permission], target.namespace).items():
            found.append(_finding(
                rules.MINT_TOKEN, subject, _service_account(target), holder, target=str(
                    target.subject),
                message=f"{subject} can create tokens for {target.subject} (granted by "
                        f"mapping {target.mapping}) through {_via(holder)}"))
    return found


def _service_account(target: Target) -> ObjectRef:
    return ObjectRef(kind="ServiceAccount", namespace=target.namespace,
                     name=target.service_account)


def impersonate(context: Context, targets: Iterable[Target]) -> list[Finding]:
    """KG003: impersonate a granted service account, user or group."""
    found: list[Finding] = []
    for target in targets:
        for what, first, permission, namespace in _impersonations(target):
            for subject, holder in who_can(context, [permission], namespace).items():
                found.append(_finding(
                    rules.IMPERSONATE, subject, first, holder, target=what,
                    message=f"{subject} can impersonate {what} (granted by mapping "
                            f"{target.mapping}) through {_via(holder)}"))
    return found


def _impersonations(target: Target) -> list[tuple[str, ObjectRef, Permission, str | None]]:
    if target.subject is not None:
        return [(str(target.subject), _service_account(target), Permission(
            verb="impersonate", resource="serviceaccounts", name=target.service_account),
            target.namespace)]
    found: list[tuple[str, ObjectRef, Permission, str | None]] = [
        (f"Group {g}", ObjectRef(kind="Group", name=g),
         Permission(verb="impersonate", resource="groups", name=g), None)
        for g in target.groups]
    if target.user:
        found.insert(0, (f"User {target.user}", ObjectRef(kind="User", name=target.user),
                         Permission(verb="impersonate", resource="users", name=target.user),
                         None))
    else:  # per person: only impersonating any user reaches every one of them
        found.insert(0, (f"any user (mapping {target.mapping}'s per-person users)",
                         target.ref, Permission(verb="impersonate", resource="users"), None))
    return found


def create_workloads(context: Context, targets: Iterable[Target]) -> list[Finding]:
    """KG004: create pods or workloads where a granted service account lives."""
    found: list[Finding] = []
    namespaces = sorted({t.namespace for t in targets if t.subject is not None})
    for namespace in namespaces:
        for subject, holder in who_can(context, WORKLOADS, namespace).items():
            kinds = ", ".join(p.base_resource for p in holder.permissions)
            found.append(_finding(
                rules.CREATE_WORKLOADS, subject, ObjectRef(kind="Namespace", name=namespace),
                holder, target=namespace,
                message=f"{subject} can create {kinds} in namespace {namespace}, where "
                        f"mappings grant service accounts: a pod can run as them, around the "
                        f"broker (through {_via(holder)})"))
    return found


def certificates(context: Context) -> list[Finding]:
    """KG005: approve or sign CertificateSigningRequests for client certificates."""
    holders: dict[Subject, tuple[list[str], _Holder]] = {}
    for action, permission in CSR_ACTIONS:
        for subject, holder in who_can(context, [permission], None).items():
            if not _on_signer(context, subject, action):
                continue
            actions, merged = holders.setdefault(subject, ([], _Holder([], [])))
            actions.append(action)
            merged.objects.extend(o for o in holder.objects if o not in merged.objects)
    return [_finding(
        rules.CERTIFICATES, subject, holder.objects[0], holder, target=" and ".join(actions),
        message=f"{subject} can {' and '.join(actions)} CertificateSigningRequests for "
                f"{CLIENT_SIGNER}: client certificates for any user, never through the broker "
                f"(through {_via(holder)})") for subject, (actions, holder) in holders.items()]


def _on_signer(context: Context, subject: Subject, action: str) -> bool:
    return any(context.reviews.can(
        user=subject.user, groups=subject.groups,
        permission=Permission(verb=action, resource="signers", group=CERTIFICATES_GROUP,
                              name=name)) for name in (CLIENT_SIGNER, "kubernetes.io/*"))


def bind_or_escalate(context: Context) -> list[Finding]:
    """KG006: bind or escalate roles, cluster-wide (high) or in a namespace (medium)."""
    found: list[Finding] = []
    cluster_wide = who_can(context, BIND_ESCALATE, None)
    scopes: list[str | None] = [None, *sorted({b.namespace for b in context.bindings
                                               if b.namespace})]
    for scope in scopes:
        if scope is not None and not any(b.namespace == scope and any(
                grants(b.rules, p) for p in BIND_ESCALATE) for b in context.bindings):
            continue
        holders = cluster_wide if scope is None else who_can(context, BIND_ESCALATE, scope)
        for subject, holder in holders.items():
            if scope is not None and subject in cluster_wide:
                continue
            verbs = "/".join(dict.fromkeys(p.verb for p in holder.permissions))
            where = "cluster-wide" if scope is None else f"in namespace {scope}"
            found.append(_finding(
                rules.BIND_ESCALATE, subject, holder.objects[0], holder,
                target=scope or "", severity=None if scope is None else Severity.MEDIUM,
                message=f"{subject} can {verbs} roles {where}: it can grant itself any "
                        f"permission (through {_via(holder)})"))
    return found


def webhooks(context: Context) -> list[Finding]:
    """KG007: write admission webhook configurations."""
    return [_finding(
        rules.WEBHOOKS, subject, holder.objects[0], holder, target="",
        message=f"{subject} can {', '.join(sorted({str(p) for p in holder.permissions}))}: "
                f"an admission webhook sees and can change every object written (through "
                f"{_via(holder)})")
        for subject, holder in who_can(context, WEBHOOKS, None).items()]


def standing_privilege(context: Context) -> list[Finding]:
    """KG008 (service accounts with wildcards or cluster-admin) and KG009 (people and groups
    bound to powerful roles), per binding."""
    found: list[Finding] = []
    for binding in context.bindings:
        for subject in binding.subjects:
            if excluded(subject, context.exchanger):
                continue
            person = subject.person
            permission = (powerful_permission(binding.rules) if person
                          else wildcard_permission(binding.rules))
            if permission is None or not context.reviews.can(
                    user=subject.user, groups=subject.groups, permission=permission,
                    namespace=binding.namespace):
                continue
            found.append(_standing(binding, subject, permission))
    return found


def _standing(binding: Binding, subject: Subject, permission: Permission) -> Finding:
    rule_id = rules.STANDING_PEOPLE if subject.person else rules.WILDCARD_SERVICE_ACCOUNT
    where = f"in namespace {binding.namespace}" if binding.namespace else "cluster-wide"
    what = ("a powerful role" if subject.person else "a role with * verbs or resources")
    return _finding(
        rule_id, subject, binding.ref, _Holder([permission], [binding.role]),
        target=str(binding.ref), severity=Severity.MEDIUM if binding.namespace else None,
        message=f"{subject} is bound to {binding.role} ({what}: can {permission}) {where} "
                f"by {binding.ref}")
