"""Prometheus metrics of one sidecar, on a registry of its own (the API proxy registers its
requests-by-status counter on the same registry, so /metrics shows both)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.keeper import KeeperState


class SidecarMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.refreshes = Counter(
            "kubegate_sidecar_refreshes_total",
            "Exchanges by result: ok, transient, denied, no_subject_token, error.",
            ["result"], registry=self.registry)
        self.expires_in = Gauge(
            "kubegate_sidecar_credential_expires_in_seconds",
            "Seconds until the cached credential expires (0 before the first one).",
            registry=self.registry)
        self.ready = Gauge(
            "kubegate_sidecar_ready", "1 while a credential may be served, else 0.",
            registry=self.registry)

    def on_refresh(self, result: str) -> None:
        self.refreshes.labels(result=result).inc()

    def watch(self, state: Callable[[], KeeperState]) -> None:
        """Compute the gauges from the keeper's state at every scrape."""
        self.expires_in.set_function(lambda: state().expires_in or 0.0)
        self.ready.set_function(lambda: 1.0 if state().ready else 0.0)
