"""The login cache: one file per (issuer, client id) holding the person's ID token, refresh
token and the ID token's expiry, in `$KUBEGATE_CACHE_DIR/login/`, else
`${XDG_CACHE_HOME:-~/.cache}/kubegate/login/`.

Rules of this module:
- the folder (and its parent, when we create it) is created 0700 and used only when it is a
  directory of this user that no group or other may enter; a file is read only when it is a
  regular file (never through a symlink) owned by this user and mode 0600 or stricter.
  Anything else is refused with a `UsageError` that says the fix: these files hold a refresh
  token, so a loose one is not silently replaced (someone may already have read it);
- the file name is a sha256 of issuer and client id, so nothing about either leaks in a
  listing; files are written 0600 and atomically (`kubegate.files.write_secret_file`);
- a file that is not in our exact shape, or for another issuer or client, counts as absent;
- refreshing is decided by `needs_refresh` (pure): within `REFRESH_MARGIN_SECONDS` of the
  ID token's expiry, or after it;
- a cache hit imports only json, hashlib and the folder checks (the exec plugin's path).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubegate.client.cache import (
    CACHE_DIR_ENV,
    cache_folder,
    file_problem,
    folder_problem,
    locked_file,
)
from kubegate.errors import UsageError

__all__ = ["REFRESH_MARGIN_SECONDS", "CachedLogin", "LoginCache", "cache_name", "login_folder",
           "needs_refresh"]

FORMAT = 1
REFRESH_MARGIN_SECONDS = 60
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class CachedLogin:
    issuer: str
    client_id: str
    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expiry: int  # the ID token's exp
    who: str  # email, else sub: for messages


def needs_refresh(expiry: float, now: float, margin: float = REFRESH_MARGIN_SECONDS) -> bool:
    return expiry - now <= margin


def login_folder(environ: Mapping[str, str]) -> Path:
    if override := environ.get(CACHE_DIR_ENV, "").strip():
        return Path(override).expanduser() / "login"
    return cache_folder(environ).parent / "login"  # beside .../kubegate/credentials


def cache_name(issuer: str, client_id: str) -> str:
    return hashlib.sha256(json.dumps([issuer, client_id]).encode()).hexdigest()


def encode(login: CachedLogin) -> bytes:
    return json.dumps({
        "format": FORMAT, "issuer": login.issuer, "client_id": login.client_id,
        "id_token": login.id_token, "refresh_token": login.refresh_token,
        "expiry": login.expiry, "who": login.who}, separators=(",", ":")).encode()


def decode(data: bytes) -> CachedLogin | None:
    try:
        document = json.loads(data)
        texts = [document[n] for n in ("issuer", "client_id", "id_token", "refresh_token",
                                        "who")]
        expiry = document["expiry"]
    except (ValueError, KeyError, TypeError):
        return None
    if (document.get("format") != FORMAT or not all(isinstance(t, str) for t in texts)
            or not isinstance(expiry, int) or isinstance(expiry, bool) or not texts[2]):
        return None
    return CachedLogin(issuer=texts[0], client_id=texts[1], id_token=texts[2],
                       refresh_token=texts[3], expiry=expiry, who=texts[4])


class LoginCache:
    def __init__(self, folder: Path, *, uid: int | None = None) -> None:
        self.folder = folder
        self._uid = os.geteuid() if uid is None else uid

    def path(self, issuer: str, client_id: str) -> Path:
        return self.folder / f"{cache_name(issuer, client_id)}.json"

    def prepare(self) -> None:
        """Create the folder (0700) if needed; UsageError when it may not be used."""
        try:
            # the parent is `KUBEGATE_CACHE_DIR` or `.../kubegate`: when we create it, 0700 too,
            # since the credential cache uses the former itself
            self.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.mkdir(mode=0o700, exist_ok=True)
            status = os.stat(self.folder)
        except OSError as error:
            raise UsageError(f"login cache {self.folder}: {error.strerror}") from None
        if problem := folder_problem(status, self._uid):
            raise UsageError(f"login cache {self.folder}: {problem}")

    def load(self, issuer: str, client_id: str) -> CachedLogin | None:
        """The cached login, None when there is none; UsageError for an untrusted file."""
        path = self.path(issuer, client_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UsageError(f"login cache {path}: a symlink; remove it "
                                 f"(kubegate logout)") from None
            raise UsageError(f"login cache {path}: {error.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            self._check(path, os.fstat(fd))
            data = handle.read(MAX_FILE_BYTES + 1)
        login = decode(data) if len(data) <= MAX_FILE_BYTES else None
        if login is None or (login.issuer, login.client_id) != (issuer, client_id):
            return None
        return login

    def _check(self, path: Path, status: os.stat_result) -> None:
        problem = file_problem(status, self._uid)
        if problem == "readable or writable by others":
            raise UsageError(f"login cache {path}: others may read it (mode "
                             f"{status.st_mode & 0o777:04o}); run `chmod 600 {path}` if "
                             "only you could ever read it, else `kubegate logout` and sign "
                             "in again")
        if problem is not None:
            raise UsageError(f"login cache {path}: {problem}; remove it (kubegate logout)")

    def store(self, login: CachedLogin) -> Path:
        from kubegate.files import write_secret_file  # tempfile: only when writing

        self.prepare()
        path = self.path(login.issuer, login.client_id)
        try:
            write_secret_file(path, encode(login))
        except OSError as error:
            raise UsageError(f"login cache {path}: cannot write: {error.strerror}") from None
        return path

    @contextlib.contextmanager
    def locked(self, issuer: str, client_id: str, *, wait: float) -> Iterator[bool]:
        """One refresh or sign-in at a time per login (parallel kubectl commands)."""
        lock = self.folder / f"{cache_name(issuer, client_id)}.lock"
        with locked_file(lock, wait=wait) as held:
            yield held

    def remove(self, issuer: str, client_id: str) -> Path | None:
        """Remove the login's file (and its lock); the path removed, or None."""
        path = self.path(issuer, client_id)
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(".lock").unlink()
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise UsageError(f"cannot remove {path}: {error.strerror}") from None
        return path

    def remove_all(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []
        except OSError as error:
            raise UsageError(f"login cache {self.folder}: {error.strerror}") from None
        removed = []
        for name in names:
            path = self.folder / name
            if name.endswith((".json", ".lock")) and not name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    if name.endswith(".json"):
                        removed.append(path)
        return removed
