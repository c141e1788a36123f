"""`trace_id` in audit lines: 32 hex digits when tracing is on, "" when it is off, and absent
from lines written before the field existed, which still verify, are still extended by a
restarted exchanger, and pass `kubegate audit verify`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchanger.audit.chain import ChainHead, chain_line
from exchanger.audit.log import AuditLog
from exchanger.audit.record import AuditRecord, Caller, GrantRecord, allow_record, deny_record
from kubegate.cli import main
from kubegate.errors import InvalidTokenError
from tests.support.auditlogs import verify_file

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def an_allow(trace_id: str = "") -> AuditRecord:
    return allow_record(
        now=NOW, caller=Caller(iss="https://issuer", sub="repo:o/r", jti="j"), issuer="github",
        mapping="web", grant=GrantRecord(cluster="prod", namespace="web", user="ci:web",
                                         lifetime_seconds=900),
        token_id="t-1", session_id="s-1", expires_at=NOW + timedelta(minutes=15),
        trace_id=trace_id)


def old_lines(path: Path, count: int) -> ChainHead:
    """Lines as an exchanger wrote them before `trace_id` existed: the key is absent."""
    head = ChainHead()
    with path.open("wb") as file:
        for _ in range(count):
            fields = an_allow().to_dict()
            del fields["trace_id"]
            line, head = chain_line(fields, head)
            file.write(line)
    return head


def test_a_record_carries_its_trace_id_or_an_empty_one() -> None:
    assert json.loads(an_allow(TRACE_ID).to_json())["trace_id"] == TRACE_ID
    assert json.loads(an_allow().to_json())["trace_id"] == ""
    denial = deny_record(now=NOW, error=InvalidTokenError("TOKEN_EXPIRED", "exp"),
                         trace_id=TRACE_ID)
    assert denial.to_dict()["trace_id"] == TRACE_ID


@pytest.mark.parametrize("bad", ["4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f35", "x" * 32,
                                 TRACE_ID + "00"])
def test_a_trace_id_is_32_lowercase_hex_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="trace id"):
        an_allow(bad)


def test_old_lines_without_trace_id_and_new_lines_with_it_verify_as_one_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "audit.log"
    old_lines(log, 3)
    assert verify_file(log)
    with AuditLog(log, fsync=False) as audit:  # a restarted, newer exchanger extends it
        audit.append(an_allow(TRACE_ID))
        audit.append(an_allow())
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["trace_id" in line for line in lines] == [False, False, False, True, True]
    assert [line.get("trace_id") for line in lines[3:]] == [TRACE_ID, ""]
    assert verify_file(log)
    assert main(["audit", "verify", str(log)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{log}: ok, 5 lines"


def test_a_trace_id_edited_into_an_old_line_breaks_the_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    old_lines(log, 2)
    first, second = log.read_text().splitlines()
    edited = json.loads(first) | {"trace_id": TRACE_ID}
    log.write_text(json.dumps(edited, sort_keys=True, separators=(",", ":")) + "\n"
                   + second + "\n")
    assert not verify_file(log)
