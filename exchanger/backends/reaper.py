"""Revocation by deletion: the SessionReaper deletes kubegate's session Secrets whose caller
pod is gone (so a pipeline's credential dies with its pod) or whose token has expired (so
nothing piles up). Deleting the Secret invalidates every token bound to it.

It keeps no state of its own: everything it needs is in the Secrets' annotations, so any
replica can run it and a restarted exchanger picks up where the last one left off. Each
session reaped and each run (ok, or error when a namespace or the run failed) is told to a
`SessionObserver` (the metrics), so a reaper that stopped working shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from exchanger.backends.base import SessionObserver
from exchanger.kube.port import (
    CALLER_POD_ANNOTATION,
    EXPIRES_ANNOTATION,
    KubeApi,
    SessionSecret,
)
from kubegate.errors import KubegateError
from kubegate.workers import BackgroundWorker, periodic

log = logging.getLogger(__name__)


def reap_reason(secret: SessionSecret, api: KubeApi, now: float) -> str | None:
    """Why this session Secret should go, or None to keep it."""
    expires = secret.annotations.get(EXPIRES_ANNOTATION, "")
    if expires.isdigit() and int(expires) <= now:
        return "expired"
    caller = secret.annotations.get(CALLER_POD_ANNOTATION)
    if caller:
        namespace, _, rest = caller.partition("/")
        name, _, uid = rest.partition("/")
        pod = api.get_pod(namespace, name)
        if pod is None or pod.uid != uid:
            return "caller pod gone"
    return None


def reap(api: KubeApi, namespaces: Iterable[str], now: float,
         failed: list[str] | None = None) -> list[tuple[str, str]]:
    """Delete the session Secrets that should go; return (secret, reason) for each. A
    namespace that fails (e.g. kubegate has no Role there yet) is logged, added to `failed`
    and skipped, so it never holds back revocation in the others."""
    reaped = []
    for namespace in sorted(namespaces):
        try:
            reaped += _reap_namespace(api, namespace, now)
        except KubegateError as error:
            log.warning("session reaper: %s: %s", namespace, error.detail or error.reason)
            if failed is not None:
                failed.append(namespace)
    return reaped


def _reap_namespace(api: KubeApi, namespace: str, now: float) -> list[tuple[str, str]]:
    reaped = []
    for secret in api.list_session_secrets(namespace):
        reason = reap_reason(secret, api, now)
        if reason:
            api.delete_secret(secret.namespace, secret.name)
            reaped.append((f"{secret.namespace}/{secret.name}", reason))
    return reaped


class SessionReaper:
    """Runs `reap` every `interval` seconds in a daemon thread."""

    def __init__(self, *, api: KubeApi, namespaces: Callable[[], Iterable[str]],
                 clock: Callable[[], float], interval: float = 5.0, cluster: str = "",
                 observer: SessionObserver | None = None) -> None:
        self._api, self._namespaces, self._clock = api, namespaces, clock
        self._cluster, self._observer = cluster, observer
        self._worker = BackgroundWorker("session-reaper", periodic(
            self.reap_once, interval=interval, log=log, what="session reaper"))

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop(timeout=10)

    def reap_once(self) -> None:
        failed: list[str] = []
        result = "error"
        try:
            for secret, reason in reap(self._api, self._namespaces(), self._clock(), failed):
                log.info("revoked session %s: %s", secret, reason)
                if self._observer is not None:
                    self._observer.on_session_reaped(self._cluster, reason.replace(" ", "_"))
            result = "error" if failed else "ok"
        finally:
            if self._observer is not None:
                self._observer.on_reaper_run(self._cluster, result, self._clock())
