"""The WebSocket frame parser: any split of the bytes gives the same messages; what breaks
RFC 6455 stops it with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanger.gateway.recording.errors import ProtocolViolation
from exchanger.gateway.recording.websocket import Close, FrameParser, MessageChunk
from tests.unit.exchanger.gateway.test_recording_wire import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ws_frame,
    ws_message,
)

Message = tuple[str, bool, bytes]  # ("message", text, payload) or ("close", False, body)


def messages(parser: FrameParser, chunks: list[bytes]) -> list[Message]:
    """The parser's events with each message's chunks joined."""
    out: list[Message] = []
    held = b""
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, Close):
                body = b"" if event.code is None else event.code.to_bytes(2, "big")
                out.append(("close", False, body + event.reason))
                continue
            assert isinstance(event, MessageChunk)
            held = event.data if event.first else held + event.data
            if event.last:
                out.append(("message", event.text, held))
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


payloads = st.lists(st.tuples(st.booleans(), st.binary(max_size=300), st.integers(1, 4)),
                    min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(payloads, st.lists(st.integers(0, 5000), max_size=12), st.binary(min_size=4, max_size=4),
       st.booleans())
def test_any_split_gives_the_same_messages(items: list[tuple[bool, bytes, int]],
                                           cuts: list[int], key: bytes,
                                           client: bool) -> None:
    mask = key if client else None
    wire = b""
    for text, payload, pieces in items:
        wire += ws_message(payload, opcode=TEXT if text else BINARY, mask=mask, pieces=pieces)
        wire += ws_frame(b"hb", opcode=PING, mask=mask)  # control frames in between
    wire += ws_frame(b"\x03\xe8bye", opcode=CLOSE, mask=mask)
    expected = [("message", text, payload) for text, payload, _ in items]
    expected.append(("close", False, b"\x03\xe8bye"))
    assert messages(FrameParser(masked=client), [wire]) == expected
    assert messages(FrameParser(masked=client), split(wire, cuts)) == expected


def test_every_byte_boundary_of_the_rfc_examples() -> None:
    wire = (bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 5.7, masked "Hello"
            + ws_message(b"x" * 70000, mask=b"\x01\x02\x03\x04", pieces=3))
    one_by_one = [wire[i:i + 1] for i in range(len(wire))]
    expected = [("message", True, b"Hello"), ("message", False, b"x" * 70000)]
    assert messages(FrameParser(masked=True), one_by_one) == expected
    for cut in range(0, 40):
        assert messages(FrameParser(masked=True), [wire[:cut], wire[cut:]]) == expected


def test_a_control_frame_inside_a_fragmented_message() -> None:
    wire = (ws_frame(b"Hel", opcode=TEXT, fin=False) + ws_frame(b"", opcode=PONG)
            + ws_frame(b"lo", opcode=CONTINUATION))
    assert messages(FrameParser(masked=False), [wire]) == [("message", True, b"Hello")]


def test_an_empty_message_and_an_empty_close() -> None:
    wire = ws_frame(b"") + ws_frame(b"", opcode=CLOSE)
    assert messages(FrameParser(masked=False), [wire]) == [("message", False, b""),
                                                           ("close", False, b"")]


def test_memory_is_bounded_by_the_header_not_the_frame() -> None:
    parser = FrameParser(masked=False)
    head = ws_frame(b"x" * 70000)
    events = parser.feed(head[:20000])
    passed = sum(len(e.data) for e in events if isinstance(e, MessageChunk))
    assert passed == 20000 - 10  # all but the header (a 64-bit length: 10 bytes)


@pytest.mark.parametrize(("wire", "masked", "reason"), [
    (ws_frame(b"hi"), True, "not masked"),
    (ws_frame(b"hi", mask=b"abcd"), False, "is masked"),
    (ws_frame(b"hi", rsv=0x40), False, "reserved bit"),
    (bytes([0x83, 0]), False, "reserved opcode"),
    (ws_frame(b"x" * 126, opcode=PING), False, "control frame"),
    (ws_frame(b"x", opcode=PING, fin=False), False, "control frame"),
    (ws_frame(b"x", opcode=CONTINUATION), False, "continuation"),
    (ws_frame(b"a", fin=False) + ws_frame(b"b"), False, "new message"),
    (bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"), False, "top bit"),
    (ws_frame(b"", force_length=17 * 1024 * 1024)[:10], False, "over the"),
    (ws_frame(b"\x03", opcode=CLOSE), False, "one-byte"),
])
def test_violations_stop_the_parser_for_good(wire: bytes, masked: bool, reason: str) -> None:
    parser = FrameParser(masked=masked)
    with pytest.raises(ProtocolViolation, match=reason):
        parser.feed(wire)
    with pytest.raises(ProtocolViolation, match=reason):
        parser.feed(ws_frame(b"fine", mask=b"abcd" if masked else None))
