"""Where the proxy listens: a loopback TCP port or a Unix socket, never anything else.

A proxy that injects a credential is a credential to whoever can reach it, so `HOST:PORT`
must name a loopback address, and a Unix socket is created owner-only (umask 077, then 0600),
like `kubectl proxy --unix-socket`.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

UNIX_PREFIX = "unix:"


@dataclass(frozen=True, kw_only=True)
class ListenAddress:
    host: str = ""
    port: int = 0
    path: Path | None = None


def parse_listen(listen: str) -> ListenAddress:
    """`HOST:PORT` (loopback only; port 0 picks one; IPv6 as `[::1]:PORT`) or `unix:/path`."""
    if listen.startswith(UNIX_PREFIX):
        path = listen.removeprefix(UNIX_PREFIX)
        if not path.startswith("/"):
            raise ValueError(f"listen {listen!r}: a unix socket needs an absolute path")
        return ListenAddress(path=Path(path))
    host, colon, port = listen.rpartition(":")
    if not colon or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen {listen!r}: expected HOST:PORT or unix:/path")
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"listen {listen!r}: the proxy listens on loopback addresses only")
    return ListenAddress(host=host, port=int(port))


def bind(address: ListenAddress, backlog: int = 128) -> socket.socket:
    if address.path is not None:
        return _bind_unix(address.path, backlog)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_unix(path: Path, backlog: int) -> socket.socket:
    if path.is_socket():  # a stale socket from an earlier run; anything else is left alone
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o077)
    try:
        sock.bind(str(path))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(previous)
    return sock


def describe(sock: socket.socket, address: ListenAddress) -> str:
    """The address actually bound: `127.0.0.1:PORT`, `[::1]:PORT`, or the socket's path."""
    if address.path is not None:
        return str(address.path)
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
