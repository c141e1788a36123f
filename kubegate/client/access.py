"""The exchanger's just-in-time access API as a client: access requests (create, get, list,
watch, approve, deny, revoke) and sessions (list, get, revoke), for `kubegate access` and
`kubegate sessions`.

    with AccessClient("kubegate.example.com:443", token=source.read) as client:
        request = client.create(role="prod-admin", reason="INC-42", duration=1800)

It speaks gRPC and turns answers into plain frozen values (`AccessRequest`, `Session`, ...);
no generated type leaves this module. Refusals are `ExchangeError` (kubegate.errors) with the
code, the stable reason from google.rpc.ErrorInfo and the public message, decoded like the
exchange's (`kubegate.client.rpc.to_exchange_error`).

Rules of this module:
- every call carries `authorization: Bearer <token>`, the token read from `token()` for that
  call (a person's ID token may have been refreshed since the last one); it is never logged,
  kept or put in an error;
- only transient failures are retried, and a call that changes something only when the
  exchanger cannot have acted on it (`_RETRY_CHANGES`); a denial never is;
- times are whole unix seconds, 0 for "unset"; `as_json` is the one JSON form (the messages'
  field names, times in RFC 3339 or null, the state in lower case, durations as "1800s").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from exchanger.v1 import access_pb2, access_pb2_grpc
from kubegate.client.rpc import channel_for, to_exchange_error
from kubegate.credential import rfc3339
from kubegate.errors import Code, ExchangeError

__all__ = ["AccessClient", "AccessEvent", "AccessRequest", "Approval", "Principal",
           "RevokedRequest", "Session", "State", "as_json"]

# A read is worth another try whenever the server or the path to it is down, slow or shedding
# load (Code.transient). A change is retried only when the exchanger did not act on it: it
# could not be reached (UNAVAILABLE) or shed the call (RESOURCE_EXHAUSTED). After a deadline
# or a cancellation it may have created the request, so a second one would be a duplicate.
_RETRY_CHANGES = frozenset({Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED})


class State(enum.StrEnum):
    """An access request's lifecycle, as `--state` and the JSON name it."""

    UNSPECIFIED = "unspecified"
    PENDING = "pending"
    APPROVED = "approved"
    ACTIVE = "active"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"

    @property
    def granted(self) -> bool:
        return self in (State.APPROVED, State.ACTIVE)

    @property
    def ended(self) -> bool:
        return self in (State.DENIED, State.EXPIRED, State.REVOKED)


_STATE_PREFIX = "ACCESS_REQUEST_STATE_"


@dataclass(frozen=True, kw_only=True)
class Principal:
    issuer: str = ""
    subject: str = ""
    who: str = ""

    @property
    def name(self) -> str:
        """For people reading: `who` when known, else `subject@issuer`; "" when unset."""
        if self.who:
            return self.who
        return f"{self.subject}@{self.issuer}" if self.subject else ""


@dataclass(frozen=True, kw_only=True)
class Approval:
    approver: Principal
    at: int
    comment: str = ""


@dataclass(frozen=True, kw_only=True)
class AccessRequest:
    id: str
    mapping: str
    requester: Principal
    reason: str = ""
    ticket: str = ""
    duration: int = 0
    bound: Mapping[str, str] = field(default_factory=dict)
    state: State = State.PENDING
    created_at: int = 0
    approvals: tuple[Approval, ...] = ()
    approvals_required: int = 0
    decided_by: Principal | None = None
    decision_reason: str = ""
    starts_at: int = 0
    ends_at: int = 0
    uses: int = 0
    version: str = ""


@dataclass(frozen=True, kw_only=True)
class AccessEvent:
    kind: str  # added, modified, deleted
    request: AccessRequest


@dataclass(frozen=True, kw_only=True)
class Session:
    id: str
    mapping: str
    cluster: str
    namespace: str
    caller: Principal
    token_id: str = ""
    issued_at: int = 0
    expires_at: int = 0
    not_after: int = 0
    revocable: bool = False
    caller_pod: str = ""
    access_request: str = ""
    ci: Mapping[str, str] = field(default_factory=dict)
    active: bool = True
    ended_at: int = 0
    end_reason: str = ""
    ended_by: Principal | None = None


@dataclass(frozen=True, kw_only=True)
class RevokedRequest:
    request: AccessRequest
    sessions: tuple[Session, ...] = ()


# -- from the wire ----------------------------------------------------------------------------


def _seconds(stamp: timestamp_pb2.Timestamp) -> int:
    return int(stamp.seconds)


def _principal(message: access_pb2.Principal) -> Principal:
    return Principal(issuer=message.issuer, subject=message.subject, who=message.who)


def _optional_principal(owner: Any, name: str) -> Principal | None:
    return _principal(getattr(owner, name)) if owner.HasField(name) else None


def _state(value: int) -> State:
    name = access_pb2.AccessRequestState.Name(value) if value in \
        access_pb2.AccessRequestState.values() else ""
    text = name.removeprefix(_STATE_PREFIX).lower()
    return State(text) if text in State.__members__.values() else State.UNSPECIFIED


def state_value(state: State) -> access_pb2.AccessRequestState:
    """The wire value of a state (for the list filter)."""
    value = access_pb2.AccessRequestState.Value(_STATE_PREFIX + state.name)
    return cast("access_pb2.AccessRequestState", value)


def from_request(message: access_pb2.AccessRequest) -> AccessRequest:
    return AccessRequest(
        id=message.id, mapping=message.mapping, requester=_principal(message.requester),
        reason=message.reason, ticket=message.ticket, duration=int(message.duration.seconds),
        bound=dict(message.bound), state=_state(message.state),
        created_at=_seconds(message.created_at),
        approvals=tuple(Approval(approver=_principal(a.approver), at=_seconds(a.at),
                                 comment=a.comment) for a in message.approvals),
        approvals_required=message.approvals_required,
        decided_by=_optional_principal(message, "decided_by"),
        decision_reason=message.decision_reason, starts_at=_seconds(message.starts_at),
        ends_at=_seconds(message.ends_at), uses=message.uses, version=message.version)


def from_session(message: access_pb2.Session) -> Session:
    return Session(
        id=message.id, mapping=message.mapping, cluster=message.cluster,
        namespace=message.namespace, caller=_principal(message.caller),
        token_id=message.token_id, issued_at=_seconds(message.issued_at),
        expires_at=_seconds(message.expires_at), not_after=_seconds(message.not_after),
        revocable=message.revocable, caller_pod=message.caller_pod,
        access_request=message.access_request, ci=dict(message.ci), active=message.active,
        ended_at=_seconds(message.ended_at), end_reason=message.end_reason,
        ended_by=_optional_principal(message, "ended_by"))


# -- as JSON ----------------------------------------------------------------------------------


def as_json(value: object) -> Any:
    """The JSON form of a value of this module (recursively)."""
    if isinstance(value, AccessRequest | Session | Approval | Principal | AccessEvent
                  | RevokedRequest):
        return {name: _json_field(name, getattr(value, name))
                for name in value.__dataclass_fields__}
    if isinstance(value, tuple | list):
        return [as_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): as_json(item) for key, item in value.items()}
    return value.value if isinstance(value, enum.Enum) else value


_TIMES = frozenset({"at", "created_at", "starts_at", "ends_at", "issued_at", "expires_at",
                    "not_after", "ended_at"})


def _json_field(name: str, value: object) -> Any:
    if name in _TIMES and isinstance(value, int):
        return rfc3339(value) if value else None
    if name == "duration" and isinstance(value, int):
        return f"{value}s"
    return as_json(value)


# -- the client -------------------------------------------------------------------------------


class AccessClient:
    """The AccessService and SessionService of one exchanger, called as one identity."""

    def __init__(self, target: str, *, token: Callable[[], str], ca_file: Path | None = None,
                 plaintext: bool = False, timeout: float = 10.0, attempts: int = 4,
                 retry_budget: float = 30.0) -> None:
        self._channel = channel_for(target, ca_file=ca_file, plaintext=plaintext)
        stubs: Any = access_pb2_grpc  # generated without annotations
        self._access = stubs.AccessServiceStub(self._channel)
        self._sessions = stubs.SessionServiceStub(self._channel)
        self._token, self._timeout = token, timeout
        self._attempts, self._budget = attempts, retry_budget

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AccessClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- access requests ---------------------------------------------------------------------

    def create(self, *, role: str, reason: str = "", ticket: str = "",
               duration: int = 0) -> AccessRequest:
        """A new pending request; duration 0 asks for the mapping's longest."""
        message = access_pb2.CreateAccessRequestRequest(role=role, reason=reason, ticket=ticket)
        if duration:
            message.duration.CopyFrom(duration_pb2.Duration(seconds=duration))
        return from_request(self._change(self._access.CreateAccessRequest, message))

    def get(self, request_id: str) -> AccessRequest:
        message = access_pb2.GetAccessRequestRequest(id=request_id)
        return from_request(self._read(self._access.GetAccessRequest, message))

    def list(self, *, states: tuple[State, ...] = (), role: str = "",
             mine_only: bool = False) -> tuple[AccessRequest, ...]:
        message = access_pb2.ListAccessRequestsRequest(
            states=[state_value(s) for s in states], role=role, mine_only=mine_only)
        reply = self._read(self._access.ListAccessRequests, message)
        return tuple(from_request(r) for r in reply.requests)

    def approve(self, request_id: str, *, comment: str = "") -> AccessRequest:
        message = access_pb2.ApproveAccessRequestRequest(id=request_id, comment=comment)
        return from_request(self._change(self._access.ApproveAccessRequest, message))

    def deny(self, request_id: str, *, reason: str) -> AccessRequest:
        message = access_pb2.DenyAccessRequestRequest(id=request_id, reason=reason)
        return from_request(self._change(self._access.DenyAccessRequest, message))

    def revoke(self, request_id: str, *, reason: str) -> RevokedRequest:
        message = access_pb2.RevokeAccessRequestRequest(id=request_id, reason=reason)
        reply = self._change(self._access.RevokeAccessRequest, message)
        return RevokedRequest(request=from_request(reply.request),
                              sessions=tuple(from_session(s) for s in reply.sessions))

    def watch(self, *, since: str = "", role: str = "", mine_only: bool = False,
              timeout: float | None = None) -> Iterator[AccessEvent]:
        """Every change the caller may see, until the stream ends, `timeout` seconds pass
        (DEADLINE_EXCEEDED) or the iterator is closed (the call is cancelled then). Not
        retried: the caller resumes with `since` = the last event's version."""
        message = access_pb2.WatchAccessRequestsRequest(since=since, role=role,
                                                        mine_only=mine_only)
        stream = self._access.WatchAccessRequests(message, timeout=timeout,
                                                  metadata=self._metadata())
        try:
            for event in stream:
                yield AccessEvent(kind=event.kind, request=from_request(event.request))
        except grpc.RpcError as error:
            raise to_exchange_error(error) from None
        finally:
            stream.cancel()

    # -- sessions ----------------------------------------------------------------------------

    def sessions(self, *, active_only: bool = False, access_request: str = "",
                 cluster: str = "") -> tuple[Session, ...]:
        message = access_pb2.ListSessionsRequest(active_only=active_only,
                                                 access_request=access_request, cluster=cluster)
        reply = self._read(self._sessions.ListSessions, message)
        return tuple(from_session(s) for s in reply.sessions)

    def session(self, session_id: str) -> Session:
        message = access_pb2.GetSessionRequest(id=session_id)
        return from_session(self._read(self._sessions.GetSession, message))

    def revoke_session(self, session_id: str, *, reason: str) -> Session:
        message = access_pb2.RevokeSessionRequest(id=session_id, reason=reason)
        return from_session(self._change(self._sessions.RevokeSession, message))

    # -- one call ----------------------------------------------------------------------------

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token()}"),)

    def _read(self, method: Callable[..., Any], message: object) -> Any:
        return self._retrying(lambda e: e.transient)(self._once, method, message)

    def _change(self, method: Callable[..., Any], message: object) -> Any:
        return self._retrying(lambda e: e.code in _RETRY_CHANGES)(self._once, method, message)

    def _retrying(self, worth_it: Callable[[ExchangeError], bool]) -> Retrying:
        return Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, ExchangeError) and worth_it(e)),
            stop=stop_after_attempt(self._attempts) | stop_after_delay(self._budget),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0), reraise=True)

    def _once(self, method: Callable[..., Any], message: object) -> Any:
        try:
            return method(message, timeout=self._timeout, metadata=self._metadata())
        except grpc.RpcError as error:
            raise to_exchange_error(error) from None
