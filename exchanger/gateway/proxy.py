"""One client connection, one request, at the gateway: read its head, refuse what must not pass
(an `Impersonate-*` header, no bearer token), find the session behind the token, and relay
the request to the API server as that session (the gateway's own credential plus
impersonation headers), or answer with a Kubernetes `Status` of its own.

Rules of this module:
- nothing goes upstream before the head was accepted whole (`kubegate.http`'s strict rules),
  the client's `Impersonate-*` headers refused, and the token authenticated; a refusal opens
  no upstream connection and is recorded like a relayed request;
- a request is attached to its session's connections (`SessionConnections`) before it goes
  upstream, and detached when it ended: a session's end cuts it wherever it is (a watch,
  an exec stream, a slow upload);
- after a `101`, every tunnelled byte is handed to the stream's tap (`exchanger.gateway.tap`),
  whose failures are logged once and end its feeding, never the stream; `close` is called
  exactly once;
- nothing here logs or answers text that holds the token or a header's value.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from dataclasses import dataclass

from exchanger.gateway.audit import GatewayRequest
from exchanger.gateway.proxy_rules import (
    bearer_token,
    kube_verb,
    refuse_impersonation,
    status_answer,
    upstream_headers,
)
from exchanger.gateway.proxy_sessions import SessionConnections
from exchanger.gateway.proxy_upstream import GatewayUpstream
from exchanger.gateway.session import Authenticator, GatewayRefusal, GatewaySession
from exchanger.gateway.tap import StreamTap, TapFactory
from kubegate.http import Downstream, Relay, RequestHead, Upstream, http_status
from kubegate.http.errors import HttpError
from kubegate.relayio.connections import Connection
from kubegate.relayio.head import read_head
from kubegate.relayio.pump import IO_TIMEOUT, Pump

log = logging.getLogger(__name__)

CLIENT_HEAD_TIMEOUT = 10.0  # from the accept to the end of the head (TLS handshake included)
CLIENT_CLOSED = 499  # the client left before any answer (nginx's convention)


@dataclass(frozen=True, kw_only=True)
class GatewayParts:
    """What every request of one gateway shares."""

    authenticator: Authenticator
    upstream: GatewayUpstream
    sessions: SessionConnections
    taps: TapFactory | None = None
    head_timeout: float = CLIENT_HEAD_TIMEOUT


class ProxiedExchange:
    """One connection's one request (see the module)."""

    def __init__(self, client: ssl.SSLSocket, connection: Connection, parts: GatewayParts,
                 *, peer: str, deadline: float) -> None:
        self._client, self._connection, self._parts = client, connection, parts
        self._peer, self._deadline = peer, deadline
        self._downstream = Downstream()
        self._relay: Relay | None = None
        self._session: GatewaySession | None = None
        self._method = self._path = "-"
        self._status, self._refused, self._sent = CLIENT_CLOSED, "", 0
        self._upgraded = self._unread_body = False

    def run(self) -> GatewayRequest | None:
        """Serve the request; None when the client sent none (nothing to record)."""
        try:
            head = read_head(self._client, self._downstream, self._deadline)
        except HttpError as error:
            self._answer(http_status(error), error.reason, error.public_message)
            return self._result(time.monotonic())
        except OSError:
            return None
        if head is None:
            return None
        started = time.monotonic()
        self._method, self._path = head.method, head.target
        self._unread_body = head.framing.chunked or head.framing.length > 0
        try:
            self._serve(head)
        except GatewayRefusal as refusal:
            self._answer(refusal.status, refusal.reason, refusal.message)
        except HttpError as error:
            self._answer(http_status(error), error.reason, error.public_message)
        except OSError as error:  # the client went away, or the session was cut
            log.debug("gateway: %s %s ended: %s", self._method, self._path,
                      type(error).__name__)
        return self._result(started)

    def _serve(self, head: RequestHead) -> None:
        try:
            refuse_impersonation(head.headers)
        except GatewayRefusal:
            self._identify(head)  # the refusal is recorded with who asked, when known
            raise
        self._session = self._parts.authenticator.authenticate(bearer_token(head.headers))
        ended = self._parts.sessions.attach(self._session, self._connection)
        if ended:
            raise GatewayRefusal(403, "SESSION_ENDED", f"the session has ended ({ended})")
        try:
            self._forward(head, self._session)
        finally:
            self._parts.sessions.detach(self._session, self._connection)

    def _identify(self, head: RequestHead) -> None:
        try:
            self._session = self._parts.authenticator.authenticate(bearer_token(head.headers))
        except GatewayRefusal:
            self._session = None

    def _forward(self, head: RequestHead, session: GatewaySession) -> None:
        upstream = self._parts.upstream
        target = upstream.target
        headers = upstream_headers(head, session, token=upstream.token(),
                                   host=target.host_header)
        tls = upstream.connector.connect(target, upstream.ca_pem, self._connection.track)
        tap = _TapFeed(self._parts.taps, session, head) if head.upgrade else None
        try:
            connection = Upstream()
            first = connection.send_head(head.method, target.prefix + head.target, headers)
            self._relay = Relay(self._downstream, connection, request=head,
                                upstream_head=first)
            try:
                Pump(self._client, tls, self._relay, observer=tap).run()
            finally:
                self._status = self._relay.status or self._status
                self._upgraded = self._relay.tunnel
            upstream.connector.remember_session(target, upstream.ca_pem, tls)
        finally:
            if tap is not None:
                tap.close()
            tls.close()

    def _answer(self, status: int, reason: str, message: str) -> None:
        if self._relay is not None and self._relay.answered:
            log.debug("gateway: %s %s from %s ended: %s", self._method, self._path,
                      self._peer, reason)
            return  # the answer already began; the connection just ends
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(level, "gateway: %s %s from %s -> %d %s", self._method, self._path,
                self._peer, status, reason)
        self._status = status
        if self._relay is None:
            self._refused = reason
        data = status_answer(status, reason, message)
        try:
            self._client.settimeout(IO_TIMEOUT)
            self._client.sendall(data)
            self._sent += len(data)
            if self._relay is None and self._unread_body:
                _linger(self._client)
        except OSError:
            return

    def _result(self, started: float) -> GatewayRequest:
        relay = self._relay
        return GatewayRequest(
            method=self._method, path=self._path,
            verb=kube_verb(self._method, self._path) if self._path != "-" else "-",
            status=self._status,
            bytes_in=relay.bytes_from_client if relay else 0,
            bytes_out=self._sent + (relay.bytes_to_client if relay else 0),
            duration_seconds=time.monotonic() - started, peer=self._peer,
            session=self._session, upgraded=self._upgraded, refused=self._refused,
            ended_by=self._connection.ended_by)


class _TapFeed:
    """The pump's observer for one upgraded request: opens the tap at the 101 and feeds it,
    stopping (once logged) at its first failure."""

    def __init__(self, taps: TapFactory | None, session: GatewaySession,
                 head: RequestHead) -> None:
        self._taps, self._session, self._head = taps, session, head
        self._tap: StreamTap | None = None
        self._started = time.time()

    def opened(self, response_headers: tuple[tuple[str, str], ...]) -> None:
        if self._taps is None:
            return
        try:
            self._tap = self._taps.open(
                session=self._session, method=self._head.method, path=self._head.target,
                request_headers=_without_secrets(self._head.headers),
                response_headers=response_headers, started=time.time())
        except Exception:
            log.exception("gateway: opening a stream recording failed (session %s)",
                          self._session.id)

    def moved(self, from_client: bool, data: bytes) -> None:
        tap = self._tap
        if tap is None:
            return
        try:
            if from_client:
                tap.from_client(data, time.time())
            else:
                tap.from_upstream(data, time.time())
        except Exception:
            log.exception("gateway: a stream recording failed; the stream goes on unrecorded "
                          "(session %s)", self._session.id)
            self._close()

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        tap, self._tap = self._tap, None
        if tap is not None:
            try:
                tap.close(time.time())
            except Exception:
                log.exception("gateway: closing a stream recording failed")


def _without_secrets(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in headers
                 if name.lower() not in ("authorization", "proxy-authorization", "cookie"))


def _linger(client: socket.socket, limit: int = 1 << 20) -> None:
    """Read what the client still sends (a body we refused) until it closes, at most limit
    bytes for at most a second: closing over unread bytes resets the connection, and the
    client may lose our answer."""
    deadline, drained = time.monotonic() + 1.0, 0
    while drained < limit and (remaining := deadline - time.monotonic()) > 0:
        client.settimeout(remaining)
        if not (data := client.recv(65536)):
            return
        drained += len(data)


def peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "-"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
