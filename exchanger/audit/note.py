"""Signed notes (C2SP signed-note, https://c2sp.org/signed-note), Ed25519 only. Pure.

    note      = text ending in "\\n", "\\n", then one or more signature lines
    signature = "— " key-name " " base64(key ID (4 bytes, big-endian) || Ed25519 signature)
    key ID    = SHA-256(key-name || 0x0A || 0x01 || 32-byte public key)[:4]
    verifier  = key-name "+" hex(key ID) "+" base64(0x01 || 32-byte public key)

The signature covers the text including its final newline, not the blank line. The verifier
string is the one golang.org/x/mod/sumdb/note and transparency-log tools take.

Rules of this module:
- a note is refused whole unless it is UTF-8 without control characters other than newline,
  at most `MAX_NOTE_BYTES`, with at most `MAX_SIGNATURES` well-formed signature lines;
- a signature counts only when both its key name and key ID match a known verifier key;
  others are ignored (a rotated key, a witness's cosignature). A known key's signature that
  fails refuses the note; so does a note that no known key signed;
- errors are `NoteError`, whose message says what is wrong and never holds key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kubegate.errors import Code, MessageError

ED25519 = 0x01
DASH = "\u2014"  # em dash
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_NAME = re.compile(r"[^\s+]+")
_HEX_ID = re.compile(r"[0-9a-f]{8}")


class NoteError(MessageError):
    """A note, a checkpoint or a key that is malformed, or a signature that does not verify."""

    code = Code.DATA_LOSS
    reason_name = "INVALID_NOTE"


def check_key_name(name: str) -> None:
    """Key names are non-empty and hold no Unicode space and no `+`."""
    if not _NAME.fullmatch(name):
        raise NoteError(f"key name {name[:60]!r} must be non-empty, without spaces or '+'")


def key_id(name: str, public_key: bytes) -> bytes:
    check_key_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, kw_only=True)
class NoteVerifier:
    """A known key: its name, ID and Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != 32 or self.key_id != key_id(self.name, self.public_key):
            raise NoteError(f"verifier key {self.name}: the key ID does not match the key")

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verifies(self, text: bytes, signature: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


def parse_verifier_key(text: str) -> NoteVerifier:
    """`name+hexid+base64(0x01 || key)`, as `kubegate audit key` prints it."""
    name, _, rest = text.strip().partition("+")
    hex_id, _, encoded = rest.partition("+")
    check_key_name(name)
    if not _HEX_ID.fullmatch(hex_id):
        raise NoteError(f"verifier key {name}: the key ID must be 8 lowercase hex digits")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise NoteError(f"verifier key {name}: the key is not base64") from None
    if len(raw) != 33 or raw[0] != ED25519:
        raise NoteError(f"verifier key {name}: not an Ed25519 key (type 0x01, 32 bytes)")
    return NoteVerifier(name=name, key_id=bytes.fromhex(hex_id), public_key=raw[1:])


class NoteSigner:
    """Signs note texts with an Ed25519 private key under a key name."""

    def __init__(self, name: str, key: ed25519.Ed25519PrivateKey) -> None:
        public = _raw_public(key.public_key())
        self.verifier = NoteVerifier(name=name, key_id=key_id(name, public), public_key=public)
        self._key = key

    @property
    def name(self) -> str:
        return self.verifier.name

    def sign(self, text: str) -> str:
        """The signed note of `text` (which must end in a newline)."""
        _check_text(text)
        signature = self._key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{text}\n{DASH} {self.name} {encoded}\n"

    def __repr__(self) -> str:
        return f"NoteSigner({self.verifier})"


def _check_text(text: str) -> None:
    if not text.endswith("\n") or _CONTROL.search(text):
        raise NoteError("a note text ends in a newline and holds no other control character")


@dataclass(frozen=True, kw_only=True)
class Signature:
    name: str
    key_id: bytes
    signature: bytes


def _split(note: bytes) -> tuple[str, list[str]]:
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"the note is over {MAX_NOTE_BYTES} bytes")
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the note is not UTF-8") from None
    if _CONTROL.search(decoded):
        raise NoteError("the note holds control characters other than newline")
    text, blank, signatures = decoded.rpartition("\n\n")
    if not blank or not text or not signatures.endswith("\n"):
        raise NoteError("not a signed note: expected text, a blank line, signature lines")
    lines = signatures[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has more than {MAX_SIGNATURES} signatures")
    return text + "\n", lines


def _signature(line: str) -> Signature:
    prefix = f"{DASH} "
    name, _, encoded = line.removeprefix(prefix).partition(" ")
    if not line.startswith(prefix) or not _NAME.fullmatch(name) or " " in encoded:
        raise NoteError("a signature line is not '\u2014 <key name> <base64 signature>'")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise NoteError(f"the signature of {name} is not base64") from None
    if len(raw) < 5:
        raise NoteError(f"the signature of {name} is too short")
    return Signature(name=name, key_id=raw[:4], signature=raw[4:])


def open_note(note: bytes, verifiers: Iterable[NoteVerifier]) -> tuple[str, list[NoteVerifier]]:
    """The text of a note and the known keys whose signatures verified; `NoteError` unless at
    least one did and none failed."""
    text, lines = _split(note)
    signatures = [_signature(line) for line in lines]
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteVerifier] = []
    for signature in signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        if not verifier.verifies(text.encode(), signature.signature):
            raise NoteError(f"the signature of {verifier.name}+{verifier.key_id.hex()} does "
                            "not verify: the note was changed after it was signed")
        verified.append(verifier)
    if not verified:
        names = sorted({f"{s.name}+{s.key_id.hex()}" for s in signatures})
        raise NoteError(f"no signature by a given key (signed by {', '.join(names)})")
    return text, verified
