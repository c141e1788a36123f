"""The report builder: events join their session by credential id only, filters narrow
time and sessions, observers see every event, memory stays bounded however many events
stream by, and the renderers show what was joined."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

from exchanger.auditreport.join import (
    MAX_ROWS_PER_SESSION,
    build_report,
    join_event,
)
from exchanger.auditreport.kubegate_log import SessionIndex
from exchanger.auditreport.model import (
    BrokeredSession,
    ClusterEvent,
    Filters,
    Finding,
    JoinedAction,
    Problem,
    Severity,
)
from exchanger.auditreport.render import as_json, summary

T0 = 1_800_000_000.0
PIPELINE = BrokeredSession(
    session_id="s-ci", token_id="t-ci", mapping="ci-deploys-web", issuer="github",
    subject="repo:acme/web:ref:refs/heads/main", namespace="web", service_account="deployer",
    issued_at=T0, expires_at=T0 + 900, ci={"run_id": "42", "sha": "abc123def4567890"})
PERSON = BrokeredSession(
    session_id="s-alice", token_id="s-alice", mapping="people-read", issuer="dex",
    subject="CiQ1", who="alice@example.com", user="oidc:alice@example.com",
    issued_at=T0 + 100, expires_at=T0 + 1000, access_request="r1",
    approvers=("bob@example.com",), reason="INC-42")
SESSIONS = SessionIndex([PIPELINE, PERSON])


def event(audit_id: str, *, credential: str = "JTI=t-ci", at: float = 60, verb: str = "get",
          resource: str = "pods", code: int = 200, **fields: Any) -> ClusterEvent:
    return ClusterEvent(time=T0 + at, audit_id=audit_id, stage="ResponseComplete",
                        verb=verb, username="system:serviceaccount:web:deployer",
                        credential_id=credential, resource=resource, namespace="web",
                        code=code, user_agent="kubectl", where=f"audit.log:{audit_id}",
                        **fields)


class Recorder:
    """An observer that keeps what it saw."""

    def __init__(self) -> None:
        self.seen: list[JoinedAction] = []

    def observe(self, action: JoinedAction) -> None:
        self.seen.append(action)

    def findings(self) -> list[Finding]:
        return [Finding(kind="seen", severity=Severity.LOW, user="-",
                        message=f"{len(self.seen)} events", count=len(self.seen))]


def test_an_event_joins_the_session_whose_token_id_is_its_credential_id() -> None:
    assert join_event(SESSIONS, event("a")).session is PIPELINE
    assert join_event(SESSIONS, event("a", credential="JTI=s-alice")).session is PERSON
    assert join_event(SESSIONS, event("a", credential="JTI=other")).session is None
    assert join_event(SESSIONS, event("a", credential="X509SHA256=t-ci")).session is None
    assert join_event(SESSIONS, event("a", credential="")).session is None


def test_the_report_keeps_rows_counts_privileged_and_refused_per_session() -> None:
    events = [event("a1"), event("a2", resource="secrets"), event("a3", code=403),
              event("a4", credential="JTI=s-alice", resource="configmaps"),
              event("a5", credential="X509SHA256=ff"), event("a1")]  # a1 again: a copy
    recorder = Recorder()
    problems = [Problem(where="audit.log:9", message="not JSON")]
    report = build_report(SESSIONS, iter(events), observers=[recorder], problems=problems)
    pipeline, person = report.sessions
    assert [a.event.audit_id for a in pipeline.actions] == ["a1", "a2", "a3"]
    assert (pipeline.action_count, pipeline.privileged_count, pipeline.refused_count) == (
        3, 1, 1)
    assert [a.event.audit_id for a in pipeline.privileged] == ["a2"]
    assert [a.event.audit_id for a in pipeline.refused] == ["a3"]
    assert [a.event.audit_id for a in person.actions] == ["a4"]
    assert (report.events_read, report.events_joined) == (6, 5)
    assert [a.event.audit_id for a in recorder.seen] == ["a1", "a2", "a3", "a4", "a5", "a1"]
    assert [f.count for f in report.findings] == [6]
    assert report.problems == tuple(problems)


def test_the_time_range_drops_events_and_sessions_outside_it() -> None:
    events = [event("early", at=10), event("inside", at=200), event("late", at=2000)]
    recorder = Recorder()
    report = build_report(SESSIONS, events, filters=Filters(since=T0 + 100, until=T0 + 950),
                          observers=[recorder])
    assert [a.event.audit_id for a in recorder.seen] == ["inside"]
    assert [s.session.session_id for s in report.sessions] == ["s-ci", "s-alice"]
    later = build_report(SESSIONS, events[:2], filters=Filters(since=T0 + 950))
    assert [s.session.session_id for s in later.sessions] == ["s-alice"]
    # a session's credential used in the range brings it in, even after the session ended
    used_late = build_report(SESSIONS, events, filters=Filters(since=T0 + 950))
    assert [s.session.session_id for s in used_late.sessions] == ["s-ci", "s-alice"]
    assert [a.event.audit_id for a in used_late.sessions[0].actions] == ["late"]


def test_session_filters_narrow_the_sessions_not_what_observers_see() -> None:
    events = [event("ci"), event("person", credential="JTI=s-alice")]
    for filters, expected in [
            (Filters(run="42"), ["s-ci"]), (Filters(session="s-alice"), ["s-alice"]),
            (Filters(identity="alice@example.com"), ["s-alice"]),
            (Filters(mapping="ci-deploys-web"), ["s-ci"]), (Filters(run="43"), [])]:
        recorder = Recorder()
        report = build_report(SESSIONS, events, filters=filters, observers=[recorder])
        assert [s.session.session_id for s in report.sessions] == expected, filters
        assert len(recorder.seen) == 2


def test_rows_are_bounded_per_session_and_notable_ones_kept_beyond() -> None:
    events = [event(f"a{n}") for n in range(30)] + [
        event("secret", resource="secrets"), event("refused", code=403)]
    report = build_report(SESSIONS, events, max_rows=10)
    (pipeline,) = [s for s in report.sessions if s.session is PIPELINE]
    assert len(pipeline.actions) == 12 and pipeline.not_kept == 20
    assert pipeline.action_count == 32
    assert [a.event.audit_id for a in pipeline.actions[-2:]] == ["secret", "refused"]


def synthetic(count: int) -> Iterator[ClusterEvent]:
    credentials = ("JTI=t-ci", "JTI=s-alice", "X509SHA256=ff", "JTI=unknown")
    for n in range(count):
        yield event(f"audit-{n:08d}", credential=credentials[n % 4], at=n % 900,
                    resource="secrets" if n % 97 == 0 else "pods", code=403 if n % 89 == 0
                    else 200, name=f"pod-{n}")


def test_200k_events_run_through_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        report = build_report(SESSIONS, synthetic(200_000), observers=[Counter()])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.events_read == 200_000 and report.events_joined == 100_000
    kept = sum(len(s.actions) for s in report.sessions)
    assert kept <= 2 * 2 * MAX_ROWS_PER_SESSION
    assert sum(s.action_count for s in report.sessions) == 100_000
    # 40k rows kept (about 1 KiB each with their event) bound it, not the 200k events
    assert peak < 32 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def observe(self, action: JoinedAction) -> None:
        self.count += 1

    def findings(self) -> list[Finding]:
        return []


def test_json_shows_who_the_run_and_the_rows() -> None:
    events = [event("a1"), event("a2", resource="secrets", subresource="", name="db")]
    document = as_json(build_report(SESSIONS, events, filters=Filters(run="42")))
    json.dumps(document)  # plain JSON values only
    assert document["version"] == 1 and document["filters"]["run"] == "42"
    assert document["counts"] == {"events": 2, "joined": 2, "sessions": 1, "findings": 0,
                                  "problems": 0, "unauthenticated_refusals": 0}
    (session,) = document["sessions"]
    assert session["ci"] == {"run_id": "42", "sha": "abc123def4567890"}
    assert session["credential_id"] == "JTI=t-ci"
    assert session["counts"] == {"actions": 2, "refused": 0, "privileged": 1, "not_kept": 0}
    assert [(r["verb"], r["resource"], r["name"], r["privileged"], r["code"])
            for r in session["actions"]] == [("get", "pods", "", "", 200),
                                             ("get", "secrets", "db", "secret-read", 200)]
    assert session["actions"][0]["time"] == "2027-01-15T08:01:00.000000Z"


def test_summary_shows_sessions_their_notable_actions_findings_and_problems() -> None:
    events = [event("a1"), event("a2", resource="secrets", name="db"),
              event("a3", credential="JTI=s-alice", code=403, verb="delete")]
    text = summary(build_report(SESSIONS, events, observers=[Recorder()],
                                problems=[Problem(where="audit.log:7", message="not JSON")]))
    assert "session s-ci (ci-deploys-web) repo:acme/web:ref:refs/heads/main, run 42, " \
           "commit abc123def456" in text
    assert "SECRET-READ" in text and "get secrets web/db -> 200" in text
    assert "request r1: INC-42; approved by bob@example.com" in text
    assert "refused" in text and "delete pods web -> 403" in text
    assert "seen" in text and "audit.log:7: not JSON" in text


# -- requests refused before authentication (401): no identity in the audit log --------------

REVOKED = BrokeredSession(
    session_id="s-rev", token_id="t-rev", mapping="ci-deploys-web", issuer="github",
    subject="repo:acme/web:ref:refs/heads/main", issued_at=T0, expires_at=T0 + 900,
    ended_at=T0 + 300, end_reason="revoked")


def unauthenticated(audit_id: str, at: float, *, ips: tuple[str, ...] = ("10.0.0.7",),
                    agent: str = "kubectl") -> ClusterEvent:
    return ClusterEvent(time=T0 + at, audit_id=audit_id, stage="ResponseStarted", verb="list",
                        username="", resource="pods", namespace="web", code=401,
                        user_agent=agent, source_ips=ips, where=f"audit.log:{audit_id}")


def used(audit_id: str, at: float, *, ips: tuple[str, ...] = ("10.0.0.7",),
         agent: str = "kubectl", credential: str = "JTI=t-rev") -> ClusterEvent:
    return ClusterEvent(time=T0 + at, audit_id=audit_id, stage="ResponseComplete", verb="list",
                        username="system:serviceaccount:web:deployer", credential_id=credential,
                        resource="pods", namespace="web", code=200, user_agent=agent,
                        source_ips=ips, where=f"audit.log:{audit_id}")


def test_a_401_after_the_end_from_the_sessions_client_is_its_refused_action() -> None:
    report = build_report(SessionIndex([REVOKED]), [
        used("u1", 60), unauthenticated("x1", 310)])
    (entry,) = report.sessions
    assert [(a.event.audit_id, a.event.refused, a.attributed) for a in entry.actions] == [
        ("u1", False, False), ("x1", True, True)]
    assert (entry.refused_count, report.events_joined, report.unauthenticated_refusals) == (
        1, 1, 1)
    assert "(after its end: same client)" in summary(report)
    assert as_json(report)["sessions"][0]["actions"][1]["attributed"] is True


def test_a_401_is_not_attributed_from_another_client_before_the_end_or_to_two_sessions() -> None:
    other = BrokeredSession(
        session_id="s-other", token_id="t-other", mapping="ci-deploys-web", issuer="github",
        subject="repo:acme/web:ref:refs/heads/dev", issued_at=T0, expires_at=T0 + 900,
        ended_at=T0 + 300, end_reason="revoked")
    cases = {
        "another address": [used("u1", 60), unauthenticated("x1", 310, ips=("10.0.0.8",))],
        "another user agent": [used("u1", 60), unauthenticated("x1", 310, agent="curl")],
        "before the end": [used("u1", 60), unauthenticated("x1", 200)],
        "long after the end": [used("u1", 60), unauthenticated("x1", 300 + 3600 + 60)],
        "two sessions from that client": [used("u1", 60), used("u2", 70, credential="JTI=t-other"),
                                          unauthenticated("x1", 310)],
        "a live session from that client": [used("u1", 60), used("u3", 70, credential="JTI=t-live"),
                                            unauthenticated("x1", 310)],
    }
    live = BrokeredSession(
        session_id="s-live", token_id="t-live", mapping="ci-deploys-web", issuer="github",
        subject="repo:acme/web:ref:refs/heads/feature", issued_at=T0, expires_at=T0 + 900)
    for name, events in cases.items():
        report = build_report(SessionIndex([REVOKED, other, live]), events)
        attributed = [a for entry in report.sessions for a in entry.actions if a.attributed]
        assert attributed == [], name
        assert report.unauthenticated_refusals == 1, name


def test_a_401_is_not_attributed_while_a_session_nobody_saw_used_is_live() -> None:
    unseen = BrokeredSession(
        session_id="s-unseen", token_id="t-unseen", mapping="ci-deploys-web", issuer="github",
        subject="repo:acme/web:ref:refs/heads/main", issued_at=T0 + 305, expires_at=T0 + 1200)
    report = build_report(SessionIndex([REVOKED, unseen]), [
        used("u1", 60), unauthenticated("x1", 310)])
    assert not [a for entry in report.sessions for a in entry.actions if a.attributed]
