"""The few Kubernetes operations kubegate performs, as a port the issuers depend on.

Secrets are created and deleted by name only: kubegate never lists or reads Secrets where it
grants (its Role there has no get, list or watch on secrets); the session index
(`exchanger.access`) is how it finds its own.

Implementations translate every client error into kubegate's errors (UnavailableError for a
down, slow or throttling API server; PreconditionError for 403/404/409), so no library error
crosses this boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

SESSION_LABEL = "kubegate.io/session"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
CALLER_POD_ANNOTATION = "kubegate.io/caller-pod"  # "<namespace>/<name>/<uid>"
EXPIRES_ANNOTATION = "kubegate.io/expires-at"  # unix seconds
MAPPING_ANNOTATION = "kubegate.io/mapping"


@dataclass(frozen=True, kw_only=True)
class ObjectRef:
    kind: str
    name: str
    uid: str
    namespace: str = ""


@dataclass(frozen=True, kw_only=True)
class GrantedToken:
    token: str = field(repr=False)
    expires_at: int


@dataclass(frozen=True, kw_only=True)
class PodInfo:
    uid: str
    service_account: str


class KubeApi(Protocol):
    def create_session_secret(
        self, namespace: str, name: str, labels: Mapping[str, str],
        annotations: Mapping[str, str],
    ) -> ObjectRef: ...

    def delete_secret(self, namespace: str, name: str) -> None:
        """Delete; a missing secret is not an error."""
        ...

    def request_token(
        self, namespace: str, service_account: str, *, audiences: Sequence[str],
        seconds: int, bound_to: ObjectRef,
    ) -> GrantedToken: ...

    def get_pod(self, namespace: str, name: str) -> PodInfo | None: ...

    def review_token(self, token: str, audiences: Sequence[str]) -> bool:
        """TokenReview: True when the API server authenticates token for audiences."""
        ...
