"""What can go wrong on either side of an HTTP/1.1 relay: each error a `KubegateError` with its
transport-neutral code, a stable reason and a short public message. The HTTP status an error
is answered with is chosen at the boundary, by `kubegate.http.answers.http_status`.

Rules of this module:
- no HTTP status here: an error says what went wrong (`code`, `reason`), the boundary says how
  HTTP spells it;
- a public message never carries a token, a header value or upstream text; a detail is for
  our log only and is free of secrets by construction: callers build it from fixed words,
  never from h11's error text, which quotes the offending header line.
"""

from __future__ import annotations

from typing import ClassVar

from kubegate.errors import Code, KubegateError


class HttpError(KubegateError):
    """A request the relay answers itself instead of the upstream."""

    reason_code: ClassVar[str] = "HTTP_INTERNAL"

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.reason_code, detail)


class BadRequestError(HttpError):
    """Malformed or ambiguous: refused, never forwarded (request smuggling included)."""

    code = Code.INVALID_ARGUMENT
    reason_code = "MALFORMED_REQUEST"
    default_message = "malformed request"


class HeadTooLargeError(HttpError):
    code = Code.RESOURCE_EXHAUSTED
    reason_code = "HEAD_TOO_LARGE"
    default_message = "request head too large"


class UnsupportedMethodError(HttpError):
    """CONNECT: the relay has one upstream and tunnels nothing but upgrades (RFC 9110 15.6.2:
    a method the server does not support for any resource)."""

    code = Code.UNIMPLEMENTED
    reason_code = "CONNECT_NOT_SUPPORTED"
    default_message = "CONNECT is not supported"


class HostNotAllowedError(HttpError):
    """A `Host` that is not a loopback name or an allowed one: DNS rebinding, or a client that
    reached the relay under a name nobody configured (`kubegate.http.hosts`)."""

    code = Code.PERMISSION_DENIED
    reason_code = "HOST_NOT_ALLOWED"
    default_message = "this Host is not allowed (loopback names or --proxy-allowed-hosts)"


class CrossOriginError(HttpError):
    """A browser's request from another origin (`Origin`, `Sec-Fetch-Site`): a web page must
    not act with the relay's credential."""

    code = Code.PERMISSION_DENIED
    reason_code = "CROSS_ORIGIN"
    default_message = "cross-origin browser requests are refused"


class HeadTimeoutError(HttpError):
    """The client did not send a whole request head in time (a slow or idle client)."""

    code = Code.DEADLINE_EXCEEDED
    reason_code = "HEAD_TIMEOUT"
    default_message = "no whole request head in time"


class TooManyConnectionsError(HttpError):
    """The relay holds as many connections as it may: the client may try again shortly."""

    code = Code.UNAVAILABLE
    reason_code = "TOO_MANY_CONNECTIONS"
    default_message = "too many connections, try again shortly"


class UpstreamError(HttpError):
    """The upstream could not be reached, trusted or understood: the relay is a gateway whose
    next hop failed, which is not the client's fault and not the relay's own unavailability."""

    code = Code.UNAVAILABLE
    reason_code = "UPSTREAM_FAILED"


class UpstreamUnreachableError(UpstreamError):
    reason_code = "UPSTREAM_UNREACHABLE"
    default_message = "the API server is unreachable"


class UpstreamTLSError(UpstreamError):
    reason_code = "UPSTREAM_UNTRUSTED"
    default_message = "the API server's certificate is not trusted"


class UpstreamProtocolError(UpstreamError):
    reason_code = "UPSTREAM_MALFORMED"
    default_message = "the API server sent a malformed response"


class UpstreamTimeoutError(HttpError):
    code = Code.DEADLINE_EXCEEDED
    reason_code = "UPSTREAM_TIMEOUT"
    default_message = "the API server did not answer in time"
