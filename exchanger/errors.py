"""kubegate's errors. Each one names the gRPC status it travels as, a stable machine-readable
reason (sent as google.rpc.ErrorInfo), a public message that helps the caller without leaking
configuration, and a detail for the audit log only.

Rules of this module:
- a public message never contains a token, a key, a claim value or configuration detail;
- the detail may name configuration (issuer names, mapping names) but never a token or key;
- library errors (pyjwt, kubernetes, grpc, OS) are translated where they enter, with
  `raise ... from`, so none reaches a caller as UNKNOWN.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

ERROR_DOMAIN = "kubegate.io"


class KubegateError(Exception):
    """The root of every error kubegate raises on purpose."""

    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    default_message: ClassVar[str] = "internal error"

    def __init__(self, reason: str, detail: str = "", *, public_message: str | None = None):
        self.reason = reason
        self.detail = detail
        self.public_message = public_message or self.default_message
        super().__init__(f"{reason}: {self.public_message}" + (f" ({detail})" if detail else ""))


class InvalidTokenError(KubegateError):
    """The subject token is malformed, untrusted, or fails a check: the caller is unknown."""

    status = grpc.StatusCode.UNAUTHENTICATED
    default_message = "the subject token was not accepted"


class PermissionDeniedError(KubegateError):
    """The caller is known, but no trust mapping grants what it asked for."""

    status = grpc.StatusCode.PERMISSION_DENIED
    default_message = "no trust mapping allows this exchange"


class InvalidRequestError(KubegateError):
    """The request itself is wrong (missing fields, bad lifetime, ambiguous role)."""

    status = grpc.StatusCode.INVALID_ARGUMENT
    default_message = "the request is invalid"


class PreconditionError(KubegateError):
    """The request is fine, but the system is not in a state to serve it (a granted service
    account does not exist, the target cluster refuses kubegate's own credentials)."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    default_message = "the exchange cannot be completed in the current state"


class UnavailableError(KubegateError):
    """A dependency is down or slow (key endpoint, Kubernetes API, audit sink); retry later."""

    status = grpc.StatusCode.UNAVAILABLE
    default_message = "a dependency is unavailable; try again later"


class RateLimitedError(KubegateError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_message = "too many exchanges for this identity; slow down"


class ConfigError(KubegateError):
    """Configuration (a config file, a mapping file) is invalid. Never sent to a caller."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("INVALID_CONFIG", "; ".join(problems),
                         public_message="invalid configuration")

    def __str__(self) -> str:
        return "invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems)
