"""SPDY/3.1 frames, one direction of one connection, sans-IO: bytes in, events out.

What kubectl speaks when WebSockets are off (`Upgrade: SPDY/3.1`), and what it tunnels inside
WebSocket binary messages for port-forward (`SPDY/3.1+portforward.k8s.io`). The format is
that of github.com/moby/spdystream@v0.5.1/spdy (read.go, types.go), which client-go and the
kubelet use.

Rules of this module:
- a control frame (top bit set: version, type, flags, 24-bit length) is held whole, up to
  `MAX_CONTROL` bytes; a data frame's payload (31-bit stream id, flags, 24-bit length) is handed
  on as it arrives, so memory is bounded by `MAX_CONTROL`, never by a data frame's length;
- header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib streams with the SPDY/3 dictionary;
  each direction has its own inflate context, which lives as long as the connection, and a
  block inflates to at most `MAX_HEADERS` bytes;
- SETTINGS, PING, GOAWAY, WINDOW_UPDATE and unknown control types are consumed; what breaks the
  framing (a version other than 3, a truncated or over-long block, bad zlib) is a
  `ProtocolViolation`, raised again by every later `feed`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from exchanger.gateway.recording.errors import ProtocolViolation, StreamParser
from exchanger.gateway.recording.spdy_dictionary import SPDY3_DICTIONARY

MAX_CONTROL = 256 * 1024
MAX_HEADERS = 256 * 1024
FLAG_FIN = 0x01
SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS = 1, 2, 3, 8


@dataclass(frozen=True, kw_only=True)
class StreamOpened:
    stream: int
    headers: dict[str, str]  # lower-case names; several values joined by "," as received
    fin: bool


@dataclass(frozen=True, kw_only=True)
class StreamData:
    stream: int
    data: bytes
    fin: bool  # this sender closes its half of the stream


@dataclass(frozen=True, kw_only=True)
class StreamReset:
    stream: int
    status: int


Event = StreamOpened | StreamData | StreamReset


class FrameParser(StreamParser[Event]):
    def __init__(self) -> None:
        self._head = bytearray()
        self._control: bytearray | None = None  # a control frame being gathered
        self._control_type, self._control_length = 0, 0
        self._data_stream, self._data_left, self._data_fin = 0, 0, False
        self._inflate = zlib.decompressobj(zdict=SPDY3_DICTIONARY)

    def _feed(self, data: memoryview) -> list[Event]:
        events: list[Event] = []
        while data:
            if self._control is not None:
                data = self._gather_control(data, events)
            elif self._data_left:
                data = self._pass_data(data, events)
            else:
                take = 8 - len(self._head)
                self._head += data[:take]
                data = data[take:]
                if len(self._head) == 8:
                    self._start_frame(bytes(self._head), events)
                    self._head.clear()
        return events

    def _start_frame(self, head: bytes, events: list[Event]) -> None:
        first, second = struct.unpack(">II", head)
        flags, length = second >> 24, second & 0xFFFFFF
        if first & 0x80000000:
            version = (first >> 16) & 0x7FFF
            if version != 3:
                raise ProtocolViolation(f"SPDY version {version}, not 3")
            if length > MAX_CONTROL:
                raise ProtocolViolation(f"a control frame of {length} bytes is over the cap")
            self._control, self._control_type = bytearray(), first & 0xFFFF
            self._control_length, self._data_fin = length, bool(flags & FLAG_FIN)
            if length == 0:
                self._end_control(events)
            return
        self._data_stream, self._data_left, self._data_fin = first, length, bool(flags & FLAG_FIN)
        if length == 0:
            events.append(StreamData(stream=first, data=b"", fin=self._data_fin))

    def _pass_data(self, data: memoryview, events: list[Event]) -> memoryview:
        take = min(self._data_left, len(data))
        self._data_left -= take
        fin = self._data_fin and not self._data_left
        events.append(StreamData(stream=self._data_stream, data=bytes(data[:take]), fin=fin))
        return data[take:]

    def _gather_control(self, data: memoryview, events: list[Event]) -> memoryview:
        assert self._control is not None
        take = self._control_length - len(self._control)
        self._control += data[:take]
        if len(self._control) == self._control_length:
            self._end_control(events)
        return data[take:]

    def _end_control(self, events: list[Event]) -> None:
        body, kind = bytes(self._control or b""), self._control_type
        self._control = None
        if kind == SYN_STREAM:
            self._need(body, 10)
            stream = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            events.append(StreamOpened(stream=stream, headers=self._headers(body[10:]),
                                       fin=self._data_fin))
        elif kind in (SYN_REPLY, HEADERS):
            self._need(body, 4)
            self._headers(body[4:])  # inflated to keep the shared zlib context in step
        elif kind == RST_STREAM:
            self._need(body, 8)
            stream, status = struct.unpack_from(">II", body)
            events.append(StreamReset(stream=stream & 0x7FFFFFFF, status=status))

    @staticmethod
    def _need(body: bytes, length: int) -> None:
        if len(body) < length:
            raise ProtocolViolation(f"a control frame of {len(body)} bytes is truncated")

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADERS)
        except zlib.error as error:
            raise ProtocolViolation(f"a header block does not inflate: {error}") from error
        if self._inflate.unconsumed_tail:
            raise ProtocolViolation(f"a header block inflates to more than {MAX_HEADERS} bytes")
        return parse_header_block(raw)


def parse_header_block(raw: bytes) -> dict[str, str]:
    """A SPDY/3 name/value block: a 32-bit count, then 32-bit length-prefixed names and values
    (several values of one name are separated by NUL)."""
    headers: dict[str, str] = {}
    try:
        (count,), offset = struct.unpack_from(">I", raw), 4
        for _ in range(count):
            name, offset = _field(raw, offset)
            value, offset = _field(raw, offset)
            headers[name.lower()] = value.replace("\0", ",")
    except (struct.error, UnicodeDecodeError) as error:
        raise ProtocolViolation(f"a header block is malformed: {error}") from error
    if offset != len(raw):
        raise ProtocolViolation("a header block has bytes after its last header")
    return headers


def _field(raw: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">I", raw, offset)
    end = offset + 4 + length
    if end > len(raw):
        raise ProtocolViolation("a header block is truncated")
    return raw[offset + 4:end].decode("utf-8"), end
