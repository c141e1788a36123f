"""The apiserver side: where a credential points, and verified TLS connections to it.

Rules of this module:
- Verification is never off: the context trusts the credential's CA bundle (or the system's
  roots when the bundle is empty), checks the host name, and offers only `http/1.1` by ALPN
  (SPDY and WebSocket upgrades do not exist in HTTP/2).
- Building a context parses and loads a CA bundle; that happens once per distinct bundle, not
  per request. TLS sessions are resumed per (bundle, host, port), which saves the certificate
  exchange and signature check of a full handshake on every request after the first.
- A connector may present one client certificate (the gateway's own, when its cluster entry
  authenticates with one); the sidecar's presents none.
"""

from __future__ import annotations

import functools
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kubegate.http.errors import UpstreamTLSError, UpstreamUnreachableError

CONNECT_TIMEOUT = 10.0
_MAX_CONTEXTS = 8


@dataclass(frozen=True, kw_only=True)
class Upstream:
    host: str
    port: int
    prefix: str  # a path the server URL carries (some gateways serve a cluster under one)
    host_header: str


@functools.lru_cache(maxsize=32)
def parse_server(server: str) -> Upstream:
    """The apiserver a credential names; only https is accepted."""
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise UpstreamUnreachableError("the credential's server is not an https URL")
    try:
        port = parts.port or 443
    except ValueError as error:
        raise UpstreamUnreachableError("the credential's server has an invalid port") from error
    return Upstream(host=parts.hostname, port=port, prefix=parts.path.rstrip("/"),
                    host_header=parts.netloc.rpartition("@")[2])


class TLSConnector:
    """Opens verified TLS connections, with one context per CA bundle and resumed sessions."""

    def __init__(self, client_cert: tuple[Path, Path] | None = None) -> None:
        self._client_cert = client_cert  # (certificate file, key file)
        self._lock = threading.Lock()
        self._contexts: dict[bytes, ssl.SSLContext] = {}
        self._sessions: dict[tuple[bytes, str, int], ssl.SSLSession] = {}

    def context(self, ca_pem: bytes) -> ssl.SSLContext:
        context = self._contexts.get(ca_pem)
        if context is None:
            context = _client_context(ca_pem)
            if self._client_cert is not None:
                context.load_cert_chain(*self._client_cert)
            with self._lock:
                if len(self._contexts) >= _MAX_CONTEXTS:
                    self._contexts.pop(next(iter(self._contexts)))
                    self._sessions.clear()
                self._contexts[ca_pem] = context
        return context

    def connect(self, upstream: Upstream, ca_pem: bytes,
                track: Callable[[socket.socket], None]) -> ssl.SSLSocket:
        """A TLS connection to upstream; track sees the socket before any blocking step, so
        the proxy can interrupt a connect or handshake when it stops."""
        context = self.context(ca_pem)
        raw = _open_tcp(upstream, track)
        session = self._sessions.get((ca_pem, upstream.host, upstream.port))
        tls = context.wrap_socket(raw, server_hostname=upstream.host, session=session,
                                  do_handshake_on_connect=False)
        track(tls)
        try:
            tls.do_handshake()
        except ssl.SSLCertVerificationError as error:
            tls.close()
            raise UpstreamTLSError(error.verify_message) from error
        except OSError as error:  # ssl.SSLError included
            tls.close()
            detail = f"TLS handshake failed: {type(error).__name__}"
            raise UpstreamUnreachableError(detail) from error
        return tls

    def remember_session(self, upstream: Upstream, ca_pem: bytes, tls: ssl.SSLSocket) -> None:
        """Keep tls's session for the next connection (with TLS 1.3 the ticket arrives after
        the handshake, so this is called once the response has been read)."""
        session = tls.session
        if session is not None and session.has_ticket:
            self._sessions[(ca_pem, upstream.host, upstream.port)] = session


def _client_context(ca_pem: bytes) -> ssl.SSLContext:
    if ca_pem.strip():
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    else:
        context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _open_tcp(upstream: Upstream, track: Callable[[socket.socket], None]) -> socket.socket:
    try:
        addresses = socket.getaddrinfo(upstream.host, upstream.port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UpstreamUnreachableError("cannot resolve the API server's host") from error
    last: OSError | None = None
    for family, kind, protocol, _, address in addresses:
        sock = socket.socket(family, kind, protocol)
        track(sock)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
        except OSError as error:
            sock.close()
            last = error
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise UpstreamUnreachableError(f"connect failed: {type(last).__name__}")
