"""The gateway's listener: HTTPS on `gateway.listen`, one thread per client connection, each
serving one request (`exchanger.gateway.proxy`), every request recorded, every connection of a
session cut when that session ends.

    gateway = GatewayServer(parts, listen="0.0.0.0:8443", tls=server_context(cert, key),
                            audit=GatewayAudit(audit_log), max_connections=1000)
    session_ends.subscribe(gateway.cut)      # a revoke cuts the session's streams at once
    gateway.start()
    ...
    gateway.stop()

Rules of this module:
- TLS offers `http/1.1` only by ALPN: kubectl (client-go) then speaks HTTP/1.1, whose
  upgrades (SPDY/3.1, WebSocket) carry exec, attach and port-forward; HTTP/2 has no such
  upgrade, so this is the documented fallback, not a loss. One request per connection
  (answers carry `Connection: close`); client-go opens the next one and resumes TLS.
- The TLS handshake and the whole request head must arrive within `head_timeout` of the
  accept, on the connection's own thread (a slow client never holds the accept loop).
- At most `max_connections` connection threads: over the cap a connection is closed at once
  by the accept loop (no thread, no handshake), and that refusal is recorded.
- `cut(session_id, why)` is the `SessionEnds` listener: it returns once every socket of that
  session's connections is shut down (the streams end within the pump's next wake-up).
- A recording failure (the audit log) never fails a request: it is logged, and the request
  has already been answered.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import ssl
import threading
import time
from pathlib import Path

from exchanger.gateway.audit import GatewayAudit, GatewayRequest
from exchanger.gateway.proxy import GatewayParts, ProxiedExchange, peer_name
from exchanger.gateway.proxy_sessions import Connection
from kubegate.addresses import HostPort, parse_host_port

log = logging.getLogger(__name__)

THREAD_PREFIX = "kubegate-gateway"
STOP_JOIN_TIMEOUT = 5.0
TOO_MANY_CONNECTIONS = 503


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The serving TLS context: TLS 1.2 or later, ALPN `http/1.1` only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


class GatewayServer:
    def __init__(self, parts: GatewayParts, *, listen: str, tls: ssl.SSLContext,
                 audit: GatewayAudit | None, max_connections: int = 1000) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be positive")
        self._parts, self._tls, self._audit = parts, tls, audit
        self._listen: HostPort = parse_host_port(listen)
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._connections: dict[Connection, threading.Thread] = {}
        self._numbers = itertools.count(1)
        self._stopping = self._saturated = False
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accepting: threading.Thread | None = None
        self.port = 0

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError("the gateway is already started")
        self._listener = _bind(self._listen)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake = socket.socketpair()
        self._accepting = threading.Thread(target=self._accept_loop,
                                           name=f"{THREAD_PREFIX}-accept", daemon=True)
        self._accepting.start()
        log.info("gateway: listening on %s", HostPort(host=self._listen.host, port=self.port))

    def cut(self, session_id: str, why: str) -> None:
        """End every open connection of session_id (the `SessionEnds` listener)."""
        self._parts.sessions.cut(session_id, why)

    def stop(self) -> None:
        """Close the listener, end every connection, join the threads. Safe to call twice."""
        with self._lock:
            if self._stopping or self._listener is None:
                return
            self._stopping = True
        assert self._wake is not None and self._accepting is not None
        self._wake[1].send(b"x")
        self._accepting.join()
        self._listener.close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            connection.abort("stopping")
        for thread in connections.values():
            thread.join(STOP_JOIN_TIMEOUT)
        for sock in self._wake:
            sock.close()

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
                    log.warning("gateway: accept failed: %s", type(error).__name__)
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
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(client)
        thread = threading.Thread(target=self._serve, args=(connection, client, accepted),
                                  name=f"{THREAD_PREFIX}-{next(self._numbers)}", daemon=True)
        with self._lock:
            if self._stopping:
                client.close()
                return
            self._connections[connection] = thread
        thread.start()

    def _refuse(self, client: socket.socket) -> None:
        """Close a connection over the cap at once: its TLS handshake would need a thread.
        A TLS client sees the connection closed and retries (client-go does)."""
        if not self._saturated:
            self._saturated = True
            log.warning("gateway: %d connections open, refusing new ones",
                        self._max_connections)
        peer = peer_name(client)
        with contextlib.suppress(OSError):
            client.close()
        self._report(GatewayRequest(method="-", path="-", verb="-",
                                    status=TOO_MANY_CONNECTIONS, bytes_in=0, bytes_out=0,
                                    duration_seconds=0.0, peer=peer,
                                    refused="TOO_MANY_CONNECTIONS"))

    def _serve(self, connection: Connection, client: socket.socket, accepted: float) -> None:
        request: GatewayRequest | None = None
        peer = peer_name(client)
        deadline = accepted + self._parts.head_timeout
        try:
            tls = self._handshake(client, connection, deadline)
            if tls is not None:
                request = ProxiedExchange(tls, connection, self._parts, peer=peer,
                                          deadline=deadline).run()
        except Exception:  # a bug, not a disconnect: keep the gateway serving
            log.exception("gateway: unexpected error in a connection")
        finally:
            connection.close()
        if request is not None:
            self._report(request)
        with self._lock:
            self._connections.pop(connection, None)

    def _handshake(self, client: socket.socket, connection: Connection,
                   deadline: float) -> ssl.SSLSocket | None:
        try:
            tls = self._tls.wrap_socket(client, server_side=True,
                                        do_handshake_on_connect=False)
        except OSError:
            return None
        connection.track(tls)
        try:
            tls.settimeout(max(0.01, deadline - time.monotonic()))
            tls.do_handshake()
        except (OSError, ValueError) as error:  # ssl.SSLError and timeouts included
            log.debug("gateway: TLS handshake failed: %s", error)
            return None
        return tls

    def _report(self, request: GatewayRequest) -> None:
        if self._audit is None:
            return
        try:
            self._audit.record(request, now=time.time())
        except Exception as error:
            log.error("gateway: recording a request failed: %s", type(error).__name__)


def _bind(address: HostPort, backlog: int = 1024) -> socket.socket:
    host = address.bind_host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, address.port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
