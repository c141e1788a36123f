"""Signed notes and checkpoints as C2SP writes them: the Go reference vector byte for byte, a
verifier written here from the spec alone accepts what kubegate signs, and a wrong key, a
changed body or a malformed note is refused."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from exchanger.audit.chain import GENESIS_HASH, ChainHead
from exchanger.audit.checkpoint import (
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from exchanger.audit.note import (
    NoteError,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_verifier_key,
)

# golang.org/x/mod/sumdb/note's documented example (note.go, note_test.go): a key, a text and
# the note Go's implementation signs. Ed25519 is deterministic, so ours must be the same bytes.
GO_PRIVATE = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUg"
           "YN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")

HEAD = ChainHead(seq=42, hash=hashlib.sha256(b"line 42").hexdigest())
ORIGIN = "kubegate.io/audit/exchanger-0"


def go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_PRIVATE.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def a_signer(name: str = "kubegate.io/audit") -> NoteSigner:
    return NoteSigner(name, ed25519.Ed25519PrivateKey.generate())


def minimal_open(note: str, verifier_key: str) -> str:
    """A verifier written from c2sp.org/signed-note alone, sharing no code with kubegate: the
    text up to the last blank line, a signature line whose name and key ID match the key, an
    Ed25519 signature over the text; its key ID is SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    name, key_hash, key_b64 = verifier_key.split("+", 2)  # base64 may hold a "+"
    key = base64.b64decode(key_b64)
    assert key[0] == 0x01 and len(key) == 33
    assert hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() == key_hash
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        dash, signer, blob = line.split(" ")
        raw = base64.b64decode(blob)
        if dash == "\u2014" and signer == name and raw[:4].hex() == key_hash:
            ed25519.Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], text.encode())
            return text
    raise AssertionError("no signature by the key")


def test_we_sign_the_go_reference_note_byte_for_byte() -> None:
    signer = go_signer()
    assert str(signer.verifier) == GO_VERIFIER
    assert signer.sign(GO_TEXT) == GO_NOTE


def test_the_go_reference_note_opens_with_its_verifier_key() -> None:
    text, verified = open_note(GO_NOTE.encode(), [parse_verifier_key(GO_VERIFIER)])
    assert text == GO_TEXT and [str(v) for v in verified] == [GO_VERIFIER]


def test_a_checkpoint_round_trips_through_its_note() -> None:
    signer = a_signer()
    checkpoint = Checkpoint.of(ORIGIN, HEAD)
    note = sign_checkpoint(checkpoint, signer)
    assert open_checkpoint(note.encode(), [signer.verifier]) == checkpoint
    assert parse_verifier_key(str(signer.verifier)) == signer.verifier


def test_a_checkpoint_is_three_lines_and_a_signature_in_the_tlog_checkpoint_shape() -> None:
    signer = a_signer()
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), signer)
    body, signature = note.split("\n\n")
    assert body.split("\n") == [ORIGIN, "42",
                                base64.b64encode(bytes.fromhex(HEAD.hash)).decode()]
    assert signature.startswith("\u2014 kubegate.io/audit ") and signature.endswith("\n")


def test_an_independent_minimal_verifier_accepts_our_checkpoint() -> None:
    signer = a_signer()
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), signer)
    text = minimal_open(note, str(signer.verifier))
    assert parse_checkpoint(text).head == HEAD
    assert minimal_open(GO_NOTE, GO_VERIFIER) == GO_TEXT  # and it is right about Go's note
    with pytest.raises(InvalidSignature):
        minimal_open(note.replace("\n42\n", "\n43\n"), str(signer.verifier))


def test_a_note_signed_by_another_key_is_refused() -> None:
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), a_signer())
    with pytest.raises(NoteError, match="no signature by a given key"):
        open_checkpoint(note.encode(), [a_signer().verifier])


def test_another_key_under_the_same_name_is_ignored_not_trusted() -> None:
    """A signature counts only when name and key ID both match (c2sp: ignore unknown keys)."""
    mine, impostor = a_signer(), a_signer()
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), impostor)
    with pytest.raises(NoteError, match="no signature by a given key"):
        open_note(note.encode(), [mine.verifier])


@pytest.mark.parametrize(("old", "new"), [
    (f"{ORIGIN}\n", "kubegate.io/audit/exchanger-1\n"),  # another log
    ("\n42\n", "\n41\n"),  # another size
    ("\n42\n", "\n042\n"),
    ("=\n\n", "A\n\n"),  # the root hash's last character
])
def test_a_changed_body_is_refused(old: str, new: str) -> None:
    signer = a_signer()
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), signer)
    assert old in note
    with pytest.raises(NoteError, match="does not verify"):
        open_checkpoint(note.replace(old, new, 1).encode(), [signer.verifier])


def test_a_known_key_that_fails_refuses_even_beside_one_that_verifies() -> None:
    first, second = a_signer("a.example/one"), a_signer("a.example/two")
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), first)
    forged = note + "\u2014 a.example/two " + base64.b64encode(
        second.verifier.key_id + b"\0" * 64).decode() + "\n"
    assert open_note(note.encode(), [first.verifier, second.verifier])[1] == [first.verifier]
    with pytest.raises(NoteError, match="a.example/two.*does not verify"):
        open_note(forged.encode(), [first.verifier, second.verifier])


def test_unknown_signatures_beside_a_good_one_are_ignored() -> None:
    """A witness's cosignature, or the old key's during a rotation."""
    mine, other = a_signer(), a_signer("witness.example")
    note = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), mine)
    cosigned = note + other.sign(Checkpoint.of(ORIGIN, HEAD).text()).split("\n\n")[1]
    assert open_checkpoint(cosigned.encode(), [mine.verifier]).head == HEAD


VALID = sign_checkpoint(Checkpoint.of(ORIGIN, HEAD), go_signer())
GO_KEY = parse_verifier_key(GO_VERIFIER)


@pytest.mark.parametrize(("note", "problem"), [
    (VALID.replace("\n\n", "\n"), "not a signed note"),
    (VALID.rstrip("\n"), "not a signed note"),
    (VALID.replace("\u2014", "-"), "signature line"),
    (VALID.replace("\u2014 PeterNeumann", "\u2014  PeterNeumann"), "signature line"),
    (VALID.replace(ORIGIN, ORIGIN + "\t"), "control characters"),
    (VALID.replace("\n", "\r\n"), "control characters"),
    (VALID + "\u2014 x AAAA\n", "too short"),
    (VALID + "\u2014 x @@@@\n", "not base64"),
    (VALID[:-1] + "\n" + "x" * 70_000 + "\n", "over"),
])
def test_a_malformed_note_is_refused(note: str, problem: str) -> None:
    with pytest.raises(NoteError, match=problem):
        open_note(note.encode(), [GO_KEY])


def test_a_note_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(NoteError, match="not UTF-8"):
        open_note(VALID.encode().replace(b"audit", b"\xffaudit"), [GO_KEY])


@pytest.mark.parametrize(("text", "problem"), [
    (f"{ORIGIN}\n42\n", "three lines"),
    (f"{ORIGIN}\n42\nAAAA\nextension\n", "three lines"),
    (f"{ORIGIN}\n042\n{'A' * 43}=\n", "decimal"),
    (f"{ORIGIN}\n-1\n{'A' * 43}=\n", "decimal"),
    (f"{ORIGIN}\n42\nAAAA\n", "32 bytes"),
    (f"{ORIGIN}\n42\n{'*' * 44}\n", "base64"),
    (f"has space\n42\n{'A' * 43}=\n", "origin"),
    (f"{ORIGIN}\n0\n{base64.b64encode(b'x' * 32).decode()}\n", "empty log"),
])
def test_a_malformed_checkpoint_body_is_refused(text: str, problem: str) -> None:
    with pytest.raises(NoteError, match=problem):
        parse_checkpoint(text)


def test_an_empty_log_has_the_zero_root() -> None:
    text = Checkpoint.of(ORIGIN, ChainHead()).text()
    assert text == f"{ORIGIN}\n0\n{base64.b64encode(bytes(32)).decode()}\n"
    assert parse_checkpoint(text).hash == GENESIS_HASH


@pytest.mark.parametrize("key", [
    GO_VERIFIER.replace("c74f20a3", "c74f20a4"),  # the ID is not the key's
    GO_VERIFIER.replace("+ARpc", "+AhpR"),  # not type 0x01
    GO_VERIFIER[:-4],
    "PeterNeumann+c74f20a3",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
])
def test_a_bad_verifier_key_is_refused(key: str) -> None:
    with pytest.raises(NoteError):
        parse_verifier_key(key)


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there"])
def test_a_bad_key_name_is_refused(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        a_signer(name)


def test_a_signer_never_shows_its_private_key() -> None:
    signer = go_signer()
    assert repr(signer) == f"NoteSigner({GO_VERIFIER})"
    assert isinstance(signer.verifier, NoteVerifier)
