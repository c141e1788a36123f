"""The SessionReaper: every few seconds, end the sessions that are due, from the session
index (`Revoker.end_due`): past their `not_after` (the credential's expiry, or earlier the end
of their access request or window), or their caller pod gone (so a pipeline's credential
dies with its pod). Ending a session deletes its Secret by name, which invalidates every
token bound to it.

Rules of this module:
- it reads the index, never the cluster's Secrets: the exchanger may not list or read
  Secrets where it grants (only create and delete its own, by name);
- it keeps no state of its own: the index is where every replica sees it, so any replica can
  run it and a restarted exchanger ends what was scheduled before the restart;
- each run is told to a `SessionObserver` (the metrics) for every cluster: "ok", or "error"
  when a session of that cluster could not be ended (or the index could not be read), so a
  reaper that stopped working shows. The sessions it ends are counted by the Revoker.

Session Secrets made before the index existed have no session record: the reaper does not
see them. Their tokens expire on their own (TokenRequest expiry); an operator may delete
the Secrets labelled `kubegate.io/session` that remain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from exchanger.access.model import Session
from exchanger.backends.base import SessionObserver
from kubegate.workers import BackgroundWorker, periodic

log = logging.getLogger(__name__)

INTERVAL = 5.0  # seconds between runs: with the API server's ~10 s token cache, a due
# session's token is refused within ~15 s


class DueSessions(Protocol):
    """What the reaper needs of `exchanger.access.revocation.Revoker`."""

    def end_due(self, now: float, failed: list[str] | None = None) -> list[Session]: ...


class SessionReaper:
    """Runs `end_due` every `interval` seconds in a daemon thread; `clusters` are the ones
    whose runs are reported (the tokenRequest clusters)."""

    def __init__(self, *, revoker: DueSessions, clock: Callable[[], float],
                 clusters: Iterable[str] = (), interval: float = INTERVAL,
                 observer: SessionObserver | None = None) -> None:
        self._revoker, self._clock = revoker, clock
        self._clusters, self._observer = tuple(sorted(clusters)), observer
        self._worker = BackgroundWorker("session-reaper", periodic(
            self.reap_once, interval=interval, log=log, what="session reaper"))

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop(timeout=10)

    def reap_once(self) -> list[Session]:
        """One run: the sessions it ended."""
        failed: list[str] = []
        done = False
        try:
            ended = self._revoker.end_due(self._clock(), failed)
            done = True
        finally:
            if self._observer is not None:
                finished = self._clock()
                for cluster in self._clusters:
                    ok = done and cluster not in failed
                    self._observer.on_reaper_run(cluster, "ok" if ok else "error", finished)
        for session in ended:
            log.info("ended session %s (%s, %s): %s", session.id, session.cluster,
                     session.secret or "no Secret", session.end_reason)
        return ended
