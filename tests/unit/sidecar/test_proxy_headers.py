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
from typing import Any

import pytest

from kubegate.credential import Credential
from kubegate.http.hosts import HostPolicy
from kubegate.relayio.upstream import TLSConnector
from sidecar.proxy.forward import ForwardedRequest
from sidecar.proxy.record import ProxiedRequest
from tests.support.smuggling import SMUGGLING

START = b"POST /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"


class Proxied:
    """One ForwardedRequest on one end of a socket pair; the test is the client on the other."""

    def __init__(self, **options: Any) -> None:
        self.options = options
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
            self.result = ForwardedRequest(
                server, credentials=self.credentials, connector=TLSConnector(),
                track=lambda _: None, **self.options).run()

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

    answer = proxied.exchange(b"GET /api/v1/pods?limit=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")

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


def test_a_head_dribbled_slower_than_the_head_deadline_is_answered_408_and_recorded() -> None:
    """The deadline is for the whole head, counted from the accept, not for each read: a
    client sending a byte now and then (slowloris) holds a connection thread for the head
    timeout and a second of linger at most, however long it goes on dribbling."""
    proxied = Proxied(head_timeout=0.5)
    started = time.monotonic()

    def dribble() -> None:
        with contextlib.suppress(OSError):  # the proxy closes as we still write
            for byte in b"GET /api HTTP/1.1\r\nHost: localhost\r\n" + b"X: y\r\n" * 100:
                proxied.client.sendall(bytes([byte]))
                time.sleep(0.05)

    writer = threading.Thread(target=dribble)
    writer.start()
    head, _ = read_head(proxied.client)
    answered = time.monotonic() - started
    proxied.join()
    ended = time.monotonic() - started
    proxied.client.close()
    writer.join(30)

    assert head.startswith(b"HTTP/1.1 408 ")
    assert 0.5 <= answered < 1.0
    assert ended < 2.0  # 0.5 s of head, at most 1 s of linger; the dribble takes 25 s
    assert proxied.result is not None
    assert (proxied.result.status, proxied.result.refused) == (408, "HEAD_TIMEOUT")
    assert proxied.asked_for_credential == 0


def test_a_silent_connection_is_closed_at_the_head_deadline_without_a_record() -> None:
    started = time.monotonic()  # before the connection exists: its deadline starts later
    proxied = Proxied(head_timeout=0.3)

    with proxied.client:
        assert proxied.client.recv(1) == b""
    proxied.join()

    assert 0.3 <= time.monotonic() - started < 1.5
    assert proxied.result is None


def read_head(client: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


# -- who may call: Host and Origin (DNS rebinding, web pages) ------------------------------

REFUSED_HOSTS = {  # each a way a hostile page's request can name the proxy
    "rebound name": b"Host: evil.example\r\n",
    "rebound name with port": b"Host: evil.example:8001\r\n",
    "localhost as a label": b"Host: localhost.evil.example\r\n",
    "loopback address as a label": b"Host: 127.0.0.1.nip.io\r\n",
    "trailing dot": b"Host: localhost.:8001\r\n",
    "any address": b"Host: 0.0.0.0:8001\r\n",
    "short IPv4": b"Host: 127.1:8001\r\n",
    "decimal IPv4": b"Host: 2130706433\r\n",
    "IPv4-mapped IPv6": b"Host: [::ffff:127.0.0.1]:8001\r\n",
    "a private address": b"Host: 10.0.0.1\r\n",
}
MALFORMED_HOSTS = {
    "empty": b"Host: \r\n",
    "none": b"",
    "two": b"Host: localhost\r\nHost: evil.example\r\n",
    "two, same": b"Host: localhost\r\nhost: localhost\r\n",
    "userinfo": b"Host: user@localhost\r\n",
    "userinfo with evil": b"Host: localhost@evil.example\r\n",
    "percent-encoded": b"Host: %6cocalhost\r\n",
    "homoglyph (Cyrillic o)": "Host: l\u043ecalhost\r\n".encode(),
    "latin-1 letter": "Host: localh\u00f6st\r\n".encode("latin-1"),
    "bad port": b"Host: localhost:80a\r\n",
    "port too large": b"Host: localhost:65536\r\n",
    "empty port": b"Host: localhost:\r\n",
    "IPv6 without brackets": b"Host: ::1\r\n",
    "IPv6 zone": b"Host: [fe80::1%25lo]\r\n",
    "path in Host": b"Host: localhost/x\r\n",
}
ALLOWED_HOSTS = {
    "localhost": b"Host: localhost\r\n",
    "localhost with port": b"Host: localhost:8001\r\n",
    "upper case": b"Host: LOCALHOST:8001\r\n",
    "127.0.0.1": b"Host: 127.0.0.1:8001\r\n",
    "another loopback": b"Host: 127.0.0.2\r\n",
    "[::1]": b"Host: [::1]:8001\r\n",
    "[::1] spelled long": b"Host: [0:0:0:0:0:0:0:1]\r\n",
    "a configured name": b"Host: Kubegate-Proxy:8001\r\n",
    "same-origin browser request": b"Host: localhost:8001\r\nOrigin: http://localhost:8001"
                                   b"\r\nSec-Fetch-Site: same-origin\r\n",
    "typed into the address bar": b"Host: 127.0.0.1:8001\r\nSec-Fetch-Site: none\r\n",
    "default port": b"Host: localhost\r\nOrigin: http://localhost:80\r\n",
}
CROSS_ORIGIN = {
    "another site": b"Host: 127.0.0.1:8001\r\nOrigin: https://evil.example\r\n",
    "null (sandboxed frame, file:)": b"Host: 127.0.0.1:8001\r\nOrigin: null\r\n",
    "another loopback port": b"Host: localhost:8001\r\nOrigin: http://localhost:3000\r\n",
    "same host, https": b"Host: localhost:8001\r\nOrigin: https://localhost:8001\r\n",
    "another loopback name": b"Host: localhost:8001\r\nOrigin: http://127.0.0.1:8001\r\n",
    "origin with a path": b"Host: localhost:8001\r\nOrigin: http://localhost:8001/\r\n",
    "two origins": b"Host: localhost:8001\r\nOrigin: http://localhost:8001\r\n"
                   b"Origin: http://evil.example\r\n",
    "no-cors image, cross-site": b"Host: localhost:8001\r\nSec-Fetch-Site: cross-site\r\n",
    "same-site": b"Host: localhost:8001\r\nSec-Fetch-Site: same-site\r\n",
    "websocket from a page": b"Host: localhost:8001\r\nConnection: Upgrade\r\n"
                             b"Upgrade: websocket\r\nOrigin: http://evil.example\r\n",
}
PATH = b"GET /api/v1/namespaces/ci/pods/build-1/exec?command=sh HTTP/1.1\r\n"
POLICY = HostPolicy(allowed_hosts=frozenset({"kubegate-proxy"}))


def refused(fields: bytes, *, target: bytes = PATH) -> tuple[tuple[int, str], Proxied]:
    proxied = Proxied(policy=POLICY)
    answer = proxied.exchange(target + fields + b"\r\n")
    return status_and_message(answer), proxied


@pytest.mark.parametrize("fields", REFUSED_HOSTS.values(), ids=REFUSED_HOSTS.keys())
def test_a_host_that_is_not_loopback_or_allowed_is_refused_403_before_any_credential(
        fields: bytes) -> None:
    answer, proxied = refused(fields)

    assert answer == (403, "kubegate proxy: this Host is not allowed "
                           "(loopback names or --proxy-allowed-hosts)")
    assert proxied.asked_for_credential == 0
    assert proxied.result is not None
    assert (proxied.result.status, proxied.result.refused) == (403, "HOST_NOT_ALLOWED")
    assert proxied.result.path.startswith("/api/v1/namespaces/ci/pods/build-1/exec")


@pytest.mark.parametrize("fields", MALFORMED_HOSTS.values(), ids=MALFORMED_HOSTS.keys())
def test_a_missing_repeated_or_malformed_host_is_refused_400_before_any_credential(
        fields: bytes) -> None:
    answer, proxied = refused(fields)

    assert answer == (400, "kubegate proxy: malformed request")
    assert proxied.asked_for_credential == 0


@pytest.mark.parametrize("fields", CROSS_ORIGIN.values(), ids=CROSS_ORIGIN.keys())
def test_a_cross_origin_browser_request_is_refused_403_before_any_credential(
        fields: bytes) -> None:
    answer, proxied = refused(fields)

    assert answer == (403, "kubegate proxy: cross-origin browser requests are refused")
    assert proxied.asked_for_credential == 0
    assert proxied.result is not None and proxied.result.refused == "CROSS_ORIGIN"


@pytest.mark.parametrize("fields", ALLOWED_HOSTS.values(), ids=ALLOWED_HOSTS.keys())
def test_loopback_hosts_configured_names_and_same_origin_requests_go_on_to_the_credential(
        fields: bytes) -> None:
    answer, proxied = refused(fields)

    assert answer == (503, "kubegate proxy: no valid credential yet")
    assert proxied.asked_for_credential == 1


@pytest.mark.parametrize(("target", "status"), [
    (b"GET http://evil.example/api HTTP/1.1\r\n", 403),
    (b"GET http://evil.example:8001/api HTTP/1.1\r\n", 403),
    (b"GET http://user@localhost/api HTTP/1.1\r\n", 400),
    (b"GET http://localhost@evil.example/api HTTP/1.1\r\n", 400),
    (b"GET http://localhost:8001/api HTTP/1.1\r\n", 503),
])
def test_an_absolute_form_target_names_the_host_that_counts(target: bytes, status: int) -> None:
    (answered, _), proxied = refused(b"Host: localhost:8001\r\n", target=target)

    assert answered == status
    assert proxied.asked_for_credential == (status == 503)


def test_on_a_unix_socket_any_host_goes_on_but_a_cross_origin_request_does_not() -> None:
    unix = HostPolicy(check_host=False)
    proxied = Proxied(policy=unix)
    answer = proxied.exchange(PATH + b"Host: %2Frun%2Fproxy.sock\r\n\r\n")
    assert status_and_message(answer)[0] == 503

    proxied = Proxied(policy=unix)
    answer = proxied.exchange(PATH + b"Host: localhost\r\nOrigin: http://evil.example\r\n\r\n")
    assert status_and_message(answer)[0] == 403
    assert proxied.asked_for_credential == 0
