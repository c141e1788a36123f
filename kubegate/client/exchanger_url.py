"""The address of an exchanger's RFC 8693 token endpoint, as `--server` spells it:
`https://HOST[:PORT]` (the exchanger's `httpPublicUrl`; port 443 by default), or
`http://HOST:PORT` for a loopback exchanger without TLS (`plaintext: true`).

A `--server` with a scheme selects the HTTPS route (`kubegate.client.https_exchange`); one
without (`HOST:PORT`) is gRPC's.

Rules of this module:
- standard library only, and light: the settings loader of every client imports it;
- the URL is an origin: no user info (a credential in a URL ends up in logs), no path other
  than `/`, no query, no fragment; the host follows `kubegate.addresses`' rules;
- `http://` only to a loopback host, as gRPC's `--plaintext`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from kubegate.addresses import HostPort, parse_host_port

SCHEMES = {"https": 443, "http": 80}


@dataclass(frozen=True, kw_only=True)
class ExchangerUrl:
    scheme: str  # https | http
    address: HostPort

    @property
    def plaintext(self) -> bool:
        return self.scheme == "http"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


def is_url(text: str) -> bool:
    """Whether a `--server` value names the HTTPS route (it has a scheme)."""
    return "://" in text


def parse_exchanger_url(text: str) -> ExchangerUrl:
    """The origin in text; ValueError naming what is wrong (never echoing user info)."""
    expected = "expected https://HOST[:PORT] (the exchanger's httpPublicUrl)"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{expected}: not a URL") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{expected}: the scheme must be https (http on loopback only)")
    if "@" in parts.netloc:
        raise ValueError(f"{expected}: no user or password in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"{expected}: no path, query or fragment (the token endpoint is "
                         "found at /oauth2/token)")
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    try:
        address = parse_host_port(f"{host}:{SCHEMES[parts.scheme] if port is None else port}")
    except ValueError:
        raise ValueError(f"{expected}: not a valid host and port") from None
    if address.port == 0:
        raise ValueError(f"{expected}: port 0 cannot be dialled")
    if parts.scheme == "http" and not address.is_local:
        raise ValueError(f"{expected}: http:// (no TLS) is only allowed to a loopback host")
    return ExchangerUrl(scheme=parts.scheme, address=address)
