"""The client's request head, read from its socket into a `kubegate.http.Downstream` by a
deadline (the sidecar's API proxy and the gateway read theirs alike).

Rules of this module:
- The whole head must arrive by `deadline` (a monotonic time: the accept plus the head
  timeout, a TLS handshake included where there is one); an idle connection is timed too.
- At the deadline a partial head is a `HeadTimeoutError` (answered 408 by the caller), and
  silence a plain `TimeoutError` (just closed, nothing to record); a client that closed
  before a whole head gives None.
- Only the head is timed: what follows it (a body, a watch, an exec stream) is the caller's,
  which sets the socket's timeout again before it reads or writes.
"""

from __future__ import annotations

import socket
import time

from kubegate.http import Closed, Downstream, RequestHead
from kubegate.http.errors import HeadTimeoutError
from kubegate.relayio.pump import CHUNK


def read_head(client: socket.socket, downstream: Downstream,
              deadline: float) -> RequestHead | None:
    """The request head, or None when the client closed first; `HttpError`s (a refused head,
    `HeadTimeoutError`) and `OSError`s (a disconnect, silence) are raised."""
    received = False
    while True:
        event = downstream.next_event()
        if isinstance(event, RequestHead):
            return event
        if isinstance(event, Closed):
            return None
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            client.settimeout(remaining)
            data = client.recv(CHUNK)
        except TimeoutError:
            if received:  # a slow head (slowloris): say so; silence is just closed
                raise HeadTimeoutError("no whole request head in time") from None
            raise
        received = received or bool(data)
        downstream.receive(data)
