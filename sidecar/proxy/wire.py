"""Bytes on the proxy's two sockets: a buffered reader for message heads and request bodies,
and the pump that relays a response (or an upgraded connection) as the bytes arrive.

Rules of the module:
- The reader owns its buffer (no `makefile`): whatever it read past a head is handed on
  explicitly, to the upstream with the body or to the client after a `101`.
- The pump never buffers more than one read per direction (64 KiB) and stops reading a side
  whose bytes cannot be written yet, so a slow reader slows its writer instead of growing memory.
- Both sockets are non-blocking inside the pump, and TLS reads that only consumed a handshake
  message (a session ticket) come back as "nothing yet" instead of blocking the other direction.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from collections.abc import Callable

from sidecar.proxy.errors import BadRequestError, ProxyError
from sidecar.proxy.headers import BodyFraming

CHUNK = 64 * 1024
LINE_LIMIT = 8 * 1024
# After the client half-closes an upgraded connection, how long the upstream may keep talking.
HALF_CLOSE_GRACE = 5.0


class SocketReader:
    """Reads from a socket through a buffer of its own."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def read_head(self, limit: int, *, too_large: type[ProxyError],
                  truncated: type[ProxyError]) -> bytes | None:
        """The next head up to and including its blank line; None at a clean end of stream."""
        searched = 0
        while True:
            end = self._buffer.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                return self.take(end + 4)
            if len(self._buffer) > limit:
                raise too_large(f"head over {limit} bytes")
            searched = len(self._buffer)
            data = self._sock.recv(CHUNK)
            if not data:
                if self._buffer:
                    raise truncated("stream ended inside a head")
                return None
            self._buffer += data

    def read_line(self, limit: int = LINE_LIMIT) -> bytes:
        """One line, CRLF included (request-body chunk sizes and trailers)."""
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > limit:
                raise BadRequestError("line too long in chunked body")
            self._fill()
        return self.take(end + 1)

    def read_some(self, most: int) -> bytes:
        if not self._buffer:
            self._fill()
        return self.take(min(most, len(self._buffer)))

    def buffered(self) -> int:
        return len(self._buffer)

    def take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _fill(self) -> None:
        data = self._sock.recv(CHUNK)
        if not data:
            raise BadRequestError("request body ended early")
        self._buffer += data


def relay_body(reader: SocketReader, framing: BodyFraming, send: Callable[[bytes], None]) -> int:
    """Copy one request body from reader to send, framing included; returns the bytes copied."""
    if framing.chunked:
        return _relay_chunked(reader, send)
    remaining = framing.length
    while remaining:
        data = reader.read_some(min(remaining, CHUNK))
        send(data)
        remaining -= len(data)
    return framing.length


def _relay_chunked(reader: SocketReader, send: Callable[[bytes], None]) -> int:
    copied = 0
    while True:
        line = reader.read_line()
        size = _chunk_size(line)
        send(line)
        copied += len(line)
        if size == 0:
            break
        copied += relay_body(reader, BodyFraming(length=size), send)
        crlf = reader.read_line()
        if crlf != b"\r\n":
            raise BadRequestError("chunk not followed by CRLF")
        send(crlf)
        copied += 2
    while (trailer := reader.read_line()) != b"\r\n":  # trailers, then the final blank line
        send(trailer)
        copied += len(trailer)
    send(trailer)
    return copied + 2


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
        raise BadRequestError("invalid chunk size")
    return int(text, 16)


class Pump:
    """Relays upstream -> client until the upstream ends; for an upgraded connection
    (`tunnel`), client -> upstream as well. Without `tunnel`, the client's end of stream means
    it went away (a watch it stopped), and the upstream request is abandoned at once."""

    def __init__(self, client: socket.socket, upstream: ssl.SSLSocket, *, tunnel: bool) -> None:
        self._client, self._upstream, self._tunnel = client, upstream, tunnel
        self._to_client = b""
        self._to_upstream = b""
        self._upstream_ended = False
        self._client_ended = False
        self._grace_until: float | None = None
        self._ssl_wants = 0  # extra selector events the TLS layer asked for
        self.sent_to_client = 0
        self.received_from_client = 0

    def run(self) -> None:
        self._client.setblocking(False)
        self._upstream.setblocking(False)
        with selectors.DefaultSelector() as selector:
            while not self._finished():
                self._wait(selector)
                self._step()

    def _finished(self) -> bool:
        if self._upstream_ended and not self._to_client:
            return True
        if self._client_ended and not self._tunnel:
            return True
        return self._grace_until is not None and time.monotonic() > self._grace_until

    def _wait(self, selector: selectors.BaseSelector) -> None:
        client_events = selectors.EVENT_WRITE if self._to_client else 0
        if not self._client_ended and not self._to_upstream:
            client_events |= selectors.EVENT_READ
        upstream_events = self._ssl_wants
        upstream_events |= selectors.EVENT_WRITE if self._to_upstream else 0
        if not self._upstream_ended and not self._to_client:
            upstream_events |= selectors.EVENT_READ
        _modify(selector, self._client, client_events)
        _modify(selector, self._upstream, upstream_events)
        timeout = None
        if self._grace_until is not None:
            timeout = max(0.0, self._grace_until - time.monotonic())
        if self._upstream.pending() and not self._to_client:
            timeout = 0.0
        selector.select(timeout)

    def _step(self) -> None:
        """Try every move that is allowed: a move that would block is simply skipped."""
        self._ssl_wants = 0
        if not self._to_client and not self._upstream_ended:
            data = self._read_upstream()
            if data is not None:
                self._upstream_ended = not data
                self._to_client = data
        if self._to_client:
            sent = _send(self._client, self._to_client)
            self._to_client = self._to_client[sent:]
            self.sent_to_client += sent
        if not self._to_upstream and not self._client_ended:
            self._read_client()
        if self._to_upstream:
            self._write_upstream()

    def _read_upstream(self) -> bytes | None:
        try:
            return self._upstream.recv(CHUNK)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLWantWriteError:
            self._ssl_wants = selectors.EVENT_WRITE
            return None

    def _read_client(self) -> None:
        try:
            data = self._client.recv(CHUNK)
        except BlockingIOError:
            return
        if not data:
            self._client_ended = True
            if self._tunnel:  # pass the half-close on; the upstream gets a grace period
                socket.socket.shutdown(self._upstream, socket.SHUT_WR)
                self._grace_until = time.monotonic() + HALF_CLOSE_GRACE
        elif self._tunnel:
            self._to_upstream = data
            self.received_from_client += len(data)
        # else: bytes after a request we answer with `Connection: close` are ignored

    def _write_upstream(self) -> None:
        try:
            sent = self._upstream.send(self._to_upstream)
        except ssl.SSLWantWriteError:
            return
        except ssl.SSLWantReadError:
            self._ssl_wants = selectors.EVENT_READ
            return
        self._to_upstream = self._to_upstream[sent:]


def _send(sock: socket.socket, data: bytes) -> int:
    try:
        return sock.send(data)
    except BlockingIOError:
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
