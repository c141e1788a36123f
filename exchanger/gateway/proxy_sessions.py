"""Which open connections act for which session, so that a session's end cuts them at once:
a revoke (through `SessionEnds`), or the session's `not_after` passing while a watch or a
shell is open.

Rules of this module:
- `cut(session_id, why)` shuts down the sockets of every connection of that session (the
  client's and the upstream's) before it returns, and remembers the id for `REMEMBER_SECONDS`:
  a request authenticated just before the end and attached just after it is refused, so no
  request of an ended session starts after `cut` returned;
- a connection is cut at its session's `not_after` by one timer thread for all connections
  (it wakes at the earliest deadline, or when a sooner one is attached), never by a thread
  per connection;
- `cut` is quick and thread-safe: `SessionEnds` calls it from its own thread; it shuts
  sockets down (`Connection.abort`, the shared `kubegate.relayio.connections` tracker, whose
  `ended_by` then says why) and never waits on a peer;
- `on_cut(why)` is called once per session whose open connections were cut (by `cut` or at
  its `not_after`); its failure is logged, never raised.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from exchanger.gateway.session import GatewaySession
from kubegate.relayio.connections import Connection

log = logging.getLogger(__name__)

REMEMBER_SECONDS = 600.0
EXPIRED = "expired"  # why a connection is cut at its session's not_after (a SessionEnd value)


class SessionConnections:
    """The registry of open connections by session id, with the not_after timer."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 on_cut: Callable[[str], None] | None = None) -> None:
        self._clock, self._on_cut = clock, on_cut
        self._cond = threading.Condition()
        self._by_session: dict[str, set[Connection]] = {}
        self._ended: dict[str, tuple[str, float]] = {}  # id -> (why, forget at)
        self._deadlines: list[tuple[float, int, str, Connection]] = []
        self._order = 0
        self._stopping = False
        self._timer = threading.Thread(target=self._run_timer, name="gateway-session-timer",
                                       daemon=True)
        self._timer.start()

    def attach(self, session: GatewaySession, connection: Connection) -> str:
        """Count connection as session's; "" when it may go on, else why the session ended."""
        now = self._clock()
        with self._cond:
            ended = self._ended.get(session.id)
            if ended is not None:
                return ended[0]
            if session.not_after <= now:
                return EXPIRED
            self._by_session.setdefault(session.id, set()).add(connection)
            self._order += 1
            heapq.heappush(self._deadlines,
                           (session.not_after, self._order, session.id, connection))
            if self._deadlines[0][3] is connection:
                self._cond.notify()
        return ""

    def detach(self, session: GatewaySession, connection: Connection) -> None:
        with self._cond:
            connections = self._by_session.get(session.id)
            if connections is not None:
                connections.discard(connection)
                if not connections:
                    del self._by_session[session.id]
            if len(self._deadlines) > 1024 + 4 * len(self._by_session):  # finished ones
                self._deadlines = [d for d in self._deadlines
                                   if d[3] in self._by_session.get(d[2], ())]
                heapq.heapify(self._deadlines)

    def cut(self, session_id: str, why: str) -> int:
        """End every open connection of session_id now; the number cut."""
        now = self._clock()
        with self._cond:
            self._ended[session_id] = (why, now + REMEMBER_SECONDS)
            connections = self._by_session.pop(session_id, set())
            for forgotten in [s for s, (_, until) in self._ended.items() if until <= now]:
                del self._ended[forgotten]
        for connection in connections:
            connection.abort(why)
        if connections:
            log.info("gateway: session %s ended (%s): %d connections cut", session_id, why,
                     len(connections))
            self._count_cut(why)
        return len(connections)

    def open_count(self) -> int:
        with self._cond:
            return sum(len(c) for c in self._by_session.values())

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._timer.join(5.0)

    def _count_cut(self, why: str) -> None:
        if self._on_cut is not None:
            try:
                self._on_cut(why)
            except Exception:
                log.exception("gateway: counting a cut session failed")

    def _run_timer(self) -> None:
        with self._cond:
            while not self._stopping:
                now = self._clock()
                expired: set[str] = set()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, session_id, connection = heapq.heappop(self._deadlines)
                    if connection in self._by_session.get(session_id, ()):
                        connection.abort(EXPIRED)
                        expired.add(session_id)
                for _ in expired:
                    self._count_cut(EXPIRED)
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._cond.wait(None if wait is None else min(wait, 60.0))
