"""The proxy's refusals over a real socket: a malformed or smuggling request head gets a 400
`Status` answer and a closed connection, and the proxy never even asks for a credential, so
nothing can have gone upstream. (The header rules themselves are `kubegate.http`'s, pinned in
tests/unit/kubegate/test_http_*.py; the proxy against real upstreams is in
tests/integration/test_proxy.py.)"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from kubegate.credential import Credential
from sidecar.proxy import forward
from sidecar.proxy.forward import ForwardedRequest
from sidecar.proxy.record import ProxiedRequest
from sidecar.proxy.upstream import TLSConnector
from tests.support.smuggling import SMUGGLING

START = b"POST /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"


class Proxied:
    """One ForwardedRequest on one end of a socket pair; the test is the client on the other."""

    def __init__(self) -> None:
        self.asked_for_credential = 0
        self.client, server = socket.socketpair()
        self.client.settimeout(10)
        self.result: ProxiedRequest | None = None
        self._thread = threading.Thread(target=self._serve, args=(server,))
        self._thread.start()

    def credentials(self) -> Credential | None:
        self.asked_for_credential += 1
        return None

    def _serve(self, server: socket.socket) -> None:
        with server:
            self.result = ForwardedRequest(server, credentials=self.credentials,
                                   connector=TLSConnector(), track=lambda _: None).run()

    def exchange(self, raw: bytes) -> bytes:
        """Send raw (nothing: close), then read the answer to the connection's end."""
        with self.client:
            self.client.sendall(raw)
            if not raw:
                self.client.shutdown(socket.SHUT_WR)
            answer = b""
            while data := self.client.recv(65536):
                answer += data
        self.join()
        return answer

    def join(self) -> None:
        self._thread.join(10)
        assert not self._thread.is_alive()


def status_and_message(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    return int(head.split(b" ")[1]), json.loads(body)["message"]


@pytest.mark.parametrize("fields", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_a_smuggling_head_is_answered_400_and_closed_before_any_credential_is_used(
        fields: bytes) -> None:
    proxied = Proxied()

    answer = proxied.exchange(START + fields + b"\r\n0\r\n\r\nGET /api/v1/secrets HTTP/1.1\r\n"
                              b"Host: x\r\n\r\n")

    assert status_and_message(answer) == (400, "kubegate proxy: malformed request")
    assert answer.count(b"HTTP/1.1 ") == 1  # the smuggled second request got nothing
    assert proxied.asked_for_credential == 0
    assert proxied.result is not None and proxied.result.status == 400


def test_a_head_over_64_kib_is_answered_431() -> None:
    proxied = Proxied()

    answer = proxied.exchange(START + b"X-Pad: " + b"a" * (64 * 1024) + b"\r\n\r\n")

    assert status_and_message(answer) == (431, "kubegate proxy: request head too large")
    assert proxied.asked_for_credential == 0


def test_connect_is_answered_501() -> None:
    proxied = Proxied()

    answer = proxied.exchange(b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n")

    assert status_and_message(answer) == (501, "kubegate proxy: CONNECT is not supported")


def test_a_well_formed_request_without_a_credential_is_answered_503_with_its_record() -> None:
    proxied = Proxied()

    answer = proxied.exchange(b"GET /api/v1/pods?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n")

    assert status_and_message(answer) == (503, "kubegate proxy: no valid credential yet")
    assert proxied.asked_for_credential == 1
    assert proxied.result is not None
    assert (proxied.result.method, proxied.result.path, proxied.result.status) == (
        "GET", "/api/v1/pods?limit=1", 503)
    assert proxied.result.bytes_sent == len(answer)


def test_a_connection_closed_before_a_request_leaves_no_record() -> None:
    proxied = Proxied()

    assert proxied.exchange(b"") == b""
    assert proxied.result is None


def test_a_head_dribbled_slower_than_the_head_deadline_is_cut_off_without_a_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline is for the whole head, not for each read: a client sending a byte now and
    then (slowloris) does not hold a connection thread for long."""
    monkeypatch.setattr(forward, "CLIENT_HEAD_TIMEOUT", 0.5)
    proxied = Proxied()
    started = time.monotonic()

    with proxied.client, contextlib.suppress(OSError):  # the proxy closes as we still write
        for byte in b"GET /api HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n":
            proxied.client.sendall(bytes([byte]))
            time.sleep(0.05)
    proxied.join()

    assert time.monotonic() - started < 1.5  # 0.5 s allowed; the dribble takes 2 s
    assert proxied.result is None
    assert proxied.asked_for_credential == 0
