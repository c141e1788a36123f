"""The relay's own answers: the one place where an error becomes an HTTP status and a whole
HTTP/1.1 response, fit to send whatever state the client's request was left in.

Rules of this module:
- the status is the error code's (`Code.http_status`), except where HTTP has a more precise
  word for the same failure, in the same class (the table below, each with its RFC);
  nothing else picks statuses;
- an answer always closes the connection: after a refusal, the relay reads nothing more of
  the client's bytes as HTTP, so nothing it sent after the refused head can become a request;
- the answer's bytes come from h11, like every other message the relay writes.
"""

from __future__ import annotations

from http import HTTPStatus

import h11

from kubegate.errors import KubegateError
from kubegate.http.errors import HeadTimeoutError, HeadTooLargeError, UpstreamError

# Where HTTP says it more precisely than the code does.
_PRECISE: tuple[tuple[type[KubegateError], int], ...] = (
    # RFC 6585 5; RESOURCE_EXHAUSTED alone would be 429, which asks the client to slow down
    (HeadTooLargeError, 431),
    # RFC 9110 15.5.9: the client did not complete its request in time (not a gateway's 504)
    (HeadTimeoutError, 408),
    # RFC 9110 15.6.3: a gateway whose upstream failed (503 would say the relay itself is down)
    (UpstreamError, 502),
)


def http_status(error: KubegateError) -> int:
    """The status the relay answers error with."""
    for kind, status in _PRECISE:
        if isinstance(error, kind):
            return status
    return error.code.http_status


def answer(error: KubegateError, *, body: bytes, content_type: str,
           retry_after: int | None = None) -> bytes:
    """A whole answer of the relay's own for error, with `Connection: close` (and with
    `Retry-After`, RFC 9110 10.2.3, when given: client-go retries a 503 that carries it)."""
    status = http_status(error)
    connection = h11.Connection(h11.SERVER)
    headers = [(b"Content-Type", content_type.encode("latin-1")),
               (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
    if retry_after is not None:
        headers.append((b"Retry-After", str(retry_after).encode()))
    return b"".join((
        connection.send(h11.Response(status_code=status, reason=_phrase(status),
                                     headers=headers)) or b"",
        connection.send(h11.Data(data=body)) or b"",
        connection.send(h11.EndOfMessage()) or b"",
    ))


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:  # 499 and other statuses of convention only
        return b""
