"""The gateway's listener for real, on loopback: TLS clients, a TLS upstream that stands in for
the API server (it records the heads it receives and answers by path: a plain answer, a watch
that never ends, an upgrade that echoes), and an in-test authenticator. The identity half and
the real API server are proven in tests/integration/test_gateway.py; here: what goes upstream,
what is refused before anything goes upstream, that every request is recorded, that a tap
sees an upgraded stream both ways, that a session's end (a revoke, its not_after) cuts
its open streams at once, and that the metrics count what the records say."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exchanger.audit.record import AuditRecord
from exchanger.config import ClusterConfig
from exchanger.gateway.audit import GatewayAudit, GatewayRequest
from exchanger.gateway.metrics import GatewayMetrics, serve_metrics
from exchanger.gateway.proxy import GatewayParts
from exchanger.gateway.proxy_sessions import SessionConnections
from exchanger.gateway.proxy_upstream import gateway_upstream
from exchanger.gateway.server import GatewayServer, server_context
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from exchanger.gateway.tap import StreamTap
from kubegate.files import write_secret_file
from tests.support.pki import TestCA

CUT_WITHIN = 1.0
GOOD, ENDED = "good-token", "ended-token"
OK_REQUEST = b"GET /api HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + GOOD.encode() \
    + b"\r\n\r\n"


class Authenticator:
    def __init__(self, not_after: float = 2e9) -> None:
        self.not_after = not_after

    def authenticate(self, token: str) -> GatewaySession:
        if token != GOOD:
            raise GatewayRefusal(401, "BAD_SIGNATURE", "the token's signature does not verify")
        return GatewaySession(id="s-1", cluster="prod", user="vendor:ann", groups=("vendors",),
                              mapping="vendor", access_request="", subject="corp ann",
                              not_after=self.not_after)


@dataclass
class Tap:
    moved: list[tuple[str, bytes]] = field(default_factory=list)
    closed: int = 0

    def from_client(self, data: bytes, at: float) -> None:
        self.moved.append(("in", data))

    def from_upstream(self, data: bytes, at: float) -> None:
        self.moved.append(("out", data))

    def close(self, at: float) -> None:
        self.closed += 1


class Taps:
    def __init__(self) -> None:
        self.opened: list[tuple[str, Tap]] = []

    def open(self, *, session: GatewaySession, method: str, path: str,
             request_headers: object, response_headers: object,
             started: float) -> StreamTap | None:
        tap = Tap()
        self.opened.append((path, tap))
        return tap


class ApiServerStandIn:
    """A TLS server: a watch answers a chunk and holds, an exec switches and echoes, anything
    else answers `ok`. Every request head it received is kept."""

    def __init__(self, folder: Path, ca: TestCA) -> None:
        cert, key = ca.issue_server(("127.0.0.1",)).write(folder, "apiserver")
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as tls:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += tls.recv(65536)
                head = data.split(b"\r\n\r\n")[0]
                self.heads.append(head)
                path = head.split(b" ")[1]
                if b"watch" in path:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"6\r\nevent1\r\n")
                    while tls.recv(65536):
                        pass
                elif b"/exec" in path:
                    tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                b"Upgrade: SPDY/3.1\r\n\r\nhello")
                    while chunk := tls.recv(65536):
                        tls.sendall(chunk.upper())
                else:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()


@dataclass
class World:
    server: GatewayServer
    records: list[AuditRecord]
    apiserver: ApiServerStandIn
    taps: Taps
    client_context: ssl.SSLContext
    metrics: GatewayMetrics

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        return self.client_context.wrap_socket(raw, server_hostname="127.0.0.1")

    def request(self, head: bytes) -> bytes:
        with self.connect() as tls:
            tls.sendall(head)
            return _read_all(tls)

    def wait_records(self, count: int) -> list[AuditRecord]:
        deadline = time.monotonic() + 10
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records


class Sink:
    def __init__(self, records: list[AuditRecord], failing: bool = False) -> None:
        self._records, self._failing = records, failing

    def append(self, record: AuditRecord) -> None:
        if self._failing:
            raise OSError("disk full")
        self._records.append(record)


def make_world(folder: Path, *, not_after: float = 2e9, max_connections: int = 50,
               metrics: GatewayMetrics | None = None, failing_log: bool = False,
               ) -> tuple[World, SessionConnections]:
    ca = TestCA("kubegate-test-gateway")
    apiserver = ApiServerStandIn(folder, ca)
    ca_file = folder / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    token_file = folder / "gateway-token"
    write_secret_file(token_file, b"gateway-sa-token")
    upstream = gateway_upstream(ClusterConfig(
        name="prod", server=f"https://127.0.0.1:{apiserver.port}", ca_file=ca_file,
        backend="selfIssued", token_file=token_file))
    cert, key = ca.issue_server(("127.0.0.1",)).write(folder, "gateway")
    metrics = metrics or GatewayMetrics()
    sessions, taps = SessionConnections(on_cut=metrics.on_session_cut), Taps()
    records: list[AuditRecord] = []
    parts = GatewayParts(authenticator=Authenticator(not_after), upstream=upstream,
                         sessions=sessions, taps=taps, head_timeout=5.0)
    server = GatewayServer(parts, listen="127.0.0.1:0", tls=server_context(cert, key),
                           audit=GatewayAudit(Sink(records, failing_log)),
                           max_connections=max_connections, metrics=metrics)
    server.start()
    context = ssl.create_default_context(cadata=ca.cert_pem.decode("ascii"))
    return World(server=server, records=records, apiserver=apiserver, taps=taps,
                 client_context=context, metrics=metrics), sessions


@contextmanager
def running_world(folder: Path, **options: Any) -> Iterator[World]:
    made, sessions = make_world(folder, **options)
    try:
        yield made
    finally:
        made.server.stop()
        sessions.stop()
        made.apiserver.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with running_world(tmp_path) as made:
        yield made


def _read_all(tls: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := tls.recv(65536):
            data += chunk
    except (ssl.SSLError, OSError):
        pass
    return data


def test_a_request_goes_upstream_as_the_session_with_the_gateways_own_token(
        world: World) -> None:
    answer = world.request(b"GET /api HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                           + GOOD.encode() + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    head = world.apiserver.heads[-1].decode().lower()
    assert "authorization: bearer gateway-sa-token" in head
    assert GOOD not in head
    assert "impersonate-user: vendor:ann" in head and "impersonate-group: vendors" in head
    assert "impersonate-extra-kubegate.io%2fsession: s-1" in head
    record = world.wait_records(1)[0].to_dict()
    assert (record["decision"], record["reason"], record["status"]) == ("gateway", "OK", "200")
    assert record["session_id"] == "s-1" and record["peer"].startswith("127.0.0.1:")
    assert record["gateway"]["verb"] == "get" and record["gateway"]["user"] == "vendor:ann"
    assert record["gateway"]["bytes_out"] == len(answer)


@pytest.mark.parametrize(("extra", "status", "reason"), [
    (b"", b"401", "NO_CREDENTIAL"),
    (b"Authorization: Bearer forged\r\n", b"401", "BAD_SIGNATURE"),
    (b"Authorization: Bearer " + GOOD.encode() + b"\r\nImpersonate-User: root\r\n", b"403",
     "IMPERSONATION_REFUSED"),
])
def test_refusals_open_no_upstream_connection_and_are_recorded(
        world: World, extra: bytes, status: bytes, reason: str) -> None:
    answer = world.request(b"GET /api/v1/pods HTTP/1.1\r\nHost: gw\r\n" + extra + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert reason.encode() in answer and b"forged" not in answer
    assert world.apiserver.heads == []
    record = world.wait_records(1)[0].to_dict()
    assert (record["reason"], record["status"]) == (reason, status.decode())
    assert record["peer"].startswith("127.0.0.1:")
    # the impersonation attempt is recorded with who asked
    assert record["session_id"] == ("s-1" if reason == "IMPERSONATION_REFUSED" else "")


def test_an_upgraded_stream_is_tapped_both_ways_and_cut_at_once_by_a_revoke(
        world: World) -> None:
    tls = world.connect()
    tls.sendall(b"POST /api/v1/namespaces/web/pods/p/exec?command=sh HTTP/1.1\r\nHost: gw\r\n"
                b"Authorization: Bearer " + GOOD.encode()
                + b"\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n")
    data = b""
    while b"hello" not in data:
        data += tls.recv(65536)
    assert data.startswith(b"HTTP/1.1 101")
    tls.sendall(b"ls\n")
    echoed = b""
    while b"LS\n" not in echoed:
        echoed += tls.recv(65536)
    assert world.count("kubegate_gateway_open_connections") == 1
    world.server.cut("s-1", "revoked")
    cut = time.monotonic()
    tls.settimeout(5)
    assert _read_all(tls) == b""
    took = time.monotonic() - cut
    tls.close()
    assert took <= CUT_WITHIN
    record = world.wait_records(1)[0].to_dict()
    assert record["gateway"]["upgraded"] and record["gateway"]["ended_by"] == "revoked"
    assert record["status"] == "101"
    assert world.count("kubegate_gateway_sessions_cut_total", reason="revoked") == 1
    assert world.count("kubegate_gateway_requests_total", verb="create", code="101") == 1
    assert world.count("kubegate_gateway_request_duration_seconds_count", verb="create") == 0
    (path, tap), = world.taps.opened
    assert path == "/api/v1/namespaces/web/pods/p/exec?command=sh" and tap.closed == 1
    assert b"".join(d for way, d in tap.moved if way == "in") == b"ls\n"
    assert b"".join(d for way, d in tap.moved if way == "out") == b"helloLS\n"
    refused = world.request(b"GET /api HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                            + GOOD.encode() + b"\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 403") and b"SESSION_ENDED" in refused


def test_a_watch_is_cut_when_its_session_reaches_not_after(tmp_path: Path) -> None:
    not_after = time.time() + 1.5
    world, sessions = make_world(tmp_path, not_after=not_after)
    try:
        with world.connect() as tls:
            tls.sendall(b"GET /api/v1/namespaces/web/pods?watch=1 HTTP/1.1\r\nHost: gw\r\n"
                        b"Authorization: Bearer " + GOOD.encode() + b"\r\n\r\n")
            data = b""
            while b"event1" not in data:
                data += tls.recv(65536)
            tls.settimeout(10)
            _read_all(tls)
            ended = time.time()
        record = world.wait_records(1)[0].to_dict()
        assert record["gateway"]["verb"] == "watch"
        assert record["gateway"]["ended_by"] == "expired"
        assert not_after - 0.05 <= ended <= not_after + CUT_WITHIN
        assert world.count("kubegate_gateway_sessions_cut_total", reason="expired") == 1
        assert world.count("kubegate_gateway_requests_total", verb="watch", code="200") == 1
    finally:
        world.server.stop()
        sessions.stop()
        world.apiserver.close()


def test_connections_over_the_cap_are_closed_and_recorded(tmp_path: Path) -> None:
    world, sessions = make_world(tmp_path, max_connections=1)
    try:
        held = world.connect()
        held.sendall(b"GET /watch HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                     + GOOD.encode() + b"\r\n\r\n")
        assert b"event1" in held.recv(65536) or b"event1" in held.recv(65536)
        assert world.count("kubegate_gateway_open_connections") == 1
        with pytest.raises((ssl.SSLError, OSError)):
            world.connect().recv(1)
        assert any(r.reason == "TOO_MANY_CONNECTIONS" for r in world.wait_records(1))
        assert world.count("kubegate_gateway_refusals_total",
                           reason="TOO_MANY_CONNECTIONS") == 1
        assert world.count("kubegate_gateway_requests_total", verb="-", code="503") == 1
        held.close()
    finally:
        world.server.stop()
        sessions.stop()
        world.apiserver.close()


def test_metrics_count_requests_refusals_and_a_revoke_as_the_records_say(world: World) -> None:
    ok = b"GET /api/v1/namespaces/web/pods HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " \
        + GOOD.encode() + b"\r\n\r\n"
    assert world.request(ok).startswith(b"HTTP/1.1 200")
    assert world.request(b"GET /api HTTP/1.1\r\nHost: gw\r\n\r\n").startswith(b"HTTP/1.1 401")
    assert world.request(ok.replace(b"\r\n\r\n", b"\r\nImpersonate-User: root\r\n\r\n")
                         ).startswith(b"HTTP/1.1 403")
    world.server.cut("s-1", "revoked")  # no open connection: nothing cut
    assert world.request(ok).startswith(b"HTTP/1.1 403")
    world.wait_records(4)
    count = world.count
    assert count("kubegate_gateway_requests_total", verb="list", code="200") == 1
    assert count("kubegate_gateway_requests_total", verb="list", code="403") == 2
    assert count("kubegate_gateway_requests_total", verb="get", code="401") == 1
    assert count("kubegate_gateway_refusals_total", reason="NO_CREDENTIAL") == 1
    assert count("kubegate_gateway_refusals_total", reason="IMPERSONATION_REFUSED") == 1
    assert count("kubegate_gateway_refusals_total", reason="SESSION_ENDED") == 1
    assert count("kubegate_gateway_request_duration_seconds_count", verb="list") == 3
    assert count("kubegate_gateway_sessions_cut_total", reason="revoked") == 0
    assert count("kubegate_gateway_recording_failures_total") == 0


def test_a_failing_request_log_is_counted_and_the_request_still_answered(
        tmp_path: Path) -> None:
    with running_world(tmp_path, failing_log=True) as world:
        answer = world.request(OK_REQUEST)
        assert answer.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 10
        while not world.count("kubegate_gateway_recording_failures_total") \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert world.count("kubegate_gateway_recording_failures_total") == 1
        assert world.count("kubegate_gateway_requests_total", verb="get", code="200") == 1


class BrokenMetrics(GatewayMetrics):
    def on_request(self, request: GatewayRequest) -> None:
        raise RuntimeError("broken")


def test_a_metrics_failure_never_fails_a_request_nor_its_record(tmp_path: Path) -> None:
    with running_world(tmp_path, metrics=BrokenMetrics()) as world:
        assert world.request(OK_REQUEST).startswith(b"HTTP/1.1 200")
        assert world.wait_records(1)[0].reason == "OK"


def test_label_values_stay_bounded_whatever_a_client_sends() -> None:
    metrics = GatewayMetrics()
    metrics.on_request(GatewayRequest(method="FROB", path="/x", verb="frob", status=400,
                                      bytes_in=0, bytes_out=0, duration_seconds=0.1,
                                      peer="-", refused="bad thing: eyJhbGciOi"))
    metrics.on_session_cut("Revoked by Ann!")
    get = metrics.registry.get_sample_value
    assert get("kubegate_gateway_requests_total", {"verb": "other", "code": "400"}) == 1
    assert get("kubegate_gateway_refusals_total", {"reason": "OTHER"}) == 1
    assert get("kubegate_gateway_sessions_cut_total", {"reason": "other"}) == 1


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_metrics_server_serves_metrics_and_healthz_while_the_gateway_listens(
        world: World) -> None:
    served = serve_metrics("127.0.0.1:0", world.metrics, healthy=lambda: world.server.listening)
    try:
        world.request(b"GET /api HTTP/1.1\r\nHost: gw\r\n\r\n")
        world.wait_records(1)
        base = f"http://127.0.0.1:{served.port}"
        status, text = _get(base + "/metrics")
        assert status == 200
        assert 'kubegate_gateway_requests_total{code="401",verb="get"} 1.0' in text
        assert _get(base + "/healthz") == (200, "ok\n")
        world.server.stop()
        assert _get(base + "/healthz")[0] == 503
    finally:
        served.stop()
