"""Audit log files for tests: a small valid log, a crash mid-write (`torn`), and each way a
complete line of its tail goes bad (a line that is not JSON, an edited line, a renumbered
line): `CASES`, which an exchanger refuses to extend."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exchanger.audit.chain import ChainHead, canonical_json, chain_line, verify_chain
from exchanger.audit.log import AuditLog
from exchanger.audit.record import Caller, deny_record
from kubegate.errors import InvalidTokenError

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
LINES = 4


def write_log(path: Path, count: int = LINES) -> Path:
    with AuditLog(path, fsync=False) as audit:
        for number in range(count):
            audit.append(deny_record(
                now=NOW + timedelta(seconds=number), caller=Caller(sub=f"job-{number}"),
                error=InvalidTokenError("TOKEN_EXPIRED", f"expired ({number})")))
    return path


def append_lines(path: Path, count: int) -> None:
    """`count` more lines, as a restarted exchanger appends them."""
    with AuditLog(path, fsync=False) as audit:
        for number in range(count):
            audit.append(deny_record(now=NOW, error=InvalidTokenError("TOKEN_EXPIRED",
                                                                      f"more ({number})")))


def verify_file(path: Path) -> bool:
    with path.open("rb") as lines:
        return verify_chain(lines).ok


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def torn(path: Path) -> int:
    """A crash in the middle of writing a fifth line: its first 30 bytes, no newline."""
    size = path.stat().st_size
    value = json.loads(lines_of(path)[-1])
    line, _ = chain_line({"decision": "deny", "reason": "X"},
                         ChainHead(seq=value["seq"], hash=value["hash"]))
    with path.open("ab") as file:
        file.write(line[:30])
    return size


def not_json(path: Path) -> int:
    lines = lines_of(path)
    lines[-1] = b"this is not JSON at all\n"
    path.write_bytes(b"".join(lines))
    return 0


def edited(path: Path) -> int:
    """The last line's reason changed, its hash left as it was."""
    lines = lines_of(path)
    value = json.loads(lines[-1])
    lines[-1] = canonical_json({**value, "reason": "OK"}) + b"\n"
    path.write_bytes(b"".join(lines))
    return 0


def wrong_seq(path: Path) -> int:
    """The last line renumbered (seq 9 after 3) and its hash recomputed: on its own, the line
    verifies; only as the successor of line 3 it does not."""
    lines = lines_of(path)
    value = json.loads(lines[-1])
    body = {k: v for k, v in value.items() if k not in ("seq", "prev", "hash")}
    before = json.loads(lines[-2])
    line, _ = chain_line(body, ChainHead(seq=8, hash=before["hash"]))
    lines[-1] = line
    path.write_bytes(b"".join(lines))
    return 0


def edited_line_before_last(path: Path) -> int:
    lines = lines_of(path)
    value = json.loads(lines[-2])
    lines[-2] = canonical_json({**value, "reason": "OK"}) + b"\n"
    path.write_bytes(b"".join(lines))
    return 0


Corruption = Callable[[Path], int]
# each corruption, the line it breaks and what the refusal says about it
CASES: dict[str, tuple[Corruption, int, str]] = {
    "a last line that is not JSON": (not_json, LINES, "(the last line) does not verify: "
                                     "not valid JSON"),
    "an edited last line": (edited, LINES, "hash does not match the line's content"),
    "a last line with a wrong seq": (wrong_seq, LINES, "sequence number 9, expected 4"),
    "an edited line before the last": (edited_line_before_last, LINES - 1,
                                       "(the line before last) does not verify: hash"),
}


def torn_after(corrupt: Corruption) -> Corruption:
    """`corrupt`, then a crash in the middle of the next line: a torn tail after a bad line."""
    def both(path: Path) -> int:
        corrupt(path)
        size = path.stat().st_size
        with path.open("ab") as file:
            file.write(b'{"caller":{"iss":"","jti":"","s')
        return size
    return both


def rewrite_from(path: Path, line: int) -> None:
    """What the unkeyed hash allows: edit line `line`, recompute every hash from there on."""
    lines = [json.loads(raw) for raw in lines_of(path)]
    head = ChainHead(seq=line - 1, hash=lines[line - 2]["hash"] if line > 1 else "0" * 64)
    out = lines_of(path)[:line - 1]
    for value in lines[line - 1:]:
        body = {k: v for k, v in value.items() if k not in ("seq", "prev", "hash")}
        if value["seq"] == line:
            body["reason"] = "OK"
        raw, head = chain_line(body, head)
        out.append(raw)
    path.write_bytes(b"".join(out))
