"""The sockets under the relay, for real: a `Pump` between a client socket and a verified TLS
upstream, both on socket pairs (whose kernel buffers are fixed, so the bounds below are
tight). A watch event reaches the client before the upstream sends the next one; a side
that stops reading holds the other side back, both ways, instead of growing memory; an
upgraded connection carries bytes both ways and passes a half-close on."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubegate.http import Downstream, Relay, RequestHead, Upstream
from kubegate.http.headers import rewrite_request_headers
from kubegate.relayio.pump import Pump
from tests.support.pki import TestCA

MIB = 1 << 20
WATCH = b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n"


class Wire:
    """The test holds `client` (a job's kubectl) and `upstream` (the apiserver, TLS server
    side); one Pump runs between them in a thread, as the proxy runs it."""

    def __init__(self, folder: Path, request: bytes) -> None:
        self.client, proxy_client = socket.socketpair()
        proxy_upstream, upstream = socket.socketpair()
        for sock in (self.client, upstream):
            sock.settimeout(10)
        self.upstream, tls = _tls_pair(folder, upstream, proxy_upstream)
        self.relay = _relay(request)
        self.error: BaseException | None = None
        self._sockets = (proxy_client, tls)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            Pump(*self._sockets, self.relay).run()
        except BaseException as error:  # noqa: BLE001  # reported by finished()
            self.error = error

    def read_head(self) -> bytes:
        """The request head as the upstream received it."""
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.upstream.recv(65536)
        return data

    def finished(self) -> bool:
        """Wait for the pump to return; True when it did, without an error."""
        self._thread.join(10)
        return not self._thread.is_alive() and self.error is None

    def close(self) -> None:
        for sock in (self.client, self.upstream, *self._sockets):
            sock.close()
        self._thread.join(10)


def _tls_pair(folder: Path, server: socket.socket, client: socket.socket,
              ) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    ca = TestCA("kubegate-test-pump-upstream")
    cert, key = ca.issue_server(("127.0.0.1",)).write(folder, "upstream")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cadata=ca.cert_pem.decode("ascii"))
    tls_server = server_context.wrap_socket(server, server_side=True,
                                            do_handshake_on_connect=False)
    handshake = threading.Thread(target=tls_server.do_handshake)
    handshake.start()
    tls_client = client_context.wrap_socket(client, server_hostname="127.0.0.1")
    handshake.join(10)
    return tls_server, tls_client


def _relay(request: bytes) -> Relay:
    client = Downstream()
    client.receive(request)
    head = client.next_event()
    assert isinstance(head, RequestHead)
    upstream = Upstream()
    headers = rewrite_request_headers(head.headers, token="tok", host="127.0.0.1",
                                      upgrade=head.upgrade, framing=head.framing)
    return Relay(client, upstream, request=head,
                 upstream_head=upstream.send_head(head.method, head.target, headers))


class Sender(threading.Thread):
    """Sends data on sock in 64 KiB writes, counting what the kernel took so far."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        super().__init__(daemon=True)
        self._sock, self._data = sock, data
        self.sent = 0

    def run(self) -> None:
        view = memoryview(self._data)
        while self.sent < len(view):
            self._sock.sendall(view[self.sent:self.sent + 65536])
            self.sent += len(view[self.sent:self.sent + 65536])

    def stalled_at(self, settle: float = 0.5) -> int:
        """How much was sent once sending stopped making progress."""
        while True:
            before = self.sent
            time.sleep(settle)
            if self.sent == before:
                return before


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise AssertionError(f"stream ended after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}: {data!r}")
        data += chunk
    return data


@pytest.fixture
def wires(tmp_path: Path) -> Iterator[list[Wire]]:
    made: list[Wire] = []
    yield made
    for wire in made:
        wire.close()


def test_each_watch_event_reaches_the_client_before_the_upstream_sends_the_next(
    tmp_path: Path, wires: list[Wire],
) -> None:
    wire = Wire(tmp_path, WATCH)
    wires.append(wire)
    assert wire.read_head().startswith(b"GET /api/v1/pods?watch=true HTTP/1.1\r\n")
    wire.upstream.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in read_until(wire.client, b"\r\n\r\n")

    for number in range(3):
        event = b'{"type":"ADDED","n":%d}\n' % number
        wire.upstream.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        assert read_until(wire.client, event + b"\r\n") == b"%x\r\n%s\r\n" % (len(event), event)
    wire.upstream.sendall(b"0\r\n\r\n")

    assert read_until(wire.client, b"0\r\n\r\n") == b"0\r\n\r\n"
    assert wire.finished()
    assert wire.relay.status == 200


def test_a_client_that_reads_nothing_holds_the_upstream_back(
    tmp_path: Path, wires: list[Wire],
) -> None:
    wire = Wire(tmp_path, WATCH)
    wires.append(wire)
    wire.read_head()
    body = bytes(range(256)) * (64 * MIB // 256)
    sender = Sender(wire.upstream, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                    + body)
    sender.start()

    held_back = sender.stalled_at()

    assert held_back < 2 * MIB  # kernel buffers and one read (0.3 MiB), not 64 MiB
    head = read_until(wire.client, b"\r\n\r\n")
    rest = head.partition(b"\r\n\r\n")[2]
    received = rest + read_exactly(wire.client, len(body) - len(rest))
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert wire.finished()
    assert wire.relay.bytes_to_client == len(head) - len(rest) + len(body)


def test_an_upstream_that_reads_nothing_holds_the_clients_upload_back(
    tmp_path: Path, wires: list[Wire],
) -> None:
    body = b"\x00\xff" * (16 * MIB)
    head = b"PUT /apis/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    wire = Wire(tmp_path, head)
    wires.append(wire)
    sender = Sender(wire.client, body)
    sender.start()

    held_back = sender.stalled_at()

    assert held_back < 2 * MIB  # of a 32 MiB upload the upstream is not reading
    upstream_head = wire.read_head()
    rest = upstream_head.partition(b"\r\n\r\n")[2]
    received = rest + read_exactly(wire.upstream, len(body) - len(rest))
    assert received == body
    wire.upstream.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert read_until(wire.client, b"{}").startswith(b"HTTP/1.1 200 OK\r\n")
    assert wire.finished()
    assert wire.relay.bytes_from_client == len(body)


def test_an_upgraded_connection_carries_bytes_both_ways_and_passes_a_half_close_on(
    tmp_path: Path, wires: list[Wire],
) -> None:
    wire = Wire(tmp_path, b"GET /api/v1/namespaces/ci/pods/p/exec HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
    wires.append(wire)
    assert b"Upgrade: SPDY/3.1" in wire.read_head()
    wire.upstream.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          b"Upgrade: SPDY/3.1\r\n\r\n")
    read_until(wire.client, b"\r\n\r\n")

    stdin = bytes(range(256)) * 1024
    wire.client.sendall(stdin)
    assert read_exactly(wire.upstream, len(stdin)) == stdin
    wire.upstream.sendall(stdin[::-1])
    assert read_exactly(wire.client, len(stdin)) == stdin[::-1]

    wire.client.shutdown(socket.SHUT_WR)  # the job closed its side
    assert wire.upstream.recv(1) == b""  # passed on (a TCP FIN: see Pump._half_close_upstream)
    wire.upstream.close()

    assert wire.finished(), wire.error  # the upstream ended; the proxy closes the client
    assert wire.relay.upstream_ended and wire.relay.client_ended
    assert wire.relay.tunnel
    assert wire.relay.bytes_from_client == len(stdin)
