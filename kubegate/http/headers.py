"""Header rules for a relay that speaks for its client: pure functions of header lists.

Rules of this module:
- Headers stay an ordered tuple of (name, value) pairs with the names' case as received; names
  compare case-insensitively, so repeated headers and their order survive a rewrite.
- A client never chooses who the upstream sees: `Authorization`, `Proxy-Authorization` and
  every `Impersonate-*` header are dropped, and the credential's bearer token becomes the only
  `Authorization`.
- Hop-by-hop headers (RFC 9110 7.6.1) and the headers a `Connection` header names end here,
  except `Upgrade` (and `Connection: Upgrade`) on an upgrade.
- Framing is the relay's own: the client's `Content-Length`/`Transfer-Encoding` never go
  upstream as written; the body is re-framed from what was parsed (`BodyFraming`), so the
  upstream reads exactly the bytes the relay read, whatever the client's spelling.
- Every request goes upstream with `Connection: close` (or `Connection: Upgrade`), and every
  final answer goes to the client with `Connection: close`: one request per connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubegate.http.errors import BadRequestError

Headers = tuple[tuple[str, str], ...]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
FRAMING = frozenset({"content-length", "transfer-encoding"})
# Who the client claims to be never reaches the upstream.
CLIENT_IDENTITY = frozenset({"authorization", "proxy-authorization"})
IMPERSONATE_PREFIX = "impersonate-"

_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True)
class BodyFraming:
    """How a request body ends: no body, after `length` bytes, or at the last chunk."""

    chunked: bool = False
    length: int = 0

    def headers(self) -> Headers:
        if self.chunked:
            return (("Transfer-Encoding", "chunked"),)
        return (("Content-Length", str(self.length)),) if self.length else ()


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


def request_framing(headers: Headers) -> BodyFraming:
    """Where the request body ends. Ambiguous framing (both headers, disagreeing lengths, any
    coding but chunked) is refused: it is how requests are smuggled past a proxy."""
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


def origin_form(target: str) -> str:
    """Path and query of target; an absolute-form target (a client using the relay as an HTTP
    proxy) is cut down to its path, since the relay has exactly one upstream."""
    if _CONTROL.search(target):
        raise BadRequestError("control character in request target")
    if target.startswith("/"):
        return target
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raise BadRequestError("unsupported request target form")


def absolute_authority(target: str) -> str | None:
    """The authority of an absolute-form target (userinfo included, for the Host rules to
    refuse), or None for any other form."""
    if target.startswith(("http://", "https://")):
        return target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return None


def rewrite_request_headers(headers: Headers, *, token: str, host: str, upgrade: bool,
                            framing: BodyFraming | None = None) -> Headers:
    """The headers to send upstream: the client's, minus identity, impersonation, hop-by-hop,
    framing and `Expect` (the relay answers `100 Continue` itself), with Host, the relay's own
    framing, the bearer token and our Connection header set."""
    if not _BEARER.fullmatch(token):
        raise ValueError("the credential's token is not a valid bearer token")
    named = connection_tokens(headers)
    kept = [(name, value) for name, value in headers
            if _forwarded_to_upstream(name.lower(), named, upgrade)]
    return (
        ("Host", host), *kept, *(framing.headers() if framing else ()),
        ("Authorization", f"Bearer {token}"),
        ("Connection", "Upgrade" if upgrade else "close"),
    )


def _forwarded_to_upstream(lower: str, named: frozenset[str], upgrade: bool) -> bool:
    if lower in CLIENT_IDENTITY or lower.startswith(IMPERSONATE_PREFIX) or lower in FRAMING:
        return False
    if lower == "upgrade":
        return upgrade
    return lower not in HOP_BY_HOP and lower not in named and lower not in ("host", "expect")


def rewrite_response_headers(headers: Headers) -> Headers:
    """The headers of a final (non-101) answer for the client: hop-by-hop headers dropped but
    the framing ones (the relay re-frames the body from them), `Content-Length` dropped when
    `Transfer-Encoding` is there, and `Connection: close` added."""
    named = connection_tokens(headers)
    chunked = bool(header_values(headers, "transfer-encoding"))
    kept = [(name, value) for name, value in headers
            if (name.lower() == "transfer-encoding")
            or (name.lower() == "content-length" and not chunked)
            or (name.lower() not in HOP_BY_HOP and name.lower() not in named
                and name.lower() not in FRAMING)]
    return (*kept, ("Connection", "close"))


def rewrite_switch_headers(headers: Headers) -> Headers:
    """The headers of a 101 for the client: as the upstream sent them, minus hop-by-hop ones
    other than `Connection` and `Upgrade`, which the switch needs."""
    named = connection_tokens(headers) - {"upgrade"}
    return tuple((name, value) for name, value in headers
                 if name.lower() in ("connection", "upgrade")
                 or (name.lower() not in HOP_BY_HOP and name.lower() not in named))
