"""The gRPC AccessService and SessionService: wire messages in, an authenticated identity and
domain values to `operations`, wire messages out.

Rules of this module:
- every call is authenticated by its own metadata, `authorization: Bearer <subject token>`,
  verified by the exchange's verifier (UNAUTHENTICATED with the verifier's reason) and then
  rate-limited per identity (RESOURCE_EXHAUSTED RATE_LIMITED), before anything is read;
- one boundary per call turns our errors into their status with an ErrorInfo (the exchange
  service's `error_status`) and anything else into INTERNAL with a log id;
- a watch holds a worker thread for as long as it runs, so at most `MAX_WATCHES` run at
  once (RESOURCE_EXHAUSTED TOO_MANY_WATCHES); it ends when the caller cancels or the server
  stops (the call's callback sets the store watch's stop event);
- no message carries a token: session Secrets are reported as `revocable` only.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc

from exchanger.access.model import AccessRequest, Approval, Requester, Session, State
from exchanger.access.operations import AccessOperations, SessionOperations
from exchanger.access.revocation import outlives_revocation
from exchanger.identity import Identity
from exchanger.service import error_status, internal_status
from exchanger.v1 import access_pb2, access_pb2_grpc
from kubegate.errors import InvalidTokenError, KubegateError, RateLimitedError

__all__ = ["MAX_WATCHES", "AccessServicer", "Authenticator", "SessionServicer",
           "add_access_services", "bearer_token"]

log = logging.getLogger(__name__)

MAX_WATCHES = 4  # of the server's 16 worker threads
MISSING_TOKEN = "MISSING_TOKEN"  # noqa: S105 - a reason, not a secret
T = TypeVar("T")
PB_STATES = {State.PENDING: access_pb2.ACCESS_REQUEST_STATE_PENDING,
             State.APPROVED: access_pb2.ACCESS_REQUEST_STATE_APPROVED,
             State.ACTIVE: access_pb2.ACCESS_REQUEST_STATE_ACTIVE,
             State.DENIED: access_pb2.ACCESS_REQUEST_STATE_DENIED,
             State.EXPIRED: access_pb2.ACCESS_REQUEST_STATE_EXPIRED,
             State.REVOKED: access_pb2.ACCESS_REQUEST_STATE_REVOKED}
STATES_OF_PB = {value: state for state, value in PB_STATES.items()}


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Identity: ...


class IdentityLimiter(Protocol):
    def check(self, identity: Identity) -> None: ...


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The token of the call's `authorization: Bearer <token>` metadata, or
    InvalidTokenError MISSING_TOKEN."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    raise InvalidTokenError(
        MISSING_TOKEN, "no authorization: Bearer metadata",
        public_message="send your token as call metadata: authorization: Bearer <token>")


class Authenticator:
    """The call's verified, rate-limited identity."""

    def __init__(self, verifier: TokenVerifier, limiter: IdentityLimiter | None) -> None:
        self._verifier, self._limiter = verifier, limiter

    def identify(self, context: grpc.ServicerContext) -> Identity:
        identity = self._verifier.verify(bearer_token(context.invocation_metadata()))
        if self._limiter is not None:
            self._limiter.check(identity)
        return identity


def _answer(context: grpc.ServicerContext, what: str, work: Callable[[], T]) -> T:
    """Run one call's work; our errors become their status, anything else INTERNAL."""
    try:
        return work()
    except KubegateError as error:
        context.abort_with_status(error_status(error))
    except Exception:
        log_id = uuid.uuid4().hex[:12]
        log.exception("%s failed unexpectedly (log id %s)", what, log_id)
        context.abort_with_status(internal_status(log_id))
    raise AssertionError("unreachable: abort_with_status raises")


def _principal(person: Requester | None) -> access_pb2.Principal | None:
    if person is None:
        return None
    return access_pb2.Principal(issuer=person.issuer, subject=person.subject, who=person.who)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _approval(approval: Approval) -> access_pb2.Approval:
    message = access_pb2.Approval(approver=_principal(approval.approver),
                                  comment=approval.comment)
    message.at.FromSeconds(approval.at)
    return message


def request_message(request: AccessRequest, required: int) -> access_pb2.AccessRequest:
    message = access_pb2.AccessRequest(
        id=request.id, mapping=request.mapping, requester=_principal(request.requester),
        reason=request.reason, ticket=request.ticket,
        bound={str(k): _text(v) for k, v in request.bound.items()},
        state=PB_STATES[request.state], approvals=[_approval(a) for a in request.approvals],
        approvals_required=required, decided_by=_principal(request.decided_by),
        decision_reason=request.decision_reason, uses=request.uses, version=request.version)
    message.duration.FromSeconds(request.duration)
    message.created_at.FromSeconds(request.created_at)
    for field, seconds in (("starts_at", request.starts_at), ("ends_at", request.ends_at)):
        if seconds:
            getattr(message, field).FromSeconds(seconds)
    return message


def session_message(session: Session) -> access_pb2.Session:
    message = access_pb2.Session(
        id=session.id, mapping=session.mapping, cluster=session.cluster,
        namespace=session.namespace, caller=_principal(session.caller),
        token_id=session.token_id, revocable=not outlives_revocation(session),
        caller_pod=session.caller_pod, access_request=session.access_request,
        ci=dict(session.ci), active=session.active,
        end_reason=session.end_reason.value if session.end_reason else "",
        ended_by=_principal(session.ended_by))
    for field, seconds in (("issued_at", session.issued_at),
                           ("expires_at", session.expires_at),
                           ("not_after", session.not_after), ("ended_at", session.ended_at)):
        if seconds:
            getattr(message, field).FromSeconds(seconds)
    return message


def _duration(message: access_pb2.CreateAccessRequestRequest) -> int:
    return message.duration.seconds if message.HasField("duration") else 0


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    def __init__(self, operations: AccessOperations, auth: Authenticator,
                 max_watches: int = MAX_WATCHES) -> None:
        self._ops, self._auth = operations, auth
        self._watches = threading.BoundedSemaphore(max_watches)

    def _message(self, request: AccessRequest) -> access_pb2.AccessRequest:
        return request_message(request, self._ops.required(request))

    def CreateAccessRequest(  # noqa: N802 - the generated interface's names
            self, request: access_pb2.CreateAccessRequestRequest,
            context: grpc.ServicerContext) -> access_pb2.AccessRequest:
        def work() -> access_pb2.AccessRequest:
            created = self._ops.create(
                self._auth.identify(context), role=request.role, reason=request.reason,
                ticket=request.ticket, duration=_duration(request), peer=context.peer())
            return self._message(created)
        return _answer(context, "CreateAccessRequest", work)

    def GetAccessRequest(  # noqa: N802
            self, request: access_pb2.GetAccessRequestRequest,
            context: grpc.ServicerContext) -> access_pb2.AccessRequest:
        return _answer(context, "GetAccessRequest", lambda: self._message(
            self._ops.get(self._auth.identify(context), request.id)))

    def ListAccessRequests(  # noqa: N802
            self, request: access_pb2.ListAccessRequestsRequest,
            context: grpc.ServicerContext) -> access_pb2.ListAccessRequestsResponse:
        def work() -> access_pb2.ListAccessRequestsResponse:
            states = frozenset(STATES_OF_PB[s] for s in request.states if s in STATES_OF_PB)
            found = self._ops.list(self._auth.identify(context), states=states or None,
                                   role=request.role, mine_only=request.mine_only)
            return access_pb2.ListAccessRequestsResponse(
                requests=[self._message(r) for r in found])
        return _answer(context, "ListAccessRequests", work)

    def WatchAccessRequests(  # noqa: N802
            self, request: access_pb2.WatchAccessRequestsRequest,
            context: grpc.ServicerContext) -> Iterator[access_pb2.AccessRequestEvent]:
        stop = threading.Event()
        context.add_callback(stop.set)
        identity = _answer(context, "WatchAccessRequests", lambda: self._auth.identify(context))
        if not self._watches.acquire(blocking=False):
            _answer(context, "WatchAccessRequests", _too_many_watches)
        try:
            changes = self._ops.watch(identity, since=request.since, stop=stop,
                                      role=request.role, mine_only=request.mine_only)
            while not stop.is_set():
                change = _answer(context, "WatchAccessRequests", lambda: next(changes, None))
                if change is None:
                    return
                yield access_pb2.AccessRequestEvent(kind=change[0],
                                                    request=self._message(change[1]))
        finally:
            self._watches.release()

    def ApproveAccessRequest(  # noqa: N802
            self, request: access_pb2.ApproveAccessRequestRequest,
            context: grpc.ServicerContext) -> access_pb2.AccessRequest:
        return _answer(context, "ApproveAccessRequest", lambda: self._message(
            self._ops.approve(self._auth.identify(context), request.id,
                              comment=request.comment, peer=context.peer())))

    def DenyAccessRequest(  # noqa: N802
            self, request: access_pb2.DenyAccessRequestRequest,
            context: grpc.ServicerContext) -> access_pb2.AccessRequest:
        return _answer(context, "DenyAccessRequest", lambda: self._message(
            self._ops.deny(self._auth.identify(context), request.id, reason=request.reason,
                           peer=context.peer())))

    def RevokeAccessRequest(  # noqa: N802
            self, request: access_pb2.RevokeAccessRequestRequest,
            context: grpc.ServicerContext) -> access_pb2.RevokeAccessRequestResponse:
        def work() -> access_pb2.RevokeAccessRequestResponse:
            revoked, sessions = self._ops.revoke(
                self._auth.identify(context), request.id, reason=request.reason,
                peer=context.peer())
            return access_pb2.RevokeAccessRequestResponse(
                request=self._message(revoked),
                sessions=[session_message(s) for s in sessions])
        return _answer(context, "RevokeAccessRequest", work)


def _too_many_watches() -> None:
    raise RateLimitedError("TOO_MANY_WATCHES", f"{MAX_WATCHES} watches run already",
                           public_message="too many watches at once; try again later")


class SessionServicer(access_pb2_grpc.SessionServiceServicer):
    def __init__(self, operations: SessionOperations, auth: Authenticator) -> None:
        self._ops, self._auth = operations, auth

    def ListSessions(  # noqa: N802
            self, request: access_pb2.ListSessionsRequest,
            context: grpc.ServicerContext) -> access_pb2.ListSessionsResponse:
        return _answer(context, "ListSessions", lambda: access_pb2.ListSessionsResponse(
            sessions=[session_message(s) for s in self._ops.list(
                self._auth.identify(context), active_only=request.active_only,
                access_request=request.access_request, cluster=request.cluster)]))

    def GetSession(  # noqa: N802
            self, request: access_pb2.GetSessionRequest,
            context: grpc.ServicerContext) -> access_pb2.Session:
        return _answer(context, "GetSession", lambda: session_message(
            self._ops.get(self._auth.identify(context), request.id)))

    def RevokeSession(  # noqa: N802
            self, request: access_pb2.RevokeSessionRequest,
            context: grpc.ServicerContext) -> access_pb2.Session:
        return _answer(context, "RevokeSession", lambda: session_message(
            self._ops.revoke(self._auth.identify(context), request.id, reason=request.reason,
                             peer=context.peer())))


ACCESS_SERVICE = access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name
SESSION_SERVICE = access_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name


def add_access_services(access: AccessServicer, sessions: SessionServicer,
                        server: grpc.Server) -> tuple[str, str]:
    """Register both services on `server`; their full names (for health and reflection)."""
    access_pb2_grpc.add_AccessServiceServicer_to_server(access, server)  # type: ignore[no-untyped-call]
    access_pb2_grpc.add_SessionServiceServicer_to_server(sessions, server)  # type: ignore[no-untyped-call]
    return ACCESS_SERVICE, SESSION_SERVICE
