"""The HTTP/1.1 engine of a relay that speaks for its client (the sidecar's API proxy, later
the server-side gateway), sans-IO on h11: bytes in, events out, bytes to write back. Modules:
`strict` (raw head rules that close h11's leniencies: smuggling refused), `headers` (who the
upstream sees: identity, hop-by-hop, framing), `hosts` (who may call a loopback relay:
`Host` and `Origin`, against DNS rebinding), `engine` (the two h11 connections), `relay`
(one request both ways, with back-pressure and upgrades), `errors` (what went wrong) and
`answers` (the relay's own answers, the one place a status is chosen).

    client = Downstream()                      # h11 server role, strict head rules first
    client.receive(data); head = client.next_event()       # RequestHead, or None: read more
    check_caller(head.headers, head.authority, HostPolicy())  # 400/403 before anything else
    upstream = Upstream()                      # h11 client role
    first = upstream.send_head(head.method, target, rewrite_request_headers(...))
    relay = Relay(client, upstream, request=head, upstream_head=first)
    # then, until relay.finished: read a side when relay.wants_*_read, pass the bytes to
    # relay.from_client/from_upstream, write relay.to_client/to_upstream, report wrote_*().

Rules of this package:
- no sockets, no threads, no clock (an import-linter contract checks it): the caller does the
  I/O and keeps time, so every rule here is testable with bytes alone;
- it imports the standard library, h11 and `kubegate.errors` only, never `exchanger`,
  `sidecar`, grpc or the commands;
- h11 types stay inside: callers see this package's frozen events and `HttpError`s.
"""

from kubegate.http.answers import answer, http_status
from kubegate.http.engine import (
    MAX_HEAD,
    Body,
    Closed,
    Downstream,
    EndOfBody,
    RequestHead,
    ResponseHead,
    Upstream,
)
from kubegate.http.relay import Relay

__all__ = ["MAX_HEAD", "Body", "Closed", "Downstream", "EndOfBody", "Relay", "RequestHead",
           "ResponseHead", "Upstream", "answer", "http_status"]
