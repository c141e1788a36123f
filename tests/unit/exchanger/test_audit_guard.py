"""While the audit log cannot take lines, the exchange service is not ready and every denial it
misses is counted; the first line it takes again is one note with that count, then it is ready
again. Notes are records of their own kind: no caller, no status, facts in `note`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchanger.audit.chain import ChainHead
from exchanger.audit.guard import GuardedAudit
from exchanger.audit.log import AuditLog, AuditWriteError
from exchanger.audit.record import (
    AuditRecord,
    GrantRecord,
    allow_record,
    deny_record,
    torn_tail_record,
    unrecorded_denials_record,
)
from exchanger.readiness import Readiness
from kubegate.errors import InvalidTokenError, UnavailableError
from tests.support.auditlogs import verify_file

START = 1_741_000_000.0


class FlakyLog:
    """An AuditLog whose disk can fill up: `full` makes every append fail."""

    def __init__(self, path: Path) -> None:
        self.real = AuditLog(path, fsync=False)
        self.full = False

    @property
    def head(self) -> ChainHead:
        return self.real.head

    def append(self, record: AuditRecord) -> None:
        if self.full:
            raise AuditWriteError("cannot write audit log: No space left on device")
        self.real.append(record)


class Health:
    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}

    def set(self, service: str, status: str) -> None:
        self.statuses[service] = status


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def denial(clock: Clock) -> AuditRecord:
    return deny_record(now=datetime.fromtimestamp(clock(), UTC),
                       error=InvalidTokenError("TOKEN_EXPIRED", "expired"))


def a_guard(tmp_path: Path) -> tuple[GuardedAudit, FlakyLog, Clock, list[object]]:
    log, clock, events = FlakyLog(tmp_path / "audit.log"), Clock(), []
    guard = GuardedAudit(log, clock=clock, on_writable=events.append,
                         on_unrecorded=lambda: events.append("unrecorded"),
                         on_head=lambda seq: events.append(("seq", seq)))
    return guard, log, clock, events


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_an_outage_counts_the_denials_it_misses_and_the_probe_ends_it_with_one_note(
    tmp_path: Path,
) -> None:
    guard, log, clock, events = a_guard(tmp_path)
    guard.append(denial(clock))
    log.full = True
    for _ in range(3):
        clock.now += 10
        with pytest.raises(AuditWriteError):
            guard.append(denial(clock))
    assert events == [("seq", 0), ("seq", 1), False, "unrecorded", "unrecorded", "unrecorded"]
    assert guard.outage is not None and guard.outage.denials == 3
    assert guard.probe() is False and guard.outage is not None  # still full: nothing written
    log.full = False
    clock.now += 100
    assert guard.probe() is True and guard.outage is None
    assert events[-2:] == [True, ("seq", 2)]
    assert guard.probe() is True and len(lines(log.real.path)) == 2  # nothing more to write
    note = lines(log.real.path)[1]
    assert (note["decision"], note["reason"], note["status"]) == (
        "note", "UNRECORDED_DENIALS", "")
    assert note["note"] == {"count": 3, "since": "2025-03-03T11:06:50.000000Z",
                            "until": "2025-03-03T11:07:10.000000Z"}
    assert verify_file(log.real.path)


def test_the_next_record_after_an_outage_comes_after_its_note(tmp_path: Path) -> None:
    guard, log, clock, events = a_guard(tmp_path)
    log.full = True
    with pytest.raises(AuditWriteError):
        guard.append(denial(clock))
    log.full = False
    guard.append(denial(clock))
    assert [line["decision"] for line in lines(log.real.path)] == ["note", "deny"]
    assert events[-2:] == [True, ("seq", 2)]


def test_a_failed_allow_is_not_a_denial_but_starts_the_outage(tmp_path: Path) -> None:
    guard, log, clock, events = a_guard(tmp_path)
    log.full = True
    allow = allow_record(now=datetime.fromtimestamp(START, UTC), caller=denial(clock).caller,
                         issuer="gh", mapping="m", grant=GrantRecord(cluster="c", namespace="n"),
                         token_id="t", session_id="s",
                         expires_at=datetime.fromtimestamp(START + 600, UTC))
    with pytest.raises(AuditWriteError):
        guard.append(allow)
    assert events == [("seq", 0), False] and guard.outage is not None
    assert guard.outage.denials == 0


def test_readiness_is_serving_only_while_every_condition_holds() -> None:
    health = Health()
    readiness = Readiness(health, "svc", serving="SERVING", not_serving="NOT_SERVING",
                          unmet={"started"})
    readiness.set("audit", True)
    assert health.statuses == {"svc": "NOT_SERVING"} and readiness.unmet == {"started"}
    readiness.set("started", True)
    assert health.statuses["svc"] == "SERVING"
    readiness.set("audit", False)
    mappings = readiness.condition("mappings")
    mappings.set("anything", "NOT_SERVING")
    readiness.set("audit", True)
    assert health.statuses["svc"] == "NOT_SERVING" and readiness.unmet == {"mappings"}
    mappings.set("anything", "SERVING")
    assert health.statuses["svc"] == "SERVING" and readiness.unmet == frozenset()


NOTE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"reason": "WHATEVER"}, "a note has a reason"),
        ({"status": "OK"}, "a note has a reason"),
        ({"note": None}, "only a note"),
        ({"decision": "deny", "status": "UNAVAILABLE"}, "only a note"),
        ({"decision": "maybe"}, "decision must be"),
    ],
)
def test_a_note_is_checked_like_any_record(changes: dict[str, object], problem: str) -> None:
    fields = {"time": "t", "decision": "note", "reason": "UNRECORDED_DENIALS", "status": "",
              "note": {"count": 1}} | changes
    with pytest.raises(ValueError, match=problem):
        AuditRecord(**fields)  # type: ignore[arg-type]


def test_notes_carry_their_facts_and_decisions_keep_their_shape() -> None:
    note = torn_tail_record(now=NOTE_TIME, kept_file="audit.log.torn-x", sha256="ab", size=3)
    assert note.to_dict()["note"] == {"file": "audit.log.torn-x", "sha256": "ab", "bytes": 3}
    outage = unrecorded_denials_record(now=NOTE_TIME, count=2, since=NOTE_TIME, until=NOTE_TIME)
    assert outage.to_dict()["note"]["count"] == 2
    assert "note" not in deny_record(now=NOTE_TIME, error=UnavailableError("X", "y")).to_dict()
