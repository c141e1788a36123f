"""An audit log whose tail does not verify is never extended: opening it (and so starting an
exchanger on it) fails with one message that names the file, the line, what is wrong and how
to recover, for each way a tail goes bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchanger.audit.log import AuditLog, AuditLogCorruptError
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
    offset = corrupt(path)
    before = path.read_bytes()
    with pytest.raises(AuditLogCorruptError) as refused:
        AuditLog(path, fsync=False)
    message = str(refused.value)
    assert message.startswith(f"audit log {path}: line {line} "), message
    assert problem in message
    assert f"kubegate audit verify {path}" in message
    assert refused.value.line == line and refused.value.reason == "AUDIT_LOG_CORRUPT"
    assert path.read_bytes() == before, "the file must be left as it was"
    if corrupt is torn:
        assert f"truncate -s {offset} {path}" in message
        assert f"keeps lines 1 to {LINES}" in message
    else:
        assert "truncate" not in message and "move it aside" in message


def test_cutting_a_torn_line_off_as_told_resumes_the_chain(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log")
    offset = torn(path)
    with pytest.raises(AuditLogCorruptError):
        AuditLog(path, fsync=False)
    with path.open("r+b") as file:
        file.truncate(offset)
    with AuditLog(path, fsync=False) as audit:
        assert audit.head.seq == LINES
        audit.append(deny_record(now=NOW, error=InvalidTokenError("TOKEN_EXPIRED", "again")))
    assert verify_file(path)


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
