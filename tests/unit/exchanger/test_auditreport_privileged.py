"""Which cluster actions the report marks privileged, and the near misses it does not."""

from __future__ import annotations

from typing import Any

import pytest

from exchanger.auditreport.model import ClusterEvent
from exchanger.auditreport.privileged import CATEGORIES, classify

RBAC = "rbac.authorization.k8s.io"
ADMISSION = "admissionregistration.k8s.io"


def event(verb: str, resource: str, subresource: str = "", group: str = "",
          **fields: Any) -> ClusterEvent:
    values: dict[str, Any] = {"code": 200, **fields}
    return ClusterEvent(time=0.0, audit_id="a", stage="ResponseComplete", verb=verb,
                        username="u", api_group=group, resource=resource,
                        subresource=subresource, namespace="web", **values)


CASES = [
    # (verb, resource, subresource, group, category)
    ("create", "pods", "exec", "", "exec"),
    ("get", "pods", "exec", "", "exec"),  # a WebSocket upgrade
    ("create", "pods", "attach", "", "attach"),
    ("create", "pods", "portforward", "", "port-forward"),
    ("get", "secrets", "", "", "secret-read"),
    ("list", "secrets", "", "", "secret-read"),
    ("watch", "secrets", "", "", "secret-read"),
    ("create", "secrets", "", "", ""),  # writing a Secret reveals none
    ("delete", "secrets", "", "", ""),
    ("get", "configmaps", "", "", ""),
    ("get", "pods", "log", "", ""),
    ("create", "roles", "", RBAC, "rbac"),
    ("patch", "rolebindings", "", RBAC, "rbac"),
    ("update", "clusterroles", "", RBAC, "rbac"),
    ("delete", "clusterrolebindings", "", RBAC, "rbac"),
    ("bind", "clusterroles", "", RBAC, "rbac"),
    ("escalate", "roles", "", RBAC, "rbac"),
    ("get", "roles", "", RBAC, ""),
    ("list", "clusterrolebindings", "", RBAC, ""),
    ("create", "roles", "", "example.com", ""),  # a CRD of the same name
    ("create", "validatingwebhookconfigurations", "", ADMISSION, "admission"),
    ("delete", "mutatingwebhookconfigurations", "", ADMISSION, "admission"),
    ("patch", "validatingadmissionpolicies", "", ADMISSION, "admission"),
    ("create", "validatingadmissionpolicybindings", "", ADMISSION, "admission"),
    ("list", "validatingwebhookconfigurations", "", ADMISSION, ""),
    ("create", "customresourcedefinitions", "", "apiextensions.k8s.io", "crd"),
    ("delete", "customresourcedefinitions", "", "apiextensions.k8s.io", "crd"),
    ("get", "customresourcedefinitions", "", "apiextensions.k8s.io", ""),
    ("delete", "namespaces", "", "", "namespace-delete"),
    ("create", "namespaces", "", "", ""),
    ("update", "namespaces", "finalize", "", ""),
    ("create", "serviceaccounts", "token", "", "token-request"),
    ("get", "serviceaccounts", "", "", ""),
    ("update", "certificatesigningrequests", "approval", "certificates.k8s.io",
     "csr-approval"),
    ("create", "certificatesigningrequests", "", "certificates.k8s.io", ""),
]


@pytest.mark.parametrize(("verb", "resource", "subresource", "group", "category"), CASES)
def test_classify(verb: str, resource: str, subresource: str, group: str,
                  category: str) -> None:
    assert classify(event(verb, resource, subresource, group)) == category


def test_an_impersonated_request_is_impersonation_whatever_it_did() -> None:
    assert classify(event("get", "pods", impersonated_user="bob")) == "impersonate"
    assert classify(event("create", "pods", "exec", impersonated_user="bob")) == (
        "impersonate")


def test_a_refused_privileged_request_is_still_classified() -> None:
    assert classify(event("get", "secrets", code=403)) == "secret-read"


def test_a_non_resource_request_is_not_privileged() -> None:
    assert classify(event("get", "", request_uri="/version")) == ""


def test_every_category_has_a_case() -> None:
    named = {case[-1] for case in CASES} | {"impersonate"}
    assert named - {""} == set(CATEGORIES)
