"""One client connection, one request: read its head, take the current credential, open a
verified TLS connection to that credential's apiserver, send the rewritten request, and relay
the answer as it arrives (an upgraded connection both ways), or answer with our own error.

Rules of the module:
- The credential is read once per request, at the start: a refreshed token is used by the
  next request, and a watch keeps the token it was authorized with.
- Failures on the upstream side, before the answer began, become 502/504 answers with a short
  message; failures on the client side are ordinary disconnects, logged at debug level only.
- Nothing here logs or raises text that holds the token or a request header's value.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Callable

from exchanger.client import Credential
from sidecar.proxy.errors import (
    BadRequestError,
    HeadTooLargeError,
    NoCredentialError,
    ProxyError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
)
from sidecar.proxy.headers import (
    BodyFraming,
    Headers,
    ResponseHead,
    header_values,
    is_upgrade_request,
    parse_request_head,
    parse_response_head,
    request_body_framing,
    rewrite_request_headers,
    rewrite_response_headers,
    serialize_request_head,
    serialize_response_head,
)
from sidecar.proxy.record import CLIENT_CLOSED, ProxiedRequest
from sidecar.proxy.upstream import TLSConnector, parse_server
from sidecar.proxy.wire import Pump, SocketReader, relay_body

log = logging.getLogger(__name__)

CredentialSource = Callable[[], Credential | None]
Track = Callable[[socket.socket], None]

MAX_HEAD = 64 * 1024
CLIENT_HEAD_TIMEOUT = 30.0  # an idle connection that never sends a request
IO_TIMEOUT = 60.0  # one blocking read or write before the answer starts
UPSTREAM_HEAD_TIMEOUT = 120.0  # the apiserver's answer to a slow request (a big list)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
    def __init__(self, client: socket.socket, *, credentials: CredentialSource,
                 connector: TLSConnector, track: Track) -> None:
        self._client, self._credentials = client, credentials
        self._connector, self._track = connector, track
        self._reader = SocketReader(client)
        self._method = self._path = "-"
        self._session_id = ""
        self._status = CLIENT_CLOSED
        self._answered = self._upgraded = False
        self._sent = self._received = 0

    def run(self) -> ProxiedRequest | None:
        """Serve the connection's request; None when the client sent none."""
        self._client.settimeout(CLIENT_HEAD_TIMEOUT)
        try:
            raw = self._reader.read_head(MAX_HEAD, too_large=HeadTooLargeError,
                                         truncated=BadRequestError)
        except ProxyError as error:
            self._answer_error(error)
            return self._result(time.monotonic())
        except OSError:
            return None  # closed or idle before a whole request: nothing to record
        if raw is None:
            return None
        started = time.monotonic()
        try:
            self._proxy(raw)
        except ProxyError as error:
            self._answer_error(error)
        except OSError as error:  # the client went away: a stopped watch, a killed kubectl
            log.debug("proxy: %s %s ended early: %s", self._method, self._path,
                      type(error).__name__)
        return self._result(started)

    def _result(self, started: float) -> ProxiedRequest:
        return ProxiedRequest(
            method=self._method, path=self._path, status=self._status,
            bytes_sent=self._sent, bytes_received=self._received,
            duration_seconds=time.monotonic() - started, session_id=self._session_id,
            upgraded=self._upgraded)

    def _proxy(self, raw: bytes) -> None:
        head = parse_request_head(raw)
        self._method, self._path = head.method, head.target
        upgrade = is_upgrade_request(head.headers)
        framing = request_body_framing(head.headers)
        credential = self._current_credential()
        upstream = parse_server(credential.cluster.server)
        try:
            headers = rewrite_request_headers(head.headers, token=credential.token,
                                              host=upstream.host_header, upgrade=upgrade)
        except ValueError as error:
            raise NoCredentialError(str(error)) from None
        ca_pem = credential.cluster.certificate_authority_data
        tls = self._connector.connect(upstream, ca_pem, self._track)
        try:
            tls.settimeout(IO_TIMEOUT)
            self._client.settimeout(IO_TIMEOUT)
            request = serialize_request_head(head.method, upstream.prefix + head.target, headers)
            self._send_request(tls, request, framing, head.headers)
            self._relay_answer(tls, upgrade)
            self._connector.remember_session(upstream, ca_pem, tls)
        finally:
            tls.close()

    def _current_credential(self) -> Credential:
        try:
            credential = self._credentials()
        except Exception as error:  # the source is the keeper's; its failure is a 503 here
            log.warning("proxy: the credential source failed: %s", type(error).__name__)
            credential = None
        if credential is None:
            raise NoCredentialError("no credential")
        if credential.expires_at <= time.time():
            raise NoCredentialError("the credential has expired")
        self._session_id = credential.session_id
        return credential

    def _send_request(self, tls: ssl.SSLSocket, request: bytes, framing: BodyFraming,
                      headers: Headers) -> None:
        def send(data: bytes) -> None:
            try:
                tls.sendall(data)
            except OSError as error:
                raise UpstreamUnreachableError(f"write failed: {type(error).__name__}") \
                    from error

        has_body = framing.chunked or framing.length > 0
        if has_body and any(v.lower() == "100-continue" for v in header_values(headers, "expect")):
            self._write_client(_CONTINUE)
        if not framing.chunked and self._reader.buffered() >= framing.length:
            send(request + self._reader.take(framing.length))  # one write for small bodies
            self._received += framing.length
        else:
            send(request)
            self._received += relay_body(self._reader, framing, send)

    def _relay_answer(self, tls: ssl.SSLSocket, upgrade: bool) -> None:
        reader = SocketReader(tls)
        raw, response = self._read_final_head(reader)
        if response.status == 101 and not upgrade:
            raise UpstreamProtocolError("101 to a request that asked for no upgrade")
        self._upgraded = response.status == 101
        if not self._upgraded:
            headers = rewrite_response_headers(response.headers)
            raw = serialize_response_head(response.status, response.reason, headers)
        self._status, self._answered = response.status, True
        self._write_client(raw + reader.take(reader.buffered()))
        pump = Pump(self._client, tls, tunnel=self._upgraded)
        try:
            pump.run()
        finally:
            self._sent += pump.sent_to_client
            self._received += pump.received_from_client

    def _read_final_head(self, reader: SocketReader) -> tuple[bytes, ResponseHead]:
        """The answer's head; interim answers (1xx but 101) go to the client as they are."""
        while True:
            raw = self._read_upstream_head(reader)
            response = parse_response_head(raw)
            if response.status == 101 or not 100 <= response.status < 200:
                return raw, response
            self._write_client(raw)

    def _read_upstream_head(self, reader: SocketReader) -> bytes:
        try:
            raw = reader.read_head(MAX_HEAD, too_large=UpstreamProtocolError,
                                   truncated=UpstreamProtocolError)
        except TimeoutError as error:
            raise UpstreamTimeoutError("no answer head in time") from error
        except OSError as error:
            raise UpstreamUnreachableError(f"read failed: {type(error).__name__}") from error
        if raw is None:
            raise UpstreamProtocolError("connection closed before an answer")
        return raw

    def _write_client(self, data: bytes) -> None:
        self._client.sendall(data)
        self._sent += len(data)

    def _answer_error(self, error: ProxyError) -> None:
        level = logging.WARNING if error.status >= 500 else logging.DEBUG
        log.log(level, "proxy: %s %s -> %d: %s", self._method, self._path, error.status,
                error.detail or error.public_message)
        if self._answered:
            return  # the answer already began; the connection just ends
        self._status, self._answered = error.status, True
        body = json.dumps({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": error.public_message, "code": error.status,
        }).encode()
        head = serialize_response_head(error.status, error.reason, (
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ))
        try:
            self._client.settimeout(IO_TIMEOUT)
            self._write_client(head + body)
            _linger(self._client)
        except OSError:
            pass


def _linger(client: socket.socket, limit: int = 1 << 20) -> None:
    """Read what the client still sends (a body we did not want) before closing: closing with
    unread bytes makes the kernel reset the connection, and the client may lose our answer."""
    client.shutdown(socket.SHUT_WR)
    client.settimeout(1.0)
    drained = 0
    while drained < limit and (data := client.recv(65536)):
        drained += len(data)
