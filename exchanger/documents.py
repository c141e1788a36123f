"""Static JSON documents over HTTPS: what an OIDC issuer publishes (discovery and JWKS).

Used by the self-issued backend's discovery endpoint and by `kubegate demo`'s stand-in issuer.

Invariants: the TLS handshake runs in the request's own thread, never in the accept loop, and a
silent client is dropped after `TIMEOUT` seconds, so one slow peer cannot stop the server from
answering others; `stop()` closes the socket and joins the serving thread.
"""

from __future__ import annotations

import socketserver
import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

TIMEOUT = 5.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext,
                 cache_control: str) -> None:
        self.documents: Mapping[str, bytes] = {}
        self.cache_control = cache_control
        super().__init__(address, _Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse DNS lookup
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = TIMEOUT

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.server.documents.get(self.path.split("?", 1)[0].rstrip("/") or "/")
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.cache_control:
            self.send_header("Cache-Control", self.server.cache_control)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class DocumentServer:
    """Serves `documents` (path -> JSON bytes) on host:port over TLS. Port 0 picks one."""

    def __init__(self, *, host: str, port: int, cert_file: Path, key_file: Path,
                 name: str, cache_control: str = "") -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_file), str(key_file))
        self._server = _Server((host, port), context, cache_control)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05}, name=name)

    @property
    def port(self) -> int:
        return self._server.server_port

    def publish(self, documents: Mapping[str, bytes]) -> None:
        """Replace what is served (one reference swap: a request sees old or new, whole)."""
        self._server.documents = dict(documents)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
