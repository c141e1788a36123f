"""The folder the sidecar's socket lives in: made private when the sidecar makes it, tightened
when the sidecar owns it, refused when someone else could swap the socket in it.

Whoever may write to the socket's folder may rename the socket away and bind their own in its
place: the job would then hand its requests, and trust, to them. Kubernetes emptyDir volumes
are made 0777 and owned by root (with fsGroup: 2777 and that group), so the examples mount the
emptyDir one level up and let the sidecar create the socket's folder inside it.

Rules of this module:
- a missing folder, and each missing parent, is created 0700 (0750 and owned by the socket
  group when one is configured), whatever the umask;
- a sticky folder (like /tmp: only an entry's owner may rename or remove it) is used as it is
  and never changed;
- a folder the sidecar owns that its group or others may write is tightened to 0700 (0750);
- a folder owned by another user (not root) is refused: its owner could swap the socket; so is
  one owned by root that its group or others may write;
- the folder may be reached through a symlink only if the link is ours or root's (else its
  owner could point it elsewhere later); the rules above then apply to the folder it names;
- `decide` is pure (stat values in, a `FolderDecision` out); `prepare_socket_folder` does the
  I/O and raises `UnsafeSocketFolderError` with one line saying why and what to do.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kubegate.errors import Code, MessageError

ROOT_UID = 0
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class UnsafeSocketFolderError(MessageError, OSError):
    """The socket's folder lets someone else replace the socket."""

    code = Code.FAILED_PRECONDITION
    reason_name = "UNSAFE_SOCKET_FOLDER"


@dataclass(frozen=True, kw_only=True)
class FolderDecision:
    refuse: str | None = None  # why the folder may not be used
    chmod: int | None = None  # the mode to set (a folder we own, too open)


def folder_mode(group: int | None) -> int:
    return 0o750 if group is not None else 0o700


def decide(*, mode: int, owner: int, me: int, group: int | None) -> FolderDecision:
    """What to do with an existing folder of this st_mode and owner, for a sidecar running
    as uid me with the configured socket group."""
    if not stat.S_ISDIR(mode):
        return FolderDecision(refuse="it is not a folder")
    if mode & stat.S_ISVTX:
        return FolderDecision()
    if owner == me:
        return FolderDecision(chmod=folder_mode(group)) if mode & _OTHERS_WRITE else \
            FolderDecision()
    if owner != ROOT_UID:
        return FolderDecision(refuse=f"it is owned by uid {owner}, who could replace the socket")
    if mode & _OTHERS_WRITE:
        who = "anyone" if mode & stat.S_IWOTH else "its group"
        return FolderDecision(refuse=f"{who} may write to it (mode 0{stat.S_IMODE(mode):o}, "
                              "owner root, no sticky bit) and could replace the socket")
    return FolderDecision()


def prepare_socket_folder(folder: Path, *, group: int | None) -> None:
    """Create, tighten or refuse the socket's folder; UnsafeSocketFolderError if refused."""
    me = os.geteuid()
    _check_link(folder, me)
    try:
        info = folder.stat()
    except FileNotFoundError:
        if folder.is_symlink():
            raise UnsafeSocketFolderError(_advice(folder, "it is a symlink to nothing")) \
                from None
        _create(folder, group)
        return
    decision = decide(mode=info.st_mode, owner=info.st_uid, me=me, group=group)
    if decision.refuse is not None:
        raise UnsafeSocketFolderError(_advice(folder, decision.refuse))
    if decision.chmod is not None:
        _own(folder, decision.chmod, group)


def _check_link(folder: Path, me: int) -> None:
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) and info.st_uid not in (me, ROOT_UID):
        raise UnsafeSocketFolderError(_advice(
            folder, f"it is a symlink owned by uid {info.st_uid}, who could point it elsewhere"))


def _create(folder: Path, group: int | None) -> None:
    if not folder.parent.exists():
        _create(folder.parent, group)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:  # made meanwhile (a second sidecar): judge it as found
        prepare_socket_folder(folder, group=group)
        return
    _own(folder, folder_mode(group), group)


def _own(folder: Path, mode: int, group: int | None) -> None:
    if group is not None:
        os.chown(folder, -1, group)
    os.chmod(folder, mode)  # an explicit mode: the umask does not apply, setgid is cleared


def _advice(folder: Path, why: str) -> str:
    return (f"refusing to serve in {folder}: {why}; point --socket (KUBEGATE_SOCKET) into a "
            "folder the sidecar creates itself (a subfolder of the shared emptyDir), or one "
            "only the sidecar's user may write")
