"""The access request lifecycle: every transition and every refusal, as pure functions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from exchanger.access import lifecycle
from exchanger.access.lifecycle import (
    approve,
    deny,
    expire_due,
    new_request,
    requester_of,
    revoke,
    use,
)
from exchanger.access.model import AccessRequest, State
from exchanger.access.policy import ApprovalPolicy, Approvers, Reuse
from exchanger.access.settings import AccessAdmin
from exchanger.identity import Identity
from exchanger.mappings.model import Condition, Grant, Operator, TrustMapping
from kubegate.errors import (
    InvalidRequestError,
    KubegateError,
    PermissionDeniedError,
    PreconditionError,
)

NOW = 1_900_000_000


def person(subject: str, *groups: str, issuer: str = "corp", **claims: Any) -> Identity:
    return Identity(issuer=issuer, issuer_url=f"https://{issuer}.example", subject=subject,
                    token_id=None, audiences=("kubegate",), issued_at=NOW - 10,
                    expires_at=NOW + 300,
                    claims={"sub": subject, "groups": list(groups), **claims})


def in_group(group: str) -> tuple[Condition, ...]:
    return (Condition(path=("groups",), operator=Operator.CONTAINS, expected=group),)


def mapping(**policy: Any) -> TrustMapping:
    return TrustMapping(
        name="break-glass", issuer="corp", conditions=in_group("oncall"),
        grant=Grant(cluster="prod", namespace="kube-system", service_account="admin"),
        approval=ApprovalPolicy(approvers=Approvers(issuer="corp",
                                                    conditions=in_group("sre-leads")),
                                **policy))


ALICE = person("alice", "oncall", email="alice@example.com", email_verified=True)
BOB = person("bob", "sre-leads")
CAROL = person("carol", "sre-leads", preferred_username="carol")
MALLORY = person("mallory", "oncall")
ADMIN = person("root", "platform-admins")
ADMINS = (AccessAdmin(issuer="corp", conditions=in_group("platform-admins")),)


def requested(**policy: Any) -> tuple[TrustMapping, AccessRequest]:
    chosen = mapping(**policy)
    return chosen, new_request(mapping=chosen, identity=ALICE, reason="prod is down",
                               ticket="INC-1", duration=1800, now=NOW, request_id="ar-1")


def refused(call: Any, error: type[KubegateError], reason: str) -> None:
    with pytest.raises(error) as caught:
        call()
    assert caught.value.reason == reason


def test_the_requester_is_named_by_issuer_and_sub_and_read_by_email_or_name() -> None:
    assert requester_of(ALICE).who == "alice@example.com"
    assert requester_of(person("a", email="a@x", email_verified=False)).who == "a"
    assert requester_of(CAROL).who == "carol"
    assert (requester_of(BOB).issuer, requester_of(BOB).subject) == ("corp", "bob")


def test_a_new_request_is_pending_with_its_bound_claims_copied() -> None:
    chosen = mapping(bind_to=("run_id", "run_attempt"))
    runner = person("repo:x", "oncall", run_id="123", run_attempt=2)
    request = new_request(mapping=chosen, identity=runner, reason="deploy", ticket="",
                          duration=600, now=NOW, request_id="ar-2")
    assert (request.state, request.bound, request.created_at, request.ends_at) == (
        State.PENDING, {"run_id": "123", "run_attempt": 2}, NOW, 0)


@pytest.mark.parametrize(("policy", "changes", "error", "reason"), [
    ({}, {"identity": MALLORY, "reason": ""}, InvalidRequestError, "REASON_REQUIRED"),
    ({}, {"identity": BOB}, PermissionDeniedError, "ROLE_NOT_ALLOWED"),
    ({}, {"identity": person("alice", "oncall", issuer="vendor")}, PermissionDeniedError,
     "ROLE_NOT_ALLOWED"),
    ({"ticket_pattern": "INC-[0-9]+"}, {"ticket": "JIRA-1"}, InvalidRequestError,
     "TICKET_MISMATCH"),
    ({"ticket_pattern": "INC-[0-9]+"}, {"ticket": ""}, InvalidRequestError, "TICKET_MISMATCH"),
    ({"max_duration": 3600}, {"duration": 3601}, InvalidRequestError, "INVALID_DURATION"),
    ({}, {"duration": 0}, InvalidRequestError, "INVALID_DURATION"),
    ({"bind_to": ("run_id",)}, {}, InvalidRequestError, "BOUND_CLAIM_MISSING"),
    ({}, {"reason": "x" * 2000}, InvalidRequestError, "TEXT_TOO_LONG"),
])
def test_a_request_is_refused_when_it_breaks_a_rule(policy: dict[str, Any],
                                                    changes: dict[str, Any],
                                                    error: type[KubegateError],
                                                    reason: str) -> None:
    arguments = {"mapping": mapping(**policy), "identity": ALICE, "reason": "why",
                 "ticket": "INC-1", "duration": 600, "now": NOW, "request_id": "ar-1"} | changes
    refused(lambda: new_request(**arguments), error, reason)


def test_a_mapping_without_approval_needs_no_request() -> None:
    plain = dataclasses.replace(mapping(), approval=None)
    refused(lambda: new_request(mapping=plain, identity=ALICE, reason="r", ticket="",
                                duration=60, now=NOW, request_id="ar-1"),
            InvalidRequestError, "NO_APPROVAL_NEEDED")


def test_an_optional_reason_may_be_empty() -> None:
    request = new_request(mapping=mapping(reason_required=False), identity=ALICE, reason="",
                          ticket="", duration=60, now=NOW, request_id="ar-1")
    assert request.reason == ""


def test_one_approval_approves_and_starts_the_duration() -> None:
    chosen, request = requested()
    approved = approve(request, mapping=chosen, approver=BOB, now=NOW + 60, comment="ok")
    assert (approved.state, approved.starts_at, approved.ends_at) == (
        State.APPROVED, NOW + 60, NOW + 60 + 1800)
    assert [(a.approver.subject, a.at, a.comment) for a in approved.approvals] == [
        ("bob", NOW + 60, "ok")]


def test_self_approval_is_refused_unless_allowed() -> None:
    chosen, request = requested()
    leader = person("alice", "oncall", "sre-leads")  # the requester, also an approver
    refused(lambda: approve(request, mapping=chosen, approver=leader, now=NOW),
            PermissionDeniedError, "SELF_APPROVAL")
    lenient, request = requested(allow_self_approval=True)
    assert approve(request, mapping=lenient, approver=leader, now=NOW).state is State.APPROVED


def test_a_non_approver_is_refused_and_an_admin_may_approve() -> None:
    chosen, request = requested()
    refused(lambda: approve(request, mapping=chosen, approver=MALLORY, now=NOW),
            PermissionDeniedError, "NOT_AN_APPROVER")
    refused(lambda: approve(request, mapping=chosen, approver=person("bob", "sre-leads",
                                                                     issuer="vendor"), now=NOW),
            PermissionDeniedError, "NOT_AN_APPROVER")
    assert approve(request, mapping=chosen, approver=ADMIN, now=NOW,
                   admins=ADMINS).state is State.APPROVED


def test_two_approvals_need_two_distinct_approvers() -> None:
    chosen, request = requested(count=2)
    once = approve(request, mapping=chosen, approver=BOB, now=NOW)
    assert once.state is State.PENDING
    refused(lambda: approve(once, mapping=chosen, approver=BOB, now=NOW + 1),
            PreconditionError, "ALREADY_APPROVED")
    twice = approve(once, mapping=chosen, approver=CAROL, now=NOW + 5)
    assert (twice.state, twice.starts_at, len(twice.approvals)) == (State.APPROVED, NOW + 5, 2)
    refused(lambda: approve(twice, mapping=chosen, approver=ADMIN, now=NOW, admins=ADMINS),
            PreconditionError, "ALREADY_DECIDED")


def test_deny_ends_a_pending_request_and_nothing_decides_it_again() -> None:
    chosen, request = requested()
    refused(lambda: deny(request, mapping=chosen, approver=MALLORY, now=NOW),
            PermissionDeniedError, "NOT_AN_APPROVER")
    denied = deny(request, mapping=chosen, approver=BOB, now=NOW, reason="not now")
    assert (denied.state, denied.decided_by.subject, denied.decision_reason) == (
        State.DENIED, "bob", "not now")
    for decide in (approve, deny):
        refused(lambda decide=decide: decide(denied, mapping=chosen, approver=CAROL, now=NOW),
                PreconditionError, "ALREADY_DECIDED")
    refused(lambda: revoke(denied, mapping=chosen, caller=ALICE, now=NOW),
            PreconditionError, "ALREADY_DECIDED")


def test_revoke_by_the_requester_an_approver_or_an_admin_but_nobody_else() -> None:
    chosen, request = requested()
    approved = approve(request, mapping=chosen, approver=BOB, now=NOW)
    refused(lambda: revoke(approved, mapping=chosen, caller=MALLORY, now=NOW),
            PermissionDeniedError, "NOT_AN_APPROVER")
    for caller, admins in ((ALICE, ()), (CAROL, ()), (ADMIN, ADMINS)):
        ended = revoke(approved, mapping=chosen, caller=caller, now=NOW + 100, admins=admins)
        assert (ended.state, ended.ends_at, ended.decided_by.subject) == (
            State.REVOKED, NOW + 100, caller.subject)
    assert revoke(request, mapping=chosen, caller=ALICE, now=NOW).ends_at == 0


def test_use_makes_a_request_active_and_a_single_use_one_is_consumed() -> None:
    chosen, request = requested()
    approved = approve(request, mapping=chosen, approver=BOB, now=NOW)
    active = use(approved, NOW + 10, chosen.approval)  # type: ignore[arg-type]
    again = use(active, NOW + 20, chosen.approval)  # type: ignore[arg-type]
    assert (again.state, again.uses) == (State.ACTIVE, 2)
    once, request = requested(reuse=Reuse.SINGLE)
    approved = approve(request, mapping=once, approver=BOB, now=NOW)
    consumed = use(approved, NOW + 10, once.approval)  # type: ignore[arg-type]
    assert (consumed.state, consumed.uses, consumed.decision_reason) == (
        State.EXPIRED, 1, lifecycle.USED)
    refused(lambda: use(consumed, NOW + 11, once.approval),  # type: ignore[arg-type]
            PermissionDeniedError, "NOT_USABLE")


def test_use_is_refused_when_pending_or_past_its_end() -> None:
    chosen, request = requested()
    refused(lambda: use(request, NOW, chosen.approval),  # type: ignore[arg-type]
            PermissionDeniedError, "NOT_USABLE")
    approved = approve(request, mapping=chosen, approver=BOB, now=NOW)
    refused(lambda: use(approved, approved.ends_at, chosen.approval),  # type: ignore[arg-type]
            PermissionDeniedError, "NOT_USABLE")


def test_expiry_of_pending_and_approved_requests() -> None:
    chosen, request = requested(max_duration=1800)
    policy = chosen.approval
    assert expire_due(request, NOW + 1799, policy) is None
    assert expire_due(request, NOW + 1800, policy).state is State.EXPIRED  # type: ignore[union-attr]
    long, slow = requested(max_duration=7200)
    assert expire_due(slow, NOW + 3599, long.approval) is None
    assert expire_due(slow, NOW + 3600, long.approval) is not None  # pending: at most 1h
    assert expire_due(slow, NOW + 3600) is not None  # policy unknown: 1h
    approved = approve(request, mapping=chosen, approver=BOB, now=NOW + 100)
    assert expire_due(approved, approved.ends_at - 1, policy) is None
    assert expire_due(approved, approved.ends_at, policy).state is State.EXPIRED  # type: ignore[union-attr]
    denied = deny(request, mapping=chosen, approver=BOB, now=NOW)
    assert expire_due(denied, NOW + 10**6, policy) is None


def test_messages_never_carry_claim_values() -> None:
    secret_run = "run-4711-secret"
    chosen = mapping(bind_to=("run_id",))
    with pytest.raises(InvalidRequestError) as caught:
        new_request(mapping=chosen, identity=person("alice", "oncall", run_id={"x": secret_run}),
                    reason="r", ticket="", duration=60, now=NOW, request_id="ar-1")
    assert secret_run not in str(caught.value) + caught.value.detail
