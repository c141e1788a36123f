"""The floor of the socket benchmark: the standard library's threading HTTP/1.1 server on a
Unix socket answering every GET with a fixed JSON body (the size of the sidecar's answer).

    python -m kubegate_bench.unix_http --socket PATH --body-bytes N
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import socketserver
import threading
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--body-bytes", type=int, default=1500)
    args = parser.parse_args()
    body = b'{"x":"' + b"k" * max(0, args.body_bytes - 9) + b'"}\n'

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "local"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    server = Server(args.socket, Handler)
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    print(f"listening on {args.socket}", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
