"""Where recordings live: `<recordings>/<session id>/<UTC start>-<kind>-<n>.cast`, with a
byte-exact `<same name>.raw` beside each terminal cast.

Rules of this module:
- folders are 0700 and files 0600; the session's folder is opened without following a
  symlink, and files are created in it (by descriptor, so a rename of the path does not
  redirect them) with O_EXCL and O_NOFOLLOW: an existing file or a link is never written
  through, the next free `n` is taken instead;
- a session id names a folder, so it must be a plain name (letters, digits, `.`, `_`, `-`,
  not starting with `.`): anything else is refused before a path is built;
- a `Sink` writes straight to its descriptor (no user-space buffer), so what a writer wrote is
  in the file even when the gateway is killed a moment later.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from exchanger.gateway.recording.errors import RecordingStoreError

SESSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
KINDS = ("exec", "attach", "portforward")
MAX_TRIES = 1000
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Sink:
    """An append-only file descriptor the writer owns."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True, kw_only=True)
class Opened:
    cast: Sink
    raw: Sink | None


def session_folder(root: Path, session_id: str) -> Path:
    if not SESSION_ID.fullmatch(session_id):
        raise RecordingStoreError("a session id that is not a plain name")
    return root / session_id


def create_recording(root: Path, session_id: str, kind: str, started: float, *,
                     raw: bool) -> Opened:
    """New, empty files for one stream of a session (the raw copy only when asked)."""
    if kind not in KINDS:
        raise RecordingStoreError(f"unknown recording kind {kind!r}")
    folder = session_folder(root, session_id)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    dir_fd = _open_folder(folder)
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
        for n in range(1, MAX_TRIES + 1):
            name = f"{stamp}-{kind}-{n}.cast"
            cast = _create(dir_fd, name, folder)
            if cast is None:
                continue
            raw_sink = _create(dir_fd, name + ".raw", folder) if raw else None
            if raw and raw_sink is None:
                cast.close()  # a stray .raw of that name: leave the pair, take the next n
                continue
            return Opened(cast=cast, raw=raw_sink)
    finally:
        os.close(dir_fd)
    raise RecordingStoreError(f"no free recording name in {folder}")


def _open_folder(folder: Path) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise RecordingStoreError(f"{folder} is not a folder: {error.strerror}") from error
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise RecordingStoreError(f"{folder} is not a folder this user owns")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.fchmod(fd, 0o700)
    return fd


def _create(dir_fd: int, name: str, folder: Path) -> Sink | None:
    try:
        fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        return None
    except OSError as error:
        if os.path.islink(os.path.join(folder, name)):
            return None
        raise RecordingStoreError(f"cannot create {folder / name}: {error.strerror}") from error
    os.fchmod(fd, 0o600)  # whatever the umask
    return Sink(fd, folder / name)
