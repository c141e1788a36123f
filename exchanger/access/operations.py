"""The use cases behind AccessService and SessionService, free of gRPC: a verified identity
and plain values in, stored values out, every change emitted as a lifecycle event.

Rules of this module:
- the caller is already authenticated (`identity`, verified by the exchange's verifier) and
  rate-limited; this module decides who may see and do what (`authz`, `lifecycle`);
- approve, deny and revoke are compare-and-swap: on `ConflictError` the request is read again
  and the change re-applied, up to `CAS_ATTEMPTS` times, so two approvers at once both count;
- a change is refused (UNAVAILABLE, AUDIT_UNAVAILABLE) while the audit log cannot be
  written: nothing changes that could not be recorded;
- revoking a request ends its sessions (`Revoker.revoke_request`) after the request is stored
  as revoked, so no new exchange can use it while its sessions are being ended.
"""

from __future__ import annotations

import builtins
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from exchanger.access import lifecycle
from exchanger.access.authz import Viewer, hidden, is_admin
from exchanger.access.events import AccessEvents
from exchanger.access.model import AccessRequest, Requester, Session, SessionEnd, State
from exchanger.access.ports import AccessStore, ConflictError, SessionStore
from exchanger.access.settings import AccessAdmin
from exchanger.audit.log import AuditWriteError
from exchanger.identity import Identity
from exchanger.mappings.model import MappingSet, TrustMapping
from kubegate.errors import PermissionDeniedError, PreconditionError

__all__ = ["CAS_ATTEMPTS", "AccessOperations", "AccessRights", "SessionOperations"]

CAS_ATTEMPTS = 5
REQUEST = "access request"
SESSION = "session"


class Mappings(Protocol):
    @property
    def current(self) -> MappingSet: ...


class Revocations(Protocol):
    def revoke_session(self, session_id: str, *, by: Requester | None,
                       reason: SessionEnd) -> Session: ...

    def revoke_request(self, request_id: str, *, by: Requester | None,
                       reason: SessionEnd = SessionEnd.REVOKED) -> list[Session]: ...


def new_request_id() -> str:
    return "ar-" + secrets.token_hex(8)


@dataclass(frozen=True, kw_only=True)
class AccessRights:
    """What operations share: the mappings, the admins, the audit-and-notify events."""

    mappings: Mappings
    admins: tuple[AccessAdmin, ...]
    events: AccessEvents
    clock: Callable[[], float]

    def viewer(self, identity: Identity) -> Viewer:
        return Viewer(identity=identity, admin=is_admin(identity, self.admins),
                      mapping_of=self.mapping)

    def mapping(self, name: str) -> TrustMapping | None:
        return self.mappings.current.get(name)

    def required(self, mapping_name: str) -> int:
        mapping = self.mapping(mapping_name)
        return mapping.approval.count if mapping and mapping.approval else 0

    def check_writable(self) -> None:
        if not self.events.writable():
            raise AuditWriteError("the audit log cannot be written; access changes are "
                                  "refused until it can")


class AccessOperations:
    """Create, read, watch and decide access requests."""

    def __init__(self, *, store: AccessStore, rights: AccessRights,
                 revoker: Revocations | None = None,
                 new_id: Callable[[], str] = new_request_id) -> None:
        self._store, self._rights, self._revoker, self._new_id = (
            store, rights, revoker, new_id)

    @classmethod
    def build(cls, *, store: AccessStore, mappings: Mappings, admins: tuple[AccessAdmin, ...],
              events: AccessEvents, clock: Callable[[], float],
              revoker: Revocations | None = None,
              new_id: Callable[[], str] = new_request_id) -> AccessOperations:
        rights = AccessRights(mappings=mappings, admins=admins, events=events, clock=clock)
        return cls(store=store, rights=rights, revoker=revoker, new_id=new_id)

    @property
    def rights(self) -> AccessRights:
        return self._rights

    def required(self, request: AccessRequest) -> int:
        return self._rights.required(request.mapping)

    def create(self, identity: Identity, *, role: str, reason: str, ticket: str,
               duration: int, peer: str = "") -> AccessRequest:
        mapping = self._rights.mapping(role)
        if mapping is None or mapping.issuer != identity.issuer:
            raise PermissionDeniedError(
                "ROLE_NOT_ALLOWED", f"role {role!r}: unknown, or for another issuer",
                public_message="the requested role is not allowed for this identity")
        policy = lifecycle.policy_of(mapping)  # NO_APPROVAL_NEEDED
        self._rights.check_writable()
        request = lifecycle.new_request(
            mapping=mapping, identity=identity, reason=reason, ticket=ticket,
            duration=duration or policy.max_duration, now=int(self._rights.clock()),
            request_id=self._new_id())
        stored = self._store.create(request)
        self._emit("created", stored, identity, words=reason, peer=peer)
        return stored

    def get(self, identity: Identity, request_id: str) -> AccessRequest:
        return self._visible(self._rights.viewer(identity), request_id)

    def list(self, identity: Identity, *, states: frozenset[State] | None = None,
             role: str = "", mine_only: bool = False) -> list[AccessRequest]:
        viewer = self._rights.viewer(identity)
        found = self._store.list(states=states or None, mapping=role,
                                 requester_subject=identity.subject if mine_only else "")
        return [r for r in found if self._shown(viewer, r, mine_only)]

    def watch(self, identity: Identity, *, since: str, stop: threading.Event, role: str = "",
              mine_only: bool = False) -> Iterator[tuple[str, AccessRequest]]:
        viewer = self._rights.viewer(identity)
        for kind, request in self._store.watch(since, stop):
            if (not role or request.mapping == role) and self._shown(viewer, request,
                                                                     mine_only):
                yield kind, request

    def approve(self, identity: Identity, request_id: str, *, comment: str = "",
                peer: str = "") -> AccessRequest:
        def change(request: AccessRequest, mapping: TrustMapping) -> AccessRequest:
            return lifecycle.approve(request, mapping=mapping, approver=identity,
                                     now=int(self._rights.clock()), comment=comment,
                                     admins=self._rights.admins)

        stored = self._decide(identity, request_id, change)
        self._emit("approved", stored, identity, words=comment, peer=peer)
        return stored

    def deny(self, identity: Identity, request_id: str, *, reason: str,
             peer: str = "") -> AccessRequest:
        def change(request: AccessRequest, mapping: TrustMapping) -> AccessRequest:
            return lifecycle.deny(request, mapping=mapping, approver=identity, reason=reason,
                                  now=int(self._rights.clock()), admins=self._rights.admins)

        stored = self._decide(identity, request_id, change)
        self._emit("denied", stored, identity, words=reason, peer=peer)
        return stored

    def revoke(self, identity: Identity, request_id: str, *, reason: str,
               peer: str = "") -> tuple[AccessRequest, builtins.list[Session]]:
        def change(request: AccessRequest, mapping: TrustMapping) -> AccessRequest:
            return lifecycle.revoke(request, mapping=mapping, caller=identity, reason=reason,
                                    now=int(self._rights.clock()), admins=self._rights.admins)

        stored = self._decide(identity, request_id, change)
        sessions = self._revoker.revoke_request(
            request_id, by=lifecycle.requester_of(identity),
            reason=SessionEnd.REVOKED) if self._revoker is not None else []
        self._emit("revoked", stored, identity, words=reason, peer=peer,
                   facts={"sessions": [s.id for s in sessions]})
        return stored, sessions

    def _shown(self, viewer: Viewer, request: AccessRequest, mine_only: bool) -> bool:
        return viewer.owns(request) if mine_only else viewer.sees_request(request)

    def _visible(self, viewer: Viewer, request_id: str) -> AccessRequest:
        request = self._store.get(request_id)
        if request is None:
            raise viewer.missing(REQUEST, request_id)
        if not viewer.sees_request(request):
            raise hidden(REQUEST, request_id)
        return request

    def _decide(self, identity: Identity, request_id: str,
                change: Callable[[AccessRequest, TrustMapping], AccessRequest]
                ) -> AccessRequest:
        """Read, change, compare-and-swap; again on a conflict (another decider won)."""
        viewer = self._rights.viewer(identity)
        self._rights.check_writable()
        for _ in range(CAS_ATTEMPTS):
            request = self._visible(viewer, request_id)
            mapping = self._rights.mapping(request.mapping)
            if mapping is None:
                raise PreconditionError(
                    "MAPPING_NOT_CONFIGURED", f"mapping {request.mapping} is gone",
                    public_message=f"the mapping {request.mapping} is no longer configured")
            try:
                return self._store.replace(change(request, mapping))
            except ConflictError:
                continue
        raise ConflictError(f"access request {request_id}")

    def _emit(self, event: str, request: AccessRequest, identity: Identity, *, words: str,
              peer: str, facts: dict[str, object] | None = None) -> None:
        self._rights.events.emit(event, request, lifecycle.requester_of(identity),
                                 identity=identity, words=words, peer=peer, facts=facts,
                                 required=self.required(request))


class SessionOperations:
    """List, read and revoke sessions."""

    def __init__(self, *, sessions: SessionStore, rights: AccessRights,
                 revoker: Revocations, requests: AccessStore) -> None:
        self._sessions, self._rights, self._revoker, self._requests = (
            sessions, rights, revoker, requests)

    def list(self, identity: Identity, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]:
        viewer = self._rights.viewer(identity)
        found = self._sessions.list(active_only=active_only, access_request=access_request,
                                    cluster=cluster)
        return [s for s in found if viewer.sees_session(s)]

    def get(self, identity: Identity, session_id: str) -> Session:
        return self._visible(self._rights.viewer(identity), session_id)

    def revoke(self, identity: Identity, session_id: str, *, reason: str,
               peer: str = "") -> Session:
        viewer = self._rights.viewer(identity)
        self._visible(viewer, session_id)
        self._rights.check_writable()
        actor = lifecycle.requester_of(identity)
        session = self._revoker.revoke_session(session_id, by=actor, reason=SessionEnd.REVOKED)
        request = self._request_of(session)
        self._rights.events.emit(
            "session-revoked", request, actor, identity=identity, words=reason,
            session=session, peer=peer, required=self._rights.required(request.mapping))
        return session

    def _visible(self, viewer: Viewer, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise viewer.missing(SESSION, session_id)
        if not viewer.sees_session(session):
            raise hidden(SESSION, session_id)
        return session

    def _request_of(self, session: Session) -> AccessRequest:
        """The session's access request, or a stand-in naming the session's caller and
        mapping for a session opened without one (the audit line's subject)."""
        found = (self._requests.get(session.access_request) if session.access_request
                 else None)
        return found or AccessRequest(
            id=session.access_request, mapping=session.mapping, requester=session.caller,
            duration=0, created_at=session.issued_at, state=State.ACTIVE)
