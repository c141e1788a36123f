"""The I/O under a `kubegate.http.Relay`: the client's socket and the upstream's TLS socket,
non-blocking, in one selector loop. The relay decides what to read and holds what to write;
this module only moves bytes and keeps time.

Rules of this module:
- A side is read only when the relay wants it read, one read (64 KiB) at a time: the relay's
  back-pressure holds because nothing here buffers.
- TLS reads that only consumed a handshake message (a session ticket) come back as "nothing
  yet" instead of blocking the other direction, and TLS's own wants (read to write, write to
  read) are waited for.
- A client's half-close of an upgraded connection reaches the upstream as a TCP FIN, and the
  upstream has `HALF_CLOSE_GRACE` to finish talking.
- Until the answer begins, the upstream has `UPSTREAM_HEAD_TIMEOUT` to answer a complete
  request and `IO_TIMEOUT` for each step of a body; after it, a quiet connection (a watch, a
  shell) waits as long as it lasts. An upstream failure before the answer is a 502/504; after
  it, or on the client's side, it is an ordinary end of connection (`OSError`).
- An observer, when given, is told when a tunnel opens (the read that held the 101) and then
  sees every tunnelled byte (never an HTTP head), each read once, as read (no copy), in the
  order read. It is called on the pump's thread and must be quick; without one nothing is
  done per read.
- The client's socket may be TLS (the gateway's): its wants and buffered records are handled
  like the upstream's.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import time
from typing import NoReturn, Protocol

from kubegate.http import Relay
from kubegate.http.errors import UpstreamTimeoutError, UpstreamUnreachableError

CHUNK = 64 * 1024
IO_TIMEOUT = 60.0  # one step of a request body, or one write of our own answer
UPSTREAM_HEAD_TIMEOUT = 120.0  # the apiserver's answer to a slow request (a big list)
# After the client half-closes an upgraded connection, how long the upstream may keep talking.
HALF_CLOSE_GRACE = 5.0



class TunnelObserver(Protocol):
    def opened(self, response_headers: tuple[tuple[str, str], ...]) -> None:
        """The 101 went to the client with these headers; bytes follow."""

    def moved(self, from_client: bool, data: bytes) -> None:
        """data crossed the tunnel (from the client when from_client, else to it)."""


class Pump:
    def __init__(self, client: socket.socket, upstream: ssl.SSLSocket, relay: Relay, *,
                 observer: TunnelObserver | None = None) -> None:
        self._client, self._upstream, self._relay = client, upstream, relay
        self._observer = observer
        self._grace_until: float | None = None
        self._ssl_wants = 0  # extra selector events the TLS layer asked for

    def run(self) -> None:
        self._client.setblocking(False)
        self._upstream.setblocking(False)
        with selectors.DefaultSelector() as selector:
            while not self._finished():
                if not self._wait(selector):
                    self._timed_out()
                self._step()

    def _finished(self) -> bool:
        if self._relay.finished:
            return True
        return self._grace_until is not None and time.monotonic() > self._grace_until

    def _wait(self, selector: selectors.BaseSelector) -> bool:
        """Wait until a socket is ready; False when the wait timed out."""
        relay = self._relay
        client_events = selectors.EVENT_WRITE if relay.to_client else 0
        client_events |= selectors.EVENT_READ if relay.wants_client_read else 0
        upstream_events = self._ssl_wants
        upstream_events |= selectors.EVENT_WRITE if relay.to_upstream else 0
        upstream_events |= selectors.EVENT_READ if relay.wants_upstream_read else 0
        _modify(selector, self._client, client_events)
        _modify(selector, self._upstream, upstream_events)
        if relay.wants_upstream_read and self._upstream.pending():
            return True
        if relay.wants_client_read and isinstance(self._client, ssl.SSLSocket) \
                and self._client.pending():
            return True
        return bool(selector.select(self._timeout())) or self._grace_until is not None

    def _timeout(self) -> float | None:
        if self._grace_until is not None:
            return max(0.0, self._grace_until - time.monotonic())
        if self._relay.answered:
            return None
        return UPSTREAM_HEAD_TIMEOUT if self._relay.request_done else IO_TIMEOUT

    def _timed_out(self) -> None:
        if self._relay.request_done or self._relay.to_upstream:
            raise UpstreamTimeoutError("no answer in time")
        raise TimeoutError("the client's request body stalled")

    def _step(self) -> None:
        """Try every move that is allowed: a move that would block is simply skipped."""
        relay = self._relay
        self._ssl_wants = 0
        if relay.wants_upstream_read and (data := self._read_upstream()) is not None:
            tunnel = relay.tunnel
            relay.from_upstream(data)
            if self._observer is not None:
                self._observe_upstream(self._observer, tunnel, data)
        if relay.to_client:
            relay.wrote_client(_send(self._client, relay.to_client))
        if relay.wants_client_read:
            self._read_client()
        if relay.to_upstream:
            self._write_upstream()

    def _read_upstream(self) -> bytes | None:
        try:
            return self._upstream.recv(CHUNK)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLWantWriteError:
            self._ssl_wants |= selectors.EVENT_WRITE
            return None
        except OSError as error:
            if self._grace_until is not None and isinstance(error, ssl.SSLError):
                return b""  # an alert for our bare FIN (OpenSSL peers send one): their end
            self._upstream_failed(error)

    def _observe_upstream(self, observer: TunnelObserver, tunnel_before: bool,
                          data: bytes) -> None:
        if tunnel_before:
            if data:
                observer.moved(False, data)
        elif self._relay.tunnel:  # this read held the 101: what came with either head
            observer.opened(self._relay.tunnel_headers)
            early_client, early_upstream = self._relay.tunnel_start
            if early_client:
                observer.moved(True, early_client)
            if early_upstream:
                observer.moved(False, early_upstream)

    def _read_client(self) -> None:
        try:
            data = self._client.recv(CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return  # nothing yet, or only a TLS record of no data (a TLS client's)
        if data and self._observer is not None and self._relay.tunnel:
            self._observer.moved(True, data)
        self._relay.from_client(data)
        if not data and self._relay.tunnel:
            self._half_close_upstream()
            self._grace_until = time.monotonic() + HALF_CLOSE_GRACE

    def _half_close_upstream(self) -> None:
        """Pass the client's half-close on as a TCP FIN. Not TLS `close_notify`: `unwrap`
        sends it and then waits for the upstream's, and application data still in flight
        (a shell's output) fails the connection there. A Go apiserver reads the bare FIN as
        an unexpected end and can still write; an OpenSSL peer stops writing."""
        with contextlib.suppress(OSError):  # an upstream gone already shows when read
            socket.socket.shutdown(self._upstream, socket.SHUT_WR)

    def _write_upstream(self) -> None:
        try:
            sent = self._upstream.send(self._relay.to_upstream)
        except ssl.SSLWantWriteError:
            return
        except ssl.SSLWantReadError:
            self._ssl_wants |= selectors.EVENT_READ
            return
        except OSError as error:
            self._upstream_failed(error)
        self._relay.wrote_upstream(sent)

    def _upstream_failed(self, error: OSError) -> NoReturn:
        if self._relay.answered:
            raise error  # the answer began: the client's connection just ends
        raise UpstreamUnreachableError(f"upstream I/O failed: {type(error).__name__}") \
            from error


def _send(sock: socket.socket, data: bytearray) -> int:
    try:
        return sock.send(data)
    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return 0


def _modify(selector: selectors.BaseSelector, sock: socket.socket, events: int) -> None:
    """Wait on exactly events for sock; none at all unregisters it (a socket at end of stream
    is always readable, and would turn the loop into a spin)."""
    key = selector.get_map().get(sock)
    if key is None:
        if events:
            selector.register(sock, events)
    elif not events:
        selector.unregister(sock)
    elif key.events != events:
        selector.modify(sock, events)
