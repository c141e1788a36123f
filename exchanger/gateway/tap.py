"""The seam between the proxy and the recorder of interactive streams (exec, attach,
port-forward): once an upgrade was answered `101 Switching Protocols`, the proxy hands every
tunnelled byte, both ways, to the stream's tap.

Rules of this module:
- the proxy opens a tap only for an upgraded request whose answer was 101, and feeds it only
  tunnel bytes (never the HTTP heads), in the order they crossed the gateway, with the time
  (`time.time()`) they did;
- a tap never blocks and never fails the stream: the proxy catches and logs what it raises
  and stops feeding that tap;
- `close` is called exactly once, when the stream ends for any reason (including a revoke).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from exchanger.gateway.session import GatewaySession


class StreamTap(Protocol):
    def from_client(self, data: bytes, at: float) -> None: ...

    def from_upstream(self, data: bytes, at: float) -> None: ...

    def close(self, at: float) -> None: ...


class TapFactory(Protocol):
    def open(self, *, session: GatewaySession, method: str, path: str,
             request_headers: Sequence[tuple[str, str]],
             response_headers: Sequence[tuple[str, str]],
             started: float) -> StreamTap | None:
        """A tap for this stream, or None when it is not one that is recorded."""
        ...
