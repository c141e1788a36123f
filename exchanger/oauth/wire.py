"""One HTTP/1.1 request and its answer on a token-endpoint connection, sans-IO: bytes in, a
whole `Request` out, the answer's bytes back. h11 parses; `kubegate.http.strict` rules the
raw head first.

Rules of this module:
- a head reaches h11 only after `check_request_head` accepted its raw bytes (bare line ends,
  obsolete folding, `Transfer-Encoding` beside `Content-Length`, look-alike framing headers
  and the rest of request smuggling are refused); the target is a path (origin form only,
  as the endpoint is no proxy); the head is bounded (`MAX_HEAD`), the body
  too (`MAX_BODY`: a `Content-Length` over it is refused before a byte of the body is read);
- each request gets a new `Cycle` (and a new h11 connection): what a client pipelined after
  one request is handed to the next cycle as raw bytes and goes through the same head rules;
- h11's error text never leaves (it may quote a header holding a token): errors are
  `kubegate.http.errors.HttpError`s built from fixed words;
- every answer carries `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1);
  an answer to a request not read to its end closes the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11

from exchanger.oauth.errors import BodyTooLargeError
from kubegate.http import MAX_HEAD
from kubegate.http.errors import BadRequestError, HeadTooLargeError, HttpError
from kubegate.http.strict import check_request_head, scan_head

MAX_BODY = 64 * 1024  # gRPC's receive limit: a subject token is a few KiB
NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Request:
    method: str
    target: str
    headers: Headers  # names in lower case
    body: bytes = field(default=b"", repr=False)  # may hold a token

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: int
    body: bytes = field(repr=False)
    content_type: str = "application/json"
    headers: Headers = ()


class Cycle:
    """One request in, one answer out. `receive` bytes (b"" at the end of the stream) until
    it returns the request; then `send` the answer and, when `keep_alive`, start the next
    cycle with `leftover()`."""

    def __init__(self, *, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self._max_head, self._max_body = max_head, max_body
        self._head: bytearray | None = bytearray()  # until the raw head is accepted
        self._checked = 0
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._continued = False
        self.started = False  # a byte of this request has arrived
        self.closed = False  # the client ended the stream before a request

    def receive(self, data: bytes) -> Request | None:
        """The whole request once it is in, else None (read more). Raises HttpError."""
        self.started = self.started or bool(data)
        if self._head is not None:
            if not data:
                if self._head:
                    raise BadRequestError("stream ended inside a head")
                self.closed = True
                return None
            self._head += data
            size, self._checked = scan_head(self._head, self._max_head, self._checked)
            if size < 0:
                return None
            check_request_head(bytes(self._head[:size]))
            data, self._head = bytes(self._head), None
        self._h11.receive_data(data)
        return self._advance()

    def interim(self) -> bytes:
        """`100 Continue` when the client waits for it (curl does for large bodies)."""
        if self._continued or not self._h11.they_are_waiting_for_100_continue:
            return b""
        self._continued = True
        return self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""

    def send(self, answer: Answer, *, close: bool = False) -> bytes:
        """The answer's bytes; with close (or when the client asked for it), the connection
        closes after them."""
        close = close or self._h11.their_state is not h11.DONE
        headers = [("Content-Type", answer.content_type),
                   ("Content-Length", str(len(answer.body))), *NO_STORE, *answer.headers]
        if close:
            headers.append(("Connection", "close"))
        connection = self._h11 if self._h11.our_state is h11.SEND_RESPONSE else \
            h11.Connection(h11.SERVER)  # the request never reached h11: answer on our own
        raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        return b"".join((
            connection.send(h11.Response(status_code=answer.status, headers=raw)) or b"",
            connection.send(h11.Data(data=answer.body)) or b"",
            connection.send(h11.EndOfMessage()) or b""))

    @property
    def keep_alive(self) -> bool:
        """After `send`: whether the connection may carry another request."""
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    def leftover(self) -> bytes:
        """What the client sent after this request: the start of the next one."""
        return bytes(self._h11.trailing_data[0])

    def _advance(self) -> Request | None:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                raise _client_error(error) from None  # h11's text may quote a token
            if isinstance(event, h11.Request):
                if not event.target.startswith(b"/"):  # `*`, authority or absolute form
                    raise BadRequestError("a target that is not a path")
                self._request = event
                self._check_length(event)
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_body:
                    raise BodyTooLargeError("body over the bound")
            elif isinstance(event, h11.EndOfMessage):
                return self._complete()
            else:
                return None  # NEED_DATA (a closed stream mid-request raises above)

    def _check_length(self, event: h11.Request) -> None:
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self._max_body:
                raise BodyTooLargeError("Content-Length over the bound")

    def _complete(self) -> Request:
        assert self._request is not None
        request = self._request
        return Request(
            method=request.method.decode("ascii"), target=request.target.decode("latin-1"),
            headers=tuple((name.decode("latin-1"), value.decode("latin-1"))
                          for name, value in request.headers),
            body=bytes(self._body))


def _client_error(error: h11.RemoteProtocolError) -> HttpError:
    if error.error_status_hint == 431:
        return HeadTooLargeError("h11: an incomplete message over the size bound")
    return BadRequestError("h11 refused the request")
