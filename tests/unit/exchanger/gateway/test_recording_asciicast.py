"""The asciicast v2 writer and the recordings folder: the file parses as v2, output replays
byte for byte, the raw copy keeps every byte, files are private and never clobbered."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanger.gateway.recording.asciicast import CastWriter, read_raw
from exchanger.gateway.recording.errors import RecordingStoreError
from exchanger.gateway.recording.replay import parse_cast, play, read_cast
from exchanger.gateway.recording.store import create_recording

T0 = 1_780_000_000.25


class Memory:
    def __init__(self) -> None:
        self.data, self.closed = bytearray(), False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.data += data

    def close(self) -> None:
        self.closed = True


def lines(sink: Memory) -> list[object]:
    return [json.loads(line) for line in sink.data.decode().splitlines()]


def check_v2(parsed: list[object]) -> None:
    """What https://docs.asciinema.org/manual/asciicast/v2/ requires of each line."""
    header = parsed[0]
    assert isinstance(header, dict) and header["version"] == 2
    assert isinstance(header["width"], int) and isinstance(header["height"], int)
    assert isinstance(header["timestamp"], int)
    previous = 0.0
    for event in parsed[1:]:
        assert isinstance(event, list) and len(event) == 3
        assert isinstance(event[0], float | int) and event[0] >= previous
        assert event[1] in ("o", "i", "r", "m") and isinstance(event[2], str)
        previous = event[0]


def test_header_waits_for_the_first_resize() -> None:
    cast, raw = Memory(), Memory()
    writer = CastWriter(cast, raw, started=T0, title="session s-1", command="sh -c 'ls'")
    writer.data("stdout", b"$ ", T0 + 0.1)
    assert cast.data == b""  # held: the header needs the terminal's size
    writer.resize(120, 40, T0 + 0.2)
    writer.data("stdin", b"ls\r", T0 + 0.5)
    writer.resize(100, 30, T0 + 0.6)
    writer.data("stderr", b"oops\n", T0 + 0.7)
    writer.error_channel(b'{"status":"Success"}', T0 + 0.8)
    writer.close(T0 + 0.9)
    parsed = lines(cast)
    check_v2(parsed)
    assert parsed == [
        {"version": 2, "width": 120, "height": 40, "timestamp": int(T0), "title": "session s-1",
         "command": "sh -c 'ls'"},
        [0.1, "o", "$ "], [0.5, "i", "ls\r"], [0.6, "r", "100x30"], [0.7, "o", "oops\n"],
        [0.8, "m", 'status: {"status":"Success"}'],
    ]
    assert cast.closed and raw.closed


def test_no_resize_within_a_second_writes_80x24() -> None:
    cast = Memory()
    writer = CastWriter(cast, None, started=T0, title="t")
    writer.data("stdout", b"a", T0 + 0.5)
    writer.data("stdout", b"b", T0 + 1.5)
    assert lines(cast)[0] == {"version": 2, "width": 80, "height": 24, "timestamp": int(T0),
                              "title": "t"}
    writer.resize(90, 20, T0 + 2)
    assert lines(cast)[1:] == [[0.5, "o", "a"], [1.5, "o", "b"], [2.0, "r", "90x20"]]


def test_a_character_split_between_chunks_is_whole_in_the_cast() -> None:
    cast = Memory()
    writer = CastWriter(cast, None, started=T0, title="t")
    euro = "€".encode()
    writer.resize(80, 24, T0)
    writer.data("stdout", b"x" + euro[:1], T0 + 0.1)
    writer.data("stdout", euro[1:] + b"y", T0 + 0.2)
    writer.close(T0 + 0.3)
    assert lines(cast)[1:] == [[0.1, "o", "x"], [0.2, "o", "€y"]]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.lists(st.integers(0, 800), max_size=10))
def test_valid_utf8_output_replays_byte_for_byte(text: str, cuts: list[int]) -> None:
    sent = text.encode()
    cast, raw = Memory(), Memory()
    writer = CastWriter(cast, raw, started=T0, title="t")
    points = sorted({c % (len(sent) + 1) for c in cuts} | {0, len(sent)})
    for index, (a, b) in enumerate(zip(points, points[1:], strict=False)):
        writer.data("stdout", sent[a:b], T0 + index * 0.01)
    writer.close(T0 + 5)
    played: list[str] = []
    play(parse_cast(bytes(cast.data), Path("memory.cast")), played.append,
         sleep=lambda _: None)
    assert "".join(played).encode() == sent
    assert b"".join(d for _, kind, d in read_raw(bytes(raw.data)) if kind == "stdout") == sent


def test_invalid_bytes_are_replaced_in_the_cast_and_kept_in_the_raw_copy() -> None:
    cast, raw = Memory(), Memory()
    writer = CastWriter(cast, raw, started=T0, title="t")
    writer.data("stdout", b"ok\xff\xfe", T0)
    writer.data("stderr", b"err", T0 + 0.1)
    writer.close(T0 + 1)
    assert lines(cast)[1] == [0.0, "o", "ok\ufffd\ufffd"]
    records = read_raw(bytes(raw.data))
    assert [(kind, data) for _, kind, data in records] == [("stdout", b"ok\xff\xfe"),
                                                           ("stderr", b"err")]


def test_a_cut_raw_copy_reads_up_to_its_last_whole_record() -> None:
    raw = Memory()
    writer = CastWriter(Memory(), raw, started=T0, title="t")
    writer.data("stdout", b"first", T0)
    writer.data("stdout", b"second", T0 + 1)
    assert [d for _, _, d in read_raw(bytes(raw.data)[:-2])] == [b"first"]
    with pytest.raises(ValueError, match="not a kubegate raw"):
        read_raw(b"nope")


def test_times_never_go_backwards() -> None:
    cast = Memory()
    writer = CastWriter(cast, None, started=T0, title="t")
    writer.resize(80, 24, T0)
    writer.data("stdout", b"a", T0 + 0.5)
    writer.data("stdin", b"b", T0 + 0.4)  # the other direction's thread, a little behind
    assert [e[0] for e in lines(cast)[1:]] == [0.5, 0.5]  # type: ignore[index]


def test_files_are_private_exclusive_and_numbered(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    first = create_recording(root, "s-abc", "exec", T0, raw=True)
    second = create_recording(root, "s-abc", "exec", T0, raw=True)
    assert first.cast.path.name == "20260528T202640Z-exec-1.cast"
    assert second.cast.path.name == "20260528T202640Z-exec-2.cast"
    assert first.raw is not None and first.raw.path.name.endswith("-exec-1.cast.raw")
    assert stat.S_IMODE((root / "s-abc").stat().st_mode) == 0o700
    for sink in (first.cast, first.raw, second.cast):
        assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
        sink.close()


def test_a_planted_link_is_never_written_through(tmp_path: Path) -> None:
    root, target = tmp_path / "recordings", tmp_path / "elsewhere"
    (root / "s-abc").mkdir(parents=True)
    (root / "s-abc" / "20260528T202640Z-exec-1.cast").symlink_to(target)
    opened = create_recording(root, "s-abc", "exec", T0, raw=False)
    assert opened.cast.path.name == "20260528T202640Z-exec-2.cast" and opened.raw is None
    opened.cast.write(b"x")
    opened.cast.close()
    assert not target.exists()
    (root / "s-link").symlink_to(tmp_path)
    with pytest.raises(RecordingStoreError, match="not a folder"):
        create_recording(root, "s-link", "exec", T0, raw=False)


@pytest.mark.parametrize("session_id", ["../etc", ".hidden", "a/b", "", "x" * 200])
def test_session_ids_that_are_not_plain_names_are_refused(tmp_path: Path,
                                                          session_id: str) -> None:
    with pytest.raises(RecordingStoreError, match="plain name"):
        create_recording(tmp_path, session_id, "exec", T0, raw=False)
    assert list(tmp_path.iterdir()) == []


def test_a_written_cast_reads_back(tmp_path: Path) -> None:
    opened = create_recording(tmp_path, "s-1", "attach", T0, raw=True)
    writer = CastWriter(opened.cast, opened.raw, started=T0, title="attach")
    writer.resize(80, 24, T0)
    writer.data("stdout", b"hello", T0 + 1)
    writer.close(T0 + 2)
    cast = read_cast(opened.cast.path)
    assert cast.title == "attach" and cast.events == ((1.0, "o", "hello"),)
