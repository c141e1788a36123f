"""The audit log's hash chain. Pure: bytes in, bytes or a report out.

The scheme. Each line of an audit log is one JSON object, terminated by `\\n`:

    body = record fields + {"seq": n, "prev": p}
    hash = hex(sha256(canonical(body)))
    line = canonical(body + {"hash": hash})

where `canonical` is JSON with sorted keys, separators `,` and `:`, ASCII only, no NaN.
`seq` counts lines from 1; `prev` is the previous line's `hash`, and 64 zeros for line 1.
A line must be byte-for-byte its own canonical form, so its bytes are a function of what its
hash covers: chaining by `hash` is as strong as chaining by the previous line's exact bytes.

What verification detects, reported at the first line where the chain breaks:
- an edited line: its hash no longer matches (or, if the editor recomputed it, the next line's
  `prev` no longer does); a reformatted line is not canonical;
- lines swapped, deleted (in the middle or at the start) or inserted: `seq` skips or repeats,
  or `prev` does not match.
What it cannot detect from the file alone:
- deleting trailing lines (the file is a valid, shorter chain). The writer therefore exposes
  its head (last `seq` and `hash`, see `ChainHead`), which the server exports as a metric and
  logs, and signs and publishes off the host as checkpoints (`checkpoint`);
- a rewrite of the whole chain from some line on by someone who can write the file: the hash
  is unkeyed. A signed checkpoint of an earlier head is what catches it (`checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubegate.errors import Code, MessageError

GENESIS_HASH = "0" * 64
CHAIN_FIELDS = frozenset({"seq", "prev", "hash"})


_DIGEST = re.compile(r"[0-9a-f]{64}")


def _is_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None


class ChainError(MessageError):
    """A line that does not belong to a valid chain; the message says why."""

    code = Code.DATA_LOSS
    reason_name = "AUDIT_CHAIN_BROKEN"


@dataclass(frozen=True, kw_only=True)
class ChainHead:
    """Where a chain stands: the last line's `seq` and `hash` (0 and zeros when empty)."""

    seq: int = 0
    hash: str = GENESIS_HASH

    def __post_init__(self) -> None:
        if self.seq < 0 or not _is_digest(self.hash):
            raise ValueError("a chain head has seq >= 0 and a hash of 64 lowercase hex digits")


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """The outcome of `verify_chain`. `lines_checked` counts lines that verified before the
    first problem; `first_bad_line` is 1-based; `head` is the last good line's position."""

    ok: bool
    lines_checked: int
    first_bad_line: int | None = None
    problem: str = ""
    head: ChainHead = ChainHead()


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                              allow_nan=False)


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """The one serialization the chain hashes and writes."""
    return _CANONICAL.encode(value).encode("ascii")


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def chain_line(fields: Mapping[str, Any], head: ChainHead) -> tuple[bytes, ChainHead]:
    """The line (with its newline) that appends `fields` after `head`, and the new head."""
    reserved = CHAIN_FIELDS & fields.keys()
    if reserved:
        raise ValueError(f"record fields may not use the chain's names: {sorted(reserved)}")
    # Each value is serialised once: the keys sorting before "hash" and those after it
    # ("prev" and "seq" among them) as two canonical objects, whose members joined are the
    # body's canonical form, and with the hash member between them, the line's.
    before = canonical_json({k: v for k, v in fields.items() if k < "hash"})[1:-1]
    after = canonical_json({**{k: v for k, v in fields.items() if k > "hash"},
                            "seq": head.seq + 1, "prev": head.hash})[1:-1]
    body = b"{" + before + b"," + after + b"}" if before else b"{" + after + b"}"
    digest = hashlib.sha256(body).hexdigest()
    member = b'"hash":"' + digest.encode("ascii") + b'",'
    line = b"{" + (before + b"," if before else b"") + member + after + b"}\n"
    return line, ChainHead(seq=head.seq + 1, hash=digest)


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as error:  # includes UnicodeDecodeError
        raise ChainError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ChainError("not a JSON object")
    return value


def _chain_fields(value: Mapping[str, Any]) -> tuple[int, str, str]:
    seq, prev, digest = value.get("seq"), value.get("prev"), value.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ChainError("missing or invalid 'seq'")
    if not isinstance(prev, str) or not isinstance(digest, str):
        raise ChainError("missing or invalid 'prev' or 'hash'")
    return seq, prev, digest


def read_line(line: bytes) -> tuple[dict[str, Any], ChainHead, str]:
    """Check one line on its own (JSON, canonical, hash over its content) and return its
    object, the head it leaves the chain at, and its `prev`. Raises `ChainError`.

    `line` may carry its trailing newline."""
    raw = line.removesuffix(b"\n")
    if not raw:
        raise ChainError("empty line")
    value = _parse_object(raw)
    seq, prev, digest = _chain_fields(value)
    if canonical_json(value) != raw:
        raise ChainError("not in canonical form (the line was rewritten)")
    body = {k: v for k, v in value.items() if k != "hash"}
    if _digest(body) != digest:
        raise ChainError("hash does not match the line's content (the line was edited)")
    try:
        head = ChainHead(seq=seq, hash=digest)
    except ValueError:
        raise ChainError("'hash' is not 64 lowercase hex digits") from None
    return value, head, prev


def link_line(line: bytes, previous: ChainHead) -> ChainHead:
    """The head after `line`, which must follow `previous`. Raises `ChainError`."""
    _, head, prev = read_line(line)
    if head.seq != previous.seq + 1:
        raise ChainError(f"sequence number {head.seq}, expected {previous.seq + 1} "
                         "(a line was deleted, inserted or moved)")
    if prev != previous.hash:
        raise ChainError("'prev' does not match the previous line's hash "
                         "(a line was replaced or inserted)")
    return head


def verify_chain(lines: Iterable[bytes],
                 on_line: Callable[[ChainHead], None] | None = None) -> ChainReport:
    """Verify a whole log, given its lines in order (with or without their newlines);
    `on_line` sees the head after each line that verified."""
    head = ChainHead()
    checked = 0
    for number, line in enumerate(lines, start=1):
        try:
            head = link_line(line, head)
        except ChainError as error:
            return ChainReport(ok=False, lines_checked=checked, first_bad_line=number,
                               problem=str(error), head=head)
        checked += 1
        if on_line is not None:
            on_line(head)
    return ChainReport(ok=True, lines_checked=checked, head=head)
