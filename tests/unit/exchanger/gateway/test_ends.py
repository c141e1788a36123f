"""SessionWatch over the real SQLite session index: each tracked session is reported once,
with why it ended, whether revoked in the store or past its `not_after`; a tick costs one
list of the store (none while nothing is tracked); a broken listener or an unreadable store
hides nothing from the rest."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from exchanger.access.model import Requester, Session, SessionEnd
from exchanger.access.ports import SessionStore
from exchanger.access.revocation import Revoker
from exchanger.access.sqlite_store import SqliteStores
from exchanger.gateway.ends import FORGET_SECONDS, SessionWatch
from kubegate.errors import UnavailableError

NOW = 1_900_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class Counting:
    """A SessionStore that counts its reads and can be made unreachable."""

    def __init__(self, store: SessionStore) -> None:
        self.store, self.lists, self.gets, self.down = store, 0, 0, False

    def create(self, session: Session) -> Session:
        return self.store.create(session)

    def get(self, session_id: str) -> Session | None:
        self.gets += 1
        self._check()
        return self.store.get(session_id)

    def list(self, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]:
        self.lists += 1
        self._check()
        return self.store.list(active_only=active_only, access_request=access_request,
                               cluster=cluster)

    def replace(self, session: Session) -> Session:
        return self.store.replace(session)

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("STORE_UNAVAILABLE", "the index is down")


def session(session_id: str, *, not_after: int = NOW + 600, expires_at: int = NOW + 600,
            cluster: str = "prod") -> Session:
    return Session(id=session_id, mapping="vendor", cluster=cluster, namespace="web",
                   caller=Requester(issuer="corp", subject="vera"), token_id="sha256:x",
                   issued_at=NOW, expires_at=expires_at, not_after=not_after)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Counting, Clock, SessionWatch, list[tuple[str, str]]]:
    store, clock = Counting(SqliteStores(tmp_path / "access.db").sessions), Clock()
    watch = SessionWatch(store, cluster="prod", clock=clock)
    heard: list[tuple[str, str]] = []
    watch.subscribe(lambda sid, why: heard.append((sid, why)))
    return store, clock, watch, heard


Parts = tuple[Counting, Clock, SessionWatch, list[tuple[str, str]]]


def test_a_revoked_session_is_reported_once_with_its_reason(parts: Parts) -> None:
    store, clock, watch, heard = parts
    watch.track(store.create(session("s-1")))
    watch.track(store.create(session("s-2")))
    assert watch.poll() == [] and watch.is_ended("s-1") is None
    Revoker(store, {}, clock).revoke_session("s-1", by=None, reason=SessionEnd.REVOKED)
    assert watch.poll() == [("s-1", "revoked")]
    assert watch.poll() == []
    assert heard == [("s-1", "revoked")]
    assert watch.is_ended("s-1") == "revoked" and watch.is_ended("s-2") is None
    watch.track(store.get("s-1"))  # type: ignore[arg-type]  # seen again: not re-reported
    assert watch.poll() == [] and watch.tracked == 1


def test_time_ends_a_session_by_request_end_or_expiry_without_the_store(
        parts: Parts) -> None:
    store, clock, watch, heard = parts
    watch.track(store.create(session("req", not_after=NOW + 60)))
    watch.track(store.create(session("exp", not_after=NOW + 120, expires_at=NOW + 120)))
    clock.now = NOW + 60
    store.down = True
    assert watch.poll() == [("req", SessionEnd.REQUEST_ENDED.value)]
    clock.now = NOW + 120
    assert watch.poll() == [("exp", SessionEnd.EXPIRED.value)]
    assert heard == [("req", "request-ended"), ("exp", "expired")]


def test_a_tick_lists_the_store_once_and_not_at_all_when_idle(parts: Parts) -> None:
    store, _, watch, _ = parts
    watch.poll()
    assert (store.lists, store.gets) == (0, 0)
    for index in range(20):
        watch.track(store.create(session(f"s-{index}")))
    watch.poll()
    assert (store.lists, store.gets) == (1, 0)


def test_a_session_whose_record_is_gone_reads_as_revoked(
        parts: Parts) -> None:
    store, _, watch, _ = parts
    watch.track(session("never-stored"))
    assert watch.poll() == [("never-stored", "revoked")]


def test_an_unreadable_store_reports_nothing_and_is_tried_again(
        parts: Parts, caplog: pytest.LogCaptureFixture) -> None:
    store, clock, watch, _ = parts
    watch.track(store.create(session("s-1")))
    Revoker(store, {}, clock).revoke_session("s-1", by=None, reason=SessionEnd.REVOKED)
    store.down = True
    with caplog.at_level(logging.WARNING):
        assert watch.poll() == []
    assert "session index unreadable" in caplog.text
    store.down = False
    assert watch.poll() == [("s-1", "revoked")]


def test_a_failing_listener_does_not_hide_the_end_from_the_others(parts: Parts) -> None:
    store, clock, watch, heard = parts

    def broken(sid: str, why: str) -> None:
        raise RuntimeError("listener bug")

    watch.subscribe(broken)
    later: list[str] = []
    watch.subscribe(lambda sid, why: later.append(sid))
    watch.track(store.create(session("s-1", not_after=NOW + 1)))
    clock.now = NOW + 1
    watch.poll()
    assert heard == [("s-1", "request-ended")] and later == ["s-1"]


def test_ended_sessions_are_forgotten_after_a_while(parts: Parts) -> None:
    store, clock, watch, _ = parts
    watch.track(store.create(session("s-1", not_after=NOW + 1)))
    clock.now = NOW + 1
    watch.poll()
    clock.now += FORGET_SECONDS
    watch.poll()
    assert watch.is_ended("s-1") is None


def test_track_keeps_the_earliest_end(parts: Parts) -> None:
    store, clock, watch, _ = parts
    stored = store.create(session("s-1", not_after=NOW + 600))
    watch.track(dataclasses.replace(stored, not_after=NOW + 30))
    watch.track(stored)
    clock.now = NOW + 30
    assert watch.poll() == [("s-1", "request-ended")]
