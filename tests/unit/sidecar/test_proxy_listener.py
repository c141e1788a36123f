"""Where the proxy may listen: loopback `HOST:PORT` or an absolute Unix socket path, parsed by
`kubegate.addresses`, and nothing that could be reached from another machine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubegate.addresses import HostPort, UnixSocket
from sidecar.proxy.listener import bind, describe, parse_listen


@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:0", HostPort(host="127.0.0.1", port=0)),
    ("127.0.0.2:8001", HostPort(host="127.0.0.2", port=8001)),
    ("localhost:8001", HostPort(host="localhost", port=8001)),
    ("[::1]:0", HostPort(host="::1", port=0)),
    ("unix:/run/kubegate/proxy.sock", UnixSocket(path=Path("/run/kubegate/proxy.sock"))),
])
def test_loopback_addresses_and_unix_sockets_are_accepted(
        listen: str, address: HostPort | UnixSocket) -> None:
    assert parse_listen(listen) == address


@pytest.mark.parametrize("listen", [
    "0.0.0.0:0", "10.0.0.1:8001", "[::]:0", "example.com:80", "localhost.example.com:80",
    "8001", ":8001", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:-1", "::1:8001",
    "unix:relative.sock", "unix:", "",
])
def test_anything_that_is_not_loopback_or_an_absolute_unix_path_is_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="listen"):
        parse_listen(listen)


def test_localhost_binds_the_ipv4_loopback_and_describes_the_port_it_got() -> None:
    address = parse_listen("localhost:0")
    with bind(address) as sock:
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        assert describe(sock, address) == f"127.0.0.1:{port}"


def test_a_unix_socket_is_owner_only_and_replaces_only_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "proxy.sock"
    address = parse_listen(f"unix:{path}")
    with bind(address) as first:
        assert describe(first, address) == str(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with bind(address):  # the stale socket of the first is replaced
        assert path.is_socket()

    path.unlink()
    path.write_text("not a socket")
    with pytest.raises(OSError):
        bind(address)
    assert path.read_text() == "not a socket"
