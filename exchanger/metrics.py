"""Prometheus metrics of one exchanger process, on a registry of its own (so several
exchangers in one test process never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ExchangerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.exchanges = Counter(
            "kubegate_exchanges_total", "Exchanges by result (allow/deny) and reason.",
            ["result", "reason"], registry=self.registry)
        self.latency = Histogram(
            "kubegate_exchange_duration_seconds", "Time to decide and issue one exchange.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry)
        self.key_fetches = Counter(
            "kubegate_key_fetches_total", "JWKS fetches by issuer and result.",
            ["issuer", "result"], registry=self.registry)
        self.mapping_reloads = Counter(
            "kubegate_mapping_reloads_total", "Trust mapping reloads by result.",
            ["result"], registry=self.registry)
        self.mappings_loaded = Gauge(
            "kubegate_mappings_loaded", "Trust mappings in the active set.",
            registry=self.registry)
        self.audit_seq = Gauge(
            "kubegate_audit_chain_seq", "Sequence number of the last audit line written "
            "(anchor it elsewhere to detect deleted trailing lines).", registry=self.registry)

    def observe(self, *, result: str, reason: str, seconds: float) -> None:
        self.exchanges.labels(result=result, reason=reason).inc()
        self.latency.observe(seconds)

    def on_key_fetch(self, issuer: str, result: str) -> None:
        self.key_fetches.labels(issuer=issuer, result=result).inc()
