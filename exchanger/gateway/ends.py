"""`SessionWatch`: the gateway's `SessionEnds` over the session index. It watches the
sessions this replica has let through (`track`), and tells its listeners, once per session,
when one ended: revoked (`kubegate sessions revoke`, an access request revoked), ended by
another part (the reaper, a CI webhook), or past its `not_after` (its credential, access
request or window ran out).

    watch = SessionWatch(sessions, cluster="prod", clock=time.time)
    watch.subscribe(lambda session_id, why: proxy.cut(session_id, why))
    watch.start()                      # a thread polling every POLL_SECONDS
    ...
    watch.is_ended(session_id)         # "revoked", "expired", ... or None
    watch.stop()

Rules of this module:
- one tick costs one `list(active_only=True, cluster=...)` of the store whatever the number
  of tracked sessions (the kube store lists custom resources once, not N gets), plus one
  `get` per tracked session that left the active list (to read why); no tick at all while
  nothing is tracked;
- a tracked session is reported ended when it is not active in the store (its `end_reason`,
  or "revoked" when its record is gone) or when `now >= not_after` (`due_reason`: the
  request's or window's end before the credential's expiry is "request-ended", else
  "expired"); each session is reported once, then forgotten after `FORGET_SECONDS`
  (`is_ended` answers for it until then, longer than any authenticator cache entry lives);
- listeners run on the watch thread, outside the lock; one that raises is logged and the
  others still run;
- a store that cannot be read is logged and tried again next tick; nothing is reported ended
  on a failed read (time-based ends still are: they need no store). The authenticator checks
  `not_after` itself on every request, so a session never outlives its end because of this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from exchanger.access.model import Session, SessionEnd
from exchanger.access.ports import SessionStore
from exchanger.access.revocation import due_reason
from exchanger.gateway.session import SessionEndListener
from kubegate.errors import KubegateError
from kubegate.workers import BackgroundWorker, periodic

__all__ = ["FORGET_SECONDS", "POLL_SECONDS", "SessionWatch"]

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.25
FORGET_SECONDS: Final = 300.0
Clock = Callable[[], float]


class SessionWatch:
    """SessionEnds over a SessionStore, for the sessions of one cluster (see the module)."""

    def __init__(self, sessions: SessionStore, *, cluster: str, clock: Clock,
                 interval: float = POLL_SECONDS) -> None:
        self._sessions, self._cluster, self._clock = sessions, cluster, clock
        self._listeners: list[SessionEndListener] = []
        self._tracked: dict[str, Session] = {}  # by id, as the gateway let it through
        self._ended: dict[str, tuple[str, float]] = {}  # session id -> (why, forget at)
        self._lock = threading.Lock()
        self._worker = BackgroundWorker("gateway-session-ends", periodic(
            self.poll, interval=interval, log=log, what="session end check"))

    def subscribe(self, listener: SessionEndListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def track(self, session: Session) -> None:
        """Watch a session the gateway let through (idempotent; keeps the earliest end)."""
        with self._lock:
            if session.id in self._ended:
                return
            known = self._tracked.get(session.id)
            if known is None or session.not_after < known.not_after:
                self._tracked[session.id] = session

    def is_ended(self, session_id: str) -> str | None:
        """Why a tracked session ended (a SessionEnd value), or None while it runs (or when it
        was never tracked)."""
        with self._lock:
            ended = self._ended.get(session_id)
        return ended[0] if ended else None

    @property
    def tracked(self) -> int:
        with self._lock:
            return len(self._tracked)

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def poll(self) -> list[tuple[str, str]]:
        """One tick: find the tracked sessions that ended, report them, return them."""
        now = self._clock()
        with self._lock:
            tracked = dict(self._tracked)
            self._forget(now)
        if not tracked:
            return []
        ended = [(sid, why) for sid, session in tracked.items()
                 if (why := _reason(due_reason(session, now))) is not None]
        due = {sid for sid, _ in ended}
        ended += self._ended_in_store({sid: s for sid, s in tracked.items() if sid not in due},
                                      now)
        return self._report(ended, now)

    def _ended_in_store(self, tracked: dict[str, Session],
                        now: float) -> list[tuple[str, str]]:
        if not tracked:
            return []
        try:
            active = {s.id: s for s in self._sessions.list(active_only=True,
                                                           cluster=self._cluster)}
            found = []
            for session_id in tracked:
                session = active.get(session_id)
                why = (_why_ended(self._sessions.get(session_id)) if session is None
                       else _reason(due_reason(session, now)))
                if why is not None:
                    found.append((session_id, why))
            return found
        except KubegateError as error:
            log.warning("session index unreadable, revocations wait: %s",
                        error.detail or error.reason)
            return []

    def _report(self, ended: list[tuple[str, str]], now: float) -> list[tuple[str, str]]:
        with self._lock:
            fresh = [(sid, why) for sid, why in ended if sid in self._tracked]
            for sid, why in fresh:
                del self._tracked[sid]
                self._ended[sid] = (why, now + FORGET_SECONDS)
            listeners = list(self._listeners)
        for sid, why in fresh:
            for listener in listeners:
                try:
                    listener(sid, why)
                except Exception:  # one listener's bug must not hide an end from the others
                    log.exception("session end listener failed for session %s", sid)
        return fresh

    def _forget(self, now: float) -> None:
        for sid in [sid for sid, (_, until) in self._ended.items() if until <= now]:
            del self._ended[sid]


def _reason(reason: SessionEnd | None) -> str | None:
    return reason.value if reason is not None else None


def _why_ended(session: Session | None) -> str | None:
    """Why a session missing from the active list ended; None when it is active after all
    (created after the list was read)."""
    if session is None:
        return SessionEnd.REVOKED.value
    if session.active:
        return None
    return (session.end_reason or SessionEnd.REVOKED).value
