"""Where an existing audit log resumes its chain, or one clear refusal when its tail is corrupt.

Rules of this module:
- only the tail is read on a good start: the last line, and the line before it, so a line is
  checked on its own (complete, JSON, canonical, its hash) and as the successor of the one
  before it (`seq` one more, `prev` its hash). A whole-file check is `kubegate audit verify`;
- an incomplete last line (no newline: what a crash or a power loss mid-write leaves) is no
  tampering: it is reported as a `TornTail` (its offset and bytes) after the complete lines
  before it verified as above, and the log moves it aside (see `log`). Reading changes nothing;
- a complete line that does not verify is tampering and is never repaired: the refusal
  (`AuditLogCorruptError`) names the file, the line, what is wrong and how to recover;
- the line number is counted only when refusing, so a good start reads a few KiB.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from exchanger.audit.chain import ChainError, ChainHead, link_line, read_line
from kubegate.errors import UnavailableError

_TAIL_CHUNK = 4096
_COUNT_CHUNK = 1 << 20


class AuditLogCorruptError(UnavailableError):
    """The existing audit log ends in lines that do not verify; kubegate will not extend it.
    `str()` is the whole message for the operator: file, line, problem, how to recover."""

    def __init__(self, message: str, *, path: Path, line: int) -> None:
        self.path, self.line = path, line
        super().__init__("AUDIT_LOG_CORRUPT", message)

    def __str__(self) -> str:
        return self.detail


def _lines(data: bytes) -> list[bytes]:
    """`data` cut after each newline; a last piece without one is kept (a torn line)."""
    parts = data.split(b"\n")
    return [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


@dataclass(frozen=True, kw_only=True)
class TornTail:
    """An incomplete last line: it starts at byte `offset` and is `data` (no newline)."""

    offset: int
    data: bytes


@dataclass(frozen=True, kw_only=True)
class Resumed:
    """Where the complete lines leave the chain, and the torn line after them, if any."""

    head: ChainHead
    torn: TornTail | None = None


def _tail(fd: int, size: int) -> tuple[list[bytes], int]:
    """The last two lines of the file's first `size` bytes (fewer if it has fewer; a torn line
    counts), and the offset where the first of them starts."""
    chunk = _TAIL_CHUNK
    while True:
        start = max(0, size - chunk)
        lines = _lines(os.pread(fd, size - start, start))
        if start == 0 or len(lines) > 2:  # the first piece of a chunk may be part of a line
            kept = lines[-2:]
            return kept, size - sum(len(line) for line in kept)
        chunk *= 2


def _count_lines(fd: int, end: int) -> int:
    """Newlines in the file before byte `end`."""
    count, offset = 0, 0
    while offset < end:
        data = os.pread(fd, min(_COUNT_CHUNK, end - offset), offset)
        if not data:
            break
        count += data.count(b"\n")
        offset += len(data)
    return count


def resume_head(fd: int, path: Path) -> Resumed:
    """The head of the chain in the open file `fd`, and its torn last line if it has one;
    AuditLogCorruptError if a complete line of its tail does not verify. OSError propagates
    (the caller translates it)."""
    size = os.fstat(fd).st_size
    lines, offset = _tail(fd, size)
    if lines and not lines[-1].endswith(b"\n"):
        torn = TornTail(offset=size - len(lines[-1]), data=lines[-1])
        return Resumed(head=_complete_head(fd, path, torn.offset), torn=torn)
    return Resumed(head=_complete_head(fd, path, size))


def _complete_head(fd: int, path: Path, size: int) -> ChainHead:
    """The head after the file's first `size` bytes, which end in a newline."""
    lines, offset = _tail(fd, size)
    if not lines:
        return ChainHead()
    *before, last = lines
    previous = ChainHead()
    if before:
        try:
            _, previous, _ = read_line(before[0])
        except ChainError as error:
            raise _refusal(fd, path, offset,
                           f"(the line before last) does not verify: {error}") from None
    last_offset = offset + sum(len(line) for line in before)
    try:
        return link_line(last, previous)
    except ChainError as error:
        raise _refusal(fd, path, last_offset,
                       f"(the last line) does not verify: {error}") from None


def _refusal(fd: int, path: Path, offset: int, problem: str) -> AuditLogCorruptError:
    """The error for the line that starts at byte `offset`: a complete line that does not
    verify (tampering, or a disk that lost data), never a torn one."""
    number = _count_lines(fd, offset) + 1
    quoted = shlex.quote(str(path))
    recover = (f"To recover: find where the chain breaks with `kubegate audit verify "
               f"{quoted}`, keep the file as evidence and move it aside; kubegate then "
               "starts a new chain in a new file.")
    return AuditLogCorruptError(
        f"audit log {path}: line {number} {problem}. kubegate will not extend a chain it "
        f"cannot verify. {recover}", path=path, line=number)
