"""What can go wrong with one proxied request, each error with the HTTP status and the short
public message the client gets. Messages never carry a token, a header value or upstream text."""

from __future__ import annotations


class ProxyError(Exception):
    """A request the proxy answers itself instead of the apiserver."""

    status = 500
    reason = "Internal Server Error"
    public_message = "kubegate proxy: internal error"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail  # for our log only; free of secrets by construction
        super().__init__(detail or self.public_message)


class BadRequestError(ProxyError):
    status, reason = 400, "Bad Request"
    public_message = "kubegate proxy: malformed request"


class HeadTooLargeError(ProxyError):
    status, reason = 431, "Request Header Fields Too Large"
    public_message = "kubegate proxy: request head too large"


class MethodNotAllowedError(ProxyError):
    status, reason = 405, "Method Not Allowed"
    public_message = "kubegate proxy: CONNECT is not supported"


class NoCredentialError(ProxyError):
    status, reason = 503, "Service Unavailable"
    public_message = "kubegate proxy: no valid credential yet"


class UpstreamUnreachableError(ProxyError):
    status, reason = 502, "Bad Gateway"
    public_message = "kubegate proxy: the API server is unreachable"


class UpstreamTLSError(ProxyError):
    status, reason = 502, "Bad Gateway"
    public_message = "kubegate proxy: the API server's certificate is not trusted"


class UpstreamProtocolError(ProxyError):
    status, reason = 502, "Bad Gateway"
    public_message = "kubegate proxy: the API server sent a malformed response"


class UpstreamTimeoutError(ProxyError):
    status, reason = 504, "Gateway Timeout"
    public_message = "kubegate proxy: the API server did not answer in time"
