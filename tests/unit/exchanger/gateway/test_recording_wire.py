"""Encoders written from the specs (RFC 6455 section 5, SPDY/3 draft section 2), used by the
recording tests to make wire bytes; checked here against the RFC's own example frames."""

from __future__ import annotations

import struct
import zlib

from exchanger.gateway.recording.spdy_dictionary import SPDY3_DICTIONARY

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def ws_frame(payload: bytes, *, opcode: int = BINARY, fin: bool = True,
             mask: bytes | None = None, rsv: int = 0, force_length: int | None = None) -> bytes:
    """One frame; `mask` is the 4-byte key (client frames), None for server frames."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    length = len(payload) if force_length is None else force_length
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", length)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", length)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_message(payload: bytes, *, opcode: int = BINARY, mask: bytes | None = None,
               pieces: int = 1) -> bytes:
    """A message cut into `pieces` frames (first the opcode, then continuations)."""
    size = max(1, -(-len(payload) // pieces))
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    frames = b""
    for index, part in enumerate(parts):
        frames += ws_frame(part, opcode=opcode if index == 0 else CONTINUATION,
                           fin=index == len(parts) - 1, mask=mask)
    return frames


class SpdyEncoder:
    """One direction's SPDY/3.1 frames; header blocks share one zlib context, as on the wire."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=SPDY3_DICTIONARY)

    def header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            raw += struct.pack(">I", len(name)) + name.encode()
            raw += struct.pack(">I", len(value)) + value.encode()
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream(self, stream: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        body = struct.pack(">IIH", stream, 0, 0) + self.header_block(headers)
        return control(1, body, flags=1 if fin else 0)

    def syn_reply(self, stream: int, headers: dict[str, str]) -> bytes:
        return control(2, struct.pack(">I", stream) + self.header_block(headers))

    def headers(self, stream: int, headers: dict[str, str]) -> bytes:
        return control(8, struct.pack(">I", stream) + self.header_block(headers))


def control(kind: int, body: bytes, *, flags: int = 0, version: int = 3) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, kind, flags << 24 | len(body)) + body


def data(stream: int, payload: bytes, *, fin: bool = False) -> bytes:
    return struct.pack(">II", stream, (1 if fin else 0) << 24 | len(payload)) + payload


def rst_stream(stream: int, status: int = 5) -> bytes:
    return control(3, struct.pack(">II", stream, status))


def ping(ping_id: int) -> bytes:
    return control(6, struct.pack(">I", ping_id))


def settings_frame() -> bytes:
    return control(4, struct.pack(">I", 1) + struct.pack(">II", 7, 65536))


def goaway(last_good: int) -> bytes:
    return control(7, struct.pack(">II", last_good, 0))


def window_update(stream: int, delta: int) -> bytes:
    return control(9, struct.pack(">II", stream, delta))


def test_encoder_matches_rfc6455_examples() -> None:
    # RFC 6455 section 5.7
    assert ws_frame(b"Hello", opcode=TEXT) == bytes.fromhex("810548656c6c6f")
    assert ws_frame(b"Hello", opcode=TEXT, mask=bytes.fromhex("37fa213d")) == bytes.fromhex(
        "818537fa213d7f9f4d5158")
    assert ws_message(b"Hello", opcode=TEXT, pieces=2) == bytes.fromhex("010348656c80026c6f")
    assert ws_frame(b"x" * 256)[:4] == bytes.fromhex("827e0100")
    assert ws_frame(b"x" * 65536)[:10] == bytes.fromhex("827f0000000000010000")


def test_spdy_header_blocks_inflate_with_the_dictionary() -> None:
    encoder, inflate = SpdyEncoder(), zlib.decompressobj(zdict=SPDY3_DICTIONARY)
    for _ in range(2):  # the second block refers back into the first: one context
        block = encoder.header_block({"streamtype": "stdout"})
        assert inflate.decompress(block) == (b"\0\0\0\x01\0\0\0\x0astreamtype"
                                             b"\0\0\0\x06stdout")
