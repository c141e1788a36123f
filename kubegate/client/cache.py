"""The exec plugin's credential cache: issued credentials kept in files until shortly before
they expire, so that every kubectl command does not make an exchange of its own (a new
TokenRequest, a new session Secret, a new audit line).

    cache = CredentialCache(cache_folder(environ))
    if cache.prepare() is None:
        entry = cache.load(key)                 # None: missing, foreign, corrupt
        with cache.locked(key):                 # one exchange for many parallel kubectl
            ...
            cache.store(CacheEntry(key=key, obtained_at=now, credential=credential), now=now)

Like kubelogin's token cache (int128/kubelogin `pkg/tokencache/repository`): one file per key
(a sha256 hex digest), a separate `.lock` file taken with flock, the folder 0700 and the
files 0600. Unlike it, a file is trusted only when it proves to be ours.

Rules of this module:
- the folder is `KUBEGATE_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/kubegate/credentials`;
  it is used only when it is a directory owned by this user that no group or other may enter
  (`prepare` says why not otherwise; it never changes the permissions of a folder);
- an entry is read only from a regular file (never through a symlink) owned by this user,
  mode 0600 or stricter, at most 64 KiB, in the exact shape `encode_entry` writes, for the key
  it is named after; anything else is treated as missing, and the next store replaces it;
- entries are written 0600 and atomically (`kubegate.files.write_secret_file`);
- an entry is reused while more than `REPORT_MARGIN_SECONDS` (the exec plugin's early expiry)
  plus max(60 s, 10 % of its lifetime) remains, and never after the clock went back before it
  was obtained, so kubectl always gets at least a minute before the expiry it is told;
- a failure to read, lock or write the cache never fails an exchange: it only costs one;
- a hit imports only what reading needs (`kubegate.files`, which loads tempfile and shutil,
  is imported when an entry is written);
- tokens are secrets: nothing here logs, prints or puts file content into an error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubegate.credential import ClusterInfo, Credential, cluster_json

__all__ = ["CACHE_DIR_ENV", "CacheEntry", "CredentialCache", "cache_folder", "decode_entry",
           "encode_entry", "file_problem", "folder_problem", "is_fresh", "locked_file",
           "refresh_margin"]

CACHE_DIR_ENV = "KUBEGATE_CACHE_DIR"
FORMAT = 1
# kubegate.kubeconfig.DEFAULT_MARGIN_SECONDS: how early an ExecCredential reports expiry
# (not imported: that module loads YAML, and a cache hit should not pay for it)
REPORT_MARGIN_SECONDS = 60
MIN_MARGIN_SECONDS = 60
MARGIN_FRACTION = 0.1
CLOCK_STEP_TOLERANCE_SECONDS = 5  # an NTP slew, not a clock set back
MAX_ENTRY_BYTES = 64 * 1024
LOCK_WAIT_SECONDS = 30.0  # a holder exchanges within its own 30 s retry budget
LOCK_POLL_SECONDS = 0.02
STALE_SECONDS = 3600  # expired entries and orphan lock files older than this are removed
PRUNE_LIMIT = 1000  # files looked at per store


@dataclass(frozen=True, kw_only=True)
class CacheEntry:
    key: str
    obtained_at: int  # when the exchange that issued the credential started
    credential: Credential = field(repr=False)


def cache_folder(environ: Mapping[str, str]) -> Path:
    if override := environ.get(CACHE_DIR_ENV, "").strip():
        return Path(override).expanduser()
    base = environ.get("XDG_CACHE_HOME", "").strip()
    if not base or not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        home = environ.get("HOME", "").strip() or str(Path.home())
        base = os.path.join(home, ".cache")
    return Path(base) / "kubegate" / "credentials"


# -- pure rules ------------------------------------------------------------------------------


def refresh_margin(lifetime: float) -> float:
    """Seconds before expiry at which a cached credential is no longer handed out."""
    return REPORT_MARGIN_SECONDS + max(MIN_MARGIN_SECONDS, MARGIN_FRACTION * max(lifetime, 0))


def is_fresh(entry: CacheEntry, now: float) -> bool:
    if now < entry.obtained_at - CLOCK_STEP_TOLERANCE_SECONDS:
        return False  # the clock went back: how much is left cannot be known
    expires_at = entry.credential.expires_at
    return expires_at - now > refresh_margin(expires_at - entry.obtained_at)


def folder_problem(status: os.stat_result, uid: int) -> str | None:
    """Why a folder with this status cannot hold our credentials, or None."""
    if not stat.S_ISDIR(status.st_mode):
        return "not a directory"
    if status.st_uid != uid:
        return f"owned by uid {status.st_uid}, not {uid}"
    if status.st_mode & 0o077:
        return (f"mode {stat.S_IMODE(status.st_mode):04o} lets others in "
                "(chmod 700 it, or remove it)")
    return None


def file_problem(status: os.stat_result, uid: int) -> str | None:
    """Why a cache file with this status is not to be trusted, or None."""
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if status.st_uid != uid:
        return "owned by someone else"
    if status.st_mode & 0o077:
        return "readable or writable by others"
    if status.st_size > MAX_ENTRY_BYTES:
        return "too large"
    return None


def encode_entry(entry: CacheEntry) -> bytes:
    credential, cluster = entry.credential, entry.credential.cluster
    document = {
        "format": FORMAT, "key": entry.key, "obtained_at": entry.obtained_at,
        "credential": {
            "token": credential.token, "token_type": credential.token_type,
            "expires_at": credential.expires_at, "token_id": credential.token_id,
            "session_id": credential.session_id, "mapping": credential.mapping,
            "cluster": cluster_json(cluster),
        },
    }
    return json.dumps(document, separators=(",", ":")).encode()


_CREDENTIAL_TEXT = ("token", "token_type", "token_id", "session_id", "mapping")
_CLUSTER_TEXT = ("name", "server", "namespace", "service_account", "user")


def decode_entry(data: bytes) -> CacheEntry | None:
    """The entry `encode_entry` wrote, or None for anything else (never an exception)."""
    try:
        document = json.loads(data)
        if (document["format"] != FORMAT or not _texts(document, ("key",))
                or not _whole(document["obtained_at"])):
            return None
        credential = _credential(document["credential"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if credential is None:
        return None
    return CacheEntry(key=document["key"], obtained_at=document["obtained_at"],
                      credential=credential)


def _credential(document: Any) -> Credential | None:
    cluster = document["cluster"]
    if (not _texts(document, _CREDENTIAL_TEXT) or not _texts(cluster, _CLUSTER_TEXT)
            or not document["token"] or not _whole(document["expires_at"])
            or not isinstance(cluster["groups"], list)
            or not all(isinstance(group, str) for group in cluster["groups"])):
        return None
    return Credential(
        token=document["token"], token_type=document["token_type"],
        expires_at=document["expires_at"], token_id=document["token_id"],
        session_id=document["session_id"], mapping=document["mapping"],
        cluster=ClusterInfo(
            name=cluster["name"], server=cluster["server"], namespace=cluster["namespace"],
            service_account=cluster["service_account"], user=cluster["user"],
            groups=tuple(cluster["groups"]),
            certificate_authority_data=base64.b64decode(
                cluster["certificate_authority_data"], validate=True)))


def _texts(document: Mapping[str, Any], names: tuple[str, ...]) -> bool:
    return isinstance(document, Mapping) and all(
        isinstance(document.get(name), str) for name in names)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# -- the folder ------------------------------------------------------------------------------


class CredentialCache:
    """Cache entries in one folder: `<key>.json` (the entry) and `<key>.lock` (flock only)."""

    def __init__(self, folder: Path, *, uid: int | None = None) -> None:
        self.folder = folder
        self._uid = os.geteuid() if uid is None else uid

    def prepare(self) -> str | None:
        """Create the folder (0700) if needed; None when it may be used, else why not."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            status = os.stat(self.folder)
        except OSError as error:
            return f"{self.folder}: {error.strerror}"
        problem = folder_problem(status, self._uid)
        return None if problem is None else f"{self.folder}: {problem}"

    def load(self, key: str) -> CacheEntry | None:
        """The entry stored for key if its file is trustworthy and intact, else None."""
        try:
            fd = os.open(self._path(key, ".json"),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            if file_problem(os.fstat(fd), self._uid) is not None:
                return None
            data = handle.read(MAX_ENTRY_BYTES + 1)
        entry = decode_entry(data) if len(data) <= MAX_ENTRY_BYTES else None
        return entry if entry is not None and entry.key == key else None

    def store(self, entry: CacheEntry, *, now: float) -> None:
        """Write entry (replacing whatever was there), then remove long-expired ones."""
        from kubegate.files import write_secret_file  # tempfile, shutil: only on a miss

        with contextlib.suppress(OSError):
            write_secret_file(self._path(entry.key, ".json"), encode_entry(entry))
        self.prune(now)

    @contextlib.contextmanager
    def locked(self, key: str, *, wait: float = LOCK_WAIT_SECONDS,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Iterator[bool]:
        """Hold key's lock for the block; yields False when it could not be had in `wait`
        seconds (or at all): the caller then goes on without it."""
        with locked_file(self._path(key, ".lock"), wait=wait, clock=clock,
                         sleep=sleep) as held:
            yield held

    def prune(self, now: float) -> None:
        """Remove expired entries and lock files without an entry, once older than an hour
        (a key that is in use is rewritten well within that)."""
        try:
            names = sorted(os.listdir(self.folder))[:PRUNE_LIMIT]
        except OSError:
            return
        for name in names:
            stem, _, suffix = name.rpartition(".")
            if suffix in ("json", "lock") and self._stale(stem, suffix, now):
                with contextlib.suppress(OSError):
                    os.unlink(self.folder / name)

    def _stale(self, key: str, suffix: str, now: float) -> bool:
        try:
            status = os.lstat(self.folder / f"{key}.{suffix}")
        except OSError:
            return False
        if status.st_uid != self._uid or status.st_mtime > now - STALE_SECONDS:
            return False
        if suffix == "lock":
            return not os.path.lexists(self.folder / f"{key}.json")
        entry = self.load(key)
        return entry is None or entry.credential.expires_at < now

    def _path(self, key: str, suffix: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("a cache key is a lowercase hex digest")
        return self.folder / f"{key}{suffix}"


@contextlib.contextmanager
def locked_file(path: Path, *, wait: float = LOCK_WAIT_SECONDS,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> Iterator[bool]:
    """Hold an flock on path (created 0600, never through a symlink) for the block; yields
    False when it could not be had in `wait` seconds (or at all)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        yield False
        return
    try:
        yield _flock(fd, clock() + wait, clock, sleep)
    finally:
        os.close(fd)  # releases the lock


def _flock(fd: int, deadline: float, clock: Callable[[], float],
           sleep: Callable[[float], None]) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if clock() >= deadline:
                return False
            sleep(LOCK_POLL_SECONDS)
        except OSError:
            return False
