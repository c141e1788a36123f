"""The SPDY/3.1 frame parser: the dictionary is SPDY/3's, any split gives the same events,
header blocks inflate in one context per direction, broken framing stops it."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanger.gateway.recording.errors import ProtocolViolation
from exchanger.gateway.recording.spdy import (
    FrameParser,
    StreamData,
    StreamOpened,
    StreamReset,
    parse_header_block,
)
from exchanger.gateway.recording.spdy_dictionary import SPDY3_DICTIONARY
from tests.unit.exchanger.gateway.test_recording_wire import (
    SpdyEncoder,
    control,
    data,
    goaway,
    ping,
    rst_stream,
    settings_frame,
    window_update,
)

Summary = tuple[str, int, object]


def summarise(parser: FrameParser, chunks: list[bytes]) -> list[Summary]:
    """Events with each stream's consecutive data joined (a split cuts data frames)."""
    out: list[Summary] = []
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, StreamOpened):
                out.append(("open", event.stream, (event.headers, event.fin)))
            elif isinstance(event, StreamReset):
                out.append(("reset", event.stream, event.status))
            else:
                assert isinstance(event, StreamData)
                last = out[-1] if out else None
                if last and last[0] == "data" and last[1] == event.stream and event.data:
                    held = last[2]
                    assert isinstance(held, bytes)
                    out[-1] = ("data", event.stream, held + event.data)
                elif event.data:
                    out.append(("data", event.stream, event.data))
                if event.fin:
                    out.append(("fin", event.stream, None))
    return out


def test_the_dictionary_is_spdy3s() -> None:
    # SPDY/3 draft 2.6.10.1; zlib's own checksum of it, and a digest pinned at copy time
    assert len(SPDY3_DICTIONARY) == 1423
    assert zlib.adler32(SPDY3_DICTIONARY) == 3821447106
    assert SPDY3_DICTIONARY.startswith(b"\0\0\0\x07options\0\0\0\x04head")
    assert SPDY3_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert hashlib.sha256(SPDY3_DICTIONARY).hexdigest() == (
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02")


def exec_session(client: SpdyEncoder) -> tuple[bytes, list[Summary]]:
    kinds = ["error", "stdin", "stdout", "stderr", "resize"]
    wire, expected = settings_frame(), list[Summary]()
    for index, kind in enumerate(kinds):
        stream = 1 + 2 * index
        wire += client.syn_stream(stream, {"streamtype": kind})
        expected.append(("open", stream, ({"streamtype": kind}, False)))
    wire += ping(1) + window_update(3, 1000)
    wire += data(3, b"ls -l\r") + data(9, b'{"Width":120,"Height":40}\n')
    expected += [("data", 3, b"ls -l\r"), ("data", 9, b'{"Width":120,"Height":40}\n')]
    wire += client.headers(3, {"x-extra": "1"})  # inflated, so later blocks stay in step
    wire += data(3, b"", fin=True) + rst_stream(5)
    expected += [("fin", 3, None), ("reset", 5, 5)]
    wire += client.syn_stream(11, {"streamtype": "late"}) + goaway(11)
    expected.append(("open", 11, ({"streamtype": "late"}, False)))
    return wire, expected


def test_an_exec_session_frame_by_frame() -> None:
    wire, expected = exec_session(SpdyEncoder())
    assert summarise(FrameParser(), [wire]) == expected


def test_every_byte_boundary() -> None:
    wire, expected = exec_session(SpdyEncoder())
    assert summarise(FrameParser(), [wire[i:i + 1] for i in range(len(wire))]) == expected


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.binary(max_size=200), st.booleans()),
                max_size=8),
       st.lists(st.integers(0, 4000), max_size=10))
def test_any_split_gives_the_same_events(frames: list[tuple[int, bytes, bool]],
                                         cuts: list[int]) -> None:
    encoder = SpdyEncoder()
    wire, expected = b"", list[Summary]()
    for stream, payload, reopen in frames:
        if reopen:  # header blocks refer back to earlier ones: one zlib context
            wire += encoder.syn_stream(stream, {"streamtype": "stdout", "port": "80"})
            expected.append(("open", stream, ({"streamtype": "stdout", "port": "80"}, False)))
        wire += data(stream, payload)
        if payload:
            if expected and expected[-1][0] == "data" and expected[-1][1] == stream:
                held = expected[-1][2]
                assert isinstance(held, bytes)
                expected[-1] = ("data", stream, held + payload)
            else:
                expected.append(("data", stream, payload))
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    chunks = [wire[a:b] for a, b in zip(points, points[1:], strict=False)]
    assert summarise(FrameParser(), chunks) == expected


def test_syn_reply_keeps_the_zlib_context_in_step() -> None:
    server = SpdyEncoder()
    wire = server.syn_reply(1, {"status": "200"}) + server.syn_stream(2, {"streamtype": "x"})
    assert summarise(FrameParser(), [wire]) == [("open", 2, ({"streamtype": "x"}, False))]


def test_header_values_joined_and_names_lowered() -> None:
    raw = b"\0\0\0\x01\0\0\0\x04Port\0\0\0\x0480\x008"
    assert parse_header_block(raw) == {"port": "80,8"}


@pytest.mark.parametrize(("wire", "reason"), [
    (control(1, b"\0" * 12, version=2), "version 2"),
    (control(1, b"\0\0\0\x01\0\0\0\0\0\0" + b"not zlib"), "does not inflate"),
    (control(3, b"\0\0"), "truncated"),
    (bytes.fromhex("80030001") + (300 * 1024).to_bytes(4, "big"), "over the cap"),
])
def test_broken_framing_stops_the_parser_for_good(wire: bytes, reason: str) -> None:
    parser = FrameParser()
    with pytest.raises(ProtocolViolation, match=reason):
        parser.feed(wire)
    with pytest.raises(ProtocolViolation, match=reason):
        parser.feed(data(1, b"fine"))


def test_a_header_block_that_inflates_too_far_is_refused() -> None:
    deflate = zlib.compressobj(zdict=SPDY3_DICTIONARY)
    huge = deflate.compress(b"\0" * (300 * 1024)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(ProtocolViolation, match="inflates to more"):
        FrameParser().feed(control(1, b"\0\0\0\x01\0\0\0\0\0\0" + huge))


@pytest.mark.parametrize("raw", [b"\0\0\0\x02\0\0\0\x01a", b"\0\0\0\x00extra", b"\0\0"])
def test_malformed_header_blocks(raw: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        parse_header_block(raw)


# Real bytes: written by github.com/moby/spdystream@v0.5.1/spdy's Framer (the one client-go and
# the kubelet use) from a Go program doing, in order: SYN_STREAM 1,3,5,7,9 with streamType
# error, stdin, stdout, stderr, resize; DATA 3 "echo hi\r"; DATA 9 a resize; DATA 5 "hi\r\n"
# with FIN; RST_STREAM 7 CANCEL (5): `spdy.NewFramer(&buf, &buf)`, `framer.WriteFrame(...)`,
# `hex.EncodeToString(buf.Bytes())`.
GO_FRAMER_EXEC = bytes.fromhex(
    "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800"
    "000000ffff800300010000001700000003000000000000c22e555c92929907000000ffff8003000100000019"
    "00000005000000000000c22ac5565c92925f5a02000000ffff800300010000001500000007000000000000c2"
    "29975a5404000000ffff800300010000001800000009000000000000c22e57945a9c59950a000000ffff0000"
    "0003000000086563686f2068690d000000090000001a7b225769647468223a3130302c22486569676874223a"
    "33307d0a000000050100000468690d0a80030003000000080000000700000005")


def test_frames_written_by_the_go_framer() -> None:
    kinds = ["error", "stdin", "stdout", "stderr", "resize"]
    expected: list[Summary] = [("open", 1 + 2 * i, ({"streamtype": kind}, False))
                               for i, kind in enumerate(kinds)]
    expected += [("data", 3, b"echo hi\r"), ("data", 9, b'{"Width":100,"Height":30}\n'),
                 ("data", 5, b"hi\r\n"), ("fin", 5, None), ("reset", 7, 5)]
    wire = GO_FRAMER_EXEC
    assert summarise(FrameParser(), [wire]) == expected
    assert summarise(FrameParser(), [wire[i:i + 1] for i in range(len(wire))]) == expected
