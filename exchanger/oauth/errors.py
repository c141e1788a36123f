"""How a refusal travels over OAuth: the one place where a kubegate error becomes an OAuth
error code (RFC 6749 §5.2, RFC 8693 §2.2.2) and an HTTP status.

    kubegate (code, or reason)               OAuth `error`            HTTP
    INVALID_ARGUMENT                         invalid_request          400
      UNSUPPORTED_GRANT_TYPE                 unsupported_grant_type   400
      INVALID_SCOPE, INVALID_ROLE            invalid_scope            400
      INVALID_TARGET, INVALID_AUDIENCES      invalid_target           400
    UNAUTHENTICATED (the subject token)      invalid_request          400
    PERMISSION_DENIED (no mapping allows it) access_denied            403
      AUDIENCE_NOT_ALLOWED                   invalid_target           400
    FAILED_PRECONDITION                      access_denied            403
    RESOURCE_EXHAUSTED (RATE_LIMITED)        temporarily_unavailable  429 + Retry-After
    UNAVAILABLE, CANCELLED                   temporarily_unavailable  503 + Retry-After
    DEADLINE_EXCEEDED                        temporarily_unavailable  504
    anything else                            server_error             500
    HTTP itself (before the form is read): invalid_request, with HTTP's own status:
      MALFORMED_REQUEST (smuggling, bad head) 400, HEAD_TOO_LARGE 431, REQUEST_TOO_LARGE 413,
      REQUEST_TIMEOUT 408, NOT_FOUND 404, METHOD_NOT_ALLOWED 405 + Allow

Why: RFC 6749 §5.2 answers its own codes with 400. RFC 8693 §2.2.2: "If the request itself
is not valid or if either the subject_token or actor_token are invalid for any reason, or are
unacceptable based on policy, the authorization server MUST construct an error response ...
[with] the value of the error parameter ... set to invalid_request", so a subject token that
is refused (bad signature, expired, wrong audience...) is `invalid_request`; its
`kubegate_reason` says which check failed.
A verified caller whom no trust mapping allows gets `access_denied` (RFC 6749 §4.1.2.1,
"the authorization server denied the request"), which §5.2 does not define for the token
endpoint, so its status is PERMISSION_DENIED's own, 403; an audience the mapping does not
grant is RFC 8693 §2.2.2's `invalid_target`. `temporarily_unavailable` (RFC 6749 §4.1.2.1)
carries the transient codes, with 429 (RFC 6585 §4) when the caller itself must slow down.

Rules of this module: the body always has `error`, `error_description` (the public message,
never a token or a detail) and `kubegate_reason` (the stable reason, as gRPC's ErrorInfo);
nothing else picks an OAuth error or a status for the token endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubegate.errors import Code, KubegateError
from kubegate.http import http_status
from kubegate.http.errors import HttpError

RETRY_AFTER_SECONDS = 1

_BY_REASON: dict[str, tuple[str, int]] = {
    "UNSUPPORTED_GRANT_TYPE": ("unsupported_grant_type", 400),
    "INVALID_SCOPE": ("invalid_scope", 400),
    "INVALID_ROLE": ("invalid_scope", 400),
    "INVALID_TARGET": ("invalid_target", 400),
    "INVALID_AUDIENCES": ("invalid_target", 400),
    "AUDIENCE_NOT_ALLOWED": ("invalid_target", 400),
}
_BY_CODE: dict[Code, tuple[str, int]] = {
    Code.INVALID_ARGUMENT: ("invalid_request", 400),
    Code.UNAUTHENTICATED: ("invalid_request", 400),
    Code.PERMISSION_DENIED: ("access_denied", 403),
    Code.FAILED_PRECONDITION: ("access_denied", 403),
    Code.RESOURCE_EXHAUSTED: ("temporarily_unavailable", 429),
    Code.UNAVAILABLE: ("temporarily_unavailable", 503),
    Code.CANCELLED: ("temporarily_unavailable", 503),
    Code.DEADLINE_EXCEEDED: ("temporarily_unavailable", 504),
}
SERVER_ERROR = ("server_error", 500)


class BodyTooLargeError(HttpError):
    """A request body over the bound (64 KiB, gRPC's receive limit)."""

    code = Code.RESOURCE_EXHAUSTED
    reason_code = "REQUEST_TOO_LARGE"
    default_message = "the request body is over 64 KiB"


class RequestTimeoutError(HttpError):
    """The client did not send a whole request (head and body) in time."""

    code = Code.DEADLINE_EXCEEDED
    reason_code = "REQUEST_TIMEOUT"
    default_message = "no whole request in time"


class NotFoundError(HttpError):
    code = Code.NOT_FOUND
    reason_code = "NOT_FOUND"
    default_message = "no such endpoint: the token endpoint is POST /oauth2/token"


class MethodNotAllowedError(HttpError):
    code = Code.INVALID_ARGUMENT
    reason_code = "METHOD_NOT_ALLOWED"

    def __init__(self, allow: str) -> None:
        self.allow = allow
        super().__init__(f"only {allow}")
        self.public_message = f"this endpoint takes {allow} only"


# HTTP's own words for failures of HTTP itself (RFC 9110 §15.5).
_HTTP_STATUS: tuple[tuple[type[HttpError], int], ...] = (
    (BodyTooLargeError, 413), (RequestTimeoutError, 408), (NotFoundError, 404),
    (MethodNotAllowedError, 405))


@dataclass(frozen=True, kw_only=True)
class OAuthError:
    """What an error is answered with."""

    error: str
    status: int
    description: str
    reason: str
    retry_after: int | None = None

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description,
                "kubegate_reason": self.reason}


def oauth_error(error: KubegateError) -> OAuthError:
    """The OAuth error code and HTTP status error travels as (the table above)."""
    if isinstance(error, HttpError) and error.code != Code.UNAVAILABLE:
        status = next((s for kind, s in _HTTP_STATUS if isinstance(error, kind)),
                      http_status(error))
        return OAuthError(error="invalid_request", status=status, reason=error.reason,
                          description=error.public_message)
    code, status = _BY_REASON.get(error.reason) or _BY_CODE.get(error.code, SERVER_ERROR)
    retry = RETRY_AFTER_SECONDS if status in (429, 503) else None
    return OAuthError(error=code, status=status, description=error.public_message,
                      reason=error.reason, retry_after=retry)


def internal_error(log_id: str) -> OAuthError:
    """An error that is not ours: no text of it leaves the process, only a log id."""
    code, status = SERVER_ERROR
    return OAuthError(error=code, status=status, reason="INTERNAL",
                      description=f"internal error (log id {log_id})")
