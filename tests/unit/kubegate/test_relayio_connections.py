"""The shared accept loop on its own, over real loopback sockets: the cap hands the connection
over it to `refuse` without a thread, a result is reported after the connection's sockets are
closed, a bug in `serve` frees its slot, and `stop()` wakes a blocked connection (its
`ended_by` says why), joins every thread and is safe to call twice. (The sidecar's proxy and
the gateway over it: tests/unit/sidecar/test_proxy_server.py,
tests/unit/exchanger/gateway/test_proxy_server.py.)"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from kubegate.relayio.connections import Connection, ConnectionServer, bind_tcp
from tests.support.wait import poll


def threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kubegate-test-")]


def wait_for(check: Callable[[], bool]) -> bool:
    return poll(check, 5.0, interval=0.01)


class Sides:
    """serve blocks reading the client until it closes (or the connection is aborted)."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, bool]] = []  # (result, its client closed by then)
        self.refused = 0
        self.connections: list[Connection] = []
        self.clients: dict[str, socket.socket] = {}

    def serve(self, connection: Connection, client: socket.socket,
              accepted: float) -> str | None:
        assert accepted <= time.monotonic()
        assert client.getblocking()
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        self.connections.append(connection)
        data = client.recv(100)
        if data == b"bug":
            raise RuntimeError("a bug")
        self.clients[data.decode()] = client
        return data.decode() or None

    def report(self, result: str) -> None:
        self.reports.append((result, self.clients[result].fileno() == -1))

    def refuse(self, client: socket.socket) -> None:
        self.refused += 1
        client.close()


def start(sides: Sides, cap: int) -> tuple[ConnectionServer[str], int]:
    server: ConnectionServer[str] = ConnectionServer(
        "test", max_connections=cap, serve=sides.serve, report=sides.report,
        refuse=sides.refuse)
    listener = bind_tcp("127.0.0.1", 0, 16)
    port = listener.getsockname()[1]
    server.start(listener)
    return server, port


def test_over_the_cap_is_refused_without_a_thread_and_results_are_reported_after_close(
) -> None:
    sides = Sides()
    server, port = start(sides, cap=2)
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        assert wait_for(lambda: server.open_connections == 2)
        over = socket.create_connection(("127.0.0.1", port))
        assert over.recv(1) == b""  # closed by refuse
        assert sides.refused == 1 and len(threads()) == 3  # the accept loop and two
        held[0].sendall(b"one")
        assert wait_for(lambda: server.open_connections == 1)
        assert sides.reports == [("one", True)]
        held[1].sendall(b"bug")  # logged, and its slot comes back
        assert wait_for(lambda: server.open_connections == 0)
        with socket.create_connection(("127.0.0.1", port)) as again:
            again.sendall(b"two")
            assert wait_for(lambda: len(sides.reports) == 2)
        assert sides.reports[-1] == ("two", True) and sides.refused == 1
        for sock in [*held, over]:
            sock.close()
    finally:
        assert server.stop()
    assert threads() == []


def test_stop_wakes_a_blocked_connection_joins_every_thread_and_is_safe_twice() -> None:
    sides = Sides()
    server, port = start(sides, cap=4)
    with socket.create_connection(("127.0.0.1", port)):
        assert wait_for(lambda: server.open_connections == 1)
        started = time.monotonic()
        assert server.stop()
        assert time.monotonic() - started < 1.0
        assert threads() == []
        assert [c.ended_by for c in sides.connections] == ["stopping"]
        assert not server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_a_server_never_started_has_nothing_to_stop_and_the_cap_must_be_positive() -> None:
    sides = Sides()
    server: ConnectionServer[str] = ConnectionServer(
        "test", max_connections=1, serve=sides.serve, report=sides.report,
        refuse=sides.refuse)
    assert not server.started and not server.stop()
    with pytest.raises(ValueError, match="positive"):
        ConnectionServer("test", max_connections=0, serve=sides.serve, report=sides.report,
                         refuse=sides.refuse)


def test_a_socket_tracked_after_an_abort_is_shut_down_at_once() -> None:
    left, right = socket.socketpair()
    other, peer = socket.socketpair()
    connection = Connection(left)
    connection.abort("revoked")
    connection.abort("stopping")
    assert connection.ended_by == "revoked"
    connection.track(other)
    assert right.recv(1) == b"" and peer.recv(1) == b""
    connection.close()
    assert left.fileno() == -1 and other.fileno() == -1
    right.close()
    peer.close()
