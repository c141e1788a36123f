"""The loopback redirect listener of the code flow (RFC 8252 section 7.3): one HTTP server on
127.0.0.1 that waits for the provider's redirect to `/callback`.

Rules of this module:
- it binds 127.0.0.1 only (a free port, or the one asked for), serves GET `/callback` and
  nothing else (404; other methods 501), answers a small HTML page, logs nothing (a request
  line holds the authorization code);
- the callback's query goes to `judge`, which returns the code or raises `LoginError`; the
  first callback ends the wait either way, so a forged one cannot be retried against us;
- a browser that never comes back ends with `LoginTimeoutError` at the deadline; a client that
  connects and sends nothing is cut off after `REQUEST_TIMEOUT_SECONDS`;
- HTTP parsing is the standard library's (`http.server`), single-threaded.
"""

from __future__ import annotations

import html
import http.server
import socketserver
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubegate.errors import UsageError
from kubegate.login.errors import LoginError, LoginTimeoutError

__all__ = ["CALLBACK_PATH", "CallbackListener"]

CALLBACK_PATH = "/callback"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_QUERY_BYTES = 16 * 1024
Judge = Callable[[Mapping[str, Sequence[str]]], str]

_PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>kubegate</title></head>"
         "<body><h1>{title}</h1><p>{text}</p></body></html>")


class _Server(socketserver.TCPServer):
    """Not `http.server.HTTPServer`: its bind looks the host name up (getfqdn)."""

    allow_reuse_address = True
    judge: Judge
    code: str | None = None
    failure: LoginError | None = None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_SECONDS
    server_version = "kubegate"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH or self.server.code or self.server.failure:
            self._answer(404, "Not found", "")
            return
        if len(parts.query) > MAX_QUERY_BYTES:
            self._answer(414, "Sign-in failed", "The callback is too long.")
            self.server.failure = LoginError("the sign-in callback is too long")
            return
        try:
            self.server.code = self.server.judge(parse_qs(parts.query, keep_blank_values=True))
        except LoginError as error:
            self.server.failure = error
            self._answer(400, "Sign-in failed", f"{error} You may close this tab.")
            return
        self._answer(200, "Signed in", "kubegate has your sign-in. You may close this tab.")

    def _answer(self, status: int, title: str, text: str) -> None:
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Nothing: a request line holds the authorization code."""


class CallbackListener:
    def __init__(self, port: int = 0) -> None:
        try:
            self._server = _Server(("127.0.0.1", port), _Handler)
        except OSError as error:
            raise UsageError(f"cannot listen on 127.0.0.1:{port} for the sign-in callback: "
                             f"{error.strerror}") from None

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{CALLBACK_PATH}"

    def wait(self, judge: Judge, *, timeout: float,
             clock: Callable[[], float] = time.monotonic) -> str:
        """The code of the first callback; LoginError if it was refused, LoginTimeoutError
        when none came within timeout seconds."""
        server = self._server
        server.judge = judge
        deadline = clock() + timeout
        while server.code is None and server.failure is None:
            remaining = deadline - clock()
            if remaining <= 0:
                raise LoginTimeoutError(
                    f"no sign-in came back from the browser within {timeout:g}s (a wrong "
                    "password keeps the browser on the sign-in page); run kubegate login "
                    "again")
            server.timeout = min(remaining, 1.0)
            server.handle_request()
        if server.failure is not None:
            raise server.failure
        assert server.code is not None
        return server.code

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> CallbackListener:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
