"""The values of just-in-time access: an access request with its approvals, and a session (one
issued credential), both plain immutable data that any store can keep and any replica read.

Rules of this module:
- values are frozen; a change is a new value (`dataclasses.replace`), and a store decides
  whether it may replace the stored one (`version`, compare-and-swap);
- times are whole unix seconds (int); 0 means "not yet" / "none";
- a requester and an approver are named by their verified identity: the configured issuer name
  and the token's `sub`, plus `who` (email or preferred_username when the token has one) for
  people reading lists and audit lines; `who` never decides anything;
- `bound` holds the claim values an approval is bound to (the mapping's `approval.bindTo`),
  copied from the requester's verified token when the request was made: an exchange must
  present the same values (another CI run or another commit does not match);
- `to_dict`/`from_dict` are the one serialisation both stores use (JSON-safe, stable keys).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TERMINAL_STATES", "AccessRequest", "Approval", "Requester", "Session",
           "SessionEnd", "State"]


class State(enum.StrEnum):
    """An access request's lifecycle. pending -> approved -> active -> expired; pending ->
    denied; pending/approved/active -> revoked; pending -> expired (nobody decided in time)."""

    PENDING = "pending"
    APPROVED = "approved"  # enough approvals; not used yet
    ACTIVE = "active"  # used by at least one exchange
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"


TERMINAL_STATES = frozenset({State.DENIED, State.EXPIRED, State.REVOKED})


@dataclass(frozen=True, kw_only=True)
class Requester:
    """A verified identity: configured issuer name, `sub`, and a readable name."""

    issuer: str
    subject: str
    who: str = ""

    def same_as(self, other: Requester) -> bool:
        return (self.issuer, self.subject) == (other.issuer, other.subject)

    def to_dict(self) -> dict[str, str]:
        return {"issuer": self.issuer, "subject": self.subject, "who": self.who}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requester:
        return cls(issuer=str(data["issuer"]), subject=str(data["subject"]),
                   who=str(data.get("who", "")))


@dataclass(frozen=True, kw_only=True)
class Approval:
    approver: Requester
    at: int
    comment: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"approver": self.approver.to_dict(), "at": self.at, "comment": self.comment}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Approval:
        return cls(approver=Requester.from_dict(data["approver"]), at=int(data["at"]),
                   comment=str(data.get("comment", "")))


@dataclass(frozen=True, kw_only=True)
class AccessRequest:
    """A request for the grant of `mapping`, for `duration` seconds from its approval.

    `id` is a DNS-1123 name (a custom resource's name): `ar-` + 16 lowercase hex. `version` is
    the store's (a resourceVersion, or an integer as text for SQLite); "" before it is stored.
    `starts_at` is when the approved duration began (the approval that completed it);
    `ends_at` = starts_at + duration (0 while pending). `uses` counts exchanges made with it.
    """

    id: str
    mapping: str
    requester: Requester
    reason: str = ""
    ticket: str = ""
    duration: int  # seconds asked for (at most the mapping's approval.maxDuration)
    bound: Mapping[str, Any] = field(default_factory=dict)
    state: State = State.PENDING
    created_at: int
    approvals: tuple[Approval, ...] = ()
    decided_by: Requester | None = None  # who denied or revoked
    decision_reason: str = ""  # why denied or revoked
    starts_at: int = 0
    ends_at: int = 0
    uses: int = 0
    version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "mapping": self.mapping, "requester": self.requester.to_dict(),
            "reason": self.reason, "ticket": self.ticket, "duration": self.duration,
            "bound": dict(self.bound), "state": self.state.value, "created_at": self.created_at,
            "approvals": [a.to_dict() for a in self.approvals],
            "decided_by": self.decided_by.to_dict() if self.decided_by else None,
            "decision_reason": self.decision_reason, "starts_at": self.starts_at,
            "ends_at": self.ends_at, "uses": self.uses,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], version: str = "") -> AccessRequest:
        decided = data.get("decided_by")
        return cls(
            id=str(data["id"]), mapping=str(data["mapping"]),
            requester=Requester.from_dict(data["requester"]), reason=str(data.get("reason", "")),
            ticket=str(data.get("ticket", "")), duration=int(data["duration"]),
            bound=dict(data.get("bound") or {}), state=State(data.get("state", "pending")),
            created_at=int(data["created_at"]),
            approvals=tuple(Approval.from_dict(a) for a in data.get("approvals") or ()),
            decided_by=Requester.from_dict(decided) if decided else None,
            decision_reason=str(data.get("decision_reason", "")),
            starts_at=int(data.get("starts_at", 0)), ends_at=int(data.get("ends_at", 0)),
            uses=int(data.get("uses", 0)), version=version)


class SessionEnd(enum.StrEnum):
    """Why a session ended (empty while it runs)."""

    EXPIRED = "expired"  # the credential ran out
    REVOKED = "revoked"  # someone revoked the session or its request
    REQUEST_ENDED = "request-ended"  # the access request's duration is over
    WINDOW_CLOSED = "window-closed"  # the mapping's window closed
    CALLER_GONE = "caller-gone"  # the caller pod is gone
    JOB_FINISHED = "job-finished"  # the CI job that held it finished (CI webhook)


@dataclass(frozen=True, kw_only=True)
class Session:
    """One issued credential, recorded where every replica sees it: the index behind
    `kubegate sessions` and the reaper.

    `secret` is "namespace/name" of the session Secret that revokes a TokenRequest token when
    deleted ("" for a pod-bound or self-issued credential, which cannot be revoked early);
    `caller_pod` is "namespace/name/uid" when the caller was a pod of the cluster.
    `not_after` is when the session must end at the latest: the credential's expiry, or
    earlier the end of its access request or window. `ci` holds the caller's CI claims that
    identify its run or job (GitHub: repository_id, run_id, run_attempt; GitLab: project_id,
    pipeline_id, job_id), so a CI job's end can revoke it.
    """

    id: str
    mapping: str
    cluster: str
    namespace: str
    caller: Requester
    token_id: str
    issued_at: int
    expires_at: int
    not_after: int
    secret: str = ""
    caller_pod: str = ""
    access_request: str = ""
    ci: Mapping[str, str] = field(default_factory=dict)
    ended_at: int = 0
    end_reason: SessionEnd | None = None
    ended_by: Requester | None = None
    version: str = ""

    @property
    def active(self) -> bool:
        return self.ended_at == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "mapping": self.mapping, "cluster": self.cluster,
            "namespace": self.namespace, "caller": self.caller.to_dict(),
            "token_id": self.token_id, "issued_at": self.issued_at,
            "expires_at": self.expires_at, "not_after": self.not_after, "secret": self.secret,
            "caller_pod": self.caller_pod, "access_request": self.access_request,
            "ci": dict(self.ci), "ended_at": self.ended_at,
            "end_reason": self.end_reason.value if self.end_reason else "",
            "ended_by": self.ended_by.to_dict() if self.ended_by else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], version: str = "") -> Session:
        ended_by = data.get("ended_by")
        reason = data.get("end_reason") or ""
        return cls(
            id=str(data["id"]), mapping=str(data["mapping"]), cluster=str(data["cluster"]),
            namespace=str(data["namespace"]), caller=Requester.from_dict(data["caller"]),
            token_id=str(data["token_id"]), issued_at=int(data["issued_at"]),
            expires_at=int(data["expires_at"]), not_after=int(data["not_after"]),
            secret=str(data.get("secret", "")), caller_pod=str(data.get("caller_pod", "")),
            access_request=str(data.get("access_request", "")),
            ci={str(k): str(v) for k, v in (data.get("ci") or {}).items()},
            ended_at=int(data.get("ended_at", 0)),
            end_reason=SessionEnd(reason) if reason else None,
            ended_by=Requester.from_dict(ended_by) if ended_by else None, version=version)
