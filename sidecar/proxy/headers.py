"""HTTP/1.1 message heads as the proxy reads and rewrites them: pure functions of bytes and
header lists, no sockets.

Rules of the module:
- Headers stay an ordered tuple of (name, value) pairs as received; names compare
  case-insensitively, so repeated headers and their order survive a rewrite.
- A client never chooses who the apiserver sees: `Authorization`, `Proxy-Authorization` and
  every `Impersonate-*` header are dropped, and the credential's bearer token becomes the only
  `Authorization`.
- Hop-by-hop headers (RFC 9110 7.6.1) and the headers a `Connection` header names end here,
  except `Upgrade` on an upgrade request, and the framing headers (`Content-Length`,
  `Transfer-Encoding`): the proxy relays a body byte for byte with the framing it came with.
- Every request goes upstream with `Connection: close` (or `Connection: Upgrade`), and every
  answer goes to the client with `Connection: close`: one request per connection, so the end of
  a response is simply the end of the upstream stream, whatever its framing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecar.proxy.errors import (
    BadRequestError,
    MethodNotAllowedError,
    UpstreamProtocolError,
)

Headers = tuple[tuple[str, str], ...]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
# Relayed untouched whatever a Connection header says: the body bytes carry this framing.
FRAMING = frozenset({"content-length", "transfer-encoding"})
# Who the client claims to be never reaches the apiserver.
CLIENT_IDENTITY = frozenset({"authorization", "proxy-authorization"})
IMPERSONATE_PREFIX = "impersonate-"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VERSIONS = frozenset({"HTTP/1.1", "HTTP/1.0"})


@dataclass(frozen=True, kw_only=True)
class RequestHead:
    method: str
    target: str  # origin-form: path and query
    headers: Headers


@dataclass(frozen=True, kw_only=True)
class ResponseHead:
    status: int
    reason: str
    headers: Headers


@dataclass(frozen=True, kw_only=True)
class BodyFraming:
    """How the request body ends: no body, after `length` bytes, or at the last chunk."""

    chunked: bool = False
    length: int = 0


def parse_request_head(data: bytes) -> RequestHead:
    """The request line and headers of data (the head, up to and including the blank line)."""
    start, headers = _split_head(data, BadRequestError)
    parts = start.split(" ")
    if len(parts) != 3 or parts[2] not in _VERSIONS or not _TOKEN.fullmatch(parts[0]):
        raise BadRequestError("malformed request line")
    method, target = parts[0], parts[1]
    if method == "CONNECT":
        raise MethodNotAllowedError("CONNECT")
    return RequestHead(method=method, target=_origin_form(target), headers=headers)


def parse_response_head(data: bytes) -> ResponseHead:
    start, headers = _split_head(data, UpstreamProtocolError)
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise UpstreamProtocolError("malformed status line")
    return ResponseHead(status=int(code), reason=reason, headers=headers)


def _split_head(data: bytes, error: type[BadRequestError | UpstreamProtocolError],
                ) -> tuple[str, Headers]:
    lines = data.decode("latin-1").split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise error("empty head")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or _CONTROL.search(value.replace("\t", " ")):
            raise error("malformed header line")  # also refuses obsolete line folding
        headers.append((name, value.strip(" \t")))
    return lines[0], tuple(headers)


def _origin_form(target: str) -> str:
    """Path and query of target; an absolute-form target (a client using us as an HTTP proxy)
    is cut down to its path, since the proxy has exactly one upstream."""
    if _CONTROL.search(target):
        raise BadRequestError("control character in request target")
    if target.startswith("/"):
        return target
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raise BadRequestError("unsupported request target form")


def header_values(headers: Headers, name: str) -> list[str]:
    lower = name.lower()
    return [value for key, value in headers if key.lower() == lower]


def connection_tokens(headers: Headers) -> frozenset[str]:
    """The lower-cased options of every Connection header (`close`, `upgrade`, header names)."""
    return frozenset(
        option.strip().lower()
        for value in header_values(headers, "connection")
        for option in value.split(",") if option.strip()
    )


def is_upgrade_request(headers: Headers) -> bool:
    """Connection names `upgrade` and an Upgrade header says to what (websocket, SPDY/3.1)."""
    return "upgrade" in connection_tokens(headers) and any(header_values(headers, "upgrade"))


def request_body_framing(headers: Headers) -> BodyFraming:
    """Where the request body ends. Ambiguous framing (both headers, or disagreeing lengths)
    is refused: it is how requests are smuggled past a proxy."""
    encodings = [e.strip().lower() for v in header_values(headers, "transfer-encoding")
                 for e in v.split(",") if e.strip()]
    lengths = {v.strip() for v in header_values(headers, "content-length")}
    if encodings:
        if encodings != ["chunked"] or lengths:
            raise BadRequestError("unsupported or ambiguous transfer-encoding")
        return BodyFraming(chunked=True)
    if not lengths:
        return BodyFraming()
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise BadRequestError("invalid content-length")
    return BodyFraming(length=int(next(iter(lengths))))


def rewrite_request_headers(headers: Headers, *, token: str, host: str,
                            upgrade: bool) -> Headers:
    """The headers to send upstream: the client's, minus identity, impersonation, hop-by-hop
    and `Expect` (the proxy answers `100 Continue` itself), with Host, the bearer token and
    our Connection header set."""
    if not _BEARER.fullmatch(token):
        raise ValueError("the credential's token is not a valid bearer token")
    named = connection_tokens(headers)
    kept = [(name, value) for name, value in headers
            if _forwarded_to_upstream(name.lower(), named, upgrade)]
    return (
        ("Host", host), *kept, ("Authorization", f"Bearer {token}"),
        ("Connection", "Upgrade" if upgrade else "close"),
    )


def _forwarded_to_upstream(lower: str, named: frozenset[str], upgrade: bool) -> bool:
    if lower in CLIENT_IDENTITY or lower.startswith(IMPERSONATE_PREFIX):
        return False
    if lower in FRAMING:
        return True
    if lower == "upgrade":
        return upgrade
    return lower not in HOP_BY_HOP and lower not in named and lower not in ("host", "expect")


def rewrite_response_headers(headers: Headers) -> Headers:
    """The headers of a final (non-101) answer for the client: hop-by-hop headers dropped,
    `Connection: close` added."""
    named = connection_tokens(headers)
    kept = [(name, value) for name, value in headers
            if name.lower() in FRAMING or name.lower() in ("trailer",)
            or (name.lower() not in HOP_BY_HOP and name.lower() not in named)]
    return (*kept, ("Connection", "close"))


def serialize_request_head(method: str, target: str, headers: Headers) -> bytes:
    return _serialize(f"{method} {target} HTTP/1.1", headers)


def serialize_response_head(status: int, reason: str, headers: Headers) -> bytes:
    return _serialize(f"HTTP/1.1 {status} {reason}".rstrip(" "), headers)


def _serialize(start: str, headers: Headers) -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")
