"""Addresses kubegate listens on or dials: `HOST:PORT` (IPv6 as `[::1]:PORT`) or `unix:/path`,
parsed once into a typed value. Standard library only, so every side can share the rules.

Rules of this module:
- `parse_address` is the one place an address string is split; nothing else splits on `:`;
- `localhost` counts as loopback; a host name that is not `localhost` never does (it could
  resolve anywhere);
- a Unix socket path must be absolute.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

UNIX_PREFIX = "unix:"
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
# dot-separated labels of ASCII letters, digits, `-` and `_`; IPv4 addresses match too
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)


@dataclass(frozen=True, kw_only=True)
class HostPort:
    host: str  # without brackets
    port: int

    @property
    def is_local(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def bind_host(self) -> str:
        """The host to bind or connect to: `localhost` as 127.0.0.1."""
        return "127.0.0.1" if self.host == "localhost" else self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class UnixSocket:
    path: Path

    @property
    def is_local(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"{UNIX_PREFIX}{self.path}"


Address = HostPort | UnixSocket


def parse_host_port(text: str) -> HostPort:
    """`HOST:PORT` or `[V6]:PORT`, port 0-65535; ValueError otherwise. HOST is a DNS name
    (letters, digits, `-`, `_`, dots) or an IP address; an IPv6 address must be in brackets
    and an IPv4 address must not be."""
    host, colon, port = text.rpartition(":")
    if not (colon and _PORT.fullmatch(port) and int(port) <= 65535 and _valid_host(host)):
        raise ValueError(f"expected HOST:PORT, got {_shown(text)}")
    return HostPort(host=host.removeprefix("[").removesuffix("]"), port=int(port))


def _valid_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            return "%" not in host and ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            return False
    if ":" in host:
        return False  # an IPv6 address without brackets
    return len(host) <= 253 and _HOST_NAME.fullmatch(host) is not None


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."


def parse_address(text: str, *, unix: bool = True) -> Address:
    """`HOST:PORT`, or (with unix) `unix:/absolute/path`; ValueError otherwise."""
    if text.startswith(UNIX_PREFIX):
        path = text.removeprefix(UNIX_PREFIX)
        if not unix:
            raise ValueError(f"expected HOST:PORT, got {_shown(text)}")
        if not path.startswith("/") or "\0" in path:
            raise ValueError(f"expected unix:/absolute/path, got {_shown(text)}")
        return UnixSocket(path=Path(path))
    try:
        return parse_host_port(text)
    except ValueError:
        raise ValueError(f"expected HOST:PORT{' or unix:/path' if unix else ''}, "
                         f"got {_shown(text)}") from None


def is_local_address(text: str) -> bool:
    """True for a Unix socket (`unix:/path`) or a loopback `HOST:PORT`."""
    try:
        return parse_address(text).is_local
    except ValueError:
        return False
