"""The API proxy: a loopback (or Unix socket) HTTP/1.1 listener that relays each request to
the current credential's apiserver with that credential's bearer token, so a job's kubectl
points at `http://127.0.0.1:PORT` and never holds a token.

Rules of this module:
- One thread per client connection and one request per connection (answers carry
  `Connection: close`); the accept loop and every connection thread end in `stop()`, which
  shuts down the sockets they wait on instead of waiting for the peers (the shared
  `kubegate.relayio.connections.ConnectionServer` does the accepting, the threads and the
  cap; the listener is this package's `listener`, a Unix socket's path removed on `stop()`).
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
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from kubegate.addresses import Address, UnixSocket
from kubegate.http import http_status
from kubegate.http.errors import TooManyConnectionsError
from kubegate.http.hosts import HostPolicy
from kubegate.relayio.connections import Connection, ConnectionServer
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
MAX_CONNECTIONS = 256
RETRY_AFTER = 1  # seconds, in the answer to a connection over the cap


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
        self._head_timeout = head_timeout
        self._credentials, self._recorder = credentials, recorder
        self._metrics = ProxyMetrics(registry)
        self._connector = TLSConnector()
        self._server: ConnectionServer[ProxiedRequest] = ConnectionServer(
            "proxy", max_connections=max_connections, serve=self._serve, report=self._report,
            refuse=self._refuse)
        self._address = ""

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT` as bound (the real port when 0 was asked), or the socket path."""
        if not self._address:
            raise RuntimeError("the proxy is not started")
        return self._address

    def start(self) -> None:
        if self._server.started:
            raise RuntimeError("the proxy is already started")
        listener = bind(self._listen)
        self._address = describe(listener, self._listen)
        self._server.start(listener)
        log.info("proxy: listening on %s", self._address)

    def stop(self) -> None:
        """Close the listener, end every connection (watches and upgraded ones included),
        and join all threads. Safe to call twice."""
        if self._server.stop() and isinstance(self._listen, UnixSocket):
            self._listen.path.unlink(missing_ok=True)

    def __enter__(self) -> ApiProxy:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _refuse(self, client: socket.socket) -> None:
        """Answer a connection over the cap 503 and close it, without blocking the accept
        loop: what the client already sent is read (closing over unread bytes would reset
        the connection), what it sends later is not waited for."""
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

    def _serve(self, connection: Connection, client: socket.socket,
               accepted: float) -> ProxiedRequest | None:
        forwarded = ForwardedRequest(client, credentials=self._credentials,
                                     connector=self._connector, track=connection.track,
                                     policy=self._policy, head_timeout=self._head_timeout,
                                     accepted=accepted)
        return forwarded.run()

    def _report(self, request: ProxiedRequest) -> None:
        try:
            self._metrics.observe(request)
            if self._recorder is not None:
                self._recorder(session_record(request))
        except Exception as error:
            log.warning("proxy: recording a request failed: %s", type(error).__name__)
