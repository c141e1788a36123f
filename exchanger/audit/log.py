"""The audit log file: an append-only, hash-chained JSON-lines file (see `chain`).

Rules of this module:
- a record is on disk before `append` returns: one `os.write` of the whole line on an
  `O_APPEND` descriptor, then `os.fsync` (which tests and benchmarks may turn off);
- any failure to record raises `AuditWriteError` (UNAVAILABLE, reason AUDIT_UNAVAILABLE): the
  caller must then refuse the exchange, so nothing is ever issued unrecorded;
- a failed append leaves the file as it was: a short write or a failed fsync is truncated
  back; if even that fails, the log refuses every later append until it is reopened;
- the file is created with mode 0600; one process writes a given file (each replica its own);
- opening an existing file resumes its chain from the last line, which must be complete,
  intact and follow the line before it: a corrupt tail refuses to start
  (`AuditLogCorruptError`, see `resume`) rather than extend a broken chain. The head (last
  `seq` and `hash`) is logged on open and close and readable as `head`, so it can be exported
  and anchored elsewhere (`checkpoint`): deleting trailing lines is otherwise invisible.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Protocol

from exchanger.audit.chain import ChainHead, chain_line
from exchanger.audit.record import AuditRecord
from exchanger.audit.resume import AuditLogCorruptError as AuditLogCorruptError  # re-export
from exchanger.audit.resume import resume_head
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


def _resume_head(fd: int, path: Path) -> ChainHead:
    """The head of the chain already in the file (see `resume`)."""
    try:
        return resume_head(fd, path)
    except OSError as error:
        raise AuditWriteError(f"cannot read audit log {path}: {error.strerror}") from error


class AuditLog:
    """An `AuditSink` writing to a file. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._broken = ""
        self._fd = _open(self.path)
        try:
            self._head = _resume_head(self._fd, self.path)
        except BaseException:
            os.close(self._fd)
            raise
        self._synced_seq = self._head.seq
        log.info("audit log %s opened at seq %d hash %s", self.path, self._head.seq,
                 self._head.hash)

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
        """One write of the whole line; on failure the file is left unchanged."""
        try:
            size_before = os.fstat(self._fd).st_size
            written = os.write(self._fd, line)
        except OSError as error:
            raise AuditWriteError(f"cannot write audit log {self.path}: {error.strerror}") \
                from error
        if written != len(line):
            short = OSError(errno.EIO, f"short write ({written} of {len(line)} bytes)")
            self._undo(size_before, short)
            raise AuditWriteError(f"cannot write audit log {self.path}: {short.strerror}")

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
