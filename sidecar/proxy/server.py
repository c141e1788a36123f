"""The API proxy: a loopback (or Unix socket) HTTP/1.1 listener that relays each request to
the current credential's apiserver with that credential's bearer token, so a job's kubectl
points at `http://127.0.0.1:PORT` and never holds a token.

Rules of this module:
- One thread per client connection and one request per connection (answers carry
  `Connection: close`); the accept loop and every connection thread end in `stop()`, which
  shuts down the sockets they wait on instead of waiting for the peers.
- At most `max_connections` connection threads, ever: a connection over the cap is answered
  `503` with `Retry-After: 1` by the accept loop itself, without a thread and without
  waiting for its request (client-go retries such an answer), and closed. A per-peer cap would
  mean nothing on loopback, where every peer is 127.0.0.1; the head timeout is what frees
  the slots a slow client holds (`ForwardedRequest`), so a slowloris client holds a slot for
  at most `head_timeout` and never stops the proxy.
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
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from kubegate.addresses import Address, UnixSocket
from kubegate.http import http_status
from kubegate.http.errors import TooManyConnectionsError
from kubegate.http.hosts import HostPolicy
from kubegate.relayio.upstream import TLSConnector
from sidecar.proxy.forward import (
    CLIENT_HEAD_TIMEOUT,
    CredentialSource,
    ForwardedRequest,
    own_answer,
)
from sidecar.proxy.listener import bind, describe, parse_listen
from sidecar.proxy.record import ProxiedRequest, ProxyMetrics, session_record

log = logging.getLogger(__name__)

Recorder = Callable[[dict[str, Any]], None]
THREAD_PREFIX = "kubegate-proxy"
STOP_JOIN_TIMEOUT = 5.0
MAX_CONNECTIONS = 256
RETRY_AFTER = 1  # seconds, in the answer to a connection over the cap


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
    """`listen` is `HOST:PORT` on a loopback address (port 0 picks one) or `unix:/path`;
    `allowed_hosts` are the `Host` names answered besides the loopback ones."""

    def __init__(self, credentials: CredentialSource, listen: str,
                 recorder: Recorder | None = None,
                 registry: CollectorRegistry | None = None, *,
                 allowed_hosts: Iterable[str] = (), max_connections: int = MAX_CONNECTIONS,
                 head_timeout: float = CLIENT_HEAD_TIMEOUT) -> None:
        if max_connections < 1 or head_timeout <= 0:
            raise ValueError("max_connections and head_timeout must be positive")
        self._listen: Address = parse_listen(listen)
        self._policy = HostPolicy(allowed_hosts=frozenset(h.lower() for h in allowed_hosts),
                                  check_host=not isinstance(self._listen, UnixSocket))
        self._max_connections, self._head_timeout = max_connections, head_timeout
        self._saturated = False
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
                self._spawn(client, time.monotonic())

    def _spawn(self, client: socket.socket, accepted: float) -> None:
        with self._lock:
            full = len(self._connections) >= self._max_connections
        if full:
            self._refuse(client)
            return
        self._saturated = False
        client.setblocking(True)
        if client.family in (socket.AF_INET, socket.AF_INET6):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(client)
        thread = threading.Thread(target=self._serve, args=(connection, client, accepted),
                                  name=f"{THREAD_PREFIX}-{next(self._numbers)}", daemon=True)
        with self._lock:
            if self._stopping:
                client.close()
                return
            self._connections[connection] = thread
        thread.start()

    def _refuse(self, client: socket.socket) -> None:
        """Answer a connection over the cap 503 and close it, without blocking the accept
        loop: what the client already sent is read (closing over unread bytes would reset
        the connection), what it sends later is not waited for."""
        if not self._saturated:
            self._saturated = True
            log.warning("proxy: %d connections open, answering new ones 503",
                        self._max_connections)
        error = TooManyConnectionsError("connection cap reached")
        data, sent = own_answer(error, retry_after=RETRY_AFTER), 0
        with contextlib.suppress(OSError):
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while client.recv(65536):
                    pass
            sent = client.send(data)  # a fresh socket's send buffer takes it whole
            client.shutdown(socket.SHUT_WR)
        client.close()
        self._report(ProxiedRequest(
            method="-", path="-", status=http_status(error), bytes_sent=sent, bytes_received=0,
            duration_seconds=0.0, session_id="", upgraded=False, refused=error.reason))

    def _serve(self, connection: _Connection, client: socket.socket, accepted: float) -> None:
        try:
            forwarded = ForwardedRequest(client, credentials=self._credentials,
                                         connector=self._connector, track=connection.track,
                                         policy=self._policy, head_timeout=self._head_timeout,
                                         accepted=accepted)
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
