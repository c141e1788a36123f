"""Audit records and their hash chain: records never carry a token, and any edit, reordering,
deletion (except at the end) or insertion is found at the line where the chain breaks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from exchanger.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    canonical_json,
    chain_line,
    verify_chain,
)
from exchanger.audit.record import (
    REDACTED,
    AuditRecord,
    Caller,
    GrantRecord,
    allow_record,
    deny_record,
    format_time,
    looks_like_token,
)
from kubegate.errors import PermissionDeniedError

NOW = datetime(2025, 3, 4, 5, 6, 7, 8, tzinfo=UTC)
# Shaped like a real RS256 JWT (header {"alg":"RS256","typ":"JWT"}); not a valid token.
JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyZXBvOm9yZy9hcHAifQ."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmU")


def an_allow(number: int) -> AuditRecord:
    return allow_record(
        now=NOW + timedelta(seconds=number),
        caller=Caller(iss="https://token.actions.githubusercontent.com",
                      sub="repo:org/app:ref:refs/heads/main", jti=f"caller-{number}"),
        issuer="github", role="deploy", mapping="deploy",
        grant=GrantRecord(cluster="staging", namespace="apps", service_account="deployer",
                          audiences=("https://kubernetes.default.svc",), lifetime_seconds=900),
        token_id=f"issued-{number}", session_id=f"session-{number}",
        expires_at=NOW + timedelta(seconds=number + 900), peer="ipv4:10.0.0.7:51234",
    )


def chain_of(count: int) -> list[bytes]:
    lines, head = [], ChainHead()
    for number in range(1, count + 1):
        line, head = chain_line(an_allow(number).to_dict(), head)
        lines.append(line)
    return lines


def edited(line: bytes, **changes: object) -> bytes:
    """`line` with fields changed, re-serialized canonically but with its old hash."""
    return canonical_json({**json.loads(line), **changes}) + b"\n"


def forged(fields: dict[str, object], seq: int, prev: str) -> bytes:
    """A line a forger computed correctly for position `seq` after a line hashed `prev`."""
    line, _ = chain_line(fields, ChainHead(seq=seq - 1, hash=prev))
    return line


# --- the chain ---------------------------------------------------------------------------


def test_a_chain_of_records_verifies() -> None:
    lines = chain_of(20)
    report = verify_chain(lines)
    assert report.ok and report.lines_checked == 20
    assert report.first_bad_line is None and report.problem == ""
    assert report.head == ChainHead(seq=20, hash=json.loads(lines[-1])["hash"])


def test_lines_carry_seq_prev_and_hash_and_end_in_a_newline() -> None:
    first, second = chain_of(2)
    one, two = json.loads(first), json.loads(second)
    assert (one["seq"], one["prev"]) == (1, GENESIS_HASH)
    assert (two["seq"], two["prev"]) == (2, one["hash"])
    assert first.endswith(b"\n") and first.count(b"\n") == 1


def test_lines_verify_with_or_without_their_newlines() -> None:
    assert verify_chain(line.rstrip(b"\n") for line in chain_of(3)).ok


def test_an_empty_log_verifies() -> None:
    report = verify_chain([])
    assert report.ok and report.lines_checked == 0 and report.head == ChainHead()


def test_editing_a_field_is_detected_on_that_line() -> None:
    lines = chain_of(5)
    lines[2] = edited(lines[2], decision="deny")
    report = verify_chain(lines)
    assert not report.ok
    assert (report.first_bad_line, report.lines_checked) == (3, 2)
    assert "hash" in report.problem


def test_editing_a_field_and_its_hash_is_detected_on_the_next_line() -> None:
    lines = chain_of(5)
    fields = {k: v for k, v in json.loads(lines[2]).items() if k not in {"seq", "prev", "hash"}}
    lines[2] = forged({**fields, "mapping": "admin"}, seq=3, prev=json.loads(lines[1])["hash"])
    report = verify_chain(lines)
    assert report.first_bad_line == 4
    assert "prev" in report.problem


def test_reformatting_a_line_is_detected() -> None:
    lines = chain_of(3)
    lines[1] = json.dumps(json.loads(lines[1]), indent=None).encode() + b"\n"
    report = verify_chain(lines)
    assert report.first_bad_line == 2
    assert "canonical" in report.problem


def test_reordering_two_lines_is_detected() -> None:
    lines = chain_of(5)
    lines[1], lines[2] = lines[2], lines[1]
    report = verify_chain(lines)
    assert report.first_bad_line == 2
    assert "sequence number 3, expected 2" in report.problem


def test_deleting_a_middle_line_is_detected() -> None:
    lines = chain_of(5)
    del lines[2]
    report = verify_chain(lines)
    assert report.first_bad_line == 3
    assert "sequence number 4, expected 3" in report.problem


def test_deleting_the_first_line_is_detected() -> None:
    report = verify_chain(chain_of(5)[1:])
    assert report.first_bad_line == 1
    assert "sequence number 2, expected 1" in report.problem


def test_deleting_trailing_lines_leaves_a_valid_shorter_chain() -> None:
    # Not detectable from the file alone: the writer's head is anchored elsewhere for this.
    report = verify_chain(chain_of(5)[:3])
    assert report.ok and report.head.seq == 3


def test_inserting_a_naive_forged_line_is_detected_on_that_line() -> None:
    lines = chain_of(4)
    lines.insert(2, edited(lines[1], token_id="forged"))
    report = verify_chain(lines)
    assert report.first_bad_line == 3


def test_inserting_a_well_computed_forged_line_is_detected_on_the_next_line() -> None:
    lines = chain_of(4)
    forgery = forged(an_allow(99).to_dict(), seq=3, prev=json.loads(lines[1])["hash"])
    lines.insert(2, forgery)
    report = verify_chain(lines)
    assert report.first_bad_line == 4
    assert "sequence number 3, expected 4" in report.problem


@pytest.mark.parametrize(
    ("garbage", "problem"),
    [
        (b"\n", "empty line"),
        (b"not json\n", "not valid JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"a":1}\n', "seq"),
        (b"\xff\xfe\n", "not valid JSON"),
    ],
)
def test_lines_that_are_not_chain_lines_are_reported(garbage: bytes, problem: str) -> None:
    lines = chain_of(2)
    report = verify_chain([lines[0], garbage, lines[1]])
    assert report.first_bad_line == 2
    assert problem in report.problem


def test_chain_fields_cannot_be_smuggled_in_as_record_fields() -> None:
    with pytest.raises(ValueError, match="chain"):
        chain_line({"seq": 7}, ChainHead())


# --- records -----------------------------------------------------------------------------


def test_an_allow_record_serializes_as_sorted_compact_json() -> None:
    text = an_allow(1).to_json()
    value = json.loads(text)
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert value["decision"] == "allow" and value["reason"] == "OK" and value["status"] == "OK"
    assert value["time"] == "2025-03-04T05:06:08.000008Z"
    assert value["caller"]["jti"] == "caller-1"
    assert value["grant"]["lifetime_seconds"] == 900
    assert value["token_id"] == "issued-1"


def test_a_deny_record_takes_reason_status_and_detail_from_the_error() -> None:
    error = PermissionDeniedError("NO_MAPPING_MATCHED", "no mapping for repo:org/app")
    record = deny_record(now=NOW, error=error, issuer="github", peer="ipv4:10.0.0.7:1")
    assert (record.decision, record.reason, record.status) == (
        "deny", "NO_MAPPING_MATCHED", "PERMISSION_DENIED")
    assert record.detail == "no mapping for repo:org/app"
    assert record.caller == Caller() and record.grant is None and record.token_id == ""
    assert json.loads(record.to_json())["grant"] is None


def test_times_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2025, 1, 1, 2, 0, tzinfo=plus_two)) == "2025-01-01T00:00:00.000000Z"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        format_time(datetime(2025, 1, 1))


@pytest.mark.parametrize(
    "changes",
    [
        {"decision": "maybe"},
        {"decision": "allow", "reason": "NO_MAPPING_MATCHED"},
        {"decision": "deny", "reason": "OK", "status": "OK"},
        {"decision": "deny", "reason": "", "status": "PERMISSION_DENIED"},
        {"time": ""},
    ],
)
def test_inconsistent_records_are_refused(changes: dict[str, str]) -> None:
    fields = {"time": "2025-01-01T00:00:00.000000Z", "decision": "allow", "reason": "OK",
              "status": "OK", **changes}
    with pytest.raises(ValueError):
        AuditRecord(**fields)  # type: ignore[arg-type]


def test_a_jwt_shaped_string_is_redacted_wherever_it_appears() -> None:
    error = PermissionDeniedError("NO_MAPPING_MATCHED", f"token {JWT} did not match")
    record = deny_record(
        now=NOW, error=error, caller=Caller(iss="https://issuer", sub=JWT, jti="j"),
        role=JWT,
        grant=GrantRecord(cluster="c", namespace="n", audiences=(JWT, "aud"), groups=(JWT,)),
    )
    text = record.to_json()
    assert "eyJ" not in text
    assert record.detail == f"token {REDACTED} did not match"
    assert record.caller.sub == REDACTED and record.role == REDACTED
    assert record.grant is not None and record.grant.audiences == (REDACTED, "aud")
    assert not looks_like_token(text)


def test_ordinary_values_are_not_mistaken_for_tokens() -> None:
    for value in ["repo:org/app:ref:refs/heads/main", "https://token.actions.githubusercontent.com",
                  "system:serviceaccount:apps:deployer", "eyes.on.the.road", "a.b.c"]:
        assert not looks_like_token(value)
