"""The checkpoint signing key: an Ed25519 private key in a PEM (PKCS #8) file.

Rules of this module:
- a key file is created only where kubegate owns the place (the default, in the state
  folder): mode 0600, written atomically (`kubegate.files`), never over an existing file;
  a configured key that is missing is an error, since a fresh key there would change the
  verifier key that auditors hold;
- errors name the file and what is wrong, never a byte of the key.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kubegate.errors import Code, MessageError
from kubegate.files import write_secret_file


class CheckpointKeyError(MessageError):
    """The checkpoint signing key cannot be had; the exchanger does not start without it."""

    code = Code.FAILED_PRECONDITION
    reason_name = "AUDIT_KEY_UNAVAILABLE"


def create_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """A new key, written to `path` (0600, atomically); refuses to replace an existing file."""
    if path.exists():
        raise CheckpointKeyError(f"audit checkpoint key {path}: already exists; kubegate never "
                                 "replaces a key (move it aside to rotate)")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        write_secret_file(path, pem)
    except OSError as error:
        raise CheckpointKeyError(f"audit checkpoint key {path}: cannot write: "
                                 f"{error.strerror}") from error
    return key


def load_key(path: Path, *, create: bool = False) -> ed25519.Ed25519PrivateKey:
    """The key at `path`; created there when it does not exist and `create` is set."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if create:
            return create_key(path)
        raise CheckpointKeyError(
            f"audit checkpoint key {path}: not found; create one with `kubegate audit key "
            f"--create --file {path}` (or give the key file it was meant to be)") from None
    except OSError as error:
        raise CheckpointKeyError(f"audit checkpoint key {path}: cannot read: "
                                 f"{error.strerror}") from error
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CheckpointKeyError(f"audit checkpoint key {path}: not an unencrypted PEM "
                                 "private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CheckpointKeyError(f"audit checkpoint key {path}: not an Ed25519 key")
    return key
