"""Published checkpoints, gathered and opened for `kubegate audit verify --checkpoints`.

Where they come from: a file holding one checkpoint note, a folder of such files, a ConfigMap
document (as `kubectl get configmap -o yaml` or `-o json` writes it), or the data of a
ConfigMap read from a cluster. Each is named by its source, for messages.

Rules of this module:
- which log a file is checked against is explicit: checkpoints of one origin only. Several
  origins among the sources (a ConfigMap keeps one per replica) need `origin`, and a given
  origin with no checkpoint is an error, never a pass;
- the origin is read from a note before its signature is checked, to select it; a selected
  checkpoint counts only once a given verifier key's signature verifies (`checkpoint`), and
  one that does not refuses the whole verification;
- files are read up to `MAX_FILE_BYTES`; hidden files in a folder are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from exchanger.audit.checkpoint import Published, open_checkpoint, read_unverified
from exchanger.audit.note import NoteError, NoteVerifier
from kubegate.errors import UsageError
from kubegate.yamlread import YamlError, single_document

MAX_FILE_BYTES = 1024 * 1024
Note = tuple[str, bytes]  # (source, note)


def notes_in_config_map(data: Mapping[str, object], where: str) -> list[Note]:
    """The notes kept in a ConfigMap's data; `where` names the ConfigMap."""
    return [(f"{where} key {key}", value.encode()) for key, value in sorted(data.items())
            if isinstance(value, str)]


def _read(path: Path) -> bytes:
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: over {MAX_FILE_BYTES} bytes: not a checkpoint")
    return data


def _config_map(data: bytes) -> Mapping[str, object] | None:
    """The object, if `data` is a ConfigMap document."""
    try:
        document = single_document(data.decode("utf-8"))
    except (YamlError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and document.get("kind") == "ConfigMap":
        return document
    return None


def notes_in_path(path: Path) -> list[Note]:
    """The notes in a file or (not recursively) a folder. OSError when unreadable."""
    if path.is_dir():
        return [note for child in sorted(path.iterdir())
                if child.is_file() and not child.name.startswith(".")
                for note in notes_in_path(child)]
    data = _read(path)
    document = _config_map(data)
    if document is None:
        return [(str(path), data)]
    metadata = document.get("metadata") or {}
    name = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}" \
        if isinstance(metadata, dict) else "?"
    config_data = document.get("data") or {}
    if not isinstance(config_data, dict):
        raise UsageError(f"{path}: the ConfigMap's data is not an object")
    return notes_in_config_map(config_data, f"{path} (configmap {name})")


def select(notes: Sequence[Note], verifiers: Iterable[NoteVerifier],
           origin: str | None) -> list[Published]:
    """The checkpoints of one log, opened: UsageError when the origin is ambiguous or
    missing, NoteError (naming the source) when a note is not a checkpoint or its
    signature does not verify with a given key."""
    bodies = []
    for source, note in notes:
        try:
            bodies.append((source, note, read_unverified(note)))
        except NoteError as error:
            raise NoteError(f"checkpoint {source}: not a checkpoint: {error}") from None
    origins = sorted({body.origin for _, _, body in bodies})
    if origin is None and len(origins) > 1:
        raise UsageError(f"checkpoints of {len(origins)} logs ({', '.join(origins)}): name "
                         "the file's with --origin")
    wanted = origin or (origins[0] if origins else "")
    chosen = [(source, note) for source, note, body in bodies if body.origin == wanted]
    if not chosen:
        raise NoteError(f"no checkpoint of {wanted or 'any log'} among {len(notes)} found: "
                        "nothing to prove the file against")
    keys = list(verifiers)
    opened = []
    for source, note in chosen:
        try:
            opened.append(Published(source=source, checkpoint=open_checkpoint(note, keys)))
        except NoteError as error:
            raise NoteError(f"checkpoint {source}: {error}") from None
    return opened
