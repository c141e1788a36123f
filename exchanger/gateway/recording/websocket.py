"""RFC 6455 WebSocket frames, one direction of one connection, sans-IO: bytes in, events out.

Rules of this module:
- bytes may arrive in any chunks; a frame's payload is handed on as it arrives (unmasked), so
  memory is bounded by a frame header (at most 14 bytes), never by a frame's length;
- the client masks every frame and the server masks none (RFC 6455 5.1); a frame that breaks
  this, a reserved opcode or RSV bit (no extension such as permessage-deflate is recorded), a
  control frame that is fragmented or longer than 125 bytes (5.5), a 64-bit length with its top
  bit set (5.2), a continuation without a message, or a frame declared longer than
  `max_frame` is a `ProtocolViolation`; after one, `feed` raises it again for every call;
- text and binary messages come out as `MessageChunk`s (first/last mark the message's ends);
  a close frame as `Close`; ping and pong are consumed (they carry nothing to record).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from exchanger.gateway.recording.errors import ProtocolViolation, StreamParser

MAX_FRAME = 16 * 1024 * 1024  # declared payload length; client-go writes at most 32 KiB
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True, kw_only=True)
class MessageChunk:
    text: bool  # a text message (opcode 1) rather than binary (opcode 2)
    data: bytes
    first: bool  # this chunk starts the message
    last: bool  # this chunk ends the message


@dataclass(frozen=True, kw_only=True)
class Close:
    code: int | None
    reason: bytes


Event = MessageChunk | Close


@dataclass
class _Frame:
    fin: bool
    opcode: int
    length: int
    mask: bytes
    done: int = 0  # payload bytes already handed on


class FrameParser(StreamParser[Event]):
    """Frames of one direction: `masked` is True for client -> server."""

    def __init__(self, *, masked: bool, max_frame: int = MAX_FRAME) -> None:
        self._masked, self._max = masked, max_frame
        self._head = bytearray()
        self._frame: _Frame | None = None
        self._control = bytearray()  # a control frame's payload (<= 125 bytes)
        self._message: bool | None = None  # the open message's `text`, None when none is open
        self._first = False

    def _feed(self, data: memoryview) -> list[Event]:
        events: list[Event] = []
        while data:
            if self._frame is None:
                data = self._read_head(data)
                if self._frame is None:
                    continue
                self._started(events)
            data = self._read_payload(data, events)
        return events

    def _read_head(self, data: memoryview) -> memoryview:
        need = self._head_length()
        while len(self._head) < need and data:
            take = need - len(self._head)
            self._head += data[:take]
            data = data[take:]
            need = self._head_length()
        if len(self._head) >= need:
            self._frame = self._parse_head(bytes(self._head))
            self._head.clear()
        return data

    def _head_length(self) -> int:
        if len(self._head) < 2:
            return 2
        short = self._head[1] & 0x7F
        extended = {126: 2, 127: 8}.get(short, 0)
        return 2 + extended + (4 if self._head[1] & 0x80 else 0)

    def _parse_head(self, head: bytes) -> _Frame:
        fin, rsv, opcode = bool(head[0] & 0x80), head[0] & 0x70, head[0] & 0x0F
        masked, short = bool(head[1] & 0x80), head[1] & 0x7F
        if rsv:
            raise ProtocolViolation("a reserved bit is set (extensions are not recorded)")
        if masked != self._masked:
            side = "a client frame is not masked" if self._masked else "a server frame is masked"
            raise ProtocolViolation(side)
        offset, length = 2, short
        if short == 126:
            (length,), offset = struct.unpack_from(">H", head, 2), 4
        elif short == 127:
            (length,), offset = struct.unpack_from(">Q", head, 2), 10
            if length >> 63:
                raise ProtocolViolation("a 64-bit payload length has its top bit set")
        self._check(fin, opcode, length)
        return _Frame(fin=fin, opcode=opcode, length=length,
                      mask=head[offset:offset + 4] if masked else b"")

    def _check(self, fin: bool, opcode: int, length: int) -> None:
        if opcode not in (CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG):
            raise ProtocolViolation(f"reserved opcode {opcode:#x}")
        if opcode >= CLOSE and (not fin or length > 125):
            raise ProtocolViolation("a control frame is fragmented or longer than 125 bytes")
        if length > self._max:
            raise ProtocolViolation(f"a frame of {length} bytes is over the {self._max} cap")
        if opcode == CONTINUATION and self._message is None:
            raise ProtocolViolation("a continuation frame without a message")
        if opcode in (TEXT, BINARY) and self._message is not None:
            raise ProtocolViolation("a new message before the last one ended")

    def _started(self, events: list[Event]) -> None:
        frame = self._frame
        assert frame is not None
        if frame.opcode in (TEXT, BINARY):
            self._message, self._first = frame.opcode == TEXT, True
        if frame.length == 0:
            self._finish(events)

    def _read_payload(self, data: memoryview, events: list[Event]) -> memoryview:
        frame = self._frame
        if frame is None:
            return data
        take = min(frame.length - frame.done, len(data))
        chunk = _unmask(bytes(data[:take]), frame.mask, frame.done)
        frame.done += take
        if frame.opcode >= CLOSE:
            self._control += chunk
        elif chunk:
            self._emit(chunk, last=frame.fin and frame.done == frame.length, events=events)
        if frame.done == frame.length:
            self._finish(events)
        return data[take:]

    def _emit(self, chunk: bytes, *, last: bool, events: list[Event]) -> None:
        assert self._message is not None
        events.append(MessageChunk(text=self._message, data=chunk, first=self._first, last=last))
        self._first = False
        if last:
            self._message = None

    def _finish(self, events: list[Event]) -> None:
        frame = self._frame
        assert frame is not None
        self._frame = None
        if frame.opcode == CLOSE:
            events.append(_close(bytes(self._control)))
        elif frame.opcode < CLOSE and frame.fin and self._message is not None:
            self._emit(b"", last=True, events=events)  # an empty final frame ends the message
        self._control.clear()


def _close(payload: bytes) -> Close:
    if len(payload) == 1:
        raise ProtocolViolation("a close frame with a one-byte body")
    code = struct.unpack_from(">H", payload)[0] if payload else None
    return Close(code=code, reason=payload[2:])


def _unmask(data: bytes, mask: bytes, offset: int) -> bytes:
    if not mask or not data:
        return data
    rotated = mask[offset % 4:] + mask[:offset % 4]
    key = (rotated * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")
