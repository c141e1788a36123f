"""asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/) written as a stream goes, plus
an optional byte-exact raw copy.

The cast: a header line `{"version": 2, "width", "height", "timestamp", "title", "command"}`,
then one JSON line per event `[seconds since start, code, data]`: "o" stdout and stderr, "i"
stdin, "r" a resize "WxH", "m" a marker (the error channel's status, a stream closing, a
recording that stopped and why).

Rules of this module:
- the header comes first but its size is the terminal's: events are held until the first
  resize, or until an event is a second or more after the start, or 64 KiB are held, or the
  cast closes; then the header (80x24 when no resize came) and the held events are written;
  after that every event is written when it arrives;
- bytes become text with one incremental UTF-8 decoder per stream, so a character split
  between chunks is whole in the cast; bytes that are not UTF-8 become U+FFFD in the cast
  (which asciinema plays); the raw copy keeps them: each record is `>dBI` (seconds, code,
  length) then the bytes, after the line `kubegate-raw 1`, and stdout and stderr stay apart
  there (codes in `RAW_CODES`);
- a writer never raises after `close`; every write goes straight to the file.
"""

from __future__ import annotations

import codecs
import json
import struct
from typing import Protocol

DEFAULT_SIZE = (80, 24)
HOLD_SECONDS = 1.0
HOLD_BYTES = 64 * 1024
RAW_MAGIC = b"kubegate-raw 1\n"
RAW_RECORD = struct.Struct(">dBI")
RAW_CODES = {"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4, "marker": 5}
EVENT_CODES = {"stdin": "i", "stdout": "o", "stderr": "o"}


class Writable(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class CastWriter:
    def __init__(self, cast: Writable, raw: Writable | None, *, started: float, title: str,
                 command: str = "") -> None:
        self._cast, self._raw, self._started = cast, raw, started
        self._header: dict[str, object] = {"version": 2, "timestamp": int(started),
                                           "title": title}
        if command:
            self._header["command"] = command
        self._held: list[bytes] | None = []  # None once the header is written
        self._held_bytes = 0
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace")
                          for name in EVENT_CODES}
        self._last = 0.0
        self._closed = False
        if raw is not None:
            raw.write(RAW_MAGIC)

    def data(self, stream: str, data: bytes, at: float) -> None:
        """stdin, stdout or stderr bytes."""
        seconds = self._seconds(at)
        self._write_raw(stream, data, seconds)
        text = self._decoders[stream].decode(data)
        if text:
            self._event(seconds, EVENT_CODES[stream], text)

    def resize(self, width: int, height: int, at: float) -> None:
        seconds = self._seconds(at)
        self._write_raw("resize", f"{width}x{height}".encode(), seconds)
        if self._held is not None and "width" not in self._header:
            self._header["width"], self._header["height"] = width, height
            self._write_header()
            return
        self._event(seconds, "r", f"{width}x{height}")

    def marker(self, text: str, at: float) -> None:
        seconds = self._seconds(at)
        self._write_raw("marker", text.encode(), seconds)
        self._event(seconds, "m", text)

    def error_channel(self, data: bytes, at: float) -> None:
        seconds = self._seconds(at)
        self._write_raw("error", data, seconds)
        self._event(seconds, "m", "status: " + data.decode("utf-8", errors="replace"))

    def close(self, at: float) -> None:
        if self._closed:
            return
        try:
            seconds = self._seconds(at)
            for stream, decoder in self._decoders.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    self._event(seconds, EVENT_CODES[stream], rest)
            self._write_header()
        finally:
            self._closed = True
            self._close_sinks()

    def _close_sinks(self) -> None:
        failed: OSError | None = None
        for sink in (self._cast, self._raw):
            try:
                if sink is not None:
                    sink.close()
            except OSError as error:  # still close the other one
                failed = error
        if failed is not None:
            raise failed

    def _seconds(self, at: float) -> float:
        self._last = max(self._last, round(max(0.0, at - self._started), 6))
        return self._last  # never backwards, even if the two directions' clocks interleave

    def _event(self, seconds: float, code: str, text: str) -> None:
        if self._closed:
            return
        line = (json.dumps([seconds, code, text], ensure_ascii=False) + "\n").encode()
        if self._held is None:
            self._cast.write(line)
            return
        self._held.append(line)
        self._held_bytes += len(line)
        if seconds >= HOLD_SECONDS or self._held_bytes >= HOLD_BYTES:
            self._write_header()

    def _write_header(self) -> None:
        if self._held is None:
            return
        self._header.setdefault("width", DEFAULT_SIZE[0])
        self._header.setdefault("height", DEFAULT_SIZE[1])
        ordered = {key: self._header[key] for key in
                   ("version", "width", "height", "timestamp", "title", "command")
                   if key in self._header}
        self._cast.write((json.dumps(ordered, ensure_ascii=False) + "\n").encode()
                         + b"".join(self._held))
        self._held = None

    def _write_raw(self, kind: str, data: bytes, seconds: float) -> None:
        if self._raw is not None and not self._closed:
            self._raw.write(RAW_RECORD.pack(seconds, RAW_CODES[kind], len(data)) + data)


def read_raw(data: bytes) -> list[tuple[float, str, bytes]]:
    """The records of a raw copy: (seconds, kind, bytes); a cut last record is dropped."""
    if not data.startswith(RAW_MAGIC):
        raise ValueError("not a kubegate raw recording")
    names = {code: name for name, code in RAW_CODES.items()}
    records, at = [], len(RAW_MAGIC)
    while at + RAW_RECORD.size <= len(data):
        seconds, code, length = RAW_RECORD.unpack_from(data, at)
        at += RAW_RECORD.size
        if at + length > len(data) or code not in names:
            break
        records.append((seconds, names[code], data[at:at + length]))
        at += length
    return records
