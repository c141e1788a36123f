"""The `RulesReviewer` port over the official `kubernetes` client: a SelfSubjectRulesReview
made while impersonating the identity in question.

The kubeconfig's own identity needs `impersonate` on `users` and `groups` (and on
`serviceaccounts` for service-account grants) and `create` on
`selfsubjectrulesreviews.authorization.k8s.io`. Impersonation headers are set on the one
ApiClient before each review (`set_default_header`): the reviews run one after another.
Every ApiException and transport error is translated here into kubegate's errors, naming
what was asked and never a credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import kubernetes.client as k8s
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException

from exchanger.blast.rights import NonResourceRule, ResourceRule, RulesAnswer
from exchanger.kube.client import TIMEOUT, ClusterCredentials, api_client
from kubegate.errors import KubegateError, PreconditionError, UnavailableError

IMPERSONATE_USER: Final = "Impersonate-User"
IMPERSONATE_GROUP: Final = "Impersonate-Group"


class KubeconfigError(KubegateError):
    """The kubeconfig could not be read or names no usable cluster."""

    default_message = "the kubeconfig cannot be used"


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except ApiException as error:
        status = error.status or 0
        if status in (401, 403):
            raise PreconditionError(
                "REVIEW_FORBIDDEN", f"{operation}: the API server answered {status}: the "
                "kubeconfig's identity must be allowed to impersonate users, groups and "
                "service accounts and to create selfsubjectrulesreviews") from error
        raise UnavailableError("KUBERNETES_UNAVAILABLE",
                               f"{operation}: the API server answered {status}") from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise UnavailableError("KUBERNETES_UNAVAILABLE",
                               f"{operation}: {type(error).__name__}") from error


class ImpersonatingReviewer:
    """RulesReviewer for the cluster an ApiClient reaches."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._api = api
        self._authorization = k8s.AuthorizationV1Api(api)

    @classmethod
    def from_kubeconfig(cls, path: Path, context: str | None) -> ImpersonatingReviewer:
        try:
            api = api_client(server="", ca_file=None, credentials=ClusterCredentials(
                kubeconfig=path, context=context))
        except (kubernetes.config.ConfigException, OSError, ValueError) as error:
            raise KubeconfigError("KUBECONFIG_UNUSABLE", f"{path}: {type(error).__name__}: "
                                  f"{str(error)[:200]}") from error
        return cls(api)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    def review(self, *, user: str, group: str | None, namespace: str) -> RulesAnswer:
        self._api.set_default_header(IMPERSONATE_USER, user)  # type: ignore[no-untyped-call]
        if group is None:
            self._api.default_headers.pop(IMPERSONATE_GROUP, None)
        else:
            self._api.set_default_header(  # type: ignore[no-untyped-call]
                IMPERSONATE_GROUP, group)
        body = k8s.V1SelfSubjectRulesReview(
            spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=namespace))
        as_whom = f"{user}" + (f" (group {group})" if group else "")
        with _translated(f"rules review of {as_whom} in namespace {namespace}"):
            answer: Any = self._authorization.create_self_subject_rules_review(
                body, _request_timeout=TIMEOUT)
        return answer_of(answer.status)


def answer_of(status: Any) -> RulesAnswer:
    """A V1SubjectRulesReviewStatus as values."""
    return RulesAnswer(
        resource_rules=tuple(ResourceRule(
            verbs=tuple(rule.verbs or ()), groups=tuple(rule.api_groups or ("",)),
            resources=tuple(rule.resources or ()), names=tuple(rule.resource_names or ()))
            for rule in status.resource_rules or ()),
        non_resource_rules=tuple(NonResourceRule(
            verbs=tuple(rule.verbs or ()), urls=tuple(rule.non_resource_urls or ()))
            for rule in status.non_resource_rules or ()),
        incomplete=bool(status.incomplete), evaluation_error=status.evaluation_error or "")
