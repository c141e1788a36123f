"""`kubegate audit verify`: exit 0 on intact logs, 1 on tampered ones, 2 on missing files,
with a one-line message per file and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchanger.audit.chain import canonical_json
from exchanger.audit.log import AuditLog
from exchanger.audit.record import deny_record, unrecorded_denials_record
from kubegate.cli import main
from kubegate.errors import PermissionDeniedError

ROOT = Path(__file__).resolve().parents[3]


def write_log(path: Path, count: int) -> Path:
    error = PermissionDeniedError("NO_MAPPING_MATCHED", "no mapping")
    with AuditLog(path, fsync=False) as audit:
        for _ in range(count):
            audit.append(deny_record(now=datetime(2025, 1, 1, tzinfo=UTC), error=error))
    return path


def tamper(path: Path, line_number: int) -> Path:
    lines = path.read_bytes().splitlines(keepends=True)
    value = json.loads(lines[line_number - 1])
    lines[line_number - 1] = canonical_json({**value, "reason": "OK"}) + b"\n"
    path.write_bytes(b"".join(lines))
    return path


def test_a_good_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_log(tmp_path / "good.log", 3)
    assert main(["audit", "verify", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok, 3 lines\n"


def test_a_tampered_log_names_the_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tamper(write_log(tmp_path / "bad.log", 4), 2)
    assert main(["audit", "verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{bad}: line 2: ") and "hash" in out


def test_every_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_log(tmp_path / "good.log", 1)
    bad = tamper(write_log(tmp_path / "bad.log", 2), 1)
    missing = tmp_path / "missing.log"
    assert main(["audit", "verify", str(good), str(bad), str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"{good}: ok, 1 line"
    assert captured.out.splitlines()[1].startswith(f"{bad}: line 1: ")
    assert f"{missing}: cannot read: No such file or directory" in captured.err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(tmp_path / "missing.log")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_verify_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "verify"])
    assert exited.value.code == 2
    assert "FILE" in capsys.readouterr().err


def test_audit_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit"])
    assert exited.value.code == 2
    assert "ACTION" in capsys.readouterr().err


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubegate", "audit", "verify", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )


@pytest.mark.parametrize(("kind", "exit_status"), [("good", 0), ("tampered", 1), ("missing", 2)])
def test_the_command_runs_as_a_module(tmp_path: Path, kind: str, exit_status: int) -> None:
    path = tmp_path / f"{kind}.log"
    if kind != "missing":
        write_log(path, 3)
    if kind == "tampered":
        tamper(path, 3)
    result = run_module(str(path))
    assert result.returncode == exit_status, result.stderr
    assert "Traceback" not in result.stderr
    assert str(path) in (result.stdout if kind != "missing" else result.stderr)


def recovered_log(folder: Path) -> tuple[Path, Path]:
    """A log whose torn last line was moved aside at a restart, and the file it went to."""
    path = write_log(folder / "audit.log", 2)
    with path.open("ab") as file:
        file.write(b'{"caller":{"iss":"')
    AuditLog(path, fsync=False).close()
    [kept] = folder.glob("audit.log.torn-*")
    return path, kept


def test_verify_explains_a_recovered_torn_tail_and_checks_the_kept_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path, kept = recovered_log(tmp_path)
    assert main(["audit", "verify", str(path)]) == 0
    first, note, where = capsys.readouterr().out.splitlines()
    assert first == f"{path}: ok, 3 lines"
    assert note.startswith("  line 3: note TORN_TAIL_RECOVERED: at start the log ended in an "
                           "incomplete line (a crash mid-write) of 18 bytes, moved to "
                           f"{kept.name} beside the log")
    assert where == f"    {kept}: present, sha256 matches"


def test_a_kept_torn_tail_that_was_changed_fails_and_a_moved_one_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path, kept = recovered_log(tmp_path)
    kept.write_bytes(b"something else")
    assert main(["audit", "verify", str(path)]) == 1
    assert "its sha256 is" in capsys.readouterr().out
    kept.unlink()
    assert main(["audit", "verify", str(path)]) == 0
    assert f"{kept}: not here (No such file or directory)" in capsys.readouterr().out


def test_verify_explains_denials_refused_unrecorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_log(tmp_path / "audit.log", 1)
    since = datetime(2025, 1, 1, 10, tzinfo=UTC)
    with AuditLog(path, fsync=False) as audit:
        audit.append(unrecorded_denials_record(now=since.replace(minute=5), count=7,
                                               since=since, until=since.replace(minute=4)))
    assert main(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "  line 2: note UNRECORDED_DENIALS: the log could not be written from "
        "2025-01-01T10:00:00.000000Z to 2025-01-01T10:04:00.000000Z; 7 denials were refused "
        "unrecorded then (every exchange was refused: nothing was issued unrecorded)")
