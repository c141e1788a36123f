"""The expirer: every few seconds, requests that are due (pending nobody decided in time,
approved or active past their end) become expired, each with its `expired` event, and the
per-state gauge is refreshed from the store.

Rules of this module:
- any replica may expire a request: the write is compare-and-swap, and a `ConflictError`
  means another replica (or a decision) changed it first; that request is skipped this round
  and looked at again on the next, from the store's fresh value;
- the due time is `lifecycle.expire_due` with the mapping's policy when it is still
  configured (the pending limit is then its maxDuration when shorter);
- one store listing per round serves both the expiry and the gauge.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from exchanger.access import lifecycle
from exchanger.access.events import AccessEvents
from exchanger.access.model import TERMINAL_STATES, AccessRequest, State
from exchanger.access.ports import AccessStore, ConflictError
from exchanger.mappings.model import MappingSet
from kubegate.workers import BackgroundWorker, periodic

__all__ = ["INTERVAL_SECONDS", "Expirer", "expirer_worker"]

log = logging.getLogger(__name__)

INTERVAL_SECONDS: Final = 5.0


class Mappings(Protocol):
    @property
    def current(self) -> MappingSet: ...


class StateGauge(Protocol):
    def on_access_states(self, counts: Mapping[str, int]) -> None: ...


class Expirer:
    def __init__(self, store: AccessStore, mappings: Mappings, events: AccessEvents,
                 clock: Callable[[], float], gauge: StateGauge | None = None) -> None:
        self._store, self._mappings, self._events, self._clock = (
            store, mappings, events, clock)
        self._gauge = gauge

    def run_once(self) -> list[AccessRequest]:
        """Expire what is due now; the requests this call expired."""
        requests = self._store.list()
        now = int(self._clock())
        expired = [stored for request in requests
                   if request.state not in TERMINAL_STATES
                   and (stored := self._expire(request, now)) is not None]
        if self._gauge is not None:
            self._gauge.on_access_states(_counts(requests, expired))
        return expired

    def _expire(self, request: AccessRequest, now: int) -> AccessRequest | None:
        mapping = self._mappings.current.get(request.mapping)
        due = lifecycle.expire_due(request, now, mapping.approval if mapping else None)
        if due is None:
            return None
        try:
            stored = self._store.replace(due)
        except ConflictError:
            log.debug("access request %s changed meanwhile; not expired this round", request.id)
            return None
        required = mapping.approval.count if mapping and mapping.approval else 0
        self._events.emit("expired", stored, None, required=required,
                          facts={"was": request.state.value})
        return stored


def _counts(requests: list[AccessRequest], expired: list[AccessRequest]) -> dict[str, int]:
    done = {request.id for request in expired}
    counts = Counter(State.EXPIRED.value if request.id in done else request.state.value
                     for request in requests)
    return {state.value: counts.get(state.value, 0) for state in State}


def expirer_worker(expirer: Expirer, interval: float = INTERVAL_SECONDS) -> BackgroundWorker:
    return BackgroundWorker("access-expirer", periodic(
        expirer.run_once, interval=interval, log=log, what="access request expiry",
        at_start=True))
