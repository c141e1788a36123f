"""The rule catalogue: every finding `kubegate scan` can report, with its stable id, its
default severity, a one-line description and the fix. README's "Scan" section shows the same
table; a unit test keeps them equal.

Rules of this module:
- ids are stable: a rule is never renumbered or reused, only retired;
- a rule's severity is its default; a finding may be lower (a namespaced rather than a
  cluster-wide reach), never higher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from exchanger.scan.model import Severity


@dataclass(frozen=True, kw_only=True)
class Rule:
    id: str
    severity: Severity
    name: str  # PascalCase, for SARIF's `name`
    what: str
    fix: str


LEGACY_TOKEN: Final = "KG001"  # noqa: S105
MINT_TOKEN: Final = "KG002"  # noqa: S105
IMPERSONATE: Final = "KG003"
CREATE_WORKLOADS: Final = "KG004"
CERTIFICATES: Final = "KG005"
BIND_ESCALATE: Final = "KG006"
WEBHOOKS: Final = "KG007"
WILDCARD_SERVICE_ACCOUNT: Final = "KG008"
STANDING_PEOPLE: Final = "KG009"
AUTOMOUNT_POD: Final = "KG010"
AUTOMOUNT_SERVICE_ACCOUNT: Final = "KG011"
MAPPING_CLUSTER_WRITE: Final = "KG012"
MAPPING_SECRET_READ: Final = "KG013"  # noqa: S105

_H, _M, _L = Severity.HIGH, Severity.MEDIUM, Severity.LOW

RULES: Final[dict[str, Rule]] = {rule.id: rule for rule in (
    Rule(id=LEGACY_TOKEN, severity=_H, name="LegacyServiceAccountToken",
         what="a legacy service-account token Secret: a credential that never expires",
         fix="delete the Secret (kubectl delete secret -n NS NAME); workloads get bound "
             "tokens from a projected volume, pipelines from kubegate"),
    Rule(id=MINT_TOKEN, severity=_H, name="MintsGrantedServiceAccountTokens",
         what="someone besides the exchanger can create serviceaccounts/token for a service "
              "account a mapping grants",
         fix="remove create on serviceaccounts/token from that subject's roles in the "
             "namespace; only the exchanger needs it, with resourceNames"),
    Rule(id=IMPERSONATE, severity=_H, name="ImpersonatesGrantedIdentity",
         what="someone can impersonate a service account, user or group a mapping grants",
         fix="remove the impersonate verb (serviceaccounts, users, groups) from that "
             "subject's roles"),
    Rule(id=CREATE_WORKLOADS, severity=_M, name="CreatesWorkloadsBesideGrantedAccount",
         what="someone can create pods or workloads in the namespace of a granted service "
              "account: a pod can run as that account, around the broker",
         fix="remove create on pods and workload controllers in that namespace from the "
             "subject's roles; deploy through a kubegate mapping instead"),
    Rule(id=CERTIFICATES, severity=_H, name="ApprovesOrSignsCertificates",
         what="someone can approve or sign CertificateSigningRequests: minting client "
              "certificates that never pass the broker",
         fix="remove update on certificatesigningrequests/approval (or /status) and "
             "approve (or sign) on signers from that subject's roles"),
    Rule(id=BIND_ESCALATE, severity=_H, name="BindsOrEscalatesRoles",
         what="someone can bind or escalate roles: grant themselves anything",
         fix="remove the bind and escalate verbs on roles and clusterroles from that "
             "subject's roles"),
    Rule(id=WEBHOOKS, severity=_H, name="WritesAdmissionWebhooks",
         what="someone can create, update or patch admission webhook configurations: see or "
              "change every object written",
         fix="remove create, update and patch on validatingwebhookconfigurations and "
             "mutatingwebhookconfigurations from that subject's roles"),
    Rule(id=WILDCARD_SERVICE_ACCOUNT, severity=_H, name="WildcardServiceAccount",
         what="a service account bound to cluster-admin or a role with * verbs or resources",
         fix="bind a role listing the verbs and resources the account needs, and delete the "
             "binding"),
    Rule(id=STANDING_PEOPLE, severity=_H, name="StandingAdminForPeople",
         what="a user or group bound directly to a powerful role (standing admin where "
              "break-glass belongs)",
         fix="delete the binding; give people that access through a kubegate mapping for "
             "people (short-lived, audited)"),
    Rule(id=AUTOMOUNT_POD, severity=_M, name="PipelinePodAutomountsToken",
         what="a pod in a pipeline namespace mounts a service-account token it does not need",
         fix="set automountServiceAccountToken: false in the pod spec (and on its service "
             "account)"),
    Rule(id=AUTOMOUNT_SERVICE_ACCOUNT, severity=_L, name="PipelineServiceAccountAutomounts",
         what="a service account in a pipeline namespace does not turn token automounting off",
         fix="set automountServiceAccountToken: false on the ServiceAccount"),
    Rule(id=MAPPING_CLUSTER_WRITE, severity=_H, name="MappingGrantsClusterWideWrite",
         what="a trust mapping grants an identity that can write cluster-wide",
         fix="narrow the granted identity's RBAC to RoleBindings in its namespace"),
    Rule(id=MAPPING_SECRET_READ, severity=_H, name="MappingGrantsSecretRead",
         what="a trust mapping grants an identity that can read Secrets (medium: in its own "
              "namespace only)",
         fix="remove get, list and watch on secrets from the granted identity's roles"),
)}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
