"""The API proxy: a loopback (or Unix socket) HTTP/1.1 listener that relays each request to
the current credential's apiserver with that credential's bearer token, so a job's kubectl
points at `http://127.0.0.1:PORT` and never holds a token.

Rules of this module:
- One thread per client connection and one request per connection (answers carry
  `Connection: close`); the accept loop and every connection thread end in `stop()`, which
  shuts down the sockets they wait on instead of waiting for the peers.
- A recorder or metrics failure never fails a request: it is logged and the proxy goes on.
- The recorder is called from connection threads, concurrently; it must be thread-safe.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from kubegate.addresses import Address, UnixSocket
from sidecar.proxy.forward import CredentialSource, ForwardedRequest
from sidecar.proxy.listener import bind, describe, parse_listen
from sidecar.proxy.record import ProxiedRequest, ProxyMetrics, session_record
from sidecar.proxy.upstream import TLSConnector

log = logging.getLogger(__name__)

Recorder = Callable[[dict[str, Any]], None]
THREAD_PREFIX = "kubegate-proxy"
STOP_JOIN_TIMEOUT = 5.0


class _Connection:
    """The sockets one connection thread may block on, so `stop()` can wake it."""

    def __init__(self, client: socket.socket) -> None:
        self._lock = threading.Lock()
        self._sockets = [client]
        self._aborted = False

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self._aborted:
                _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            for sock in self._sockets:
                _shutdown(sock)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for TLS sockets: it wakes a blocked read or select
    # without touching the TLS state another thread is using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class ApiProxy:
    """`listen` is `HOST:PORT` on a loopback address (port 0 picks one) or `unix:/path`."""

    def __init__(self, credentials: CredentialSource, listen: str,
                 recorder: Recorder | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self._listen: Address = parse_listen(listen)
        self._credentials, self._recorder = credentials, recorder
        self._metrics = ProxyMetrics(registry)
        self._connector = TLSConnector()
        self._lock = threading.Lock()
        self._connections: dict[_Connection, threading.Thread] = {}
        self._numbers = itertools.count(1)
        self._stopping = False
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accepting: threading.Thread | None = None
        self._address = ""

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT` as bound (the real port when 0 was asked), or the socket path."""
        if not self._address:
            raise RuntimeError("the proxy is not started")
        return self._address

    def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError("the proxy is already started")
        self._listener = bind(self._listen)
        self._listener.setblocking(False)
        self._address = describe(self._listener, self._listen)
        self._wake = socket.socketpair()
        self._accepting = threading.Thread(
            target=self._accept_loop, name=f"{THREAD_PREFIX}-accept", daemon=True)
        self._accepting.start()
        log.info("proxy: listening on %s", self._address)

    def stop(self) -> None:
        """Close the listener, end every connection (watches and upgraded ones included),
        and join all threads. Safe to call twice."""
        with self._lock:
            if self._stopping or self._listener is None:
                return
            self._stopping = True
        assert self._wake is not None and self._accepting is not None
        self._wake[1].send(b"x")
        self._accepting.join()
        self._listener.close()
        if isinstance(self._listen, UnixSocket):
            self._listen.path.unlink(missing_ok=True)
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            connection.abort()
        for thread in connections.values():
            thread.join(STOP_JOIN_TIMEOUT)
        for sock in self._wake:
            sock.close()

    def __enter__(self) -> ApiProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake[0], selectors.EVENT_READ)
            while not self._stopping:
                selector.select()
                try:
                    client, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:  # out of descriptors: let connections finish
                    log.warning("proxy: accept failed: %s", type(error).__name__)
                    time.sleep(0.1)
                    continue
                self._spawn(client)

    def _spawn(self, client: socket.socket) -> None:
        client.setblocking(True)
        if client.family in (socket.AF_INET, socket.AF_INET6):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(client)
        thread = threading.Thread(target=self._serve, args=(connection, client),
                                  name=f"{THREAD_PREFIX}-{next(self._numbers)}", daemon=True)
        with self._lock:
            if self._stopping:
                client.close()
                return
            self._connections[connection] = thread
        thread.start()

    def _serve(self, connection: _Connection, client: socket.socket) -> None:
        try:
            forwarded = ForwardedRequest(client, credentials=self._credentials,
                                         connector=self._connector, track=connection.track)
            request = forwarded.run()
        except Exception:  # a bug, not a disconnect: keep the proxy serving
            log.exception("proxy: unexpected error in a connection")
            request = None
        finally:
            connection.close()
        if request is not None:
            self._report(request)
        with self._lock:
            self._connections.pop(connection, None)

    def _report(self, request: ProxiedRequest) -> None:
        try:
            self._metrics.observe(request)
            if self._recorder is not None:
                self._recorder(session_record(request))
        except Exception as error:
            log.warning("proxy: recording a request failed: %s", type(error).__name__)
