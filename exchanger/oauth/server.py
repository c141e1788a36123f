"""The token endpoint's listener: TLS (or plaintext on loopback), a thread per connection,
keep-alive, and the sans-IO `wire.Cycle` for each request.

Invariants:
- the accept loop only accepts: the TLS handshake runs in the connection's own thread, within
  `HANDSHAKE_TIMEOUT`, so one slow peer cannot stop the server from answering others;
- at most `MAX_CONNECTIONS` connections are served at once (one over it is closed at once),
  and at most `MAX_EXCHANGES` requests are handled at once (gRPC's worker count);
- a request must arrive whole within `REQUEST_TIMEOUT` of its first byte (else 408), and an
  idle keep-alive connection is closed after `IDLE_TIMEOUT`;
- `stop()` closes the listener, shuts every open connection and joins the threads.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from exchanger.oauth.endpoint import error_answer
from exchanger.oauth.errors import RequestTimeoutError, oauth_error
from exchanger.oauth.wire import MAX_BODY, Answer, Cycle, Request
from kubegate.http.errors import HttpError

MAX_CONNECTIONS = 64
MAX_EXCHANGES = 16
HANDSHAKE_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 15.0
READ_SIZE = 16 * 1024


def tls_context(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> ssl.SSLContext:
    """The server context: TLS 1.2 or newer; client certificates demanded when a CA is given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    context.set_alpn_protocols(["http/1.1"])
    if client_ca_file is not None:
        context.load_verify_locations(str(client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class TokenServer:
    """Listens on host:port at once (0 picks one: see `port`), serves an endpoint once
    started; `context` None is plaintext."""

    def __init__(self, *, host: str, port: int, context: ssl.SSLContext | None,
                 max_body: int = MAX_BODY,
                 http_error: Callable[[HttpError], Answer] | None = None,
                 reuse_port: bool = False) -> None:
        """max_body bounds a request's body; http_error answers what HTTP itself refused
        (default: the token endpoint's OAuth error JSON); reuse_port shares the port with
        the other workers of `serve --workers N` (SO_REUSEPORT)."""
        self._context = context
        self._endpoint: Handler | None = None
        self._max_body = max_body
        self._http_error = http_error or _oauth_http_error
        self._listener = socket.create_server((host, port), reuse_port=reuse_port,
                                              backlog=128)
        self._listener.settimeout(0.2)
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._exchanges = threading.BoundedSemaphore(MAX_EXCHANGES)
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._accepting = threading.Thread(target=self._accept, name="oauth-accept",
                                           daemon=True)
        self.scheme = "https" if context is not None else "http"

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self, endpoint: Handler) -> TokenServer:
        self._endpoint = endpoint
        self._accepting.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._accepting.is_alive():
            self._accepting.join()
        self._listener.close()
        with self._lock:
            for connection in self._open:
                _shut(connection)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # out of descriptors, say: do not spin
                continue
            if not self._connections.acquire(blocking=False):
                connection.close()  # over the bound: the client may try again
                continue
            thread = threading.Thread(target=self._serve, args=(connection, address),
                                      name="oauth-connection", daemon=True)
            with self._lock:
                self._open.add(connection)
                self._threads.add(thread)
            thread.start()

    def _serve(self, connection: socket.socket, address: tuple[str, int]) -> None:
        peer = _peer(self.scheme, address)
        stream: socket.socket = connection
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # whole answers
            connection.settimeout(HANDSHAKE_TIMEOUT)
            if self._context is not None:
                stream = self._context.wrap_socket(connection, server_side=True)
                with self._lock:
                    self._open.discard(connection)
                    self._open.add(stream)
            self._requests(stream, peer)
        except (OSError, ValueError):
            pass  # a failed handshake, a reset, a timeout while idle: nothing to answer
        finally:
            _shut(stream)
            stream.close()
            with self._lock:
                self._open.discard(stream)
                self._threads.discard(threading.current_thread())
            self._connections.release()

    def _requests(self, stream: socket.socket, peer: str) -> None:
        leftover = b""
        while not self._stopping.is_set():
            cycle = Cycle(max_body=self._max_body)
            try:
                request = self._read(stream, cycle, leftover)
            except HttpError as error:
                stream.sendall(cycle.send(self._http_error(error), close=True))
                _linger(stream)
                return
            if request is None:
                return
            assert self._endpoint is not None  # set before the accept loop starts
            with self._exchanges:
                answer = self._endpoint.handle(request, peer)
            stream.sendall(cycle.send(answer))
            if not cycle.keep_alive:
                return
            leftover = cycle.leftover()

    def _read(self, stream: socket.socket, cycle: Cycle, data: bytes) -> Request | None:
        """The next request, or None when the client closed or idled out between requests."""
        idle_until = time.monotonic() + IDLE_TIMEOUT
        whole_by: float | None = None  # REQUEST_TIMEOUT after the request's first byte
        while True:
            if data:
                whole_by = whole_by or time.monotonic() + REQUEST_TIMEOUT
                request = cycle.receive(data)
                if request is not None:
                    return request
                if interim := cycle.interim():
                    stream.sendall(interim)
            remaining = (whole_by or idle_until) - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                stream.settimeout(remaining)
                data = stream.recv(READ_SIZE)
            except TimeoutError:
                if whole_by is not None:
                    raise RequestTimeoutError("no whole request in time") from None
                return None
            if not data:
                cycle.receive(b"")  # raises inside a request
                return None


class Handler(Protocol):
    """What a listener hands each whole request to (the token endpoint, the CI webhooks,
    the audit sink); it answers, never raises for bad input."""

    def handle(self, request: Request, peer: str) -> Answer: ...


def _oauth_http_error(error: HttpError) -> Answer:
    return error_answer(oauth_error(error), error)


def _peer(scheme: str, address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"{scheme}:[{host}]:{port}" if ":" in host else f"{scheme}:{host}:{port}"


def _linger(stream: socket.socket, *, limit: int = 1024 * 1024, seconds: float = 2.0) -> None:
    """A lingering close: after an error answer sent before the whole request was read (a
    body over the limit), read and drop what the client is still sending, for a moment and a
    bounded amount, so that it gets to read the answer instead of a reset connection."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError, ValueError):
        while limit > 0 and (left := deadline - time.monotonic()) > 0:
            stream.settimeout(left)
            chunk = stream.recv(READ_SIZE)
            if not chunk:
                return
            limit -= len(chunk)


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
