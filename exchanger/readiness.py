"""Whether the exchange service is ready: SERVING only while every condition holds.

The conditions, each reported by the part it is about: `started` (the gRPC server runs),
`mappings` (TrustMapping resources, when they are a source, have been listed once) and
`audit` (the audit log takes lines: a replica that must refuse everything reports
NOT_SERVING, so a Service stops sending it traffic). Issuers are not among them: each has a
health name of its own (see `server`).

The access services (AccessService, SessionService) share the exchange service's conditions
(`also`): they write audit lines and read the same mappings.

Rules of this module: a condition starts unmet until its part says otherwise, except those
named `met` at construction; every change sets the status at once, under one lock, so two
parts reporting together never leave a stale status behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Protocol


class HealthSetter(Protocol):
    def set(self, service: str, status: Any) -> None: ...


class Readiness:
    """The health of `service` (and of the services named `also`), from named conditions."""

    def __init__(self, health: HealthSetter, service: str, *, serving: Any, not_serving: Any,
                 unmet: Iterable[str], also: Iterable[str] = ()) -> None:
        self._health, self._services = health, (service, *also)
        self._serving, self._not_serving = serving, not_serving
        self._unmet = set(unmet)
        self._lock = threading.Lock()

    @property
    def unmet(self) -> frozenset[str]:
        """The conditions that keep the service NOT_SERVING (none: it is SERVING)."""
        return frozenset(self._unmet)

    def set(self, condition: str, met: bool) -> None:
        """Record whether `condition` holds and report the service's status."""
        with self._lock:
            if met:
                self._unmet.discard(condition)
            else:
                self._unmet.add(condition)
            for service in self._services:
                self._health.set(service, self._not_serving if self._unmet else self._serving)

    def condition(self, name: str) -> _ConditionHealth:
        """A `HealthSetter` for a part that reports its own status as SERVING/NOT_SERVING
        (the mapping sources): it sets condition `name`, whatever service it names."""
        return _ConditionHealth(self, name, self._serving)


class _ConditionHealth:
    def __init__(self, readiness: Readiness, name: str, serving: Any) -> None:
        self._readiness, self._name, self._serving = readiness, name, serving

    def set(self, service: str, status: Any) -> None:
        del service
        self._readiness.set(self._name, status == self._serving)
