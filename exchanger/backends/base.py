"""What every issuance backend takes and returns, and the port they implement.

Invariants: a backend never returns a lifetime it did not get (TokenRequest reports the
expiry the API server actually granted); a credential always carries the id (`jti`) that the
Kubernetes audit log records as `authentication.kubernetes.io/credential-id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from exchanger.identity import Identity
from exchanger.mappings.model import Grant
from kubegate.credential import ClusterInfo

MIN_LIFETIME = 600  # TokenRequest's floor; self-issued tokens keep the same floor
MIN_FORCED_LIFETIME = 60
"""The floor when `not_after` (the end of an access request or window) leaves less than
MIN_LIFETIME: a self-issued token lives that long; a TokenRequest token still gets 600s
from the API server, bound to a session Secret that is deleted at `not_after`."""
SERVICE_ACCOUNT_TOKEN_TYPE = "urn:kubegate:token-type:kubernetes-service-account"  # noqa: S105 - a type URN
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a type URN


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    identity: Identity
    mapping: str
    grant: Grant
    lifetime: int
    audiences: tuple[str, ...]
    session_id: str
    not_after: int = 0  # unix seconds the credential must not outlive (0: no such limit)

    def __post_init__(self) -> None:
        floor = MIN_FORCED_LIFETIME if self.not_after else MIN_LIFETIME
        if self.lifetime < floor:
            raise ValueError(f"lifetime must be at least {floor}s")


@dataclass(frozen=True, kw_only=True)
class IssuedCredential:
    token: str = field(repr=False)  # a secret: never in repr, logs or errors
    token_type: str
    token_id: str
    expires_at: int
    session_id: str
    cluster: ClusterInfo
    bound_to: str  # e.g. "Pod ci/pipeline-abc", "Secret web/kubegate-session-..", "self-issued"
    caller_pod: str = ""  # "namespace/name/uid" when the caller is a pod of this cluster

    @property
    def secret(self) -> str:
        """"namespace/name" of the session Secret that revokes it ("" when not so bound)."""
        kind, _, where = self.bound_to.partition(" ")
        return where if kind == "Secret" else ""


class SessionObserver(Protocol):
    """Who counts TokenRequest sessions (`exchanger.metrics.ExchangerMetrics`)."""

    def on_session_issued(self, cluster: str, bound_to: str) -> None:
        """bound_to: "pod" (the caller's own pod) or "secret" (a session Secret)."""
        ...

    def on_session_revoked(self, cluster: str) -> None: ...

    def on_session_reaped(self, cluster: str, reason: str) -> None: ...

    def on_reaper_run(self, cluster: str, result: str, finished_at: float) -> None:
        """result: "ok", or "error" when a namespace or the whole run failed."""
        ...


class CredentialBackend(Protocol):
    def issue(self, request: IssueRequest) -> IssuedCredential: ...

    def revoke(self, credential: IssuedCredential) -> None:
        """Undo an issue whose audit record could not be written (best effort)."""
        ...
