"""An audit log whose tail does not verify is never extended: opening it (and so starting an
exchanger on it) fails with one message that names the file, the line, what is wrong and how
to recover, for each way a complete line goes bad. An incomplete last line (a crash
mid-write) is no tampering: it is moved aside, never deleted, and the chain records it."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchanger.audit.log import AuditLog, AuditLogCorruptError, AuditWriteError
from exchanger.audit.record import deny_record
from exchanger.config import build_config
from exchanger.server import start_exchanger
from kubegate.errors import InvalidTokenError, KubegateError
from tests.support.auditlogs import (
    CASES,
    LINES,
    NOW,
    lines_of,
    torn,
    torn_after,
    verify_file,
    write_log,
    wrong_seq,
)


@pytest.mark.parametrize("case", CASES)
def test_a_corrupt_tail_refuses_to_open_naming_file_line_problem_and_recovery(
    tmp_path: Path, case: str,
) -> None:
    corrupt, line, problem = CASES[case]
    path = write_log(tmp_path / "audit.log")
    corrupt(path)
    before = path.read_bytes()
    with pytest.raises(AuditLogCorruptError) as refused:
        AuditLog(path, fsync=False)
    message = str(refused.value)
    assert message.startswith(f"audit log {path}: line {line} "), message
    assert problem in message
    assert f"kubegate audit verify {path}" in message
    assert refused.value.line == line and refused.value.reason == "AUDIT_LOG_CORRUPT"
    assert path.read_bytes() == before, "the file must be left as it was"
    assert "truncate" not in message and "move it aside" in message


RESTART = datetime(2025, 3, 4, 9, 0, 0, tzinfo=UTC)


def test_a_torn_last_line_is_moved_aside_recorded_in_the_chain_and_the_chain_goes_on(
    tmp_path: Path,
) -> None:
    path = write_log(tmp_path / "audit.log")
    complete = path.read_bytes()
    offset = torn(path)
    tail = path.read_bytes()[offset:]
    digest = hashlib.sha256(tail).hexdigest()
    with AuditLog(path, fsync=False, clock=RESTART.timestamp) as audit:
        assert audit.head.seq == LINES + 1
        audit.append(deny_record(now=NOW, error=InvalidTokenError("TOKEN_EXPIRED", "again")))
    kept = tmp_path / f"audit.log.torn-20250304T090000Z-{digest[:12]}"
    assert kept.read_bytes() == tail, "the torn bytes are kept, byte for byte"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(complete), "the complete lines are untouched"
    note = json.loads(lines_of(path)[LINES])
    assert (note["seq"], note["decision"], note["reason"], note["status"]) == (
        LINES + 1, "note", "TORN_TAIL_RECOVERED", "")
    assert note["note"] == {"file": kept.name, "sha256": digest, "bytes": len(tail)}
    assert note["time"] == "2025-03-04T09:00:00.000000Z"
    assert verify_file(path) and len(lines_of(path)) == LINES + 2


def test_a_file_that_is_only_a_torn_line_starts_its_chain_with_the_note(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b'{"caller":{"iss":"ht')
    with AuditLog(path, fsync=False) as audit:
        assert audit.head.seq == 1
    [line] = lines_of(path)
    assert json.loads(line)["reason"] == "TORN_TAIL_RECOVERED" and verify_file(path)
    assert [p.read_bytes() for p in tmp_path.glob("audit.log.torn-*")] == [b'{"caller":{"iss":"ht']


def test_a_recovered_log_reopens_without_another_recovery(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log")
    torn(path)
    AuditLog(path, fsync=False).close()
    recovered = path.read_bytes()
    with AuditLog(path, fsync=False) as audit:
        assert audit.head.seq == LINES + 1
    assert path.read_bytes() == recovered and len(list(tmp_path.glob("*.torn-*"))) == 1


@pytest.mark.parametrize("case", CASES)
def test_a_torn_line_after_a_corrupt_line_still_refuses_and_moves_nothing(
    tmp_path: Path, case: str,
) -> None:
    corrupt, line, problem = CASES[case]
    path = write_log(tmp_path / "audit.log")
    torn_after(corrupt)(path)
    before = path.read_bytes()
    with pytest.raises(AuditLogCorruptError) as refused:
        AuditLog(path, fsync=False)
    assert problem in str(refused.value) and refused.value.line == line
    assert path.read_bytes() == before and not list(tmp_path.glob("*.torn-*"))


def test_a_single_line_that_does_not_start_the_chain_is_refused(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log", count=2)
    path.write_bytes(lines_of(path)[1])  # line 2 alone: seq 2, prev of line 1
    with pytest.raises(AuditLogCorruptError, match=r"line 1 \(the last line\) does not verify: "
                       "sequence number 2, expected 1"):
        AuditLog(path, fsync=False)


def test_a_very_long_tail_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, fsync=False) as audit:
        for number in range(3):
            audit.append(deny_record(now=NOW, error=InvalidTokenError("T", "x" * 900),
                                     role=str(number) * 1000, peer="p" * 1000))
    wrong_seq(path)
    with pytest.raises(AuditLogCorruptError, match="line 3 .*sequence number 9, expected 3"):
        AuditLog(path, fsync=False)


@pytest.mark.parametrize("case", CASES)
def test_start_exchanger_refuses_a_corrupt_tail_with_the_same_message(
    tmp_path: Path, case: str,
) -> None:
    corrupt, line, problem = CASES[case]
    path = write_log(tmp_path / "audit.log")
    corrupt(path)
    config = build_config({"listen": "127.0.0.1:0", "plaintext": True,
                           "stateDir": str(tmp_path / "state"), "auditLog": str(path)},
                          base=tmp_path, environ={}, source="test")
    with pytest.raises(KubegateError) as refused:
        start_exchanger(config)
    assert isinstance(refused.value, AuditLogCorruptError)
    assert str(refused.value).startswith(f"audit log {path}: line {line} ")
    assert problem in refused.value.detail


def test_start_exchanger_recovers_a_torn_tail_and_serves(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log")
    torn(path)
    config = build_config({"listen": "127.0.0.1:0", "plaintext": True,
                           "stateDir": str(tmp_path / "state"), "auditLog": str(path)},
                          base=tmp_path, environ={}, source="test")
    running = start_exchanger(config)
    try:
        assert running.readiness is not None and running.readiness.unmet == frozenset()
        assert running.metrics.audit_seq._value.get() == LINES + 1
    finally:
        running.stop(grace=0)
    assert json.loads(lines_of(path)[-1])["reason"] == "TORN_TAIL_RECOVERED"
    assert verify_file(path)


def test_a_different_file_where_the_torn_tail_goes_stops_the_start_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = write_log(tmp_path / "audit.log")
    offset = torn(path)
    digest = hashlib.sha256(path.read_bytes()[offset:]).hexdigest()
    kept = tmp_path / f"audit.log.torn-20250304T090000Z-{digest[:12]}"
    kept.write_bytes(b"someone else's")
    before = path.read_bytes()
    with pytest.raises(AuditWriteError, match="cannot move the torn last line"):
        AuditLog(path, fsync=False, clock=RESTART.timestamp)
    assert path.read_bytes() == before and kept.read_bytes() == b"someone else's"
