"""The access request lifecycle as pure functions: a request and a verified identity in, the
next request value out, or an error naming why not.

    pending --approve (count reached)--> approved --use--> active --(ends_at)--> expired
    pending --deny--> denied;  pending/approved/active --revoke--> revoked
    pending --(nobody decided: created_at + maxDuration)--> expired
    approved/active with reuse single --use--> expired (decision_reason "used")

Rules of this module:
- nothing here stores, reads a clock or talks to anyone: callers pass `now` and write the
  result with compare-and-swap (`ports.AccessStore.replace`); on ConflictError they read
  again and apply the same function to the fresh value;
- a person is named by configured issuer name and `sub` (`Requester.same_as`); approvals
  count distinct approvers; the requester's own approval counts only when the policy allows;
- messages never carry claim values or tokens: the public message says what is wrong, the
  detail names fields and ids only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from exchanger.access.model import TERMINAL_STATES, AccessRequest, Approval, Requester, State
from exchanger.access.policy import ApprovalPolicy, Reuse
from exchanger.access.settings import AccessAdmin
from exchanger.identity import Identity
from exchanger.mappings.model import ROLE_NOT_ALLOWED, TrustMapping
from kubegate.errors import InvalidRequestError, PermissionDeniedError, PreconditionError

__all__ = ["ALREADY_APPROVED", "ALREADY_DECIDED", "BOUND_CLAIM_MISSING", "INVALID_DURATION",
           "NOT_AN_APPROVER", "NO_APPROVAL_NEEDED", "REASON_REQUIRED", "SELF_APPROVAL",
           "TICKET_MISMATCH", "USED", "approve", "can_decide", "deny", "expire_due",
           "expires_at", "new_request", "policy_of", "requester_of", "revoke", "use"]

NO_APPROVAL_NEEDED: Final = "NO_APPROVAL_NEEDED"
REASON_REQUIRED: Final = "REASON_REQUIRED"
TICKET_MISMATCH: Final = "TICKET_MISMATCH"
INVALID_DURATION: Final = "INVALID_DURATION"
BOUND_CLAIM_MISSING: Final = "BOUND_CLAIM_MISSING"
SELF_APPROVAL: Final = "SELF_APPROVAL"
NOT_AN_APPROVER: Final = "NOT_AN_APPROVER"
ALREADY_APPROVED: Final = "ALREADY_APPROVED"
ALREADY_DECIDED: Final = "ALREADY_DECIDED"
NOT_USABLE: Final = "NOT_USABLE"
USED: Final = "used"
"""decision_reason of a single-use request consumed by its exchange."""
PENDING_LIMIT: Final = 3600
"""A pending request nobody decided expires after this, or at created_at + its mapping's
maxDuration when that is shorter."""
MAX_TEXT: Final = 1024


def requester_of(identity: Identity) -> Requester:
    """Who a verified identity is: issuer name and sub; `who` is the email when verified,
    else preferred_username, else sub (for people reading lists; it decides nothing)."""
    claims = identity.claims
    email, name = claims.get("email"), claims.get("preferred_username")
    if isinstance(email, str) and email and claims.get("email_verified") is True:
        who = email
    elif isinstance(name, str) and name:
        who = name
    else:
        who = identity.subject
    return Requester(issuer=identity.issuer, subject=identity.subject, who=who)


def policy_of(mapping: TrustMapping) -> ApprovalPolicy:
    if mapping.approval is None:
        raise InvalidRequestError(
            NO_APPROVAL_NEEDED, f"mapping {mapping.name} has no approval rules",
            public_message="this role needs no approval: exchange a token for it directly")
    return mapping.approval


def new_request(*, mapping: TrustMapping, identity: Identity, reason: str, ticket: str,
                duration: int, now: int, request_id: str) -> AccessRequest:
    """A pending request of `identity` for `mapping`, with the bound claims copied."""
    policy = policy_of(mapping)
    if identity.issuer != mapping.issuer or mapping.first_failure(identity.claims) is not None:
        raise PermissionDeniedError(
            ROLE_NOT_ALLOWED, f"role {mapping.name!r}: the requester does not match the mapping",
            public_message="the requested role is not allowed for this identity")
    _check_text(reason, ticket)
    if policy.reason_required and not reason.strip():
        raise InvalidRequestError(REASON_REQUIRED, public_message="a reason is required")
    if not policy.ticket_matches(ticket):
        raise InvalidRequestError(
            TICKET_MISMATCH, public_message="the ticket does not match the mapping's ticket "
            f"pattern {policy.ticket_pattern}")
    if not 0 < duration <= policy.max_duration:
        raise InvalidRequestError(
            INVALID_DURATION, public_message="duration must be more than 0s and at most "
            f"{policy.max_duration}s")
    return AccessRequest(
        id=request_id, mapping=mapping.name, requester=requester_of(identity), reason=reason,
        ticket=ticket, duration=duration, bound=bound_claims(policy, identity.claims),
        created_at=now)


def _check_text(reason: str, ticket: str) -> None:
    if len(reason) > MAX_TEXT or len(ticket) > MAX_TEXT:
        raise InvalidRequestError("TEXT_TOO_LONG", public_message=f"reason and ticket are at "
                                  f"most {MAX_TEXT} characters")


def bound_claims(policy: ApprovalPolicy, claims: Mapping[str, Any]) -> dict[str, str | int]:
    """The claims of `policy.bind_to`, as strings or integers; InvalidRequestError when one is
    missing or not a string or integer (its name is said, never its value)."""
    bound: dict[str, str | int] = {}
    for name in policy.bind_to:
        value = claims.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise InvalidRequestError(
                BOUND_CLAIM_MISSING, f"claim {name} is missing or not a string or integer",
                public_message=f"the token has no usable claim {name}, which this role's "
                "approvals are bound to")
        bound[name] = value
    return bound


def can_decide(policy: ApprovalPolicy, identity: Identity,
               admins: Sequence[AccessAdmin] = ()) -> bool:
    """Whether `identity` is one of the policy's approvers or an access admin."""
    return policy.approvers.admit(identity.issuer, identity.claims) or any(
        admin.issuer == identity.issuer and all(c.holds(identity.claims)
                                                for c in admin.conditions)
        for admin in admins)


def _not_terminal(request: AccessRequest) -> None:
    if request.state in TERMINAL_STATES:
        raise PreconditionError(
            ALREADY_DECIDED, f"request {request.id} is {request.state.value}",
            public_message=f"the request is already {request.state.value}")


def _approver_check(policy: ApprovalPolicy, approver: Identity,
                    admins: Sequence[AccessAdmin]) -> None:
    if not can_decide(policy, approver, admins):
        raise PermissionDeniedError(
            NOT_AN_APPROVER, "the caller meets neither the approvers' rules nor an admin rule",
            public_message="you may not decide this request")


def approve(request: AccessRequest, *, mapping: TrustMapping, approver: Identity, now: int,
            comment: str = "", admins: Sequence[AccessAdmin] = ()) -> AccessRequest:
    """`request` with the approval of `approver`; approved once `count` distinct approvers
    did (the duration starts then)."""
    policy = policy_of(mapping)
    _not_terminal(request)
    who = requester_of(approver)
    if who.same_as(request.requester) and not policy.allow_self_approval:
        raise PermissionDeniedError(SELF_APPROVAL, f"request {request.id}: self-approval",
                                    public_message="you cannot approve your own request")
    _approver_check(policy, approver, admins)
    if any(a.approver.same_as(who) for a in request.approvals):
        raise PreconditionError(ALREADY_APPROVED, f"request {request.id}: approved twice",
                                public_message="you have approved this request already")
    if request.state is not State.PENDING:
        raise PreconditionError(ALREADY_DECIDED, f"request {request.id} is {request.state}",
                                public_message=f"the request is already {request.state.value}")
    approvals = (*request.approvals, Approval(approver=who, at=now, comment=comment[:MAX_TEXT]))
    if len(approvals) < policy.count:
        return dataclasses.replace(request, approvals=approvals)
    return dataclasses.replace(request, approvals=approvals, state=State.APPROVED,
                               starts_at=now, ends_at=now + request.duration)


def deny(request: AccessRequest, *, mapping: TrustMapping, approver: Identity, now: int,
         reason: str = "", admins: Sequence[AccessAdmin] = ()) -> AccessRequest:
    """A pending request refused by an approver or admin."""
    del now  # the decision's time is the store's write; kept for a uniform signature
    policy = policy_of(mapping)
    _not_terminal(request)
    _approver_check(policy, approver, admins)
    if request.state is not State.PENDING:
        raise PreconditionError(ALREADY_DECIDED, f"request {request.id} is {request.state}",
                                public_message=f"the request is already {request.state.value}")
    return dataclasses.replace(request, state=State.DENIED, decided_by=requester_of(approver),
                               decision_reason=reason[:MAX_TEXT])


def revoke(request: AccessRequest, *, mapping: TrustMapping, caller: Identity, now: int,
           reason: str = "", admins: Sequence[AccessAdmin] = ()) -> AccessRequest:
    """A pending, approved or active request ended early by its requester, an approver or an
    admin. From `now` no exchange may use it (its sessions are ended by whoever revokes)."""
    policy = policy_of(mapping)
    _not_terminal(request)
    who = requester_of(caller)
    if not who.same_as(request.requester):
        _approver_check(policy, caller, admins)
    ends_at = min(request.ends_at, now) if request.ends_at else 0
    return dataclasses.replace(request, state=State.REVOKED, decided_by=who,
                               decision_reason=reason[:MAX_TEXT], ends_at=ends_at)


def expires_at(request: AccessRequest, policy: ApprovalPolicy | None = None) -> int:
    """When `request` expires unless decided or revoked first: pending, after PENDING_LIMIT
    or its mapping's maxDuration when shorter (`policy`; unknown: PENDING_LIMIT); approved
    and active, at `ends_at`; 0 for a terminal request."""
    if request.state is State.PENDING:
        limit = min(PENDING_LIMIT, policy.max_duration) if policy else PENDING_LIMIT
        return request.created_at + limit
    return 0 if request.state in TERMINAL_STATES else request.ends_at


def expire_due(request: AccessRequest, now: int,
               policy: ApprovalPolicy | None = None) -> AccessRequest | None:
    """The expired request when it is due at `now` (None: nothing to do), see `expires_at`."""
    if request.state in TERMINAL_STATES or now < expires_at(request, policy):
        return None
    return dataclasses.replace(request, state=State.EXPIRED)


def use(request: AccessRequest, now: int, policy: ApprovalPolicy) -> AccessRequest:
    """`request` after one exchange used it: active with one more use, or consumed (expired,
    decision_reason "used") when the policy allows a single use."""
    if request.state not in (State.APPROVED, State.ACTIVE) or now >= request.ends_at:
        raise PermissionDeniedError(
            NOT_USABLE, f"request {request.id} is {request.state.value}",
            public_message="the access request is not approved or has ended")
    used = dataclasses.replace(request, state=State.ACTIVE, uses=request.uses + 1)
    if policy.reuse is Reuse.SINGLE:
        return dataclasses.replace(used, state=State.EXPIRED, decision_reason=USED)
    return used
