"""A checkpoint witness for tests: HTTPS on loopback, keeps what is POSTed to it and answers
with the status a test sets."""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path
from types import TracebackType

from tests.support.pki import TestCA


class Witness:
    """`with Witness(ca, folder) as witness:` serves `witness.url`; `received` holds bodies."""

    def __init__(self, ca: TestCA, folder: Path) -> None:
        self.received: list[str] = []
        self.status = 200
        cert, key = ca.issue_server().write(folder, "witness")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.ca_file = ca.write(folder / "witness-ca.crt")
        witness = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the library's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if witness.status < 300:
                    witness.received.append(body.decode())
                self.send_response(witness.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/checkpoints"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Witness:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
