"""Request smuggling is refused as a class: every ambiguous or obfuscated spelling of a request
head is a 400 from `Downstream` before a `RequestHead` exists, so a caller has nothing it could
forward. Several of these spellings h11 0.16 accepts on its own (bare LF, obs-fold, CL+TE,
tabs and trailing spaces around `chunked`, DEL in values, `HTTP/2.0`); the strict rules in
`kubegate.http.strict` close them, and these tests pin each one."""

from __future__ import annotations

import time

import pytest

from kubegate.http import Body, Downstream, EndOfBody, Relay, RequestHead, Upstream, http_status
from kubegate.http.errors import (
    BadRequestError,
    HeadTooLargeError,
    HttpError,
    UnsupportedMethodError,
)
from kubegate.http.headers import BodyFraming, rewrite_request_headers
from tests.support.smuggling import MALFORMED_HEADS, SMUGGLING

START = b"POST /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
BODY = b"0\r\n\r\n"
SMUGGLED_REQUEST = b"GET /api/v1/secrets HTTP/1.1\r\nHost: x\r\n\r\n"


def events(data: bytes, *, pieces: int = 1) -> list[object]:
    """Everything Downstream makes of data, fed in `pieces` parts, until it needs more."""
    client = Downstream()
    step = max(1, -(-len(data) // pieces))
    out: list[object] = []
    for offset in range(0, len(data), step):
        client.receive(data[offset:offset + step])
        while (event := client.next_event()) is not None:
            out.append(event)
    return out


def refusal(data: bytes, *, pieces: int = 1) -> tuple[list[object], HttpError]:
    """The events Downstream made of data before it refused it, and the refusal."""
    client = Downstream()
    step = max(1, -(-len(data) // pieces))
    seen: list[object] = []
    try:
        for offset in range(0, len(data), step):
            client.receive(data[offset:offset + step])
            while (event := client.next_event()) is not None:
                seen.append(event)
    except HttpError as error:
        return seen, error
    raise AssertionError(f"accepted: {seen}")




@pytest.mark.parametrize("pieces", [1, 7])
@pytest.mark.parametrize("fields", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_ambiguous_or_obfuscated_framing_is_refused_before_any_head_exists(
        fields: bytes, pieces: int) -> None:
    seen, error = refusal(START + fields + b"\r\n" + BODY + b"hello", pieces=pieces)

    assert seen == []
    assert isinstance(error, BadRequestError)
    assert http_status(error) == 400


@pytest.mark.parametrize("raw", MALFORMED_HEADS.values(), ids=MALFORMED_HEADS.keys())
def test_malformed_request_lines_and_heads_are_refused(raw: bytes) -> None:
    seen, error = refusal(raw)

    assert seen == []
    assert isinstance(error, BadRequestError)


@pytest.mark.parametrize("raw", [
    START + b"Authorization: Bearer tok-do-not-log\x00\r\n\r\n",  # refused by our rules
    START + b"Transfer-Encoding: chunked\r\n\r\ntok-do-not-log\r\n",  # refused by h11
])
def test_a_refusal_never_carries_the_offending_bytes(raw: bytes) -> None:
    with pytest.raises(BadRequestError) as raised:
        events(raw)

    assert "tok-do-not-log" not in str(raised.value)
    assert raised.value.__cause__ is None  # h11's error (which quotes the line) is not chained
    assert raised.value.__context__ is None or raised.value.__suppress_context__


@pytest.mark.parametrize(("fields", "framing"), [
    (b"Transfer-Encoding: chunked\r\n", BodyFraming(chunked=True)),
    (b"Transfer-Encoding: CHUNKED\r\n", BodyFraming(chunked=True)),  # codings are case-blind
    (b"transfer-encoding:Chunked\r\n", BodyFraming(chunked=True)),
    (b"Content-Length: 5\r\n", BodyFraming(length=5)),
    (b"Content-Length:5\r\ncontent-length: 5\r\n", BodyFraming(length=5)),  # equal repeats
    (b"Content-Length: 0005\r\n", BodyFraming(length=5)),
])
def test_plain_framing_in_any_case_is_accepted_with_its_meaning(
        fields: bytes, framing: BodyFraming) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n" if framing.chunked else b"hello"

    head, *rest = events(START + fields + b"\r\n" + body)

    assert isinstance(head, RequestHead)
    assert head.framing == framing
    assert rest == [Body(b"hello"), EndOfBody()]


@pytest.mark.parametrize(("target", "origin"), [
    (b"/api/v1/namespaces/ci/pods?watch=true", "/api/v1/namespaces/ci/pods?watch=true"),
    (b"http://10.0.0.1/api/v1/pods?limit=5", "/api/v1/pods?limit=5"),  # cut to path and query
])
def test_a_request_head_parses_to_method_origin_form_target_and_headers_as_sent(
        target: bytes, origin: str) -> None:
    head, end = events(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
                       b"Accept:  */* \r\nx-lower: Mixed Case\r\n\r\n")

    assert isinstance(head, RequestHead) and end == EndOfBody()
    assert (head.method, head.target) == ("GET", origin)
    assert head.headers == (("Host", "127.0.0.1:8001"), ("Accept", "*/*"),
                            ("x-lower", "Mixed Case"))
    assert (head.upgrade, head.framing) == (False, BodyFraming())


def test_tabs_in_ordinary_values_are_fine() -> None:
    head, _ = events(START + b"X-Note:\tone\ttwo\t\r\n\r\n")

    assert isinstance(head, RequestHead)
    assert ("X-Note", "one\ttwo") in head.headers


def test_connect_is_refused_as_not_implemented() -> None:
    with pytest.raises(UnsupportedMethodError) as raised:
        events(b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n")
    assert http_status(raised.value) == 501


@pytest.mark.parametrize("pieces", [1, 40])
def test_a_head_over_64_kib_is_refused_with_431_even_without_its_end(pieces: int) -> None:
    big = START + b"X-Pad: " + b"a" * (64 * 1024) + b"\r\n"

    with pytest.raises(HeadTooLargeError) as raised:
        events(big, pieces=pieces)
    assert http_status(raised.value) == 431


def test_a_head_just_under_the_bound_is_accepted() -> None:
    pad = 64 * 1024 - len(START) - len(b"X-Pad: \r\n\r\n")
    head, _ = events(START.replace(b"POST", b"GET") + b"X-Pad: " + b"a" * pad + b"\r\n\r\n")

    assert isinstance(head, RequestHead)


def test_a_chunked_body_with_a_malformed_chunk_is_refused() -> None:
    with pytest.raises(BadRequestError):
        events(START + b"Transfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n")


def relayed_upstream(raw: bytes) -> bytes:
    """What the relay writes upstream for raw (head and body), as one piece."""
    client = Downstream()
    client.receive(raw)
    head = client.next_event()
    assert isinstance(head, RequestHead)
    upstream = Upstream()
    headers = rewrite_request_headers(head.headers, token="tok", host="up:6443",
                                      upgrade=head.upgrade, framing=head.framing)
    relay = Relay(client, upstream, request=head,
                  upstream_head=upstream.send_head(head.method, head.target, headers))
    return bytes(relay.to_upstream)


def test_equal_repeated_content_lengths_are_one_length_upstream() -> None:
    sent = relayed_upstream(START + b"Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello")

    assert sent.lower().count(b"content-length") == 1
    assert sent.endswith(b"\r\nContent-Length: 5\r\nAuthorization: Bearer tok\r\n"
                         b"Connection: close\r\n\r\nhello")


@pytest.mark.parametrize("body", [
    b"5 \r\nhello\r\n0\r\n\r\n",  # whitespace after the chunk size (h11 allows it)
    b"5;name=value\r\nhello\r\n0\r\n\r\n",  # a chunk extension
    b"5\r\nhello\r\n0\r\nX-Trailer: a\n\r\n",  # a trailer ended by a bare LF
    b"5\r\nhello\r\n0\r\n\n",  # a trailer section ended by a bare LF
    b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
])
def test_body_framing_h11_tolerates_reaches_the_upstream_only_as_the_relays_own(
        body: bytes) -> None:
    """h11 is lenient inside a chunked body, where a proxy that copied the bytes would pass
    the ambiguity on. The relay re-frames, so the upstream reads canonical chunks whatever the
    client wrote, and nothing after them (the connection serves one request)."""
    sent = relayed_upstream(START + b"Transfer-Encoding: chunked\r\n\r\n" + body
                            + b"GET /api/v1/secrets HTTP/1.1\r\nHost: x\r\n\r\n")

    head, _, upstream_body = sent.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert upstream_body.replace(b"2\r\nhe\r\n3\r\nllo", b"5\r\nhello") == (
        b"5\r\nhello\r\n0\r\n\r\n")


@pytest.mark.parametrize("raw", [
    START + b"X-Note: a\r\n\r\n",
    START + b"Content-Length: 5\r\n\r\nhello",
    START + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
])
def test_a_request_dribbled_byte_by_byte_means_what_it_means_in_one_piece(raw: bytes) -> None:
    def joined(found: list[object]) -> list[object]:  # body pieces as one Body
        body = b"".join(event.data for event in found if isinstance(event, Body))
        return [event for event in found if not isinstance(event, Body)] + [body]

    assert joined(events(raw, pieces=len(raw))) == joined(events(raw))


@pytest.mark.parametrize(("first", "second", "refused"), [
    (START + b"X-Note: a\r", b"\nX-Other: b\r\n\r\n", False),  # a CRLF across two reads
    (START + b"X-Note: a\r", b"X-Other: b\r\n\r\n", True),  # a bare CR across two reads
    (START + b"X-Note: a\r\n\r", b"\n", False),
    (START + b"X-Note: a\r\n", b"\n", True),  # a bare LF as the blank line
])
def test_line_ends_split_across_reads_are_judged_with_both_halves(
        first: bytes, second: bytes, refused: bool) -> None:
    client = Downstream()
    client.receive(first)
    assert client.next_event() is None
    if refused:
        with pytest.raises(BadRequestError):
            client.receive(second)
    else:
        client.receive(second)
        assert isinstance(client.next_event(), RequestHead)


def test_a_head_dribbled_one_byte_per_read_is_scanned_in_linear_time() -> None:
    """A client that sends its head a byte at a time gets no quadratic work out of the relay:
    each byte is scanned once. (256 KiB take about 0.2 s so; copying and rescanning the whole
    buffer on every read takes 2.7 s for 64 KiB here, so tens of seconds for 256 KiB.)"""
    bound = 256 * 1024
    pad = bound - len(START) - len(b"X-Pad: \r\n\r\n")
    raw = START.replace(b"POST", b"GET") + b"X-Pad: " + b"a" * pad + b"\r\n\r\n"
    client = Downstream(max_head=bound)
    started = time.monotonic()
    for offset in range(len(raw)):
        client.receive(raw[offset:offset + 1])
    assert isinstance(client.next_event(), RequestHead)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_nothing_after_one_request_is_ever_read_as_http(version: bytes) -> None:
    client = Downstream()
    client.receive(b"GET /api HTTP/" + version + b"\r\nHost: x\r\n\r\n" + SMUGGLED_REQUEST)

    assert [type(e) for e in (client.next_event(), client.next_event())] == [
        RequestHead, EndOfBody]
    client.receive(SMUGGLED_REQUEST)
    assert client.next_event() is None
    assert client.leftover() == SMUGGLED_REQUEST * 2  # an upgraded stream would start here
