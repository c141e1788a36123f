"""The seam between the gateway's two halves: `identity` (who is behind a bearer token, and
when their session ends) and `proxy` (relaying requests as that session).

Rules of this module:
- a `GatewaySession` holds no secret: never the token, only what the API server is told and
  what an audit line may say;
- `Authenticator.authenticate` either returns a session that may act now or raises
  `GatewayRefusal`; it never returns an ended session;
- `SessionEnds` calls its listeners from its own thread within half a second of a session
  ending in the index (revoked, request ended, window closed); listeners must be quick and
  thread-safe (the proxy closes sockets, it does not wait on peers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kubegate.errors import Code, KubegateError


@dataclass(frozen=True, kw_only=True)
class GatewaySession:
    id: str  # the session's id in the index (`kubegate sessions list|show|revoke`)
    cluster: str  # the cluster this gateway fronts
    user: str  # what the API server is told (Impersonate-User)
    groups: tuple[str, ...]  # Impersonate-Group, in order
    mapping: str
    access_request: str  # "" when the mapping needs no approval
    subject: str  # words for the audit line: "issuer subject", never a token
    not_after: float  # epoch seconds: the session ends then at the latest


_CODES = {401: Code.UNAUTHENTICATED, 403: Code.PERMISSION_DENIED, 503: Code.UNAVAILABLE}


class GatewayRefusal(KubegateError):
    """A request the gateway answers itself: `status` 401 (no usable credential), 403 (a
    valid identity that may not act now) or 503 (keys or the session index out of reach);
    `reason` is a kubegate reason code (e.g. TOKEN_EXPIRED, SESSION_ENDED, OUTSIDE_WINDOW,
    WRONG_CLUSTER, IMPERSONATION_REFUSED); `message` is safe to show the client and to audit."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(reason, public_message=message, code=_CODES.get(status, Code.INTERNAL))
        self.status, self.message = status, message


class Authenticator(Protocol):
    def authenticate(self, token: str) -> GatewaySession: ...


SessionEndListener = Callable[[str, str], None]  # (session id, why: a SessionEnd value)


class SessionEnds(Protocol):
    def subscribe(self, listener: SessionEndListener) -> None: ...

    def stop(self) -> None: ...
