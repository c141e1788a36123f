"""One request relayed once its head went upstream, sans-IO: the request body one way, the
answer the other, and after a `101 Switching Protocols` raw bytes both ways. The caller does
the I/O: it reads a side only when `wants_client_read`/`wants_upstream_read` say so, writes
`to_client`/`to_upstream` and reports what it wrote.

Rules of this module:
- Back-pressure: a side is read only while the bytes for the other side are all written, so
  at most one read per direction is ever held; a slow reader slows its writer, and a watch
  never grows memory.
- Bodies are re-framed, never copied as framed: h11 parses the client's framing and writes the
  upstream's, and the other way round, so neither peer ever reads framing the relay did not.
- Without an upgrade, bytes a client sends past its request are dropped (answers close the
  connection) and its end of stream ends the relay at once (a stopped watch). While an upgrade
  is pending the client is not read; after the 101 its early bytes go upstream first.
- The counts are of bytes as they crossed the wire: `bytes_to_client` as written,
  `bytes_from_client` the request body as received (framing included) plus tunnelled bytes.
"""

from __future__ import annotations

from kubegate.http.engine import (
    Body,
    Downstream,
    EndOfBody,
    RequestHead,
    ResponseHead,
    Upstream,
)
from kubegate.http.errors import BadRequestError, UpstreamProtocolError
from kubegate.http.headers import Headers, rewrite_response_headers, rewrite_switch_headers


class Relay:
    def __init__(self, client: Downstream, upstream: Upstream, *, request: RequestHead,
                 upstream_head: bytes) -> None:
        self._client, self._upstream, self._upgrade = client, upstream, request.upgrade
        self.to_client = bytearray()
        self.to_upstream = bytearray(upstream_head)
        self.status: int | None = None  # of the final answer (or 101) once it began
        self.tunnel = self.request_done = self.response_done = False
        self.client_ended = self.upstream_ended = False
        self.bytes_to_client = 0
        # the tunnel's first bytes, which came with the heads: (from the client, upstream)
        self.tunnel_start: tuple[bytes, bytes] = (b"", b"")
        self.tunnel_headers: Headers = ()  # of the 101 as the client received it
        self._tunnelled_from_client = 0
        self._pull_client()  # body bytes that came with the head
        if client.expects_continue:
            self.to_client += client.send_continue()

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def bytes_from_client(self) -> int:
        return self._client.body_bytes + self._tunnelled_from_client

    @property
    def wants_client_read(self) -> bool:
        if self.client_ended or self.to_upstream:
            return False
        return self.tunnel or not self.request_done or not self._upgrade or self.answered

    @property
    def wants_upstream_read(self) -> bool:
        if self.upstream_ended or self.to_client:
            return False
        return self.tunnel or not self.response_done

    @property
    def finished(self) -> bool:
        if self.tunnel:
            return self.upstream_ended and not self.to_client
        if self.response_done and not self.to_client:
            return True
        return self.client_ended and self.request_done

    def wrote_client(self, count: int) -> None:
        del self.to_client[:count]
        self.bytes_to_client += count

    def wrote_upstream(self, count: int) -> None:
        del self.to_upstream[:count]

    def from_client(self, data: bytes) -> None:
        """Bytes read from the client; b"" at its end of stream."""
        self.client_ended = not data
        if self.tunnel:
            self.to_upstream += data
            self._tunnelled_from_client += len(data)
        elif not self.request_done:
            self._client.receive(data)
            self._pull_client()

    def from_upstream(self, data: bytes) -> None:
        """Bytes read from the upstream; b"" at its end of stream."""
        self.upstream_ended = not data
        if self.tunnel:
            self.to_client += data
            return
        self._upstream.receive(data)
        while not self.tunnel and not self.response_done:
            event = self._upstream.next_event()
            if event is None:
                return
            self._on_upstream(event)

    def _pull_client(self) -> None:
        while not self.request_done and (event := self._client.next_event()) is not None:
            if isinstance(event, Body):
                self.to_upstream += self._upstream.send_body(event.data)
            elif isinstance(event, EndOfBody):
                self.to_upstream += self._upstream.send_end()
                self.request_done = True
            else:  # a second head or a close: h11 raises for a body cut short
                raise BadRequestError("unexpected end of request")

    def _on_upstream(self, event: ResponseHead | Body | EndOfBody) -> None:
        if isinstance(event, Body):
            self.to_client += self._client.send_body(event.data)
        elif isinstance(event, EndOfBody):
            self.to_client += self._client.send_end()
            self.response_done = True
        elif event.status == 101:
            self._switch(event)
        elif event.status < 200:
            if event.status != 100:  # the relay answered Expect itself; upstream never saw it
                self.to_client += self._client.send_interim(event)
        else:
            self.status = event.status
            self.to_client += self._client.send_head(ResponseHead(
                status=event.status, reason=event.reason,
                headers=rewrite_response_headers(event.headers)))

    def _switch(self, head: ResponseHead) -> None:
        if not self.request_done:
            raise UpstreamProtocolError("101 before the request ended")
        self.status, self.tunnel = 101, True
        self.tunnel_headers = rewrite_switch_headers(head.headers)
        self.to_client += self._client.send_interim(ResponseHead(
            status=101, reason=head.reason, headers=self.tunnel_headers))
        late = self._upstream.leftover()
        self.to_client += late
        early = self._client.leftover()
        self.to_upstream += early
        self.tunnel_start = (early, late)
        self._tunnelled_from_client += len(early)
