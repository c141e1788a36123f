"""Ending sessions through the index: the session Secret is deleted by name first, then the
session is marked ended (compare-and-swap); a failed deletion leaves it active for the next
try; a session without a Secret is marked ended but its token outlives it; the reaper's
`end_due` ends what is due by time or by a gone caller pod, cluster by cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from exchanger.access.model import Requester, Session, SessionEnd
from exchanger.access.ports import ConflictError
from exchanger.access.revocation import (
    Revoker,
    SessionNotFoundError,
    due_reason,
    outlives_revocation,
)
from exchanger.access.sqlite_store import SqliteStores
from exchanger.kube.port import GrantedToken, ObjectRef, PodInfo
from exchanger.metrics import ExchangerMetrics
from kubegate.errors import Code, UnavailableError

NOW = 1_000_000
ALICE = Requester(issuer="corp", subject="alice", who="alice@example.com")
CALLER = Requester(issuer="github", subject="repo:octo/web:ref:refs/heads/main")


class Sessions:
    """An in-memory SessionStore with the contract's compare-and-swap; `conflicts` makes the
    next replaces lose, as if another replica wrote first (`meanwhile` is what it wrote)."""

    def __init__(self) -> None:
        self.stored: dict[str, Session] = {}
        self.conflicts = 0
        self.meanwhile: Session | None = None

    def create(self, session: Session) -> Session:
        stored = dataclasses.replace(session, version="1")
        self.stored[session.id] = stored
        return stored

    def get(self, session_id: str) -> Session | None:
        return self.stored.get(session_id)

    def list(self, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]:
        return [s for s in self.stored.values()
                if (s.active or not active_only)
                and (not access_request or s.access_request == access_request)
                and (not cluster or s.cluster == cluster)]

    def list_due(self, now: float) -> list[Session]:
        return [s for s in self.list(active_only=True) if s.not_after <= now or s.caller_pod]

    def replace(self, session: Session) -> Session:
        if self.conflicts:
            self.conflicts -= 1
            if self.meanwhile is not None:
                self.stored[session.id] = dataclasses.replace(self.meanwhile, version="9")
            raise ConflictError(f"session {session.id}")
        if self.stored[session.id].version != session.version:
            raise ConflictError(f"session {session.id}")
        stored = dataclasses.replace(session, version=str(int(session.version) + 1))
        self.stored[session.id] = stored
        return stored


class Api:
    """The KubeApi calls revocation makes: delete_secret (recorded) and get_pod."""

    def __init__(self, pods: Mapping[str, PodInfo] | None = None, *,
                 unavailable: bool = False) -> None:
        self.pods, self.unavailable = dict(pods or {}), unavailable
        self.deleted: list[str] = []

    def delete_secret(self, namespace: str, name: str) -> None:
        if self.unavailable:
            raise UnavailableError("KUBERNETES_UNAVAILABLE", "delete secret: timeout")
        self.deleted.append(f"{namespace}/{name}")

    def get_pod(self, namespace: str, name: str) -> PodInfo | None:
        if self.unavailable:
            raise UnavailableError("KUBERNETES_UNAVAILABLE", "get pod: timeout")
        return self.pods.get(f"{namespace}/{name}")

    def create_session_secret(self, namespace: str, name: str, labels: Mapping[str, str],
                              annotations: Mapping[str, str]) -> ObjectRef:
        raise AssertionError("revocation never creates Secrets")

    def request_token(self, namespace: str, service_account: str, *,
                      audiences: Sequence[str], seconds: int,
                      bound_to: ObjectRef) -> GrantedToken:
        raise AssertionError("revocation never requests tokens")

    def review_token(self, token: str, audiences: Sequence[str]) -> bool:
        raise AssertionError("revocation never reviews tokens")


def session(session_id: str, *, cluster: str = "prod", secret: str | None = None,
            not_after: int = NOW + 600, expires_at: int = NOW + 900, caller_pod: str = "",
            access_request: str = "", ci: Mapping[str, str] | None = None) -> Session:
    return Session(
        id=session_id, mapping="web-deploy", cluster=cluster, namespace="web", caller=CALLER,
        token_id=f"jti-{session_id}", issued_at=NOW - 60, expires_at=expires_at,
        not_after=not_after, caller_pod=caller_pod, access_request=access_request,
        ci=dict(ci or {}),
        secret=f"web/kubegate-session-{session_id}" if secret is None else secret)


def revoker(store: Sessions, *sessions: Session, apis: Mapping[str, Api] | None = None,
            metrics: ExchangerMetrics | None = None) -> Revoker:
    for each in sessions:
        store.create(each)
    return Revoker(store, apis if apis is not None else {"prod": Api()}, lambda: NOW,
                   observer=metrics)


# -- revoke one session ----------------------------------------------------------------------


def test_revoking_deletes_the_secret_by_name_and_marks_the_session_ended() -> None:
    store, api = Sessions(), Api()
    ended = revoker(store, session("s1"), apis={"prod": api}).revoke_session(
        "s1", by=ALICE, reason=SessionEnd.REVOKED)
    assert api.deleted == ["web/kubegate-session-s1"]
    assert (ended.ended_at, ended.end_reason, ended.ended_by) == (NOW, SessionEnd.REVOKED, ALICE)
    assert store.get("s1") == ended
    assert not outlives_revocation(ended)


def test_revoking_twice_keeps_the_first_end() -> None:
    store = Sessions()
    revoke = revoker(store, session("s1"))
    first = revoke.revoke_session("s1", by=ALICE, reason=SessionEnd.REVOKED)
    again = revoke.revoke_session("s1", by=None, reason=SessionEnd.EXPIRED)
    assert again == first


def test_a_failed_deletion_leaves_the_session_active_for_the_next_try() -> None:
    store = Sessions()
    revoke = revoker(store, session("s1"), apis={"prod": Api(unavailable=True)})
    with pytest.raises(UnavailableError):
        revoke.revoke_session("s1", by=ALICE, reason=SessionEnd.REVOKED)
    stored = store.get("s1")
    assert stored is not None and stored.active


def test_a_session_without_a_secret_is_ended_but_its_token_lives_until_expiry() -> None:
    store, api = Sessions(), Api()
    ended = revoker(store, session("pod-bound", secret=""), apis={"prod": api}).revoke_session(
        "pod-bound", by=ALICE, reason=SessionEnd.REVOKED)
    assert api.deleted == []
    assert ended.end_reason is SessionEnd.REVOKED
    assert outlives_revocation(ended)


def test_an_unknown_session_is_not_found() -> None:
    with pytest.raises(SessionNotFoundError) as missing:
        revoker(Sessions()).revoke_session("nope", by=ALICE, reason=SessionEnd.REVOKED)
    assert missing.value.code is Code.NOT_FOUND


def test_a_lost_compare_and_swap_is_read_again_and_reapplied() -> None:
    store = Sessions()
    revoke = revoker(store, session("s1"))
    store.conflicts = 2
    ended = revoke.revoke_session("s1", by=ALICE, reason=SessionEnd.REVOKED)
    assert ended.end_reason is SessionEnd.REVOKED and store.conflicts == 0


def test_a_session_another_replica_ended_meanwhile_keeps_that_end() -> None:
    store = Sessions()
    revoke = revoker(store, session("s1"))
    store.conflicts = 1
    store.meanwhile = dataclasses.replace(session("s1"), ended_at=NOW - 1,
                                          end_reason=SessionEnd.CALLER_GONE)
    ended = revoke.revoke_session("s1", by=ALICE, reason=SessionEnd.REVOKED)
    assert (ended.end_reason, ended.ended_by) == (SessionEnd.CALLER_GONE, None)


# -- many at once ----------------------------------------------------------------------------


def test_revoking_a_request_ends_its_active_sessions_only() -> None:
    store, api = Sessions(), Api()
    revoke = revoker(store, session("a1", access_request="ar-1"),
                     session("a2", access_request="ar-1"), session("b1", access_request="ar-2"),
                     apis={"prod": api})
    ended = revoke.revoke_request("ar-1", by=ALICE, reason=SessionEnd.REVOKED)
    assert sorted(s.id for s in ended) == ["a1", "a2"]
    assert api.deleted == ["web/kubegate-session-a1", "web/kubegate-session-a2"]
    other = store.get("b1")
    assert other is not None and other.active


RUN = {"repository_id": "42", "run_id": "7", "run_attempt": "1"}


@pytest.mark.parametrize(("case", "claims", "ended"), [
    ("a GitHub run's attempt", RUN, ["run-7"]),
    ("another attempt of the run", {**RUN, "run_attempt": "2"}, ["run-7-retry"]),
    ("the same run id in another repository", {**RUN, "repository_id": "43"}, []),
    ("a GitLab job", {"project_id": "9", "job_id": "77"}, ["job-77"]),
    ("a GitLab pipeline", {"project_id": "9", "pipeline_id": "5"}, ["job-77", "job-78"]),
])
def test_a_finished_ci_job_ends_the_sessions_whose_claims_carry_it(
        case: str, claims: dict[str, str], ended: list[str]) -> None:
    gitlab = {"project_id": "9", "pipeline_id": "5"}
    revoke = revoker(
        Sessions(), session("run-7", ci=RUN),
        session("run-7-retry", ci={**RUN, "run_attempt": "2"}),
        session("job-77", ci={**gitlab, "job_id": "77"}),
        session("job-78", ci={**gitlab, "job_id": "78"}), session("no-ci"))
    done = revoke.revoke_matching_ci(claims)
    assert sorted(s.id for s in done) == ended, case
    assert all(s.end_reason is SessionEnd.JOB_FINISHED for s in done)


def test_empty_ci_claims_would_match_everything_and_are_refused() -> None:
    with pytest.raises(ValueError, match="name the run or job"):
        revoker(Sessions(), session("s1")).revoke_matching_ci({})


# -- what is due -----------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "not_after", "expires_at", "reason"), [
    ("the request ended before the credential", NOW - 1, NOW + 300, SessionEnd.REQUEST_ENDED),
    ("the credential expired", NOW, NOW, SessionEnd.EXPIRED),
    ("not yet", NOW + 1, NOW + 300, None),
])
def test_due_reason(case: str, not_after: int, expires_at: int,
                    reason: SessionEnd | None) -> None:
    assert due_reason(session("s", not_after=not_after, expires_at=expires_at), NOW) is reason


def test_end_due_ends_sessions_past_their_end_and_those_whose_caller_pod_is_gone() -> None:
    store = Sessions()
    api = Api({"ci/alive": PodInfo(uid="u-1", service_account="pipeline"),
               "ci/replaced": PodInfo(uid="u-new", service_account="pipeline")})
    metrics = ExchangerMetrics()
    revoke = revoker(
        store, session("request-over", not_after=NOW - 5),
        session("expired", not_after=NOW - 5, expires_at=NOW - 5),
        session("pod-gone", caller_pod="ci/gone/u-0"),
        session("pod-replaced", caller_pod="ci/replaced/u-old"),
        session("pod-alive", caller_pod="ci/alive/u-1"), session("running"),
        session("pod-bound-gone", secret="", caller_pod="web/job/u-9"),
        apis={"prod": api}, metrics=metrics)
    ended = {s.id: s.end_reason for s in revoke.end_due(NOW)}
    assert ended == {"request-over": SessionEnd.REQUEST_ENDED, "expired": SessionEnd.EXPIRED,
                     "pod-gone": SessionEnd.CALLER_GONE, "pod-replaced": SessionEnd.CALLER_GONE,
                     "pod-bound-gone": SessionEnd.CALLER_GONE}
    assert sorted(api.deleted) == [f"web/kubegate-session-{name}" for name in (
        "expired", "pod-gone", "pod-replaced", "request-over")]
    assert revoke.end_due(NOW) == []  # ended once

    def reaped(reason: str) -> float | None:
        return metrics.registry.get_sample_value(
            "kubegate_sessions_reaped_total", {"cluster": "prod", "reason": reason})

    assert (reaped("request_ended"), reaped("expired"), reaped("caller_pod_gone")) == (1, 1, 3)


def test_an_unreachable_cluster_holds_back_only_its_own_sessions() -> None:
    store = Sessions()
    revoke = revoker(store, session("down", cluster="down", not_after=NOW - 1),
                     session("up", cluster="prod", not_after=NOW - 1),
                     apis={"down": Api(unavailable=True), "prod": Api()})
    failed: list[str] = []
    assert [s.id for s in revoke.end_due(NOW, failed)] == ["up"]
    assert failed == ["down"]
    still = store.get("down")
    assert still is not None and still.active


def test_a_self_issued_session_due_is_marked_ended_without_a_cluster_client() -> None:
    store = Sessions()
    revoke = revoker(store, session("jwt", cluster="self", secret="", not_after=NOW - 1,
                                    expires_at=NOW - 1))
    assert [s.end_reason for s in revoke.end_due(NOW)] == [SessionEnd.EXPIRED]


def test_the_sqlite_store_keeps_what_revocation_wrote(tmp_path: Path) -> None:
    stores = SqliteStores(tmp_path / "access.db")
    try:
        stores.sessions.create(session("s1"))
        revoke = Revoker(stores.sessions, {"prod": Api()}, lambda: NOW)
        revoke.revoke_session("s1", by=ALICE, reason=SessionEnd.REVOKED)
        stored = stores.sessions.get("s1")
        assert stored is not None
        assert (stored.ended_at, stored.end_reason, stored.ended_by) == (
            NOW, SessionEnd.REVOKED, ALICE)
        assert stores.sessions.list(active_only=True) == []
    finally:
        stores.close()
