"""The audit report's readers: kubegate's allow and access lines become sessions, Kubernetes
audit lines become events; gzip by magic bytes, rotated sets in the order given, and every
unreadable line a problem with its file and line while reading goes on."""

from __future__ import annotations

import datetime
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from exchanger.audit.record import Caller, GrantRecord, access_record, allow_record
from exchanger.auditreport.cluster_log import (
    EventFormatError,
    iter_events,
    parse_event,
    parse_events,
    parse_time,
)
from exchanger.auditreport.kubegate_log import read_sessions
from exchanger.auditreport.model import Problem

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
T0 = NOW.timestamp()


def allow_line(session_id: str, token_id: str, *, seconds: int = 0, **extra: Any) -> str:
    return allow_record(
        now=NOW + datetime.timedelta(seconds=seconds),
        caller=Caller(iss="https://token.actions.githubusercontent.com",
                      sub="repo:acme/web:ref:refs/heads/main"),
        issuer="github", mapping="ci-deploys-web",
        grant=GrantRecord(cluster="prod", namespace="web", service_account="deployer",
                          lifetime_seconds=900),
        token_id=token_id, session_id=session_id,
        expires_at=NOW + datetime.timedelta(seconds=900), **extra).to_json()


def access_line(event: str, request: str, *, seconds: int = 0, text: str = "",
                session_id: str = "", facts: dict[str, Any] | None = None) -> str:
    return access_record(
        now=NOW + datetime.timedelta(seconds=seconds), event=event, request_id=request,
        mapping="break-glass", requester={"issuer": "dex", "subject": "alice",
                                          "who": "alice@example.com"},
        actor=None, text=text, session_id=session_id, facts=facts).to_json()


def k8s_event(audit_id: str, *, stage: str = "ResponseComplete", verb: str = "get",
              credential: str = "JTI=t1", code: int = 200, **ref: str) -> dict[str, Any]:
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": audit_id, "stage": stage, "requestURI": "/api/v1/namespaces/web/pods",
        "verb": verb,
        "user": {"username": "system:serviceaccount:web:deployer",
                 "groups": ["system:serviceaccounts"],
                 "extra": {"authentication.kubernetes.io/credential-id": [credential]}},
        "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl/v1.37.2",
        "objectRef": {"resource": "pods", "namespace": "web", "apiVersion": "v1", **ref},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-03-01T12:01:00.123456Z",
        "stageTimestamp": "2026-03-01T12:01:00.200000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}}


def write_lines(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# -- kubegate logs -------------------------------------------------------------------------


def test_an_allow_line_becomes_a_session_with_its_ci_run_and_who(tmp_path: Path) -> None:
    log = write_lines(tmp_path / "audit.log", [allow_line(
        "s1", "t1", who="repo:acme/web:ref:refs/heads/main",
        ci={"run_id": "42", "run_attempt": "1", "sha": "abc123"})])
    problems: list[Problem] = []
    index = read_sessions([log], problems)
    session = index.by_credential("JTI=t1")
    assert problems == [] and session is not None
    assert (session.session_id, session.mapping, session.issuer, session.namespace,
            session.service_account) == ("s1", "ci-deploys-web", "github", "web", "deployer")
    assert session.subject == "repo:acme/web:ref:refs/heads/main"
    assert dict(session.ci) == {"run_id": "42", "run_attempt": "1", "sha": "abc123"}
    assert (session.issued_at, session.expires_at) == (T0, T0 + 900)
    assert session.where == f"{log}:1"
    assert index.by_token_id("t1") is session and index.by_session_id("s1") is session
    assert index.by_credential("t1") is None and index.by_credential("JTI=nope") is None
    assert index.service_accounts() == frozenset({("web", "deployer")})


def test_replicas_gzip_and_access_lines_complete_sessions_in_any_order(
        tmp_path: Path) -> None:
    replica_a = write_lines(tmp_path / "a.log.gz", [
        allow_line("s1", "t1", access_request="r1", approvers=("bob@example.com",)),
        access_line("revoked", "r1", seconds=300, facts={"sessions": ["s1"]}),
    ], gz=True)
    replica_b = write_lines(tmp_path / "b.log", [
        access_line("created", "r1", seconds=-60, text="INC-42 db down",
                    facts={"ticket": "INC-42"}),
        allow_line("s2", "t2", seconds=10),
        access_line("session-revoked", "r2", seconds=20, session_id="s2"),
    ])
    problems: list[Problem] = []
    index = read_sessions([replica_a, replica_b], problems)
    assert problems == []
    first, second = index.sessions()
    assert (first.session_id, first.reason, first.approvers) == (
        "s1", "INC-42 INC-42 db down", ("bob@example.com",))
    assert (first.ended_at, first.end_reason) == (T0 + 300, "revoked")
    assert (second.session_id, second.ended_at, second.end_reason) == (
        "s2", T0 + 20, "session-revoked")


def test_bad_kubegate_lines_are_problems_and_reading_goes_on(tmp_path: Path) -> None:
    no_token = json.loads(allow_line("s9", "t9"))
    del no_token["token_id"]
    log = write_lines(tmp_path / "audit.log", [
        allow_line("s1", "t1"), '{"decision": "allow", "time"', json.dumps(no_token),
        "[1, 2]", "", allow_line("s2", "t2")])
    problems: list[Problem] = []
    index = read_sessions([log, tmp_path / "missing.log"], problems)
    assert [s.session_id for s in index.sessions()] == ["s1", "s2"]
    assert [p.where for p in problems] == [f"{log}:2", f"{log}:3", f"{log}:4",
                                           str(tmp_path / "missing.log")]
    assert "token_id" in problems[1].message


# -- cluster logs --------------------------------------------------------------------------


def test_parse_event_reads_what_the_report_shows() -> None:
    obj = k8s_event("a1", verb="create", subresource="exec", name="web-0")
    obj["impersonatedUser"] = {"username": "bob"}
    event = parse_event(obj, "f:1")
    assert event is not None
    assert (event.audit_id, event.verb, event.resource, event.subresource, event.namespace,
            event.name, event.code, event.credential_id, event.user_agent,
            event.impersonated_user, event.authorization, event.where) == (
        "a1", "create", "pods", "exec", "web", "web-0", 200, "JTI=t1", "kubectl/v1.37.2",
        "bob", "allow", "f:1")
    assert event.time == pytest.approx(parse_time("2026-03-01T12:01:00.123456Z"))


def test_parse_event_reads_the_group_of_a_grouped_resource() -> None:
    obj = k8s_event("a1", verb="create")
    obj["objectRef"] = {"resource": "roles", "namespace": "web",
                        "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}
    event = parse_event(obj)
    assert event is not None and event.api_group == "rbac.authorization.k8s.io"


@pytest.mark.parametrize("stage", ["RequestReceived", "ResponseStarted"])
def test_earlier_stages_of_a_request_are_not_kept(stage: str) -> None:
    assert parse_event(k8s_event("a1", stage=stage)) is None


@pytest.mark.parametrize(("change", "message"), [
    ({"stage": None}, "no stage"),
    ({"verb": None}, "no verb"),
    ({"user": None}, "no verb or no user"),
    ({"requestReceivedTimestamp": "yesterday"}, "RFC 3339"),
    ({"kind": "Status"}, "not Event"),
])
def test_parse_event_refuses_what_is_no_event(change: dict[str, Any], message: str) -> None:
    obj = {k: v for k, v in {**k8s_event("a1"), **change}.items() if v is not None}
    with pytest.raises(EventFormatError, match=message):
        parse_event(obj)


def test_parse_time_takes_nanoseconds_and_offsets() -> None:
    assert parse_time("2026-03-01T12:00:00.123456789Z") == pytest.approx(T0 + 0.123456789)
    assert parse_time("2026-03-01T13:00:00+01:00") == T0


def test_an_event_list_line_gives_its_events() -> None:
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
            "items": [k8s_event("a1"), k8s_event("a2", stage="ResponseStarted"),
                      k8s_event("a3")]}
    assert [e.audit_id for e in parse_events(body, "webhook")] == ["a1", "a3"]


def test_rotated_and_gzipped_files_are_read_in_the_order_given(tmp_path: Path) -> None:
    older = write_lines(tmp_path / "audit-2026-03-01T11-00-00.000.log.gz",
                        [json.dumps(k8s_event("a1")), json.dumps(k8s_event("a2"))], gz=True)
    rotated = write_lines(tmp_path / "audit.log.1", [json.dumps(k8s_event("a3"))], gz=True)
    current = write_lines(tmp_path / "audit.log", [
        json.dumps(k8s_event("a4", stage="ResponseStarted")), json.dumps(k8s_event("a4")),
        json.dumps({"kind": "EventList", "items": [k8s_event("a5")]})])
    problems: list[Problem] = []
    events = list(iter_events([older, rotated, current], problems))
    assert problems == []
    assert [(e.audit_id, e.where) for e in events] == [
        ("a1", f"{older}:1"), ("a2", f"{older}:2"), ("a3", f"{rotated}:1"),
        ("a4", f"{current}:2"), ("a5", f"{current}:3")]


def test_malformed_and_truncated_lines_are_problems_and_reading_goes_on(
        tmp_path: Path) -> None:
    whole = json.dumps(k8s_event("a1"))
    log = tmp_path / "audit.log"
    log.write_text("\n".join([whole, "not json at all", json.dumps({"kind": "Event"}),
                              json.dumps(k8s_event("a2")), whole[:80]]))
    problems: list[Problem] = []
    events = list(iter_events([log, tmp_path / "gone.log"], problems))
    assert [e.audit_id for e in events] == ["a1", "a2"]
    assert [p.where for p in problems] == [f"{log}:2", f"{log}:3", f"{log}:5",
                                           str(tmp_path / "gone.log")]
    assert "not JSON" in problems[0].message and "not an audit event" in problems[1].message


def test_a_cut_gzip_file_is_a_problem_after_the_events_it_held(tmp_path: Path) -> None:
    lines = [json.dumps(k8s_event(f"a{n}")) for n in range(200)]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    log = tmp_path / "audit.log.gz"
    log.write_bytes(data[: len(data) * 2 // 3])
    after = write_lines(tmp_path / "audit.log", [json.dumps(k8s_event("last"))])
    problems: list[Problem] = []
    events = list(iter_events([log, after], problems))
    assert events[-1].audit_id == "last" and len(events) > 1
    assert len(problems) == 1 and problems[0].where.startswith(f"{log}:")
    assert "cut short" in problems[0].message


def test_an_allow_line_without_ci_or_who_lacks_both_keys() -> None:
    line = json.loads(allow_line("s1", "t1"))
    assert "ci" not in line and "who" not in line
    assert json.loads(allow_line("s1", "t1", ci={"run_id": "7"}))["ci"] == {"run_id": "7"}


# -- the command ---------------------------------------------------------------------------


def command_files(tmp_path: Path) -> tuple[Path, Path]:
    kubegate = write_lines(tmp_path / "kubegate.log", [allow_line(
        "s1", "t1", ci={"run_id": "42", "sha": "abc"}), allow_line("s2", "t2")])
    cluster = write_lines(tmp_path / "audit.log", [
        json.dumps(k8s_event("a1")), "{cut", json.dumps(k8s_event("a2", name="db") | {
            "objectRef": {"resource": "secrets", "namespace": "web", "name": "db"}}),
        json.dumps(k8s_event("a3", credential="JTI=t2", code=403))], gz=True)
    return kubegate, cluster


def test_the_command_writes_json_for_a_run(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from kubegate.cli import main

    kubegate, cluster = command_files(tmp_path)
    assert main(["audit", "report", "--kubegate-log", str(kubegate), "--cluster-log",
                 str(cluster), "--run", "42", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["session_id"] for s in document["sessions"]] == ["s1"]
    assert [(r["audit_id"], r["privileged"]) for r in document["sessions"][0]["actions"]] == [
        ("a1", ""), ("a2", "secret-read")]
    assert document["problems"] == [{"where": f"{cluster}:2",
                                     "message": "not JSON (cut short?): {cut"}]
    assert "least_privilege" in document and document["generated_at"]


def test_the_command_writes_a_summary_to_a_file(tmp_path: Path) -> None:
    from kubegate.cli import main

    kubegate, cluster = command_files(tmp_path)
    out = tmp_path / "report.txt"
    assert main(["audit", "report", "--kubegate-log", str(kubegate), "--cluster-log",
                 str(cluster), "--since", "2026-03-01T11:00:00Z", "--out", str(out)]) == 0
    text = out.read_text()
    assert "2 sessions" in text and "run 42" in text and "SECRET-READ" in text
    assert f"{cluster}:2: not JSON" in text


@pytest.mark.parametrize("flag", ["--since", "--until"])
def test_the_command_refuses_a_time_it_cannot_read(
        tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from kubegate.cli import main

    kubegate, cluster = command_files(tmp_path)
    assert main(["audit", "report", "--kubegate-log", str(kubegate), "--cluster-log",
                 str(cluster), flag, "yesterday"]) == 2
    assert f"{flag}: expected an RFC 3339 time" in capsys.readouterr().err


def test_relative_and_absolute_times() -> None:
    from kubegate.commands.audit_report import parse_moment

    assert parse_moment("2h", 10_000.0) == 10_000.0 - 7200
    assert parse_moment("2026-03-01T12:00:00Z", 0.0) == T0
    assert parse_moment(None, 5.0) == 0.0
    with pytest.raises(ValueError, match="time zone"):
        parse_moment("2026-03-01T12:00:00", 0.0)


def test_a_request_refused_before_authentication_is_kept_from_its_only_stage() -> None:
    base = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a", "verb": "list",
            "user": {}, "requestURI": "/api/v1/namespaces/web/pods", "sourceIPs": ["10.0.0.7"],
            "userAgent": "kubectl", "requestReceivedTimestamp": "2026-12-02T17:17:24.543193Z",
            "objectRef": {"resource": "pods", "namespace": "web", "apiVersion": "v1"}}
    refused = parse_event({**base, "stage": "ResponseStarted",
                           "responseStatus": {"code": 401}}, "audit.log:1")
    assert refused is not None
    assert (refused.username, refused.code, refused.refused) == ("", 401, True)
    # any other early stage is a duplicate of the request's last one: not kept
    assert parse_event({**base, "stage": "ResponseStarted", "user": {"username": "bob"},
                        "responseStatus": {"code": 200}}, "audit.log:2") is None
