"""One request through the sans-IO relay: bytes in from either side, bytes out to the other.
Bodies are re-framed (never copied as framed), watches stream event by event with
back-pressure, upgrades switch to raw bytes both ways, and an upstream that breaks HTTP is a
502-class error."""

from __future__ import annotations

import pytest

from kubegate.http import Downstream, Relay, RequestHead, Upstream
from kubegate.http.errors import BadRequestError, UpstreamProtocolError
from kubegate.http.headers import rewrite_request_headers

TOKEN = "tok-relay-1"
UPGRADE = (b"GET /api/v1/namespaces/ci/pods/p/exec?stdin=true HTTP/1.1\r\nHost: x\r\n"
           b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nImpersonate-User: admin\r\n\r\n")
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"


def start(raw: bytes) -> Relay:
    client = Downstream()
    client.receive(raw)
    head = client.next_event()
    assert isinstance(head, RequestHead)
    upstream = Upstream()
    headers = rewrite_request_headers(head.headers, token=TOKEN, host="up.example:6443",
                                      upgrade=head.upgrade, framing=head.framing)
    first = upstream.send_head(head.method, "/prefix" + head.target, headers)
    return Relay(client, upstream, request=head, upstream_head=first)


def to_upstream(relay: Relay) -> bytes:
    data = bytes(relay.to_upstream)
    relay.wrote_upstream(len(data))
    return data


def to_client(relay: Relay) -> bytes:
    data = bytes(relay.to_client)
    relay.wrote_client(len(data))
    return data


def test_a_content_length_body_goes_upstream_with_the_rewritten_head() -> None:
    relay = start(b"POST /apis/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bogus\r\n"
                  b"Content-Length: 11\r\n\r\nhello")
    relay.from_client(b" world")

    sent = to_upstream(relay)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /prefix/apis/x HTTP/1.1\r\nHost: up.example:6443\r\n")
    assert b"Authorization: Bearer tok-relay-1" in head
    assert b"bogus" not in sent
    assert b"Content-Length: 11" in head
    assert body == b"hello world"
    assert relay.request_done and relay.bytes_from_client == 11


def test_a_chunked_body_is_rechunked_and_its_trailers_end_at_the_relay() -> None:
    relay = start(b"POST /apis/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5;ext=1\r\nhel")
    relay.from_client(b"lo\r\n0\r\nAuthorization: Bearer sneaky\r\n\r\n")

    sent = to_upstream(relay)
    assert sent.endswith(b"\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
    assert b"sneaky" not in sent and b"ext=1" not in sent
    assert relay.bytes_from_client == len(b"5;ext=1\r\nhello\r\n0\r\n"
                                           b"Authorization: Bearer sneaky\r\n\r\n")


def test_a_watch_streams_each_event_as_it_arrives_and_reads_no_further_than_it_writes() -> None:
    relay = start(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)
    relay.from_upstream(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
    head = to_client(relay)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in head
    assert relay.answered and relay.status == 200

    for event in (b'{"type":"ADDED"}\n', b'{"type":"MODIFIED"}\n'):
        relay.from_upstream(b"%x\r\n%s\r\n" % (len(event), event))
        assert not relay.wants_upstream_read  # back-pressure: the event is not written yet
        assert to_client(relay) == b"%x\r\n%s\r\n" % (len(event), event)
        assert relay.wants_upstream_read
    relay.from_upstream(b"0\r\n\r\n")
    assert to_client(relay) == b"0\r\n\r\n"
    assert relay.finished


def test_the_relay_never_holds_more_than_one_read_of_a_large_body() -> None:
    relay = start(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)
    size, read = 4 << 20, 64 * 1024
    relay.from_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    received = len(to_client(relay))
    for _ in range(size // read):
        assert relay.wants_upstream_read
        relay.from_upstream(b"x" * read)
        assert len(relay.to_client) <= read
        received += len(to_client(relay))
    assert relay.finished and relay.bytes_to_client == received


def test_a_client_gone_mid_watch_ends_the_relay_and_later_bytes_are_dropped() -> None:
    relay = start(b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)
    relay.from_client(b"GET /api/v1/secrets HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined
    assert not relay.to_upstream and not relay.finished

    relay.from_client(b"")

    assert relay.finished


def test_an_upgrade_switches_to_raw_bytes_both_ways_with_early_bytes_first() -> None:
    relay = start(UPGRADE + b"early")
    head = to_upstream(relay)
    assert b"Upgrade: SPDY/3.1" in head and b"Connection: Upgrade" in head
    assert b"Impersonate" not in head
    assert not relay.wants_client_read  # nothing is read while the upgrade is pending

    relay.from_upstream(SWITCH + b"greeting")

    assert relay.tunnel and relay.status == 101
    switched = to_client(relay)
    assert switched.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert switched.endswith(b"\r\n\r\ngreeting")
    assert to_upstream(relay) == b"early"
    relay.from_client(b"\x00\x01binary\r\n\r\n")
    assert to_upstream(relay) == b"\x00\x01binary\r\n\r\n"
    relay.from_upstream(b"HTTP/1.1 200 OK\r\n\r\n")  # just bytes now
    assert to_client(relay) == b"HTTP/1.1 200 OK\r\n\r\n"
    relay.from_client(b"")
    assert relay.client_ended and not relay.finished  # the upstream may still talk
    relay.from_upstream(b"")
    assert relay.finished
    assert relay.bytes_from_client == len(b"early\x00\x01binary\r\n\r\n")


def test_an_upgrade_the_upstream_refuses_is_an_ordinary_answer() -> None:
    relay = start(UPGRADE)
    to_upstream(relay)

    relay.from_upstream(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}")

    assert not relay.tunnel and relay.status == 403
    assert to_client(relay).endswith(b"\r\n\r\n{}")
    assert relay.finished


def test_a_101_nobody_asked_for_is_an_upstream_protocol_error() -> None:
    relay = start(b"GET /api HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
    assert b"Upgrade" not in to_upstream(relay)  # no Connection: upgrade, so no upgrade

    with pytest.raises(UpstreamProtocolError):
        relay.from_upstream(SWITCH)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"",  # closed before an answer
])
def test_a_malformed_or_missing_answer_is_an_upstream_protocol_error(answer: bytes) -> None:
    relay = start(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)

    with pytest.raises(UpstreamProtocolError):
        relay.from_upstream(answer)
        relay.from_upstream(b"")
    assert not relay.answered


def test_a_truncated_answer_after_it_began_is_an_error_with_the_answer_started() -> None:
    relay = start(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)
    relay.from_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")

    with pytest.raises(UpstreamProtocolError):
        relay.from_upstream(b"")
    assert relay.answered


def test_expect_100_continue_is_answered_by_the_relay_and_never_sent_upstream() -> None:
    relay = start(b"POST /apis/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 2\r\n\r\n")

    assert to_client(relay) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"Expect" not in to_upstream(relay)
    relay.from_client(b"{}")
    assert to_upstream(relay) == b"{}"
    relay.from_upstream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                        b"Link: </a>\r\n\r\n")
    assert to_client(relay) == b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"


def test_a_client_that_ends_inside_its_body_is_a_bad_request() -> None:
    relay = start(b"POST /apis/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")

    with pytest.raises(BadRequestError):
        relay.from_client(b"")


def test_a_head_answer_has_no_body_and_ends_at_its_head() -> None:
    relay = start(b"HEAD /api HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)

    relay.from_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")

    assert to_client(relay).endswith(b"Content-Length: 42\r\nConnection: close\r\n\r\n")
    assert relay.finished


def test_a_close_delimited_answer_is_chunked_for_the_client_and_ends_with_the_upstream() -> None:
    relay = start(b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
    to_upstream(relay)
    relay.from_upstream(b"HTTP/1.0 200 OK\r\n\r\nabc")
    assert to_client(relay).endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")

    relay.from_upstream(b"")

    assert to_client(relay) == b"0\r\n\r\n"
    assert relay.finished
