"""One client connection, one request: read its head, take the current credential, open a
verified TLS connection to that credential's apiserver, send the rewritten request, and relay
the answer as it arrives (an upgraded connection both ways), or answer with our own error.
The HTTP is `kubegate.http`'s; this module is the policy and the sockets' lifetimes.

Rules of this module:
- A request head is accepted whole (strict rules, h11, size bound) and its caller checked
  (`Host` and `Origin`, `kubegate.http.hosts`) before anything happens upstream: a refused
  request (smuggling, DNS rebinding, a web page's) neither asks for a credential nor opens
  an upstream connection. The whole head must arrive within `head_timeout` of the accept
  (an idle connection included; `kubegate.relayio.head`); a partial head is then answered
  408, silence just closed. Only the head is timed: an answer (a watch, an exec) is never
  cut by this timeout.
- The credential is read once per request, at the start: a refreshed token is used by the
  next request, and a watch keeps the token it was authorized with.
- Failures on the upstream side, before the answer began, become 502/504 answers with a short
  message (`kubegate.http.http_status` picks the status); failures on the client side are
  ordinary disconnects, logged at debug level only.
- The client's socket is closed only once the client stopped sending or a second passed in
  all (`_linger`): closing with unread bytes resets the connection, and the answer may be lost.
- Nothing here logs or raises text that holds the token or a request header's value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable

from kubegate.credential import Credential
from kubegate.http import Downstream, Relay, RequestHead, Upstream, answer, http_status
from kubegate.http.errors import HttpError
from kubegate.http.headers import rewrite_request_headers
from kubegate.http.hosts import HostPolicy, check_caller
from kubegate.relayio.head import read_head
from kubegate.relayio.pump import IO_TIMEOUT, Pump
from kubegate.relayio.upstream import TLSConnector, parse_server
from sidecar.proxy.errors import NoCredentialError
from sidecar.proxy.record import CLIENT_CLOSED, ProxiedRequest

log = logging.getLogger(__name__)

CredentialSource = Callable[[], Credential | None]
Track = Callable[[socket.socket], None]

CLIENT_HEAD_TIMEOUT = 10.0  # from the accept to the end of the head (slow or idle clients)
PUBLIC_PREFIX = "kubegate proxy: "


class ForwardedRequest:
    """One client connection's one request, forwarded to the apiserver with the credential."""

    def __init__(self, client: socket.socket, *, credentials: CredentialSource,
                 connector: TLSConnector, track: Track, policy: HostPolicy | None = None,
                 head_timeout: float = CLIENT_HEAD_TIMEOUT,
                 accepted: float | None = None) -> None:
        self._client, self._credentials = client, credentials
        self._connector, self._track = connector, track
        self._policy = policy or HostPolicy()
        self._deadline = (time.monotonic() if accepted is None else accepted) + head_timeout
        self._downstream = Downstream()
        self._relay: Relay | None = None
        self._method = self._path = "-"
        self._session_id = ""
        self._status = CLIENT_CLOSED
        self._refused = ""
        self._answered = False
        self._sent = 0

    def run(self) -> ProxiedRequest | None:
        """Serve the connection's request; None when the client sent none."""
        try:
            head = read_head(self._client, self._downstream, self._deadline)
            if head is not None:
                self._method, self._path = head.method, head.target
                check_caller(head.headers, head.authority, self._policy)
        except HttpError as error:
            self._answer_error(error)
            return self._result(time.monotonic())
        except OSError:
            return None  # closed or idle before a whole request: nothing to record
        if head is None:
            return None
        started = time.monotonic()
        try:
            self._proxy(head)
        except HttpError as error:
            self._answer_error(error)
        except OSError as error:  # the client went away: a stopped watch, a killed kubectl
            log.debug("proxy: %s %s ended early: %s", self._method, self._path,
                      type(error).__name__)
        return self._result(started)

    def _result(self, started: float) -> ProxiedRequest:
        relay = self._relay
        return ProxiedRequest(
            method=self._method, path=self._path, status=self._status,
            bytes_sent=self._sent + (relay.bytes_to_client if relay else 0),
            bytes_received=relay.bytes_from_client if relay else 0,
            duration_seconds=time.monotonic() - started, session_id=self._session_id,
            upgraded=relay.tunnel if relay else False, refused=self._refused)

    def _proxy(self, head: RequestHead) -> None:
        self._method, self._path = head.method, head.target
        credential = self._current_credential()
        upstream = parse_server(credential.cluster.server)
        try:
            headers = rewrite_request_headers(
                head.headers, token=credential.token, host=upstream.host_header,
                upgrade=head.upgrade, framing=head.framing)
        except ValueError as error:
            raise NoCredentialError(str(error)) from None
        ca_pem = credential.cluster.certificate_authority_data
        tls = self._connector.connect(upstream, ca_pem, self._track)
        try:
            connection = Upstream()
            first = connection.send_head(head.method, upstream.prefix + head.target, headers)
            self._relay = Relay(self._downstream, connection, request=head, upstream_head=first)
            try:
                Pump(self._client, tls, self._relay).run()
            finally:
                self._answered = self._relay.answered
                self._status = self._relay.status or self._status
            self._connector.remember_session(upstream, ca_pem, tls)
        finally:
            tls.close()
        if not self._relay.request_done and not self._relay.client_ended:
            _linger(self._client)  # answered before the body ended (a 403 to an upload)

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

    def _answer_error(self, error: HttpError) -> None:
        status = http_status(error)
        level = logging.WARNING if status >= 500 else logging.DEBUG
        log.log(level, "proxy: %s %s -> %d %s: %s", self._method, self._path, status,
                error.reason, error.detail or error.public_message)
        if self._answered:
            return  # the answer already began; the connection just ends
        self._status, self._answered = status, True
        if self._relay is None:
            self._refused = error.reason  # answered by us, nothing relayed
        try:
            self._client.settimeout(IO_TIMEOUT)
            data = own_answer(error)
            self._client.sendall(data)
            self._sent += len(data)
        except OSError:
            return  # the client is gone
        _linger(self._client)


def own_answer(error: HttpError, *, retry_after: int | None = None) -> bytes:
    """The whole answer of the proxy's own for error: a Kubernetes `Status` as kubectl
    prints it."""
    status = http_status(error)
    body = json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": PUBLIC_PREFIX + error.public_message, "code": status,
    }).encode()
    return answer(error, body=body, content_type="application/json", retry_after=retry_after)


def _linger(client: socket.socket, limit: int = 1 << 20) -> None:
    """Read what the client still sends (a body we did not want) before closing: closing with
    unread bytes makes the kernel reset the connection, and the client may lose our answer.
    At most limit bytes, for at most a second in all (a client dribbling bytes must not hold
    the connection); a client gone already is fine."""
    deadline = time.monotonic() + 1.0
    with contextlib.suppress(OSError):
        client.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < limit and (remaining := deadline - time.monotonic()) > 0:
            client.settimeout(remaining)
            if not (data := client.recv(65536)):
                break
            drained += len(data)
