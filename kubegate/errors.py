"""kubegate's errors: one root, `KubegateError`, for every error kubegate raises on purpose.

Each error carries a transport-neutral `Code` (named like gRPC's status codes, which is what
the audit log records), a stable machine-readable reason, a public message that helps the
caller without leaking configuration, and a detail for the audit log only. Which gRPC status
or HTTP status a code travels as is decided at that transport's boundary, never here.

Rules of this module:
- standard library only: `kubegate credential` imports it;
- a public message never contains a token, a key, a claim value or configuration detail;
- the detail may name configuration (issuer names, mapping names) but never a token or key;
- library errors (pyjwt, kubernetes, grpc, OS) are translated where they enter, with
  `raise ... from`, so none reaches a caller as UNKNOWN.
"""

from __future__ import annotations

import enum
from typing import ClassVar

ERROR_DOMAIN = "kubegate.io"


class Code(enum.Enum):
    """What went wrong, independent of the transport. Names and meanings are gRPC's."""

    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid-argument"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    NOT_FOUND = "not-found"
    ALREADY_EXISTS = "already-exists"
    PERMISSION_DENIED = "permission-denied"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    FAILED_PRECONDITION = "failed-precondition"
    ABORTED = "aborted"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data-loss"
    UNAUTHENTICATED = "unauthenticated"

    @property
    def transient(self) -> bool:
        """Worth another try: the server or the path to it is down, slow or shedding load.
        CANCELLED is what a stopping server (a restart, a rolling update) answers to calls
        that reached it as it stopped. Everything else gets the same answer again."""
        return self in _TRANSIENT

    @property
    def denial(self) -> bool:
        """The answer is a refusal of this request, not a failure to answer it."""
        return self in _DENIALS

    @property
    def http_status(self) -> int:
        """The HTTP status this code travels as on an HTTP boundary."""
        return _HTTP_STATUS.get(self, 500)


_TRANSIENT = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED,
                        Code.CANCELLED})
_DENIALS = frozenset({Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.INVALID_ARGUMENT,
                      Code.FAILED_PRECONDITION})
_HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400, Code.UNAUTHENTICATED: 401, Code.PERMISSION_DENIED: 403,
    Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409, Code.FAILED_PRECONDITION: 412,
    Code.ABORTED: 409, Code.RESOURCE_EXHAUSTED: 429,
    Code.CANCELLED: 499, Code.UNIMPLEMENTED: 501, Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
}


class KubegateError(Exception):
    """The root of every error kubegate raises on purpose."""

    code: Code = Code.INTERNAL
    default_message: ClassVar[str] = "internal error"

    def __init__(self, reason: str, detail: str = "", *, public_message: str | None = None,
                 code: Code | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.public_message = public_message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(f"{reason}: {self.public_message}" + (f" ({detail})" if detail else ""))


class InvalidTokenError(KubegateError):
    """The subject token is malformed, untrusted, or fails a check: the caller is unknown."""

    code = Code.UNAUTHENTICATED
    default_message = "the subject token was not accepted"


class PermissionDeniedError(KubegateError):
    """The caller is known, but no trust mapping grants what it asked for."""

    code = Code.PERMISSION_DENIED
    default_message = "no trust mapping allows this exchange"


class InvalidRequestError(KubegateError):
    """The request itself is wrong (missing fields, bad lifetime, ambiguous role)."""

    code = Code.INVALID_ARGUMENT
    default_message = "the request is invalid"


class PreconditionError(KubegateError):
    """The request is fine, but the system is not in a state to serve it (a granted service
    account does not exist, the target cluster refuses kubegate's own credentials)."""

    code = Code.FAILED_PRECONDITION
    default_message = "the exchange cannot be completed in the current state"


class UnavailableError(KubegateError):
    """A dependency is down or slow (key endpoint, Kubernetes API, audit sink); retry later."""

    code = Code.UNAVAILABLE
    default_message = "a dependency is unavailable; try again later"


class RateLimitedError(KubegateError):
    code = Code.RESOURCE_EXHAUSTED
    default_message = "too many exchanges for this identity; slow down"


class ConfigError(KubegateError):
    """Configuration (a config file, a mapping file, flags) is invalid: every problem found,
    each naming its file or flag and field. Never sent to a caller."""

    code = Code.INVALID_ARGUMENT

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("INVALID_CONFIG", "; ".join(problems),
                         public_message="invalid configuration")

    def __str__(self) -> str:
        return "invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems)


class MessageError(KubegateError):
    """An error that is one line for a person (a command's user, an operator reading a log):
    the class gives the code and the stable reason, the caller gives the line."""

    reason_name: ClassVar[str] = "ERROR"

    def __init__(self, message: str, *, code: Code | None = None) -> None:
        super().__init__(self.reason_name, public_message=message, code=code)

    def __str__(self) -> str:
        return self.public_message


class UsageError(MessageError):
    """A command was called wrongly (flags, files it needs): one line for its user."""

    code = Code.INVALID_ARGUMENT
    reason_name = "USAGE"


class SubjectTokenError(MessageError):
    """The subject token could not be had. The message names where it should have come from,
    never a token. Transient when its source could not be reached or shed load."""

    code = Code.FAILED_PRECONDITION
    reason_name = "NO_SUBJECT_TOKEN"

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message, code=Code.UNAVAILABLE if transient else None)

    @property
    def transient(self) -> bool:
        return self.code.transient


class ExchangeError(KubegateError):
    """The exchanger refused, or could not be reached: its code, its stable reason (empty when
    the answer carried none) and its public message."""

    def __init__(self, code: Code, reason: str, message: str) -> None:
        self.message = message
        super().__init__(reason, public_message=message or "no message", code=code)

    @property
    def transient(self) -> bool:
        return self.code.transient

    def describe(self) -> str:
        """`denied: PERMISSION_DENIED NO_MATCHING_MAPPING: no trust mapping allows this ...`"""
        status = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        return f"{'denied' if self.code.denial else 'failed'}: {status}: {self.public_message}"

    def __str__(self) -> str:
        return (f"{self.code.name} {self.reason}: {self.message}" if self.reason else
                f"{self.code.name}: {self.message}")
