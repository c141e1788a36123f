"""Who may use a loopback relay that acts with a credential: the `Host` and `Origin` rules that
stop a web page in a browser next to it (end-to-end test runners) from using it, by DNS
rebinding (a hostile name resolved to 127.0.0.1: the browser sends `Host: evil.example`) or by
a cross-origin request (a WebSocket or a `fetch` to `http://127.0.0.1:PORT`). `kubectl proxy`
keeps the same `Host` rule (`--accept-hosts`). Pure functions of a request head.

Rules of this module:
- `Host` is required, once, and well-formed (RFC 9112 3.2: else 400): `name[:port]`,
  `IPv4[:port]` or `[IPv6][:port]`, ASCII letters, digits, `-`, `_` and dots only, so userinfo
  (`user@localhost`), percent-encoding and look-alike Unicode letters are malformed, never
  matched;
- a well-formed `Host` is allowed (else 403) when its host, without its port, is `localhost`
  (any case: host names are case-insensitive), a loopback IP address written plainly
  (127.0.0.0/8 in dotted quads, `::1` in any IPv6 spelling: an address literal cannot be
  rebound), or one of the configured names, exactly; nothing else: not `localhost.` (a
  different origin to a browser), not `0.0.0.0`, not `127.1` or `2130706433` (a browser writes
  `127.0.0.1`), not `::ffff:127.0.0.1`;
- an absolute-form target (`GET http://host/path`) names the host that counts (RFC 9112
  3.2.2): it must pass the same rules as `Host`;
- a browser's cross-origin request is refused (403): one with an `Origin` other than the
  request's own (`http://` and its `Host`; `null` included), or with `Sec-Fetch-Site` other
  than `same-origin` or `none` (a `<img>` or form's request carries no `Origin`, but modern
  browsers send `Sec-Fetch-Site`). kubectl and client-go send neither header;
- a `HostPolicy` with `check_host=False` (a Unix socket: no browser reaches one, so nothing
  can be rebound) still applies the `Origin` rules;
- errors name the rule, never the header's value.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kubegate.http.errors import BadRequestError, CrossOriginError, HostNotAllowedError
from kubegate.http.headers import Headers, header_values

LOOPBACK_NAMES = frozenset({"localhost"})
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)  # a trailing dot is DNS's root
_PORT = re.compile(r":([0-9]{1,5})", re.ASCII)
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\]", re.ASCII)
_SAME_SITE_FETCHES = frozenset({"same-origin", "none"})


@dataclass(frozen=True, kw_only=True)
class HostPolicy:
    """The names a relay answers to besides the loopback ones (lower case, exact)."""

    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    check_host: bool = True

    def __post_init__(self) -> None:
        for name in self.allowed_hosts:
            try:
                valid = split_host(name + ":1")[0] == name
            except BadRequestError:
                valid = False
            if not valid:
                raise ValueError("an allowed host must be a lower-case host name or an IP "
                                 "address (IPv6 in brackets), without a port")


def split_host(value: str) -> tuple[str, int | None]:
    """(host in lower case, brackets kept; port or None) of a `Host` value; BadRequestError
    when it is not `name[:port]`, `IPv4[:port]` or `[IPv6][:port]`."""
    host, port = value, None
    if (colon := value.rfind(":")) > value.rfind("]"):
        match = _PORT.fullmatch(value, colon)
        if not match or int(match[1]) > 65535:
            raise BadRequestError("malformed Host port")
        host, port = value[:colon], int(match[1])
    if bracketed := _BRACKETED.fullmatch(host):
        try:
            ipaddress.IPv6Address(bracketed[1])
        except ValueError:
            raise BadRequestError("malformed Host IPv6 address") from None
    elif not (len(host) <= 253 and _NAME.fullmatch(host)):
        raise BadRequestError("malformed Host")
    return host.lower(), port


def is_loopback_host(host: str) -> bool:
    """`localhost`, a plainly written 127.0.0.0/8 address, or `[::1]` in any spelling."""
    if host in LOOPBACK_NAMES:
        return True
    if host.startswith("["):
        return ipaddress.IPv6Address(host[1:-1]) == ipaddress.IPv6Address("::1")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return address.is_loopback and str(address) == host


def check_caller(headers: Headers, absolute_authority: str | None, policy: HostPolicy) -> None:
    """Refuse a request whose `Host` (or absolute-form target) is not allowed, or which a
    browser sent from another origin; return quietly otherwise."""
    hosts = header_values(headers, "host")
    if len(hosts) != 1:
        raise BadRequestError("no Host, or more than one")
    host = hosts[0].strip()
    if policy.check_host:
        for value in (host, absolute_authority):
            if value is not None:
                _check_allowed(value, policy)
    _check_origin(headers, host)


def _check_allowed(value: str, policy: HostPolicy) -> None:
    host, _ = split_host(value)
    if not (is_loopback_host(host) or host in policy.allowed_hosts):
        raise HostNotAllowedError("Host not allowed")


def _check_origin(headers: Headers, host: str) -> None:
    sites = header_values(headers, "sec-fetch-site")
    if any(site.strip().lower() not in _SAME_SITE_FETCHES for site in sites):
        raise CrossOriginError("Sec-Fetch-Site: a cross-origin browser request")
    for origin in header_values(headers, "origin"):
        if not _same_origin(origin.strip(), host):
            raise CrossOriginError("Origin other than the request's own")


def _same_origin(origin: str, host: str) -> bool:
    """origin is `http://` and host, the default port written or not (RFC 6454 4)."""
    parts = urlsplit(origin)
    if parts.scheme != "http" or origin != f"http://{parts.netloc}":
        return False
    try:
        return _with_port(parts.netloc) == _with_port(host)
    except BadRequestError:
        return False


def _with_port(value: str) -> tuple[str, int]:
    host, port = split_host(value)
    return host, 80 if port is None else port
