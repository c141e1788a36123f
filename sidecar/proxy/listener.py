"""Where the proxy listens: a loopback TCP port or a Unix socket, never anything else. A proxy
that injects a credential is a credential to whoever can reach it, like `kubectl proxy`.

Rules of this module:
- the address is parsed by `kubegate.addresses` (the one place an address string is split);
  a `HOST:PORT` must name a loopback address (`localhost` binds 127.0.0.1), and a host name
  other than `localhost` is refused, since it could resolve anywhere;
- a TCP listener is bound by `kubegate.relayio.connections.bind_tcp` (the gateway's too);
  a Unix socket is created owner-only (umask 077, then 0600), like
  `kubectl proxy --unix-socket`, and only a stale socket is ever removed at its path.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from kubegate.addresses import Address, HostPort, UnixSocket, parse_address
from kubegate.relayio.connections import bind_tcp


def parse_listen(listen: str) -> Address:
    """`HOST:PORT` (loopback only; port 0 picks one; IPv6 as `[::1]:PORT`) or `unix:/path`."""
    try:
        address = parse_address(listen)
    except ValueError as error:
        raise ValueError(f"listen: {error}") from None
    if not address.is_local:
        raise ValueError(f"listen {listen!r}: the proxy listens on loopback addresses only")
    return address


def bind(address: Address, backlog: int = 128) -> socket.socket:
    if isinstance(address, UnixSocket):
        return _bind_unix(address.path, backlog)
    return bind_tcp(address.bind_host, address.port, backlog)


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


def describe(sock: socket.socket, address: Address) -> str:
    """The address actually bound: `127.0.0.1:PORT`, `[::1]:PORT`, or the socket's path."""
    if isinstance(address, UnixSocket):
        return str(address.path)
    host, port = sock.getsockname()[:2]
    return str(HostPort(host=host, port=port))
