"""Which cluster actions are privileged: the ones a security team wants to see one by one.

Rules of this module:
- `classify` is pure: one event in, one category out ("" for an ordinary action); the
  category names are stable ids (`CATEGORIES`), used in JSON and filters;
- an impersonated request is `impersonate` whatever it did: acting as someone else is the
  privilege that matters first;
- reads are privileged only for Secrets (their values are credentials); for RBAC, admission
  and CRDs only writes are (reading a Role grants nothing); exec, attach and port-forward
  whatever the verb (the API server records a WebSocket upgrade as `get`, SPDY as `create`);
- the refusal of a privileged request is still classified: an attempt is worth seeing.
"""

from __future__ import annotations

from exchanger.auditreport.model import ClusterEvent

__all__ = ["CATEGORIES", "classify"]

CATEGORIES = ("exec", "attach", "port-forward", "secret-read", "rbac", "admission", "crd",
              "namespace-delete", "token-request", "impersonate", "csr-approval")

WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SECRET_READS = frozenset({"get", "list", "watch"})
POD_SUBRESOURCES = {"exec": "exec", "attach": "attach", "portforward": "port-forward"}
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_RESOURCES = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings"})
RBAC_VERBS = WRITES | {"bind", "escalate"}
ADMISSION_GROUP = "admissionregistration.k8s.io"
ADMISSION_RESOURCES = frozenset({
    "validatingwebhookconfigurations", "mutatingwebhookconfigurations",
    "validatingadmissionpolicies", "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"})
CRD_GROUP = "apiextensions.k8s.io"
CSR_GROUP = "certificates.k8s.io"


def _core(event: ClusterEvent) -> str:
    """The category of a core (group "") resource action."""
    if event.resource == "pods" and event.subresource in POD_SUBRESOURCES:
        return POD_SUBRESOURCES[event.subresource]
    if event.resource == "secrets" and not event.subresource and event.verb in SECRET_READS:
        return "secret-read"
    if event.resource == "namespaces" and not event.subresource and event.verb == "delete":
        return "namespace-delete"
    if (event.resource, event.subresource, event.verb) == ("serviceaccounts", "token",
                                                             "create"):
        return "token-request"
    return ""


def _grouped(event: ClusterEvent) -> str:
    """The category of an action on a resource of a named API group."""
    group, resource, verb = event.api_group, event.resource, event.verb
    if group == RBAC_GROUP and resource in RBAC_RESOURCES and verb in RBAC_VERBS:
        return "rbac"
    if group == ADMISSION_GROUP and resource in ADMISSION_RESOURCES and verb in WRITES:
        return "admission"
    if group == CRD_GROUP and resource == "customresourcedefinitions" and verb in WRITES:
        return "crd"
    if (group, resource, event.subresource) == (
            CSR_GROUP, "certificatesigningrequests", "approval") and verb in WRITES:
        return "csr-approval"
    return ""


def classify(event: ClusterEvent) -> str:
    """The privileged category of `event` (one of `CATEGORIES`), or "" for none."""
    if event.impersonated_user:
        return "impersonate"
    if not event.resource:
        return ""
    return _grouped(event) if event.api_group else _core(event)
