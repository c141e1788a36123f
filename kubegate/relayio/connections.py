"""The listener side of a relay: a bound TCP listener, and `ConnectionServer`, which owns a
listening socket, its accept loop, one thread per connection under a cap, and `stop()`. The
sidecar's API proxy and the gateway both serve this way; what a connection does, and what
is done with one over the cap, is theirs.

    server = ConnectionServer("proxy", max_connections=256, serve=serve, report=report,
                              refuse=refuse)
    server.start(bind_tcp("127.0.0.1", 0))  # or any listening socket (a Unix socket)
    ...
    server.stop()

Rules of this module:
- The accept loop never blocks on a client: it accepts, and either starts the connection's
  thread or, over the cap, hands the socket to `refuse` on its own thread (which must not
  wait for the client). `refuse` runs on the accept loop's thread, `serve` and `report` on
  connection threads, concurrently; all must be thread-safe.
- At most `max_connections` connection threads, ever. One warning is logged each time the
  cap is reached, not one per refused connection.
- `serve(connection, client, accepted)` is given the client's socket blocking (TCP_NODELAY
  on TCP) and the monotonic time of the accept; every socket it may block on is handed to
  `connection.track` first, so `stop()` (or anyone holding the `Connection`) wakes it with
  `abort`. Its result, when not None, goes to `report` after every tracked socket is closed.
  An exception from `serve` is a bug, not a disconnect: it is logged and the server goes on.
- `stop()` closes the listener, shuts down every connection's sockets instead of waiting for
  the peers, and joins every thread (`STOP_JOIN_TIMEOUT` each); it is safe to call twice.
- It imports the standard library only.
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
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

STOP_JOIN_TIMEOUT = 5.0
STOPPING = "stopping"  # why `stop()` aborts a connection (its `ended_by`)

R = TypeVar("R")


class Connection:
    """The sockets one connection thread may block on, so `stop()` (or a session's end) can
    wake it; `ended_by` says why it was aborted ("" while it was not)."""

    def __init__(self, client: socket.socket) -> None:
        self._lock = threading.Lock()
        self._sockets = [client]
        self.ended_by = ""

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.ended_by:
                _shutdown(sock)

    def abort(self, why: str) -> None:
        """Shut down every tracked socket, and any tracked later; why must not be empty."""
        with self._lock:
            self.ended_by = self.ended_by or why
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


def bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on host:port (port 0 picks one; an IPv6 host has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class ConnectionServer(Generic[R]):
    """`name` prefixes the log lines and names the threads (`kubegate-NAME-accept`,
    `kubegate-NAME-1`, ...)."""

    def __init__(self, name: str, *, max_connections: int,
                 serve: Callable[[Connection, socket.socket, float], R | None],
                 report: Callable[[R], None],
                 refuse: Callable[[socket.socket], None]) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be positive")
        self._name, self._threads = name, f"kubegate-{name}"
        self._max_connections = max_connections
        self._serve, self._report, self._refuse = serve, report, refuse
        self._lock = threading.Lock()
        self._connections: dict[Connection, threading.Thread] = {}
        self._numbers = itertools.count(1)
        self._stopping = self._saturated = False
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accepting: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._listener is not None

    @property
    def listening(self) -> bool:
        """True from `start()` while the accept loop runs and `stop()` was not called."""
        accepting = self._accepting
        return accepting is not None and accepting.is_alive() and not self._stopping

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self, listener: socket.socket) -> None:
        """Accept on listener (bound and listening) until `stop()`, which closes it."""
        if self._listener is not None:
            raise RuntimeError(f"the {self._name} is already started")
        listener.setblocking(False)
        self._listener = listener
        self._wake = socket.socketpair()
        self._accepting = threading.Thread(target=self._accept_loop,
                                           name=f"{self._threads}-accept", daemon=True)
        self._accepting.start()

    def stop(self) -> bool:
        """Close the listener, end every connection, join the threads; False when there was
        nothing to stop (never started, or stopped already)."""
        with self._lock:
            if self._stopping or self._listener is None:
                return False
            self._stopping = True
        assert self._wake is not None and self._accepting is not None
        self._wake[1].send(b"x")
        self._accepting.join()
        self._listener.close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            connection.abort(STOPPING)
        for thread in connections.values():
            thread.join(STOP_JOIN_TIMEOUT)
        for sock in self._wake:
            sock.close()
        return True

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
                    log.warning("%s: accept failed: %s", self._name, type(error).__name__)
                    time.sleep(0.1)
                    continue
                self._spawn(client, time.monotonic())

    def _spawn(self, client: socket.socket, accepted: float) -> None:
        with self._lock:
            full = len(self._connections) >= self._max_connections
        if full:
            if not self._saturated:
                self._saturated = True
                log.warning("%s: %d connections open, refusing new ones", self._name,
                            self._max_connections)
            self._refuse(client)
            return
        self._saturated = False
        client.setblocking(True)
        if client.family in (socket.AF_INET, socket.AF_INET6):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(client)
        thread = threading.Thread(target=self._run, args=(connection, client, accepted),
                                  name=f"{self._threads}-{next(self._numbers)}", daemon=True)
        with self._lock:
            if self._stopping:
                client.close()
                return
            self._connections[connection] = thread
        thread.start()

    def _run(self, connection: Connection, client: socket.socket, accepted: float) -> None:
        result: R | None = None
        try:
            result = self._serve(connection, client, accepted)
        except Exception:  # a bug, not a disconnect: keep the server serving
            log.exception("%s: unexpected error in a connection", self._name)
        finally:
            connection.close()
        if result is not None:
            self._report(result)
        with self._lock:
            self._connections.pop(connection, None)
