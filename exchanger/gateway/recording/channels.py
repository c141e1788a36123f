"""The Kubernetes stream protocols, over WebSocket or SPDY/3.1: tunnel bytes of both directions
in, what a recording holds out (stdin, stdout, stderr, the error channel, resizes, port data).

Formats as in k8s.io/streaming@v0.37.2 (wsstream/conn.go, httpstream/spdy), client-go@v0.37.2
tools/remotecommand and tools/portforward, and cri-streaming@v0.37.2 portforward/websocket.go:
- WebSocket remotecommand (`channel.k8s.io`, `v2`..`v5.channel.k8s.io`): the first byte of each
  binary message is its channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (JSON
  `{"Width":..,"Height":..}`); in v5 a message `[255, c]` closes channel c. The `base64.`
  variants send text messages: the channel as an ASCII digit, then the data in base64.
- WebSocket port-forward (`portforward.k8s.io`, `v4.channel.k8s.io` on a portforward path):
  channels 2i (data) and 2i+1 (error) belong to the i-th port; the server's first message on
  each channel starts with the port, 2 bytes little-endian.
- SPDY/3.1: the client opens one stream per purpose; the SYN_STREAM header `streamType` says
  which (stdin, stdout, stderr, error, resize; data or error, with `port`, for port-forward).
  kubectl's WebSocket port-forward (`SPDY/3.1+portforward.k8s.io`) tunnels the same SPDY
  frames inside binary WebSocket messages.

Rules of this module:
- memory is bounded: a message is held only when it must be decoded whole (base64 text at most
  `MAX_HELD` bytes; resize JSON at most 4 KiB); everything else passes through;
- a malformed stream raises `ProtocolViolation` (from any layer); the caller stops recording.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Literal, Protocol

from exchanger.gateway.recording import spdy, websocket
from exchanger.gateway.recording.errors import ProtocolViolation

MAX_HELD = 1024 * 1024
MAX_RESIZE = 4096
CHANNELS = {0: "stdin", 1: "stdout", 2: "stderr", 3: "error", 4: "resize"}
STREAM_CLOSE = 255
Stream = Literal["stdin", "stdout", "stderr", "error"]


@dataclass(frozen=True, kw_only=True)
class Data:
    stream: Stream
    data: bytes


@dataclass(frozen=True, kw_only=True)
class Resize:
    width: int
    height: int


@dataclass(frozen=True, kw_only=True)
class PortData:
    port: int  # 0 while the port is not known yet
    error: bool  # the port's error stream rather than its data stream
    from_client: bool
    data: bytes


@dataclass(frozen=True, kw_only=True)
class Closed:
    what: str  # "stdin", "port 8080 data", ...


Event = Data | Resize | PortData | Closed


class Decoder(Protocol):
    def feed(self, data: bytes, *, from_client: bool) -> list[Event]: ...


class _Resizes:
    """Resize JSON, one document per message or several in a byte stream (SPDY)."""

    def __init__(self) -> None:
        self._held = bytearray()

    def feed(self, data: bytes, *, whole: bool) -> list[Event]:
        self._held += data
        if len(self._held) > MAX_RESIZE:
            raise ProtocolViolation("a resize message over 4 KiB")
        text = self._held.decode("utf-8", errors="replace")
        events: list[Event] = []
        decoder, at = json.JSONDecoder(), 0
        while at < len(text.rstrip()):
            while text[at].isspace():
                at += 1
            try:
                value, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError as error:
                if whole:
                    raise ProtocolViolation(f"a resize is not JSON: {error.msg}") from error
                break
            events.append(_resize(value))
        del self._held[:len(text[:at].encode())]
        if whole:
            self._held.clear()
        return events


def _resize(value: object) -> Resize:
    if not isinstance(value, dict):
        raise ProtocolViolation("a resize is not a JSON object")
    width, height = value.get("Width"), value.get("Height")
    if not (isinstance(width, int) and isinstance(height, int)
            and 0 <= width <= 65535 and 0 <= height <= 65535):
        raise ProtocolViolation("a resize without integer Width and Height")
    return Resize(width=width, height=height)


class WebSocketChannels:
    """remotecommand or port-forward over WebSocket, per the negotiated subprotocol."""

    def __init__(self, protocol: str, *, portforward: bool) -> None:
        self._base64 = "base64." in protocol
        self._close_signal = protocol.startswith("v5.")
        self._portforward = portforward
        self._frames = {True: websocket.FrameParser(masked=True),
                        False: websocket.FrameParser(masked=False)}
        self._channel: dict[bool, int] = {}  # the open message's channel, per direction
        self._held: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
        self._resizes = _Resizes()
        self._ports: dict[int, int] = {}  # channel -> port (port-forward)
        self._prefix: dict[int, bytearray] = {}  # channel -> port bytes still to read

    def feed(self, data: bytes, *, from_client: bool) -> list[Event]:
        events: list[Event] = []
        for frame in self._frames[from_client].feed(data):
            if isinstance(frame, websocket.MessageChunk):
                events += self._chunk(frame, from_client)
        return events

    def _chunk(self, chunk: websocket.MessageChunk, from_client: bool) -> list[Event]:
        if self._base64:
            return self._base64_chunk(chunk, from_client)
        data = chunk.data
        if chunk.first:
            if not data:
                return []  # an empty message carries nothing, not even a channel
            self._channel[from_client], data = data[0], data[1:]
        channel = self._channel.get(from_client)
        if channel is None:
            return []
        if self._close_signal and channel == STREAM_CLOSE:
            return self._closing(data)
        return self._deliver(channel, data, from_client, whole=chunk.last)

    def _base64_chunk(self, chunk: websocket.MessageChunk, from_client: bool) -> list[Event]:
        held = self._held[from_client]
        held += chunk.data
        if len(held) > MAX_HELD:
            raise ProtocolViolation("a base64 message over the cap")
        if not chunk.last or not held:
            return []
        channel, text = held[0] - ord("0"), bytes(held[1:])
        held.clear()
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ProtocolViolation("a base64 message does not decode") from error
        return self._deliver(channel, data, from_client, whole=True)

    def _closing(self, data: bytes) -> list[Event]:
        return [Closed(what=self._name(data[0]))] if data else []

    def _name(self, channel: int) -> str:
        if self._portforward:
            kind = "error" if channel % 2 else "data"
            return f"port {self._ports.get(channel, 0)} {kind}"
        return CHANNELS.get(channel, f"channel {channel}")

    def _deliver(self, channel: int, data: bytes, from_client: bool, *,
                 whole: bool) -> list[Event]:
        if self._portforward:
            return self._port(channel, data, from_client)
        name = CHANNELS.get(channel)
        if name == "resize":
            return self._resizes.feed(data, whole=whole)
        if name is None or not data:
            return []
        return [Data(stream=name, data=data)]  # type: ignore[arg-type]  # not "resize"

    def _port(self, channel: int, data: bytes, from_client: bool) -> list[Event]:
        if not from_client and channel not in self._ports:
            prefix = self._prefix.setdefault(channel, bytearray())
            take = 2 - len(prefix)
            prefix += data[:take]
            data = data[take:]
            if len(prefix) == 2:
                self._ports[channel] = struct.unpack("<H", prefix)[0]
        if not data:
            return []
        return [PortData(port=self._ports.get(channel, 0), error=bool(channel % 2),
                         from_client=from_client, data=data)]


class SpdyStreams:
    """remotecommand or port-forward over SPDY/3.1, directly or tunnelled in WebSocket."""

    def __init__(self, *, tunnelled: bool) -> None:
        self._frames = {True: spdy.FrameParser(), False: spdy.FrameParser()}
        self._tunnels = ({True: websocket.FrameParser(masked=True),
                          False: websocket.FrameParser(masked=False)} if tunnelled else None)
        self._streams: dict[int, tuple[str, int]] = {}  # stream id -> (streamType, port)
        self._resizes = _Resizes()

    def feed(self, data: bytes, *, from_client: bool) -> list[Event]:
        if self._tunnels is None:
            return self._spdy(data, from_client)
        events: list[Event] = []
        for chunk in self._tunnels[from_client].feed(data):
            if isinstance(chunk, websocket.MessageChunk) and chunk.data:
                events += self._spdy(chunk.data, from_client)
        return events

    def _spdy(self, data: bytes, from_client: bool) -> list[Event]:
        events: list[Event] = []
        for frame in self._frames[from_client].feed(data):
            if isinstance(frame, spdy.StreamOpened):
                self._streams[frame.stream] = _kind(frame.headers)
            elif isinstance(frame, spdy.StreamData):
                events += self._data(frame, from_client)
            elif frame.stream in self._streams:
                events.append(Closed(what=self._describe(frame.stream)))
        return events

    def _data(self, frame: spdy.StreamData, from_client: bool) -> list[Event]:
        kind, port = self._streams.get(frame.stream, ("", 0))
        events: list[Event] = []
        if port and frame.data:
            events.append(PortData(port=port, error=kind == "error", from_client=from_client,
                                   data=frame.data))
        elif kind == "resize":
            events += self._resizes.feed(frame.data, whole=False)
        elif kind in ("stdin", "stdout", "stderr") and frame.data:
            events.append(Data(stream=kind, data=frame.data))  # type: ignore[arg-type]
        elif kind == "error" and frame.data:
            events.append(Data(stream="error", data=frame.data))
        if frame.fin and kind:
            events.append(Closed(what=self._describe(frame.stream)))
        return events

    def _describe(self, stream: int) -> str:
        kind, port = self._streams[stream]
        return f"port {port} {kind}" if kind in ("data", "error") and port else kind


def _kind(headers: dict[str, str]) -> tuple[str, int]:
    kind = headers.get("streamtype", "")
    port = headers.get("port", "")
    if kind in ("data", "error") and port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ProtocolViolation("a port-forward stream with a bad port header")
        return kind, int(port)
    return kind, 0
