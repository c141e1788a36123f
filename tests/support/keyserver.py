"""A recording HTTPS server on 127.0.0.1 for key-fetch tests: fixed replies per path (stdlib
http.server, TestCA certificates), and every request's path and Authorization header kept, so a
test can show which origin saw which credential."""

from __future__ import annotations

import socketserver
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.pki import TestCA

JWKS_BODY = (b'{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",'
             b'"x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",'
             b'"y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}')


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int = 200
    body: bytes = JWKS_BODY
    headers: dict[str, str] = field(default_factory=dict)
    declare_length: bool = True
    delay: float = 0.0


NOT_FOUND = Reply(status=404, body=b'{"error":"not found"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = False

    def __init__(self, context: ssl.SSLContext, owner: KeyServer) -> None:
        self.context = context
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(5)
        with self.context.wrap_socket(request, server_side=True) as tls:
            _Handler(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are expected here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # http.server's naming
        owner = self.server.owner
        owner.requests.append((self.path, self.headers.get("Authorization")))
        reply = owner.routes.get(self.path, owner.default)
        if reply.delay:
            owner.stopping.wait(reply.delay)
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.declare_length:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KeyServer:
    """An HTTPS server with fixed replies per path (`default` for any other path); records
    each request's path and Authorization header in `requests`."""

    def __init__(self, ca: TestCA, folder: Path, *, default: Reply = NOT_FOUND) -> None:
        cert_path, key_path = ca.issue_server(("127.0.0.1", "localhost")).write(folder, "server")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.routes: dict[str, Reply] = {}
        self.default = default
        self.requests: list[tuple[str, str | None]] = []
        self.stopping = threading.Event()
        self._server = _Server(context, self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_port}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    @property
    def authorizations(self) -> list[str]:
        """Every Authorization header this server was sent."""
        return [auth for _, auth in self.requests if auth is not None]

    def serve_discovery(self, issuer_url: str | None = None, jwks_uri: str | None = None) -> None:
        issuer_url = self.url if issuer_url is None else issuer_url
        jwks_uri = f"{self.url}/jwks" if jwks_uri is None else jwks_uri
        body = f'{{"issuer":"{issuer_url}","jwks_uri":"{jwks_uri}"}}'.encode()
        self.routes["/.well-known/openid-configuration"] = Reply(body=body)
        self.routes["/jwks"] = Reply()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
