"""The access gate an exchange of an approval or window mapping passes, over a small
in-memory AccessStore (compare-and-swap on `version`, as the ports require)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from exchanger.access.gate import AccessGate, Admission, bound_values_match
from exchanger.access.lifecycle import approve, new_request, revoke
from exchanger.access.model import AccessRequest, State
from exchanger.access.policy import ApprovalPolicy, Approvers, Reuse
from exchanger.access.ports import AlreadyExistsError, ConflictError
from exchanger.access.windows import OneOffWindow, RecurringWindow
from exchanger.identity import Identity
from exchanger.mappings.model import Condition, Grant, Operator, TrustMapping
from kubegate.errors import PermissionDeniedError

NOW = 1_900_000_000


class MemoryAccessStore:
    """AccessStore in a dict; `conflicts` makes the next N replaces lose their CAS."""

    def __init__(self) -> None:
        self.requests: dict[str, AccessRequest] = {}
        self.conflicts = 0
        self._version = 0

    def _stamp(self, request: AccessRequest) -> AccessRequest:
        self._version += 1
        stored = dataclasses.replace(request, version=str(self._version))
        self.requests[request.id] = stored
        return stored

    def create(self, request: AccessRequest) -> AccessRequest:
        if request.id in self.requests:
            raise AlreadyExistsError(f"access request {request.id}")
        return self._stamp(request)

    def get(self, request_id: str) -> AccessRequest | None:
        return self.requests.get(request_id)

    def list(self, *, states: frozenset[State] | None = None, mapping: str = "",
             requester_subject: str = "") -> list[AccessRequest]:
        return [r for r in self.requests.values()
                if (states is None or r.state in states) and mapping in ("", r.mapping)
                and requester_subject in ("", r.requester.subject)]

    def replace(self, request: AccessRequest) -> AccessRequest:
        stored = self.requests.get(request.id)
        if self.conflicts:
            self.conflicts -= 1
            if stored is not None:
                self._stamp(stored)  # someone else wrote meanwhile
            raise ConflictError(f"access request {request.id}")
        if stored is None or stored.version != request.version:
            raise ConflictError(f"access request {request.id}")
        return self._stamp(request)

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, AccessRequest]]:
        return iter(())


def person(subject: str, *groups: str, **claims: Any) -> Identity:
    return Identity(issuer="corp", issuer_url="https://corp.example", subject=subject,
                    token_id=None, audiences=("kubegate",), issued_at=NOW - 10,
                    expires_at=NOW + 300,
                    claims={"sub": subject, "groups": list(groups), **claims})


def in_group(group: str) -> tuple[Condition, ...]:
    return (Condition(path=("groups",), operator=Operator.CONTAINS, expected=group),)


def approval_mapping(*, windows: tuple[Any, ...] = (), **policy: Any) -> TrustMapping:
    return TrustMapping(
        name="deploy", issuer="corp", conditions=in_group("deployers"),
        grant=Grant(cluster="prod", namespace="web", service_account="deployer"),
        approval=ApprovalPolicy(approvers=Approvers(issuer="corp",
                                                    conditions=in_group("leads")), **policy),
        windows=windows)


RUNNER = person("repo:web", "deployers", run_id="100", run_attempt="1", sha="abc")
LEAD = person("lead", "leads", email="lead@example.com", email_verified=True)


def approved_request(store: MemoryAccessStore, mapping: TrustMapping,
                     requester: Identity = RUNNER, request_id: str = "ar-1",
                     duration: int = 1800) -> AccessRequest:
    request = store.create(new_request(mapping=mapping, identity=requester, reason="ship it",
                                       ticket="", duration=duration, now=NOW - 100,
                                       request_id=request_id))
    return store.replace(approve(request, mapping=mapping, approver=LEAD, now=NOW - 50))


def gate(store: MemoryAccessStore) -> AccessGate:
    return AccessGate(store, clock=lambda: NOW)


def denied(call: Any, reason: str) -> PermissionDeniedError:
    with pytest.raises(PermissionDeniedError) as caught:
        call()
    assert caught.value.reason == reason
    return caught.value


def test_a_mapping_without_approval_or_windows_passes_untouched() -> None:
    plain = dataclasses.replace(approval_mapping(), approval=None)
    assert gate(MemoryAccessStore()).check(RUNNER, plain) is None


def test_an_approved_request_of_this_identity_and_run_admits_until_its_end() -> None:
    store, mapping = MemoryAccessStore(), approval_mapping(bind_to=("run_id", "sha"))
    request = approved_request(store, mapping)
    admission = gate(store).check(RUNNER, mapping)
    assert admission is not None
    assert (admission.request, admission.not_after) == (request, NOW - 50 + 1800)
    assert [a.who for a in admission.approvers] == ["lead@example.com"]


def test_without_a_request_the_exchange_needs_approval() -> None:
    error = denied(lambda: gate(MemoryAccessStore()).check(RUNNER, approval_mapping()),
                   "APPROVAL_REQUIRED")
    assert "kubegate access request --role deploy" in error.public_message


@pytest.mark.parametrize("other", [
    person("repo:web", "deployers", run_id="101", run_attempt="1", sha="abc"),  # another run
    person("repo:web", "deployers", run_id="100", run_attempt="1", sha="def"),  # another commit
    person("repo:web", "deployers", sha="abc"),  # no run at all
    person("repo:other", "deployers", run_id="100", run_attempt="1", sha="abc"),  # another sub
])
def test_a_request_admits_neither_another_run_nor_another_identity(other: Identity) -> None:
    store, mapping = MemoryAccessStore(), approval_mapping(bind_to=("run_id", "sha"))
    approved_request(store, mapping)
    denied(lambda: gate(store).check(other, mapping), "APPROVAL_REQUIRED")


def test_a_pending_revoked_or_ended_request_admits_nothing() -> None:
    store, mapping = MemoryAccessStore(), approval_mapping()
    store.create(new_request(mapping=mapping, identity=RUNNER, reason="r", ticket="",
                             duration=60, now=NOW, request_id="ar-pending"))
    denied(lambda: gate(store).check(RUNNER, mapping), "APPROVAL_REQUIRED")
    request = approved_request(store, mapping, request_id="ar-2", duration=60)
    denied(lambda: gate(store).check(RUNNER, mapping, NOW + 10), "APPROVAL_REQUIRED")  # ended
    assert gate(store).check(RUNNER, mapping, NOW) is not None
    store.replace(revoke(request, mapping=mapping, caller=LEAD, now=NOW))
    denied(lambda: gate(store).check(RUNNER, mapping, NOW), "APPROVAL_REQUIRED")


def test_bound_values_compare_as_text_but_never_objects_or_booleans() -> None:
    assert bound_values_match({"run_attempt": "1"}, {"run_attempt": 1})
    assert not bound_values_match({"run_attempt": "1"}, {})
    assert not bound_values_match({"flag": True}, {"flag": True})
    assert not bound_values_match({"x": "1"}, {"x": ["1"]})


def test_a_closed_window_is_outside_window_naming_the_next_start_in_utc() -> None:
    opens = NOW + 3600
    mapping = dataclasses.replace(approval_mapping(), approval=None,
                                  windows=(OneOffWindow(start=opens, end=opens + 600),))
    error = denied(lambda: gate(MemoryAccessStore()).check(RUNNER, mapping), "OUTSIDE_WINDOW")
    assert dt.datetime.fromtimestamp(opens, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") in (
        error.public_message)
    admission = gate(MemoryAccessStore()).check(RUNNER, mapping, opens + 1)
    assert admission == Admission(request=None, not_after=opens + 600)


def test_a_window_that_never_opens_again_says_so() -> None:
    mapping = dataclasses.replace(approval_mapping(), approval=None,
                                  windows=(OneOffWindow(start=NOW - 600, end=NOW - 60),))
    error = denied(lambda: gate(MemoryAccessStore()).check(RUNNER, mapping), "OUTSIDE_WINDOW")
    assert "no window of this role opens again" in error.public_message


def test_not_after_is_the_earlier_of_the_request_end_and_the_window_end() -> None:
    every_day = RecurringWindow(days=tuple(range(7)), start=dt.time(0), end=dt.time(23, 59))
    window_end = every_day.occurrences(NOW, NOW).__next__()[1]
    store, mapping = MemoryAccessStore(), approval_mapping(windows=(every_day,),
                                                           max_duration=24 * 3600)
    short = approved_request(store, mapping, duration=60)
    assert gate(store).check(RUNNER, mapping).not_after == short.ends_at  # type: ignore[union-attr]
    store.requests.clear()
    approved_request(store, mapping, duration=24 * 3600)
    admission = gate(store).check(RUNNER, mapping)
    assert admission is not None and admission.not_after == min(window_end, NOW - 50 + 86400)


def test_the_window_is_checked_before_the_request() -> None:
    store = MemoryAccessStore()
    mapping = approval_mapping(windows=(OneOffWindow(start=NOW + 60, end=NOW + 120),))
    approved_request(store, mapping)
    denied(lambda: gate(store).check(RUNNER, mapping), "OUTSIDE_WINDOW")


def test_consume_counts_a_use_and_retries_lost_compare_and_swaps() -> None:
    store, mapping = MemoryAccessStore(), approval_mapping()
    approved_request(store, mapping)
    admission = gate(store).check(RUNNER, mapping)
    assert admission is not None
    store.conflicts = 3
    used = gate(store).consume(admission)
    assert used is not None and (used.state, used.uses) == (State.ACTIVE, 1)
    assert store.requests["ar-1"].uses == 1


def test_consume_gives_up_after_five_conflicts() -> None:
    store, mapping = MemoryAccessStore(), approval_mapping()
    approved_request(store, mapping)
    admission = gate(store).check(RUNNER, mapping)
    store.conflicts = 5
    with pytest.raises(ConflictError):
        gate(store).consume(admission)  # type: ignore[arg-type]


def test_a_single_use_request_is_used_once_even_by_racing_exchanges() -> None:
    store, mapping = MemoryAccessStore(), approval_mapping(reuse=Reuse.SINGLE)
    approved_request(store, mapping)
    first = gate(store).check(RUNNER, mapping)
    second = gate(store).check(RUNNER, mapping)
    assert gate(store).consume(first).state is State.EXPIRED  # type: ignore[arg-type,union-attr]
    denied(lambda: gate(store).consume(second), "NOT_USABLE")  # type: ignore[arg-type]
    denied(lambda: gate(store).check(RUNNER, mapping), "APPROVAL_REQUIRED")


def test_consume_without_a_request_does_nothing() -> None:
    assert gate(MemoryAccessStore()).consume(Admission(request=None, not_after=0)) is None
