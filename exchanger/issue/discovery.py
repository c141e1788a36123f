"""HTTPS server for the self-issued backend's OIDC discovery document and JWKS: what a
kube-apiserver's AuthenticationConfiguration fetches to trust kubegate's tokens."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from exchanger.issue.selfissued import SelfIssuer

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"


class DiscoveryServer:
    def __init__(self, *, issuer: SelfIssuer, host: str, port: int, cert_file: Path,
                 key_file: Path) -> None:
        documents = {
            DISCOVERY_PATH: json.dumps(issuer.discovery()).encode(),
            JWKS_PATH: json.dumps(issuer.jwks()).encode(),
        }
        self._http = ThreadingHTTPServer((host, port), _handler(documents))
        self._http.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_file), str(key_file))
        self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
        self._thread = threading.Thread(target=self._http.serve_forever, name="oidc-discovery",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


def _handler(documents: dict[str, bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = documents.get(self.path.split("?", 1)[0].rstrip("/") or "/")
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "public, max-age=300")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
