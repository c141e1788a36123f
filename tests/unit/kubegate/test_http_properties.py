"""Properties of the relay's request side, for any mutation of a valid request followed by a
second, smuggled one: the relay refuses the bytes, or reads exactly one request, never two;
a request it accepts ends where every lenient server would say it ends (the smuggling
property itself: no reading of the same bytes sees another boundary); what it writes
upstream is read by an independent HTTP/1.1 parser as that same one request, with the same
body, and nothing after it; and how the bytes are cut into reads changes nothing."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import h11
from hypothesis import given
from hypothesis import strategies as st

from kubegate.http import Body, Downstream, EndOfBody, Relay, RequestHead, Upstream
from kubegate.http.errors import HttpError
from kubegate.http.headers import rewrite_request_headers
from tests.support.hypothesis_profiles import FUZZ

SMUGGLED = b"GET /api/v1/secrets HTTP/1.1\r\nHost: x\r\n\r\n"
VALID = [
    b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nAccept: */*\r\n\r\n",
    b"POST /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"GET /api/v1/namespaces/ci/pods/p/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
    b"Upgrade: SPDY/3.1\r\n\r\n",
    b"PUT /apis/x HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
]
# What smuggling is made of: line ends, blanks, separators, digits and framing headers.
PIECES = [
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b" ", b"\t", b"\x00", b"\x0b", b":", b",", b";", b"0",
    b"5", b"a", b"-", b"_", b"chunked", b"identity", b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 3\r\n", b"Content-Length: 0\r\n", b"\r\n ", b"0\r\n\r\n", b"HTTP/1.1",
    b"X-Note: a\n", b" Transfer-Encoding: chunked\r\n", b"Transfer-Encoding : chunked\r\n",
    b"Transfer-Encoding:\tchunked\r\n", b"Content-Length: 5, 5\r\n", SMUGGLED,
]


# Header lines as requests spell them, and as smuggling spells them.
FIELDS = [
    b"X-Note: a", b"Accept: */*", b"Content-Length: 5", b"Content-Length: 0",
    b"Content-Length: 5, 5", b"Content-Length:\t5", b"Content-Length: +5", b"Content-Length: 5 ",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: CHUNKED", b"Transfer-Encoding : chunked",
    b"Transfer-Encoding:\tchunked", b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding: xchunked", b"Transfer_Encoding: chunked", b" Transfer-Encoding: chunked",
    b"\tX-Folded: b", b" chunked", b"\tTransfer-Encoding: chunked", b" Content-Length: 5",
    b"Connection: Upgrade", b"Upgrade: websocket",
]
LINE_ENDS = [b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n", b"\n\r"]
BODIES = [b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"0\r\n\r\nhello",
          b"5\r\nhello\r\n0\r\nX-Trailer: a\n\r\n"]


@st.composite
def spelled_requests(draw: st.DrawFn) -> bytes:
    """A request built line by line from FIELDS, each line ended by one of LINE_ENDS."""
    start = draw(st.sampled_from([b"POST /api HTTP/1.1", b"GET /api HTTP/1.1",
                                  b"POST /api HTTP/1.0"]))
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4))
    lines = [start, b"Host: x", *fields]  # without Host, h11 refuses an HTTP/1.1 request
    head = b"".join(line + draw(st.sampled_from(LINE_ENDS)) for line in lines)
    return head + b"\r\n" + draw(st.sampled_from(BODIES))


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A valid or spelled request, a smuggled one after it, and up to four edits."""
    first = draw(st.sampled_from(VALID) | spelled_requests())
    data = bytearray(first + SMUGGLED)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 4]))):
        line_starts = [m.end() for m in re.finditer(rb"\n", data)]  # where smuggling starts
        at = draw(st.sampled_from(line_starts) | st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert":
            data[at:at] = draw(st.sampled_from(PIECES) | st.binary(min_size=1, max_size=3))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at + 1] = draw(st.sampled_from(PIECES))
    return bytes(data)


@st.composite
def cut_requests(draw: st.DrawFn, *, min_cuts: int = 0) -> tuple[bytes, list[int]]:
    """A mutated request, and where to cut it into reads."""
    data = draw(mutated_requests())
    return data, draw(st.lists(st.integers(0, len(data)), min_size=min_cuts, max_size=8))


def read_by_relay(data: bytes, cuts: list[int]) -> tuple[list[object], bytes] | None:
    """The events the relay read from data (cut into reads at cuts) and what it wrote
    upstream; None when it refused data."""
    client = Downstream()
    seen: list[object] = []
    relay: Relay | None = None
    try:
        for piece in _pieces(data, cuts):
            if relay is None:
                client.receive(piece)
                event = client.next_event()
                if isinstance(event, RequestHead):
                    seen.append(event)
                    relay = _relay(client, event)
            else:
                relay.from_client(piece)
    except HttpError:
        return None
    upstream = bytes(relay.to_upstream) if relay is not None else b""
    return seen, upstream


def _relay(client: Downstream, head: RequestHead) -> Relay:
    upstream = Upstream()
    headers = rewrite_request_headers(head.headers, token="tok", host="up:6443",
                                      upgrade=head.upgrade, framing=head.framing)
    return Relay(client, upstream, request=head,
                 upstream_head=upstream.send_head(head.method, head.target, headers))


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *cuts})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def parsed_upstream(data: bytes) -> tuple[list[h11.Request], bytes, bool]:
    """An independent reading of what went upstream, by h11 as the server (lenient as it is):
    the requests, the body bytes, and whether the body ended. Nothing may follow them."""
    requests: list[h11.Request] = []
    body, ended = b"", False
    if not data:
        return requests, body, ended  # (h11 would read b"" as the end of the stream)
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    while (event := server.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
        if isinstance(event, h11.Request):
            requests.append(event)
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            ended = True
    assert server.trailing_data[0] == b""  # nothing after the one request
    return requests, body, ended


def read_by_engine(data: bytes) -> list[object] | None:
    """Every event Downstream makes of data until it needs more; None when it refused data."""
    client = Downstream()
    try:
        client.receive(data)
        events: list[object] = []
        while (event := client.next_event()) is not None:
            events.append(event)
    except HttpError:
        return None
    return events


@FUZZ
@given(mutated_requests())
def test_a_mutated_request_is_refused_or_read_as_exactly_one_request(data: bytes) -> None:
    events = read_by_engine(data)
    if events is None:
        return  # refused: nothing to forward
    heads = [event for event in events if isinstance(event, RequestHead)]
    assert len(heads) <= 1
    assert events[:1] == heads[:1]  # nothing comes before the head
    assert all(isinstance(event, Body) for event in events[1:-1])
    if events and isinstance(events[-1], EndOfBody):
        assert events.count(EndOfBody()) == 1  # and nothing after the end of the one request


@FUZZ
@given(cut_requests())
def test_the_upstream_reads_the_one_request_and_body_the_relay_read(
        request: tuple[bytes, list[int]]) -> None:
    data, cuts = request
    events = read_by_engine(data)
    result = read_by_relay(data, cuts)
    assert (events is None) == (result is None)  # cutting into reads changes no verdict
    if events is None or result is None or not events:
        return
    head = events[0]
    assert isinstance(head, RequestHead)
    requests, body, ended = parsed_upstream(result[1])
    assert len(requests) == 1
    assert (requests[0].method.decode(), requests[0].target.decode("latin-1")) == (
        head.method, head.target)
    assert body == b"".join(event.data for event in events if isinstance(event, Body))
    assert ended == isinstance(events[-1], EndOfBody)


@FUZZ
@given(cut_requests(min_cuts=1))
def test_how_the_bytes_are_cut_into_reads_never_changes_the_verdict(
        request: tuple[bytes, list[int]]) -> None:
    data, cuts = request
    whole = read_by_relay(data, [])
    cut = read_by_relay(data, cuts)

    assert (whole is None) == (cut is None)
    if whole is not None and cut is not None:
        assert whole[0] == cut[0]
        assert parsed_upstream(whole[1]) == parsed_upstream(cut[1])


@dataclass(frozen=True, kw_only=True)
class LenientReader:
    """Where some server would think the first request in data ends, with one choice for each
    leniency found behind real proxies: whether a bare LF ends a line, whether a line that
    starts with a blank continues the previous field or starts a new one, whether blanks
    before the colon are part of the name, which framing wins when both are there, and which
    of several Content-Lengths counts. `chunked` anywhere in Transfer-Encoding counts."""

    bare_lf: bool
    unfold: bool
    strip_name: bool
    length_wins: bool
    last_length: bool

    def request_end(self, data: bytes) -> int | None:
        """The offset just past the first request; None when this reader would refuse it."""
        match = re.search(rb"\r?\n\r?\n" if self.bare_lf else rb"\r\n\r\n", data)
        if match is None:
            return None
        head = data[:match.start()]
        lines = head.split(b"\n") if self.bare_lf else head.split(b"\r\n")
        fields = self._fields([line.removesuffix(b"\r") for line in lines[1:]])
        encodings = [v for n, v in fields if n == b"transfer-encoding"]
        lengths = [v for n, v in fields if n == b"content-length"]
        chunked = any(v.lower().split(b",")[-1].strip() == b"chunked" for v in encodings)
        if lengths and (self.length_wins or not chunked):
            value = (lengths[-1] if self.last_length else lengths[0]).strip()
            return match.end() + int(value) if value.isdigit() else None
        return _chunked_end(data, match.end()) if chunked else match.end()

    def _fields(self, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        fields: list[tuple[bytes, bytes]] = []
        for line in lines:
            if line[:1] in (b" ", b"\t") and fields and self.unfold:
                fields[-1] = (fields[-1][0], fields[-1][1] + b" " + line.strip())
                continue
            name, colon, value = line.lstrip(b" \t").partition(b":")
            if colon:
                name = name.strip() if self.strip_name else name
                fields.append((name.lower(), value.strip()))
        return fields


def _chunked_end(data: bytes, offset: int) -> int | None:
    while True:
        line_end = data.find(b"\n", offset)
        if line_end < 0:
            return None
        size_text = data[offset:line_end].split(b";")[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
            return None
        size = int(size_text, 16)
        offset = line_end + 1
        if size == 0:
            break
        offset += size + 2  # the chunk and its CRLF
    while (line_end := data.find(b"\n", offset)) >= 0:  # trailers, to the blank line
        line, offset = data[offset:line_end], line_end + 1
        if line in (b"", b"\r"):
            return offset
    return None


READERS = [LenientReader(bare_lf=a, unfold=b, strip_name=c, length_wins=d, last_length=e)
           for a, b, c, d, e in itertools.product((False, True), repeat=5)]


@FUZZ
@given(mutated_requests())
def test_a_request_the_relay_accepts_ends_where_every_lenient_reader_says(data: bytes) -> None:
    """The request smuggling property itself: were the relay a proxy that copied bytes, no
    server behind it, however lenient, could see a different request boundary."""
    client = Downstream()
    try:
        client.receive(data)
        while not isinstance(event := client.next_event(), EndOfBody):
            if event is None:
                return  # incomplete: nothing to compare
    except HttpError:
        return  # refused
    end = len(data) - len(client.leftover())
    for reader in READERS:
        assert reader.request_end(data) in (end, None), vars(reader)
