"""Checkpoints of the audit chain: its head, signed, in the C2SP tlog-checkpoint shape
(https://c2sp.org/tlog-checkpoint), and the check that a log file extends them. Pure.

    <origin>                 which log: one per audit file (default <key name>/<host name>)
    <tree size>              the head's `seq`: lines in the log, decimal
    <root hash>              base64 of the 32 bytes of line <tree size>'s `hash` (hex in the file)

    — <key name> <base64(key ID || Ed25519 signature)>

The "root hash" is the head of a hash chain, not the root of an RFC 6962 Merkle tree: tools
that read checkpoints can parse, store, witness and verify the signature of ours, but a
consistency proof between two of them is the file itself (line n's hash commits to lines 1 to
n), not a Merkle proof.

Rules of this module:
- a checkpoint is opened only through a note signature by a given verifier key;
- a log extends a checkpoint when its chain verifies from line 1 through line <size> and line
  <size>'s hash is <root hash>. Since each hash commits to every line before it, a log file
  rewritten from any line up to <size> onward fails, whatever hashes it recomputed;
- the exchanger never publishes a head that does not extend one it published before
  (`extends`): a log must not sign two inconsistent checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exchanger.audit.chain import GENESIS_HASH, ChainHead, ChainReport, verify_chain
from exchanger.audit.note import NoteError, NoteSigner, NoteVerifier, open_note

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_ORIGIN = re.compile(r"[^\s+]+")


def check_origin(origin: str) -> None:
    if not _ORIGIN.fullmatch(origin):
        raise NoteError(f"origin {origin[:60]!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A log's head at `size` lines: the hex `hash` of line `size` (zeros when empty)."""

    origin: str
    size: int
    hash: str

    def __post_init__(self) -> None:
        check_origin(self.origin)
        ChainHead(seq=self.size, hash=self.hash)  # checks size and hash

    @classmethod
    def of(cls, origin: str, head: ChainHead) -> Checkpoint:
        return cls(origin=origin, size=head.seq, hash=head.hash)

    @property
    def head(self) -> ChainHead:
        return ChainHead(seq=self.size, hash=self.hash)

    def text(self) -> str:
        root = base64.b64encode(bytes.fromhex(self.hash)).decode()
        return f"{self.origin}\n{self.size}\n{root}\n"

    def __str__(self) -> str:
        return f"{self.origin} at size {self.size}"


def parse_checkpoint(text: str) -> Checkpoint:
    """The body of a checkpoint note: origin, size, root hash, and no extension lines."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise NoteError("a checkpoint is three lines: origin, tree size, root hash")
    origin, size, root = lines[:3]
    check_origin(origin)
    if not _SIZE.fullmatch(size):
        raise NoteError(f"checkpoint {origin}: the tree size is not a decimal number")
    try:
        raw = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise NoteError(f"checkpoint {origin}: the root hash is not base64") from None
    if len(raw) != 32:
        raise NoteError(f"checkpoint {origin}: the root hash is not 32 bytes")
    if int(size) == 0 and raw.hex() != GENESIS_HASH:
        raise NoteError(f"checkpoint {origin}: an empty log's root hash is 32 zero bytes")
    return Checkpoint(origin=origin, size=int(size), hash=raw.hex())


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    return signer.sign(checkpoint.text())


def open_checkpoint(note: bytes, verifiers: Iterable[NoteVerifier]) -> Checkpoint:
    """A checkpoint whose note a given key signed; `NoteError` otherwise."""
    text, _ = open_note(note, verifiers)
    return parse_checkpoint(text)


def read_unverified(note: bytes) -> Checkpoint:
    """The body of a checkpoint note without checking a signature: only to refuse to publish
    over a head one's own log does not extend (never to trust one)."""
    text, _, _ = note.decode("utf-8", errors="replace").rpartition("\n\n")
    return parse_checkpoint(text + "\n")


def extends(head: ChainHead, published: Checkpoint, head_at: ChainHead | None) -> bool:
    """Whether a log at `head`, whose line `published.size` has head `head_at` (None when it has
    no such line), extends `published`."""
    return head.seq >= published.size and head_at == published.head


# -- the check of a file against checkpoints -------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Published:
    """A checkpoint and where it was found (a file, a ConfigMap key)."""

    source: str
    checkpoint: Checkpoint


@dataclass(frozen=True, kw_only=True)
class CheckpointReport:
    """The file's own chain, and the first checkpoint it does not extend (if any)."""

    chain: ChainReport
    checked: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.problem


def check_log(lines: Iterable[bytes], published: Sequence[Published]) -> CheckpointReport:
    """Verify a log's chain and that it extends every published checkpoint."""
    wanted = {p.checkpoint.size for p in published}
    heads: dict[int, str] = {0: GENESIS_HASH} if 0 in wanted else {}

    def seen(head: ChainHead) -> None:
        if head.seq in wanted:
            heads[head.seq] = head.hash

    chain = verify_chain(lines, on_line=seen)
    for item in sorted(published, key=lambda p: p.checkpoint.size):
        problem = _mismatch(item, heads, chain)
        if problem:
            return CheckpointReport(chain=chain, checked=len(published), problem=problem)
    return CheckpointReport(chain=chain, checked=len(published))


def _mismatch(item: Published, heads: dict[int, str], chain: ChainReport) -> str:
    checkpoint = item.checkpoint
    where = f"checkpoint {item.source} ({checkpoint})"
    if checkpoint.size not in heads:
        intact = chain.lines_checked
        return (f"{where}: the file has {intact} intact lines, fewer than the {checkpoint.size} "
                "the checkpoint counts: lines were deleted or rewritten")
    if heads[checkpoint.size] != checkpoint.hash:
        return (f"{where}: line {checkpoint.size} has hash {heads[checkpoint.size][:16]}..., "
                f"the checkpoint {checkpoint.hash[:16]}...: the file was rewritten at or "
                f"before line {checkpoint.size}")
    return ""
