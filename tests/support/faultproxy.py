"""A fault-injecting stand-in for a kube-apiserver: an HTTPS server on loopback that passes every
request through to the real apiserver (with the admin's client certificate) except
TokenRequests while a fault is set, which it answers with an error status or lets hang.

So an exchanger pointed at it creates and deletes its session Secrets for real, and a test can
check the real cluster for anything half-made after a failed TokenRequest.

Invariants: loopback only; `stop()` wakes hanging requests and joins every thread; what it saw
is recorded as (method, path, status) with status 0 for a request it let hang.
"""

from __future__ import annotations

import enum
import http.client
import json
import re
import secrets
import socketserver
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.controlplane import ControlPlane
from tests.support.pki import TestCA

TOKEN_REQUEST = re.compile(r"^/api/v1/namespaces/[^/]+/serviceaccounts/[^/]+/token$")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class KubeFault(enum.Enum):
    """How the stand-in answers a TokenRequest."""

    FORBIDDEN = 403
    CONFLICT = 409
    THROTTLED = 429
    SERVER_ERROR = 500
    UNAVAILABLE = 503
    HANG = 0  # read the request, never answer (until stop)


_REASONS = {403: "Forbidden", 409: "AlreadyExists", 429: "TooManyRequests",
            500: "InternalError", 503: "ServiceUnavailable"}


class _Server(ThreadingHTTPServer):
    daemon_threads = False

    def __init__(self, proxy: FaultProxy, context: ssl.SSLContext) -> None:
        self.proxy, self.context = proxy, context
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        with self.context.wrap_socket(request, server_side=True) as tls:
            _Handler(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.proxy.handle(self, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FaultProxy:
    def __init__(self, plane: ControlPlane, ca: TestCA, folder: Path) -> None:
        self._plane, self._ca, self._folder = plane, ca, folder
        self._fault: KubeFault | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.seen: list[tuple[str, str, int]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        stem = f"kube-proxy-{secrets.token_hex(4)}"
        self.ca_path = self._ca.write(self._folder / f"{stem}-ca.crt")
        cert, key = self._ca.issue_server(("127.0.0.1", "localhost")).write(self._folder, stem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = _Server(self, context)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"kube-fault-proxy-{self._server.server_port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"https://127.0.0.1:{self._server.server_port}"

    # faults

    def set_fault(self, fault: KubeFault | None) -> None:
        with self._lock:
            self._fault = fault

    def requests(self, method: str, pattern: str) -> list[int]:
        """Statuses answered to requests whose path matches `pattern` (0: left hanging)."""
        with self._lock:
            return [status for m, path, status in self.seen
                    if m == method and re.search(pattern, path)]

    # serving

    def handle(self, request: _Handler, body: bytes) -> None:
        with self._lock:
            fault = self._fault
        path = request.path.split("?", 1)[0]
        if fault is not None and request.command == "POST" and TOKEN_REQUEST.match(path):
            self._inject(request, path, fault)
            return
        status, headers, answer = self._forward(request, body)
        self._record(request.command, path, status)
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)

    def _inject(self, request: _Handler, path: str, fault: KubeFault) -> None:
        self._record(request.command, path, fault.value)
        if fault is KubeFault.HANG:
            self._stopping.wait(30)
            request.close_connection = True
            return
        status = fault.value
        document = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": f"injected {status}", "reason": _REASONS[status], "code": status}
        answer = json.dumps(document).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        request.wfile.write(answer)

    def _forward(self, request: _Handler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self._plane.port, context=self._plane.admin_ssl_context(), timeout=10)
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() not in _HOP_BY_HOP | {"authorization", "host"}}
        try:
            connection.request(request.command, request.path, body=body or None, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            kept = [(n, v) for n, v in response.getheaders() if n.lower() not in _HOP_BY_HOP]
            return response.status, kept, answer
        finally:
            connection.close()

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.seen.append((method, path, status))
