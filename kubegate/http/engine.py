"""The two HTTP/1.1 connections of a relay, sans-IO: bytes in, events out, bytes to write back.
`Downstream` is the client's side (h11 in server role behind the strict head rules of
`kubegate.http.strict`); `Upstream` is the upstream's side (h11 in client role).

Rules of this module:
- h11 stops here: callers see our frozen events (`RequestHead`, `ResponseHead`, `Body`,
  `EndOfBody`, `Closed`, or None for "more bytes needed") and `HttpError`s, never h11 types.
- A request head reaches h11 only after `check_request_head` accepted its raw bytes, so what
  h11 parses is what any server behind us would parse; the head is bounded (`max_head`) and
  each of its bytes is scanned once, however it is dribbled in.
- h11's error text is never passed on: it quotes the offending line, which may hold a token.
  A client's protocol error is a `BadRequestError` (`HeadTooLargeError` for a head over the
  bound), an upstream's is an `UpstreamProtocolError`.
- Trailers end here, both ways: they are parsed (and bounded) by h11 and not forwarded (the
  Kubernetes API uses none, and a client's trailer must not add a header after the rewrite).
"""

from __future__ import annotations

from dataclasses import dataclass

import h11

from kubegate.http.errors import (
    BadRequestError,
    HeadTooLargeError,
    HttpError,
    UnsupportedMethodError,
    UpstreamProtocolError,
)
from kubegate.http.headers import (
    BodyFraming,
    Headers,
    absolute_authority,
    is_upgrade_request,
    origin_form,
    request_framing,
)
from kubegate.http.strict import check_request_head, scan_head

MAX_HEAD = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class RequestHead:
    method: str
    target: str  # origin-form: path and query
    headers: Headers  # as received, names in their case
    upgrade: bool  # Connection: upgrade and an Upgrade protocol
    framing: BodyFraming
    authority: str | None = None  # of an absolute-form target (`GET http://host/path`)


@dataclass(frozen=True, kw_only=True)
class ResponseHead:
    status: int
    reason: str
    headers: Headers


@dataclass(frozen=True)
class Body:
    data: bytes


@dataclass(frozen=True)
class EndOfBody:
    """The message (request or response) is complete."""


@dataclass(frozen=True)
class Closed:
    """The peer closed the connection cleanly, before sending a message."""


class Downstream:
    """The client's connection: one request in, one answer out."""

    def __init__(self, *, max_head: int = MAX_HEAD) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self._max_head = max_head
        self._head: bytearray | None = bytearray()  # until the raw head is accepted
        self._checked = 0  # bytes of _head that keep the line-end rule
        self._head_size = self._fed = 0
        self._closed = self._ended = False
        self.body_bytes = 0  # request body bytes as received, framing included

    def receive(self, data: bytes) -> None:
        """Bytes from the client; b"" at its end of stream."""
        if self._head is None:
            self._feed(data)
        elif not data:
            if self._head:
                raise BadRequestError("stream ended inside a head")
            self._closed = True
        else:
            self._head += data
            size, self._checked = scan_head(self._head, self._max_head, self._checked)
            if size >= 0:
                head, self._head = bytes(self._head), None
                check_request_head(head[:size])
                self._head_size = size
                self._feed(head)

    def next_event(self) -> RequestHead | Body | EndOfBody | Closed | None:
        """The next event, or None for "more bytes needed" and, once the request ended, for
        good: whatever follows one request is never read as HTTP."""
        if self._head is not None:
            return Closed() if self._closed else None
        if self._ended:
            return None
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as error:
            raise _client_error(error) from None  # h11's text may quote a token
        if isinstance(event, h11.Request):
            return _request_head(event)
        if isinstance(event, h11.Data):
            return Body(bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            unread = len(self._h11.trailing_data[0])
            self.body_bytes = self._fed - self._head_size - unread
            self._ended = True
            return EndOfBody()
        if isinstance(event, h11.ConnectionClosed):
            return Closed()
        return None  # NEED_DATA, or PAUSED after the request

    @property
    def expects_continue(self) -> bool:
        return self._h11.they_are_waiting_for_100_continue

    def send_continue(self) -> bytes:
        return self._send(h11.InformationalResponse(status_code=100, reason=b"Continue",
                                                    headers=[]))

    def send_interim(self, head: ResponseHead) -> bytes:
        """A 1xx answer (101 included: after it, bytes are relayed raw both ways)."""
        return self._send(h11.InformationalResponse(
            status_code=head.status, reason=_latin1(head.reason), headers=_h11_headers(head)))

    def send_head(self, head: ResponseHead) -> bytes:
        return self._send(h11.Response(
            status_code=head.status, reason=_latin1(head.reason), headers=_h11_headers(head)))

    def send_body(self, data: bytes) -> bytes:
        return self._send(h11.Data(data=data)) if data else b""

    def send_end(self) -> bytes:
        return self._send(h11.EndOfMessage())

    def leftover(self) -> bytes:
        """What the client sent past its request (the first bytes of an upgraded stream)."""
        return bytes(self._h11.trailing_data[0])

    def _feed(self, data: bytes) -> None:
        self._fed += len(data)
        self._h11.receive_data(data)

    def _send(self, event: h11.Event) -> bytes:
        try:
            return self._h11.send(event) or b""
        except h11.LocalProtocolError:
            raise UpstreamProtocolError("the answer cannot be relayed to the client") \
                from None  # h11's text quotes the header


class Upstream:
    """The upstream's connection: one request out, its answer in."""

    def __init__(self, *, max_head: int = MAX_HEAD) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)

    def send_head(self, method: str, target: str, headers: Headers) -> bytes:
        try:
            return self._h11.send(h11.Request(
                method=method, target=_latin1(target),
                headers=[(_latin1(n), _latin1(v)) for n, v in headers])) or b""
        except h11.LocalProtocolError:
            raise BadRequestError("the request cannot be relayed") from None  # it quotes

    def send_body(self, data: bytes) -> bytes:
        return (self._h11.send(h11.Data(data=data)) or b"") if data else b""

    def send_end(self) -> bytes:
        return self._h11.send(h11.EndOfMessage()) or b""

    def receive(self, data: bytes) -> None:
        """Bytes from the upstream; b"" at its end of stream."""
        self._h11.receive_data(data)

    def next_event(self) -> ResponseHead | Body | EndOfBody | None:
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError:
            raise UpstreamProtocolError("malformed answer") from None
        if isinstance(event, (h11.Response, h11.InformationalResponse)):
            return ResponseHead(status=event.status_code, reason=event.reason.decode("latin-1"),
                                headers=_headers(event))
        if isinstance(event, h11.Data):
            return Body(bytes(event.data))
        if isinstance(event, h11.EndOfMessage):
            return EndOfBody()
        if isinstance(event, h11.ConnectionClosed):
            raise UpstreamProtocolError("connection closed before a complete answer")
        return None  # NEED_DATA, or PAUSED after a 101

    def leftover(self) -> bytes:
        """What the upstream sent past its 101 (the first bytes of the upgraded stream)."""
        return bytes(self._h11.trailing_data[0])


def _request_head(event: h11.Request) -> RequestHead:
    method = event.method.decode("ascii")
    if method == "CONNECT":
        raise UnsupportedMethodError("CONNECT")
    headers = _headers(event)
    target = event.target.decode("latin-1")
    return RequestHead(method=method, target=origin_form(target), headers=headers,
                       upgrade=is_upgrade_request(headers), framing=request_framing(headers),
                       authority=absolute_authority(target))


def _client_error(error: h11.RemoteProtocolError) -> HttpError:
    if error.error_status_hint == 431:  # h11's hint for a message over its size bound
        return HeadTooLargeError("h11: an incomplete message over the size bound")
    return BadRequestError("h11 refused the request")


def _headers(event: h11.Request | h11.Response | h11.InformationalResponse) -> Headers:
    """The event's headers with their names' case as received (h11 lower-cases its own)."""
    return tuple((name.decode("latin-1"), value.decode("latin-1"))
                 for name, value in event.headers.raw_items())


def _h11_headers(head: ResponseHead) -> list[tuple[bytes, bytes]]:
    return [(_latin1(name), _latin1(value)) for name, value in head.headers]


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")
