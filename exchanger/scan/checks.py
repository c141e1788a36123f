"""The scan: read the cluster, ask the reviews, and return every finding.

Object findings (KG001 legacy tokens, KG010/KG011 automounting in pipeline namespaces) are
facts of listed objects; mapping findings (KG012/KG013) ask a SubjectAccessReview about the
identity each mapping grants; RBAC findings live in `checks_rbac.py`.

Rules of this module:
- `scan` is the one entry: ports in (a ClusterReader, an AccessReviewer), a ScanResult out;
- what could not be listed or reviewed is in `could_not_see`, with every finding that could
  still be made (a partial scan is reported as partial, never as clean);
- a Secret's data is never read here (the reader drops it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from exchanger.scan import rules
from exchanger.scan.candidates import Permission, bindings
from exchanger.scan.checks_rbac import (
    Context,
    bind_or_escalate,
    certificates,
    create_workloads,
    impersonate,
    mint_tokens,
    standing_privilege,
    webhooks,
)
from exchanger.scan.cluster import ClusterReader, named, read_cluster
from exchanger.scan.model import Finding, ObjectRef, ScanResult, Severity, merge_findings
from exchanger.scan.review import AccessReviewer, Reviews
from exchanger.scan.subjects import Exchanger
from exchanger.scan.targets import Target, pipeline_namespaces

LAST_USED_LABEL: Final = "kubernetes.io/legacy-token-last-used"
INVALID_SINCE_LABEL: Final = "kubernetes.io/legacy-token-invalid-since"
SERVICE_ACCOUNT_ANNOTATION: Final = "kubernetes.io/service-account.name"

CLUSTER_WRITES: Final = (
    Permission(verb="create", resource="pods"),
    Permission(verb="create", resource="deployments", group="apps"),
    Permission(verb="update", resource="secrets"),
    Permission(verb="patch", resource="configmaps"),
    Permission(verb="create", resource="namespaces"),
    Permission(verb="delete", resource="namespaces"),
    Permission(verb="patch", resource="nodes"),
    Permission(verb="create", resource="clusterrolebindings", group="rbac.authorization.k8s.io"),
    Permission(verb="create", resource="rolebindings", group="rbac.authorization.k8s.io"),
)
SECRET_READS: Final = tuple(Permission(verb=v, resource="secrets")
                            for v in ("get", "list", "watch"))


def scan(*, reader: ClusterReader, reviewer: AccessReviewer, targets: Sequence[Target],
         exchanger: Exchanger) -> ScanResult:
    snapshot = read_cluster(reader, pipeline_namespaces(targets))
    reviews = Reviews(reviewer)
    context = Context(bindings=bindings(snapshot.rbac), reviews=reviews, exchanger=exchanger)
    findings = [
        *legacy_tokens(snapshot.legacy_tokens),
        *mint_tokens(context, targets), *impersonate(context, targets),
        *create_workloads(context, targets), *certificates(context),
        *bind_or_escalate(context), *webhooks(context), *standing_privilege(context),
        *automounting(snapshot.service_accounts, snapshot.pods),
        *mapping_reach(reviews, targets),
    ]
    return ScanResult(findings=merge_findings(findings),
                      could_not_see=(*snapshot.could_not_see, *reviews.could_not_see))


def _metadata(item: Mapping[str, Any]) -> Mapping[str, Any]:
    return item.get("metadata") or {}


def legacy_tokens(secrets: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """KG001: every Secret of type kubernetes.io/service-account-token (low once the
    cluster has invalidated it)."""
    found: list[Finding] = []
    rule = rules.rule(rules.LEGACY_TOKEN)
    for secret in secrets:
        meta = _metadata(secret)
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        labels = meta.get("labels") or {}
        account = str((meta.get("annotations") or {}).get(SERVICE_ACCOUNT_ANNOTATION, ""))
        used = labels.get(LAST_USED_LABEL)
        invalid = labels.get(INVALID_SINCE_LABEL)
        state = f"last used {used}" if used else "never used"
        if invalid:
            state += f", invalid since {invalid}"
        objects = [ObjectRef(kind="Secret", namespace=namespace, name=name)]
        if account:
            objects.append(ObjectRef(kind="ServiceAccount", namespace=namespace, name=account))
        found.append(Finding(
            rule=rule.id, severity=Severity.LOW if invalid else rule.severity,
            objects=tuple(objects), subject=f"ServiceAccount {namespace}/{account}",
            target=f"{namespace}/{name}", fix=rule.fix,
            message=f"legacy token Secret {namespace}/{name} for ServiceAccount "
                    f"{account or '?'} ({state}): it never expires"))
    return found


def automounting(service_accounts: Sequence[Mapping[str, Any]],
                 pods: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """KG010 (pods) and KG011 (service accounts) of pipeline namespaces that automount
    service-account tokens."""
    accounts = named(service_accounts)
    found: list[Finding] = []
    for (namespace, name), account in sorted(accounts.items()):
        if account.get("automountServiceAccountToken") is not False:
            found.append(_automount(rules.AUTOMOUNT_SERVICE_ACCOUNT, ObjectRef(
                kind="ServiceAccount", namespace=namespace, name=name),
                f"ServiceAccount {namespace}/{name} does not set "
                "automountServiceAccountToken: false"))
    for pod in pods:
        meta, spec = _metadata(pod), pod.get("spec") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        account_name = str(spec.get("serviceAccountName") or "default")
        account = accounts.get((namespace, account_name), {})
        mounts = spec.get("automountServiceAccountToken")
        if mounts is None:
            mounts = account.get("automountServiceAccountToken")
        if mounts is not False:
            found.append(_automount(rules.AUTOMOUNT_POD, ObjectRef(
                kind="Pod", namespace=namespace, name=name),
                f"Pod {namespace}/{name} mounts a token of ServiceAccount {account_name} "
                "(automountServiceAccountToken is not false on the pod or its account)"))
    return found


def _automount(rule_id: str, ref: ObjectRef, message: str) -> Finding:
    rule = rules.rule(rule_id)
    return Finding(rule=rule_id, severity=rule.severity, objects=(ref,), message=message,
                   fix=rule.fix, target=str(ref))


def mapping_reach(reviews: Reviews, targets: Iterable[Target]) -> list[Finding]:
    """KG012 (cluster-wide write) and KG013 (Secret read) of what each mapping grants."""
    found: list[Finding] = []
    for target in targets:
        def can(permission: Permission, namespace: str = "", t: Target = target) -> bool:
            return reviews.can(user=t.asked_user, groups=t.asked_groups,
                               permission=permission, namespace=namespace)

        writes = [str(p) for p in CLUSTER_WRITES if can(p)]
        if writes:
            found.append(_mapping_finding(
                rules.MAPPING_CLUSTER_WRITE, target, None,
                f"can write cluster-wide: {', '.join(writes)}"))
        cluster_reads = [p.verb for p in SECRET_READS if can(p)]
        reads = cluster_reads or [p.verb for p in SECRET_READS if can(p, target.namespace)]
        if reads:
            where = "in every namespace" if cluster_reads else f"in namespace {target.namespace}"
            found.append(_mapping_finding(
                rules.MAPPING_SECRET_READ, target,
                None if cluster_reads else Severity.MEDIUM,
                f"can {'/'.join(reads)} Secrets {where}"))
    return found


def _mapping_finding(rule_id: str, target: Target, severity: Severity | None,
                     what: str) -> Finding:
    rule = rules.rule(rule_id)
    objects = [target.ref]
    if target.subject is not None:
        objects.append(ObjectRef(kind="ServiceAccount", namespace=target.namespace,
                                 name=target.service_account))
    per_person = (" (the user is per person: its constant groups were checked)"
                  if target.user_claim else "")
    return Finding(rule=rule_id, severity=severity or rule.severity, objects=tuple(objects),
                   subject=target.describe(), target=target.mapping, file=target.file,
                   fix=rule.fix,
                   message=f"mapping {target.mapping} grants {target.describe()}, which "
                           f"{what}{per_person}")
