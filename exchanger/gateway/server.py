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
  by the accept loop (no thread, no handshake), and that refusal is recorded. The accept
  loop, the cap, the threads and `stop()` are the shared
  `kubegate.relayio.connections.ConnectionServer` (the sidecar's proxy serves the same way).
- `cut(session_id, why)` is the `SessionEnds` listener: it returns once every socket of that
  session's connections is shut down (the streams end within the pump's next wake-up).
- A recording failure (the audit log) never fails a request: it is logged, and the request
  has already been answered. So with metrics (`exchanger.gateway.metrics`): each request's
  result feeds them where it is recorded, and a failure there is logged, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from exchanger.gateway.audit import GatewayAudit, GatewayRequest
from exchanger.gateway.metrics import GatewayMetrics
from exchanger.gateway.proxy import GatewayParts, ProxiedExchange, peer_name
from kubegate.addresses import HostPort, parse_host_port
from kubegate.relayio.connections import Connection, ConnectionServer, bind_tcp

log = logging.getLogger(__name__)

BACKLOG = 1024
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
                 audit: GatewayAudit | None, max_connections: int = 1000,
                 metrics: GatewayMetrics | None = None) -> None:
        self._parts, self._tls, self._audit, self._metrics = parts, tls, audit, metrics
        self._listen: HostPort = parse_host_port(listen)
        self._server: ConnectionServer[GatewayRequest] = ConnectionServer(
            "gateway", max_connections=max_connections, serve=self._serve,
            report=self._report, refuse=self._refuse)
        self.port = 0
        if metrics is not None:
            metrics.count_open_connections(lambda: self.open_connections)

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    @property
    def listening(self) -> bool:
        return self._server.listening

    def start(self) -> None:
        if self._server.started:
            raise RuntimeError("the gateway is already started")
        listener = bind_tcp(self._listen.bind_host, self._listen.port, BACKLOG)
        self.port = listener.getsockname()[1]
        self._server.start(listener)
        log.info("gateway: listening on %s", HostPort(host=self._listen.host, port=self.port))

    def cut(self, session_id: str, why: str) -> None:
        """End every open connection of session_id (the `SessionEnds` listener)."""
        self._parts.sessions.cut(session_id, why)

    def stop(self) -> None:
        """Close the listener, end every connection, join the threads. Safe to call twice."""
        self._server.stop()

    def _refuse(self, client: socket.socket) -> None:
        """Close a connection over the cap at once: its TLS handshake would need a thread.
        A TLS client sees the connection closed and retries (client-go does)."""
        peer = peer_name(client)
        with contextlib.suppress(OSError):
            client.close()
        self._report(GatewayRequest(method="-", path="-", verb="-",
                                    status=TOO_MANY_CONNECTIONS, bytes_in=0, bytes_out=0,
                                    duration_seconds=0.0, peer=peer,
                                    refused="TOO_MANY_CONNECTIONS"))

    def _serve(self, connection: Connection, client: socket.socket,
               accepted: float) -> GatewayRequest | None:
        peer = peer_name(client)
        deadline = accepted + self._parts.head_timeout
        tls = self._handshake(client, connection, deadline)
        if tls is None:
            return None
        return ProxiedExchange(tls, connection, self._parts, peer=peer,
                               deadline=deadline).run()

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
        self._count(lambda metrics: metrics.on_request(request))
        if self._audit is None:
            return
        try:
            self._audit.record(request, now=time.time())
        except Exception as error:
            log.error("gateway: recording a request failed: %s", type(error).__name__)
            self._count(GatewayMetrics.on_recording_failure)

    def _count(self, count: Callable[[GatewayMetrics], None]) -> None:
        if self._metrics is not None:
            try:
                count(self._metrics)
            except Exception:
                log.exception("gateway: updating the metrics failed")
