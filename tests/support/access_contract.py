"""The contract every access store keeps (exchanger/access/ports.py), as plain functions of a
store pair: tests/unit/exchanger/test_access_store_contract.py runs them against the SQLite
store, tests/integration/test_access_store_kube.py against custom resources on a real API
server. A function name says the behaviour it pins."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from exchanger.access.model import (
    AccessRequest,
    Approval,
    Requester,
    Session,
    SessionEnd,
    State,
)
from exchanger.access.ports import AccessStore, AlreadyExistsError, ConflictError, SessionStore

NOW = 1_780_000_000
ALICE = Requester(issuer="corp", subject="alice-sub", who="alice@example.com")
BOB = Requester(issuer="corp", subject="bob-sub", who="bob@example.com")
CAROL = Requester(issuer="corp", subject="carol|sub with spaces/and:colons", who="Carol")
REASON = "Incident 🔥 #4711: Datenbank hängt, 数据库 — please"

Contract = Callable[[AccessStore, SessionStore], None]


def new_request(*, mapping: str = "break-glass", requester: Requester = ALICE,
                reason: str = "incident", **fields: Any) -> AccessRequest:
    return AccessRequest(id=f"ar-{uuid.uuid4().hex[:16]}", mapping=mapping,
                         requester=requester, reason=reason, duration=3600, created_at=NOW,
                         **fields)


def new_session(*, cluster: str = "prod", access_request: str = "",
                **fields: Any) -> Session:
    return Session(id=f"s-{uuid.uuid4().hex[:16]}", mapping="break-glass", cluster=cluster,
                   namespace="web", caller=ALICE, token_id=uuid.uuid4().hex, issued_at=NOW,
                   expires_at=NOW + 600, not_after=NOW + 600, access_request=access_request,
                   **fields)


def approve(request: AccessRequest, approver: Requester, comment: str = "") -> AccessRequest:
    return dataclasses.replace(
        request, state=State.APPROVED,
        approvals=(*request.approvals, Approval(approver=approver, at=NOW + 1, comment=comment)))


class Watcher:
    """A store's watch running in a thread; events collected in order."""

    def __init__(self, store: AccessStore, since: str) -> None:
        self.stop = threading.Event()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(store, since), daemon=True)
        self._thread.start()

    def _run(self, store: AccessStore, since: str) -> None:
        try:
            for kind, value in store.watch(since, self.stop):
                self.events.put((kind, value))
        except Exception as error:  # noqa: BLE001 - handed to the test thread
            self.events.put(("error", error))

    def take(self, count: int, timeout: float = 15) -> list[tuple[str, AccessRequest]]:
        taken: list[tuple[str, AccessRequest]] = []
        deadline = time.monotonic() + timeout
        while len(taken) < count:
            kind, value = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind == "error":
                raise value
            taken.append((kind, value))
        return taken

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the watch did not end when stop was set"


# -- the contract ------------------------------------------------------------------------------


def values_round_trip_exactly(requests: AccessStore, sessions: SessionStore) -> None:
    request = new_request(
        reason=REASON, ticket="INC-4711", requester=CAROL,
        bound={"run_id": "123", "sha": "abc", "nested": {"list": [1, "two", None]}},
        approvals=(Approval(approver=BOB, at=NOW + 5, comment="ok ✅"),),
        decided_by=BOB, decision_reason="über", starts_at=NOW + 5, ends_at=NOW + 3605, uses=2,
        state=State.ACTIVE)
    created = requests.create(request)
    assert created.version
    assert created.to_dict() == request.to_dict()
    got = requests.get(request.id)
    assert got is not None
    assert (got.to_dict(), got.version) == (request.to_dict(), created.version)
    assert requests.get("ar-0000000000000000") is None

    session = new_session(access_request=request.id, secret="web/kubegate-session-1",
                          caller_pod="ci/build-1/uid", ci={"run_id": "123", "job": "ü"},
                          ended_at=NOW + 60, end_reason=SessionEnd.REVOKED, ended_by=BOB)
    stored = sessions.create(session)
    assert stored.version
    found = sessions.get(session.id)
    assert found is not None
    assert (found.to_dict(), found.version) == (session.to_dict(), stored.version)
    assert sessions.get("s-none") is None


def an_existing_id_is_already_exists(requests: AccessStore, sessions: SessionStore) -> None:
    request = requests.create(new_request())
    with pytest.raises(AlreadyExistsError):
        requests.create(dataclasses.replace(request, reason="again", version=""))
    assert requests.get(request.id) == request
    session = sessions.create(new_session())
    with pytest.raises(AlreadyExistsError):
        sessions.create(dataclasses.replace(session, version=""))


def lists_filter_and_keep_creation_order(requests: AccessStore, sessions: SessionStore) -> None:
    first = requests.create(new_request(mapping="break-glass", requester=ALICE))
    second = requests.create(new_request(mapping="vendor", requester=BOB))
    third = requests.create(new_request(mapping="break-glass", requester=CAROL,
                                        state=State.DENIED))
    fourth = requests.create(new_request(mapping="vendor", requester=ALICE,
                                         state=State.APPROVED))

    def ids(found: list[AccessRequest]) -> list[str]:
        return [request.id for request in found]

    assert ids(requests.list()) == ids([first, second, third, fourth])
    assert ids(requests.list(mapping="break-glass")) == ids([first, third])
    assert ids(requests.list(requester_subject=ALICE.subject)) == ids([first, fourth])
    assert ids(requests.list(requester_subject=CAROL.subject)) == ids([third])
    assert ids(requests.list(states=frozenset({State.PENDING}))) == ids([first, second])
    assert ids(requests.list(states=frozenset({State.DENIED, State.APPROVED}))) == ids(
        [third, fourth])
    assert requests.list(states=frozenset()) == []
    assert ids(requests.list(states=frozenset({State.PENDING}), mapping="vendor",
                             requester_subject=BOB.subject)) == ids([second])
    assert requests.list(mapping="nothing") == []
    assert requests.list() == [first, second, third, fourth]  # versions too


def a_state_change_moves_a_request_between_lists(requests: AccessStore,
                                                 sessions: SessionStore) -> None:
    request = requests.create(new_request())
    approved = requests.replace(approve(request, BOB))
    assert approved.version not in ("", request.version)
    assert requests.list(states=frozenset({State.PENDING})) == []
    assert requests.list(states=frozenset({State.APPROVED})) == [approved]


def two_writers_from_one_version_one_conflicts(requests: AccessStore,
                                               sessions: SessionStore) -> None:
    request = requests.create(new_request())
    winner = requests.replace(approve(request, BOB, "first"))
    with pytest.raises(ConflictError):
        requests.replace(approve(request, CAROL, "second"))  # read before the first write
    stored = requests.get(request.id)
    assert stored == winner
    # the loser reads again and re-applies its change: no approval is lost
    again = requests.replace(approve(stored, CAROL, "second"))
    assert [a.comment for a in again.approvals] == ["first", "second"]
    assert requests.get(request.id) == again


def a_value_never_read_or_gone_cannot_be_replaced(requests: AccessStore,
                                                  sessions: SessionStore) -> None:
    request = requests.create(new_request())
    with pytest.raises(ConflictError):
        requests.replace(dataclasses.replace(request, version=""))
    with pytest.raises(ConflictError):
        requests.replace(new_request())  # never stored
    with pytest.raises(ConflictError):
        sessions.replace(new_session())
    assert requests.get(request.id) == request


def sessions_conflict_too(requests: AccessStore, sessions: SessionStore) -> None:
    session = sessions.create(new_session())
    ended = sessions.replace(dataclasses.replace(session, ended_at=NOW + 10,
                                                 end_reason=SessionEnd.EXPIRED))
    with pytest.raises(ConflictError):
        sessions.replace(dataclasses.replace(session, ended_at=NOW + 20,
                                             end_reason=SessionEnd.REVOKED, ended_by=BOB))
    assert sessions.get(session.id) == ended


def sessions_list_active_by_request_and_by_cluster(requests: AccessStore,
                                                   sessions: SessionStore) -> None:
    one = sessions.create(new_session(cluster="prod", access_request="ar-00000000000000a1"))
    two = sessions.create(new_session(cluster="staging", access_request="ar-00000000000000a1"))
    three = sessions.create(new_session(cluster="prod"))
    four = sessions.create(new_session(cluster="a cluster/with odd:name " + "x" * 70))

    def ids(found: list[Session]) -> list[str]:
        return [session.id for session in found]

    assert ids(sessions.list()) == ids([one, two, three, four])
    assert ids(sessions.list(cluster="prod")) == ids([one, three])
    assert ids(sessions.list(cluster=four.cluster)) == ids([four])
    assert ids(sessions.list(access_request="ar-00000000000000a1")) == ids([one, two])
    assert ids(sessions.list(active_only=True)) == ids([one, two, three, four])
    two = sessions.replace(dataclasses.replace(two, ended_at=NOW + 30,
                                               end_reason=SessionEnd.REQUEST_ENDED))
    assert ids(sessions.list(active_only=True)) == ids([one, three, four])
    assert ids(sessions.list(active_only=True, access_request="ar-00000000000000a1")) == ids(
        [one])
    assert sessions.list(active_only=True, cluster="staging") == []
    assert sessions.list(cluster="staging") == [two]


def sessions_due_are_those_past_not_after_or_with_a_caller_pod(
        requests: AccessStore, sessions: SessionStore) -> None:
    """What the reaper reads: active sessions whose not_after has come, and active sessions
    with a caller pod, in creation order; nothing else (the other active ones may be many)."""
    running = sessions.create(new_session())
    due = sessions.create(dataclasses.replace(new_session(), not_after=NOW - 1))
    on_time = sessions.create(dataclasses.replace(new_session(), not_after=NOW))
    pod = sessions.create(new_session(caller_pod="ci/build-1/uid"))
    ended = sessions.create(dataclasses.replace(new_session(), not_after=NOW - 5))
    sessions.replace(dataclasses.replace(ended, ended_at=NOW - 2,
                                         end_reason=SessionEnd.EXPIRED))
    later = sessions.create(dataclasses.replace(new_session(), not_after=NOW - 9))

    def ids(found: list[Session]) -> list[str]:
        return [session.id for session in found]

    assert ids(sessions.list_due(NOW)) == ids([due, on_time, pod, later])
    assert ids(sessions.list_due(NOW - 1)) == ids([due, pod, later])
    assert running.id not in ids(sessions.list_due(NOW + 599))
    assert ids(sessions.list_due(NOW + 600)) == ids([running, due, on_time, pod, later])


def watch_sees_added_and_modified_in_order_from_since(requests: AccessStore,
                                                      sessions: SessionStore) -> None:
    marker = requests.create(new_request(reason="before the watch"))
    watcher = Watcher(requests, since=marker.version)
    try:
        first = requests.create(new_request(reason=REASON))
        approved = requests.replace(approve(first, BOB))
        second = requests.create(new_request(mapping="vendor"))
        events = watcher.take(3)
    finally:
        watcher.close()
    assert [(kind, value.id) for kind, value in events] == [
        ("added", first.id), ("modified", first.id), ("added", second.id)]
    assert [value.to_dict() for _, value in events] == [
        first.to_dict(), approved.to_dict(), second.to_dict()]
    assert [value.version for _, value in events] == [
        first.version, approved.version, second.version]

    resumed = Watcher(requests, since=approved.version)  # resume after the last seen
    try:
        (event,) = resumed.take(1)
    finally:
        resumed.close()
    assert (event[0], event[1].id, event[1].reason) == ("added", second.id, "incident")


def watch_from_now_skips_what_came_before(requests: AccessStore,
                                          sessions: SessionStore) -> None:
    requests.create(new_request(reason="old"))
    watcher = Watcher(requests, since="")
    try:
        time.sleep(1.0)  # the watch takes its starting point
        fresh = requests.create(new_request(reason="new"))
        ((kind, value),) = watcher.take(1)
    finally:
        watcher.close()
    assert (kind, value.id) == ("added", fresh.id)


CONTRACT: tuple[Contract, ...] = (
    values_round_trip_exactly, an_existing_id_is_already_exists,
    lists_filter_and_keep_creation_order, a_state_change_moves_a_request_between_lists,
    two_writers_from_one_version_one_conflicts, a_value_never_read_or_gone_cannot_be_replaced,
    sessions_conflict_too, sessions_list_active_by_request_and_by_cluster,
    sessions_due_are_those_past_not_after_or_with_a_caller_pod,
    watch_sees_added_and_modified_in_order_from_since, watch_from_now_skips_what_came_before,
)
"""Every contract function; each test file runs each one on fresh stores."""
