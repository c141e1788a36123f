"""The audit log file: private, append-only, chained across threads and restarts, and loud
when it cannot record (so that nothing is issued unrecorded)."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchanger.audit.chain import verify_chain
from exchanger.audit.log import AuditLog, AuditLogCorruptError, AuditSink, AuditWriteError
from exchanger.audit.record import AuditRecord, Caller, deny_record
from kubegate.errors import Code, InvalidTokenError, UnavailableError

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def a_denial(number: int) -> AuditRecord:
    return deny_record(
        now=NOW + timedelta(milliseconds=number),
        error=InvalidTokenError("TOKEN_EXPIRED", f"expired (attempt {number})"),
        caller=Caller(iss="https://gitlab.example", sub=f"project_path:g/p:ref:{number}"),
        issuer="gitlab", peer="ipv4:10.0.0.9:40000",
    )


def verify_file(path: Path) -> tuple[bool, int]:
    with path.open("rb") as lines:
        report = verify_chain(lines)
    return report.ok, report.lines_checked


def test_the_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, fsync=False) as audit:
        audit.append(a_denial(1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_records_are_appended_as_a_verifiable_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as audit:  # with fsync, as in production
        for number in range(3):
            audit.append(a_denial(number))
        assert audit.head.seq == 3
    assert verify_file(path) == (True, 3)
    assert b"TOKEN_EXPIRED" in path.read_bytes()


def test_appends_from_many_threads_keep_a_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, fsync=False)
    threads, per_thread = 8, 50

    def write(offset: int) -> None:
        for number in range(per_thread):
            audit.append(a_denial(offset * per_thread + number))

    workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    audit.close()
    assert verify_file(path) == (True, threads * per_thread)


def test_reopening_resumes_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, fsync=False) as audit:
        audit.append(a_denial(1))
        audit.append(a_denial(2))
        head = audit.head
    with AuditLog(path, fsync=False) as audit:
        assert audit.head == head
        audit.append(a_denial(3))
    assert verify_file(path) == (True, 3)


def test_reopening_a_file_with_a_long_last_line_resumes(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    long_detail = InvalidTokenError("TOKEN_EXPIRED", "x" * 1000)
    with AuditLog(path, fsync=False) as audit:
        for number in range(20):
            audit.append(deny_record(now=NOW, error=long_detail, issuer=str(number) * 1000,
                                     role="r" * 1000, mapping="m" * 1000, peer="p" * 1000))
    assert len(path.read_bytes().splitlines()[-1]) > 4096  # longer than one tail read
    with AuditLog(path, fsync=False) as audit:
        assert audit.head.seq == 20
        audit.append(a_denial(21))
    assert verify_file(path) == (True, 21)


def test_a_corrupt_tail_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, fsync=False) as audit:
        audit.append(a_denial(1))
    with path.open("ab") as file:
        file.write(b"garbage\n")
    with pytest.raises(AuditLogCorruptError, match="does not verify") as raised:
        AuditLog(path, fsync=False)
    assert str(path) in raised.value.detail


def test_a_full_disk_raises_audit_write_error() -> None:
    audit = AuditLog("/dev/full", fsync=False)
    with pytest.raises(AuditWriteError) as raised:
        audit.append(a_denial(1))
    audit.close()
    error = raised.value
    assert isinstance(error, UnavailableError)
    assert (error.code, error.reason) == (Code.UNAVAILABLE, "AUDIT_UNAVAILABLE")
    assert "No space left" in error.detail
    assert isinstance(error.__cause__, OSError)


def test_a_failed_append_does_not_advance_the_chain() -> None:
    audit = AuditLog("/dev/full", fsync=False)
    for _ in range(2):
        with pytest.raises(AuditWriteError):
            audit.append(a_denial(1))
    assert audit.head.seq == 0
    audit.close()


def test_a_short_write_is_cut_back_and_the_chain_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The length to cut back to is the one the log's own last write left (no fstat per
    line): after lines written, a short one leaves the file exactly as it was, and the next
    line continues the chain."""
    path = tmp_path / "audit.log"
    audit = AuditLog(path, fsync=False)
    for number in range(3):
        audit.append(a_denial(number))
    before = path.read_bytes()
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:
        return real_write(fd, data[:len(data) // 2])

    monkeypatch.setattr("exchanger.audit.log.os.write", half_write)
    with pytest.raises(AuditWriteError, match="short write"):
        audit.append(a_denial(3))
    assert path.read_bytes() == before
    assert audit.head.seq == 3
    monkeypatch.setattr("exchanger.audit.log.os.write", real_write)
    for number in range(3, 5):
        audit.append(a_denial(number))
    audit.close()
    assert verify_file(path) == (True, 5)


def test_an_unopenable_path_raises_audit_write_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(AuditWriteError, match="cannot open"):
        AuditLog(not_a_folder / "audit.log")


def test_appending_after_close_raises_audit_write_error(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", fsync=False)
    audit.close()
    with pytest.raises(AuditWriteError, match="closed"):
        audit.append(a_denial(1))


def test_audit_log_is_an_audit_sink(tmp_path: Path) -> None:
    sink: AuditSink = AuditLog(tmp_path / "audit.log", fsync=False)
    sink.append(a_denial(1))
    assert isinstance(sink, AuditLog)
    sink.close()
