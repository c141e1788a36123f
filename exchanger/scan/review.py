"""SubjectAccessReview: every "can" of a finding, asked of the real API server.

Rules of this module:
- the scan never evaluates RBAC itself: a candidate (`candidates.py`) is a finding only when
  `authorization.k8s.io/v1` SubjectAccessReview says `allowed`;
- one question is asked once (answers are cached for the scan);
- a review that cannot be made (the scanner may not create SubjectAccessReviews, the API
  server is down) is recorded once as a `CouldNotSee` and every later question is answered
  "not confirmed": the scan is then incomplete, never clean.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import kubernetes.client as k8s
import urllib3
from kubernetes.client.exceptions import ApiException

from exchanger.scan.candidates import Permission
from exchanger.scan.model import CouldNotSee
from kubegate.errors import MessageError, UnavailableError

TIMEOUT = (3.0, 10.0)


class ReviewError(MessageError):
    """A SubjectAccessReview could not be made; the message names the API's reason."""

    code = UnavailableError.code
    reason_name = "REVIEW_FAILED"


class AccessReviewer(Protocol):
    """Asks whether `user` (empty for a group alone) with `groups` may do `permission` in
    `namespace` ("" = cluster-wide). Raises ReviewError when it cannot tell."""

    def allowed(self, *, user: str, groups: tuple[str, ...], permission: Permission,
                namespace: str) -> bool: ...


class Reviews:
    """The scan's view of an AccessReviewer: cached, and failing once into `could_not_see`."""

    def __init__(self, reviewer: AccessReviewer) -> None:
        self._reviewer = reviewer
        self._answers: dict[tuple[str, tuple[str, ...], Permission, str], bool] = {}
        self.could_not_see: list[CouldNotSee] = []

    def can(self, *, user: str, groups: tuple[str, ...], permission: Permission,
            namespace: str = "") -> bool:
        if self.could_not_see:
            return False
        key = (user, groups, permission, namespace)
        if key not in self._answers:
            try:
                self._answers[key] = self._reviewer.allowed(
                    user=user, groups=groups, permission=permission, namespace=namespace)
            except ReviewError as error:
                self.could_not_see.append(CouldNotSee(
                    resource="subjectaccessreviews.authorization.k8s.io (create)",
                    reason=str(error)))
                return False
        return self._answers[key]


def api_reason(error: Exception) -> str:
    """The API's reason for a refused call, one line: `403 Forbidden: <its message>`."""
    if isinstance(error, ApiException):
        try:
            message = str(json.loads(error.body or "{}").get("message", ""))
        except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
            message = ""
        return f"{error.status} {error.reason}" + (f": {message}" if message else "")
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return f"cannot reach the API server: {type(error).__name__}"


class KubeAccessReviewer:
    """AccessReviewer over the official client's AuthorizationV1Api."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._authorization = k8s.AuthorizationV1Api(api)

    def allowed(self, *, user: str, groups: tuple[str, ...], permission: Permission,
                namespace: str) -> bool:
        attributes = k8s.V1ResourceAttributes(
            verb=permission.verb, group=permission.group, resource=permission.base_resource,
            subresource=permission.subresource or None, name=permission.name or None,
            namespace=namespace or None)
        review = k8s.V1SubjectAccessReview(spec=k8s.V1SubjectAccessReviewSpec(
            user=user or None, groups=list(groups), resource_attributes=attributes))
        try:
            answer: Any = self._authorization.create_subject_access_review(
                review, _request_timeout=TIMEOUT)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise ReviewError(api_reason(error)) from error
        return bool(answer.status and answer.status.allowed)
