"""The audit log file: an append-only, hash-chained JSON-lines file (see `chain`).

Rules of this module:
- a record is on disk before `append` returns: one `os.write` of the whole line on an
  `O_APPEND` descriptor, then `os.fsync` (which tests and benchmarks may turn off);
- any failure to record raises `AuditWriteError` (UNAVAILABLE, reason AUDIT_UNAVAILABLE): the
  caller must then refuse the exchange, so nothing is ever issued unrecorded;
- a failed append leaves the file as it was: a short write or a failed fsync is truncated
  back; if even that fails, the log refuses every later append until it is reopened;
- the file is created with mode 0600; one process writes a given file (each replica its own);
- opening an existing file resumes its chain from the last complete line, which must be
  intact and follow the line before it: a corrupt tail refuses to start
  (`AuditLogCorruptError`, see `resume`) rather than extend a broken chain;
- an incomplete last line (a crash mid-write) is never deleted and never extended: its bytes
  go to `<log>.torn-<time>-<sha256 prefix>` beside the log (0600, made durable first), the
  log is cut back to its last complete line, and a `TORN_TAIL_RECOVERED` note naming that
  file and the sha256 of the bytes becomes the next line of the chain. The head (last
  `seq` and `hash`) is logged on open and close and readable as `head`, so it can be exported
  and anchored elsewhere (`checkpoint`): deleting trailing lines is otherwise invisible.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol

from exchanger.audit.chain import ChainHead, chain_line
from exchanger.audit.record import AuditRecord, torn_tail_record
from exchanger.audit.resume import AuditLogCorruptError as AuditLogCorruptError  # re-export
from exchanger.audit.resume import Resumed, TornTail, resume_head
from kubegate.errors import UnavailableError

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class AuditSink(Protocol):
    """Where decisions are recorded. `append` returns only once the record is durable and
    raises `AuditWriteError` otherwise."""

    def append(self, record: AuditRecord) -> None: ...


class AuditWriteError(UnavailableError):
    """The audit log cannot record a decision; the exchange must be refused."""

    def __init__(self, detail: str) -> None:
        super().__init__("AUDIT_UNAVAILABLE", detail)


def _open(path: Path) -> int:
    try:
        return os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as error:
        raise AuditWriteError(f"cannot open audit log {path}: {error.strerror}") from error


def _resume_head(fd: int, path: Path) -> Resumed:
    """The head of the chain already in the file, and its torn tail (see `resume`)."""
    try:
        return resume_head(fd, path)
    except OSError as error:
        raise AuditWriteError(f"cannot read audit log {path}: {error.strerror}") from error


def torn_tail_path(path: Path, torn: TornTail, now: datetime) -> Path:
    """Where the torn tail of `path` is kept: beside it, named for the time and its hash."""
    digest = hashlib.sha256(torn.data).hexdigest()
    return path.with_name(f"{path.name}.torn-{now:%Y%m%dT%H%M%SZ}-{digest[:12]}")


def _keep(kept: Path, data: bytes) -> None:
    """Write `data` to the new file `kept` (0600) durably; an identical file already there
    (a start that crashed after keeping it) is fine, a different one is an error."""
    try:
        fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        if kept.read_bytes() != data:
            raise
        return
    try:
        if os.write(fd, data) != len(data):
            raise OSError(errno.EIO, "short write")
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """An `AuditSink` writing to a file. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._broken = ""
        self._size = -1  # the file's length after our last write (-1: ask the file)
        self._fd = _open(self.path)
        try:
            resumed = _resume_head(self._fd, self.path)
            self._head = resumed.head
            self._synced_seq = self._head.seq
            if resumed.torn is not None:
                self._recover(resumed.torn, datetime.fromtimestamp(clock(), UTC))
        except BaseException:
            os.close(self._fd)
            raise
        log.info("audit log %s opened at seq %d hash %s", self.path, self._head.seq,
                 self._head.hash)

    def _recover(self, torn: TornTail, now: datetime) -> None:
        """Move the torn tail aside, cut the log back to its complete lines, and record it."""
        kept = torn_tail_path(self.path, torn, now)
        try:
            _keep(kept, torn.data)
            _fsync_folder(self.path.parent)
            os.ftruncate(self._fd, torn.offset)
            os.fsync(self._fd)
        except OSError as error:
            raise AuditWriteError(f"cannot move the torn last line of audit log {self.path} "
                                  f"to {kept}: {error.strerror}") from error
        digest = hashlib.sha256(torn.data).hexdigest()
        log.warning("audit log %s ended in an incomplete line (%d bytes, a crash mid-write): "
                    "moved to %s (sha256 %s); the chain goes on at seq %d", self.path,
                    len(torn.data), kept, digest, self._head.seq + 1)
        self.append(torn_tail_record(now=now, kept_file=kept.name, sha256=digest,
                                     size=len(torn.data)))

    @property
    def head(self) -> ChainHead:
        """The last line written: export it and anchor it elsewhere."""
        return self._head

    def append(self, record: AuditRecord) -> None:
        """Write `record` as the next line of the chain; durable when this returns.

        Group commit: lines are written in order under one lock, and the fsync happens
        outside it, one at a time; a caller whose line an earlier fsync already covered
        returns without another. So concurrent exchanges share fsyncs instead of queueing
        behind each other's, and none returns before its own line is on disk."""
        with self._lock:
            if self._fd < 0:
                raise AuditWriteError(f"audit log {self.path} is closed")
            if self._broken:
                raise AuditWriteError(f"audit log {self.path} is unusable: {self._broken}")
            line, head = chain_line(record.to_dict(), self._head)
            self._write(line)
            self._head = head
        if self._fsync:
            self._sync(head.seq)

    def _write(self, line: bytes) -> None:
        """One write of the whole line; on failure the file is left unchanged.

        The length to cut back to is the one our last write left (one process writes the
        file, under `_lock`), so a line costs no fstat; the file is asked only at the first
        write and after a failure."""
        size_before = self._size
        self._size = -1  # unknown until this write is known to be whole
        try:
            if size_before < 0:
                size_before = os.fstat(self._fd).st_size
            written = os.write(self._fd, line)
        except OSError as error:
            raise AuditWriteError(f"cannot write audit log {self.path}: {error.strerror}") \
                from error
        if written != len(line):
            short = OSError(errno.EIO, f"short write ({written} of {len(line)} bytes)")
            self._undo(size_before, short)
            raise AuditWriteError(f"cannot write audit log {self.path}: {short.strerror}")
        self._size = size_before + written

    def _sync(self, seq: int) -> None:
        """Make every line up to seq durable. A failed fsync leaves lines whose durability
        is unknown, so the log refuses all further appends until it is reopened."""
        with self._sync_lock:
            if self._synced_seq >= seq:
                return
            with self._lock:
                fd, covered = self._fd, self._head.seq
            try:
                os.fsync(fd)
            except OSError as error:
                with self._lock:
                    self._broken = f"fsync failed: {error.strerror}"
                log.error("audit log %s: %s; reopen it after checking the file", self.path,
                          self._broken)
                raise AuditWriteError(f"cannot write audit log {self.path}: "
                                      f"{error.strerror}") from error
            self._synced_seq = covered

    def _undo(self, size_before: int, cause: OSError) -> None:
        """Cut a partly recorded line off; if that fails too, refuse all further appends."""
        try:
            os.ftruncate(self._fd, size_before)
        except OSError as error:
            self._broken = f"{cause.strerror}, then could not truncate: {error.strerror}"
            log.error("audit log %s: %s; reopen it after checking the file", self.path,
                      self._broken)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                log.info("audit log %s closed at seq %d hash %s", self.path, self._head.seq,
                         self._head.hash)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
