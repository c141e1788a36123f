"""Ending sessions: revoke one, every session of an access request, every session of a
finished CI job, and (for the reaper) every session that is due.

A TokenRequest token bound to a session Secret dies with that Secret, so ending such a
session is two steps, in this order: delete the Secret by name (the API server refuses the
token within its ~10 s authentication cache), then mark the session ended in the store.

Rules of this module:
- the Secret goes first: a session is never marked ended while its Secret may still exist,
  so a failed deletion leaves the session active and the reaper (or the next revoke) tries
  again; a scheduled end is never lost, only late;
- Secrets are deleted by the name the session recorded, never found by listing: the
  exchanger has no right to read or list Secrets where it grants (see deploy/examples/
  target-namespace-rbac.yaml); a Secret already gone is fine;
- ending is idempotent: an ended session is returned as it is, with its first reason;
- marking ended is compare-and-swap (`SessionStore.replace`): on `ConflictError` the session
  is read again and the change re-applied, so a replica racing this one loses nothing;
- a session without a Secret (bound to the caller's pod, or self-issued) cannot be cut
  short: it is marked ended all the same and its token stays valid until `expires_at`;
  `outlives_revocation` tells callers so, and they must say it to whoever asked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from exchanger.access.model import Requester, Session, SessionEnd
from exchanger.access.ports import ConflictError, SessionStore
from exchanger.kube.port import KubeApi
from kubegate.errors import Code, KubegateError, PreconditionError

__all__ = ["CAS_ATTEMPTS", "NOT_REVOCABLE_NOTE", "EndObserver", "Revoker",
           "SessionNotFoundError", "due_reason", "outlives_revocation"]

log = logging.getLogger(__name__)

CAS_ATTEMPTS: Final = 5  # compare-and-swap rounds before a ConflictError is given up
NOT_REVOCABLE_NOTE: Final = ("bound to the caller's pod or self-issued: the token stays valid "
                             "at the API server until it expires (kubegate gateway refuses it "
                             "at once)")
# Sessions the gateway opened for a person's ID token (exchanger/gateway/identity_people.py):
# no credential was handed out, so ending the session ends all access at once.
GATEWAY_SESSION_PREFIX: Final = "gw-"


class SessionNotFoundError(KubegateError):
    def __init__(self, session_id: str) -> None:
        super().__init__("SESSION_NOT_FOUND", f"no session {session_id}",
                         public_message=f"no session {session_id}", code=Code.NOT_FOUND)


class EndObserver(Protocol):
    """Who counts ended sessions (`exchanger.metrics.ExchangerMetrics`)."""

    def on_session_reaped(self, cluster: str, reason: str) -> None: ...


def outlives_revocation(session: Session) -> bool:
    """True when ending this session does not end its token (no session Secret): the token
    stays valid until `session.expires_at`. A gateway session has no token to outlive it."""
    return not session.secret and not session.id.startswith(GATEWAY_SESSION_PREFIX)


def due_reason(session: Session, now: float) -> SessionEnd | None:
    """Why an active session must end by `now` on time alone, or None: its access request or
    window ended (not_after before the credential's expiry), or the credential expired."""
    if not session.active or session.not_after > now:
        return None
    if session.not_after < session.expires_at:
        return SessionEnd.REQUEST_ENDED
    return SessionEnd.EXPIRED


def _caller_gone(session: Session, api: KubeApi) -> bool:
    """The caller pod ("namespace/name/uid") no longer exists, or the name is another pod."""
    namespace, _, rest = session.caller_pod.partition("/")
    name, _, uid = rest.partition("/")
    pod = api.get_pod(namespace, name)
    return pod is None or pod.uid != uid


def _metric_reason(reason: SessionEnd) -> str:
    # kubegate_sessions_reaped_total kept the reaper's label for a gone pod
    return "caller_pod_gone" if reason is SessionEnd.CALLER_GONE else reason.value.replace(
        "-", "_")


class Revoker:
    """Ends sessions: the Secret deleted through the session's cluster, then the record."""

    def __init__(self, sessions: SessionStore, apis: Mapping[str, KubeApi],
                 clock: Callable[[], float], observer: EndObserver | None = None) -> None:
        self._sessions, self._apis, self._clock = sessions, apis, clock
        self._observer = observer

    def revoke_session(self, session_id: str, *, by: Requester | None,
                       reason: SessionEnd) -> Session:
        """End one session now (idempotent). Check `outlives_revocation` on the result."""
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFoundError(session_id)
        return self._end(session, reason=reason, by=by)

    def revoke_request(self, request_id: str, *, by: Requester | None,
                       reason: SessionEnd = SessionEnd.REVOKED) -> list[Session]:
        """End every active session of an access request."""
        return self._end_all(self._sessions.list(active_only=True, access_request=request_id),
                             reason=reason, by=by)

    def revoke_matching_ci(self, claims: Mapping[str, str], *,
                           reason: SessionEnd = SessionEnd.JOB_FINISHED) -> list[Session]:
        """End every active session whose CI claims include all of `claims` (a run's or a
        job's ids, from a CI webhook). Empty `claims` would match every session: refused."""
        if not claims:
            raise ValueError("name the run or job: no claims would match every session")
        wanted = {str(key): str(value) for key, value in claims.items()}
        matching = [s for s in self._sessions.list(active_only=True)
                    if all(s.ci.get(key) == value for key, value in wanted.items())]
        return self._end_all(matching, reason=reason, by=None)

    def end_due(self, now: float, failed: list[str] | None = None) -> list[Session]:
        """End the active sessions due by `now` (see `due_reason`) and those whose caller
        pod is gone; return them. A session that cannot be ended now (its cluster
        unreachable) is logged, its cluster added to `failed`, and tried again next time."""
        ended = []
        for session in self._sessions.list_due(now):
            try:
                reason = due_reason(session, now) or self._pod_reason(session)
                if reason is not None:
                    ended.append(self._end(session, reason=reason, by=None))
            except KubegateError as error:
                log.warning("session %s (cluster %s) not ended yet: %s", session.id,
                            session.cluster, error.detail or error.reason)
                if failed is not None:
                    failed.append(session.cluster)
        return ended

    def _pod_reason(self, session: Session) -> SessionEnd | None:
        api = self._apis.get(session.cluster)
        if not session.caller_pod or api is None:
            return None
        return SessionEnd.CALLER_GONE if _caller_gone(session, api) else None

    def _end_all(self, sessions: list[Session], *, reason: SessionEnd,
                 by: Requester | None) -> list[Session]:
        """End each; the first failure is raised after the others were tried (a retry is
        harmless: ending is idempotent)."""
        ended, errors = [], []
        for session in sessions:
            try:
                ended.append(self._end(session, reason=reason, by=by))
            except KubegateError as error:
                errors.append(error)
        if errors:
            raise errors[0]
        return ended

    def _end(self, session: Session, *, reason: SessionEnd, by: Requester | None) -> Session:
        if not session.active:
            return session
        if session.secret:
            self._delete_secret(session)
        ended, changed = self._mark_ended(session, reason=reason, by=by)
        if changed:
            log.info("session %s ended: %s%s", ended.id, reason.value,
                     f" ({NOT_REVOCABLE_NOTE})" if outlives_revocation(ended) else "")
            if self._observer is not None:
                self._observer.on_session_reaped(ended.cluster, _metric_reason(reason))
        return ended

    def _delete_secret(self, session: Session) -> None:
        api = self._apis.get(session.cluster)
        if api is None:
            raise PreconditionError("UNKNOWN_CLUSTER", f"session {session.id}: no client for "
                                    f"cluster {session.cluster!r} to delete its Secret")
        namespace, _, name = session.secret.partition("/")
        api.delete_secret(namespace, name)

    def _mark_ended(self, session: Session, *, reason: SessionEnd,
                    by: Requester | None) -> tuple[Session, bool]:
        """The session as stored after this, and whether this call ended it."""
        current: Session | None = session
        for _ in range(CAS_ATTEMPTS):
            if current is None:
                raise SessionNotFoundError(session.id)
            if not current.active:
                return current, False
            try:
                return self._sessions.replace(dataclasses.replace(
                    current, ended_at=int(self._clock()), end_reason=reason,
                    ended_by=by)), True
            except ConflictError:
                current = self._sessions.get(session.id)
        raise ConflictError(f"session {session.id}")
