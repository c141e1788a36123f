"""Reading recordings back: a session's casts, playing one with its timing, and the commands
typed in it.

Rules of this module:
- pure but for reading files: the clock and the sleep are the caller's, so play timing is
  tested without waiting;
- a cast cut short (the gateway killed mid-event) is read up to its last whole line;
- commands are rebuilt from stdin ("i") the way a line editor would: printable characters
  append, backspace and DEL delete one, ^W a word, ^U the line, ^C drops it, CR or LF ends it
  (an empty line is no command; a line keeps its first `MAX_LINE` characters); escape
  sequences (arrow keys, bracketed paste marks) and other control characters are skipped.
  What the shell itself adds (history recall, completion) never crosses the wire as input, so
  it is not seen: the list is what was typed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exchanger.gateway.recording.errors import RecordingReadError
from exchanger.gateway.recording.store import session_folder

CastEvent = tuple[float, str, str]
MAX_LINE = 4096  # characters kept of one command (stdin that is data, not typing, is long)


@dataclass(frozen=True, kw_only=True)
class Cast:
    path: Path
    header: dict[str, object]
    events: tuple[CastEvent, ...]

    @property
    def started(self) -> float:
        stamp = self.header.get("timestamp", 0)
        return float(stamp) if isinstance(stamp, int | float) else 0.0

    @property
    def title(self) -> str:
        return str(self.header.get("title", ""))


@dataclass(frozen=True, kw_only=True)
class Command:
    at: float  # epoch seconds: when the line was ended
    text: str


def session_casts(root: Path, session_id: str) -> list[Path]:
    """The session's casts, oldest first (names start with their UTC start)."""
    folder = session_folder(root, session_id)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix == ".cast")


def read_cast(path: Path) -> Cast:
    return parse_cast(path.read_bytes(), path)


def parse_cast(content: bytes, path: Path) -> Cast:
    lines = content.split(b"\n")
    try:
        header = json.loads(lines[0])
    except ValueError as error:
        raise RecordingReadError(f"{path}: the header is not JSON") from error
    if not isinstance(header, dict) or header.get("version") != 2:
        raise RecordingReadError(f"{path}: not an asciicast v2 file")
    events: list[CastEvent] = []
    for line in lines[1:]:
        event = _event(line)
        if event is None:
            break
        events.append(event)
    return Cast(path=path, header=header, events=tuple(events))


def _event(line: bytes) -> CastEvent | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None  # a cut last line, or the end
    if (isinstance(value, list) and len(value) == 3 and isinstance(value[0], int | float)
            and isinstance(value[1], str) and isinstance(value[2], str)):
        return float(value[0]), value[1], value[2]
    return None


def play(cast: Cast, write: Callable[[str], None], *, sleep: Callable[[float], None],
         speed: float = 1.0, idle_limit: float | None = None, timed: bool = True) -> float:
    """Write the cast's output with its pauses (divided by speed, each at most idle_limit);
    untimed, just the output. Returns the seconds slept."""
    if speed <= 0:
        raise ValueError("speed must be above 0")
    slept, previous = 0.0, 0.0
    for seconds, code, data in cast.events:
        if code != "o":
            continue
        pause = max(0.0, seconds - previous)
        previous = seconds
        if idle_limit is not None:
            pause = min(pause, idle_limit)
        if timed and pause > 0:
            sleep(pause / speed)
            slept += pause / speed
        write(data)
    return slept


def commands_typed(cast: Cast) -> list[Command]:
    editor = _LineEditor()
    commands: list[Command] = []
    for seconds, code, data in cast.events:
        if code != "i":
            continue
        for char in data:
            line = editor.key(char)
            if line:
                commands.append(Command(at=cast.started + seconds, text=line))
    return commands


class _LineEditor:
    def __init__(self) -> None:
        self.line: list[str] = []
        self.escape = ""  # "" outside an escape sequence, else what it has read so far

    def key(self, char: str) -> str | None:
        """A finished command when char ends one."""
        if self.escape:
            self._escape(char)
            return None
        if char in "\r\n":
            line, self.line = "".join(self.line).strip(), []
            return line or None
        if char == "\x1b":
            self.escape = char
        elif char in "\x7f\x08":
            self.line[-1:] = []
        elif char == "\x17":
            self._delete_word()
        elif char in "\x15\x03":
            self.line = []
        elif char >= " " and len(self.line) < MAX_LINE:
            self.line.append(char)
        return None

    def _escape(self, char: str) -> None:
        self.escape += char
        if len(self.escape) == 2 and char in "[O":
            return  # CSI or SS3: more to come
        in_csi = self.escape.startswith("\x1b[") and len(self.escape) > 2
        if in_csi and not "\x40" <= char <= "\x7e":
            return  # a CSI parameter or intermediate byte
        self.escape = ""

    def _delete_word(self) -> None:
        while self.line and self.line[-1] == " ":
            self.line.pop()
        while self.line and self.line[-1] != " ":
            self.line.pop()
