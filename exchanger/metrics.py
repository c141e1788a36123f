"""Prometheus metrics of one exchanger process, on a registry of its own (so several
exchangers in one test process never collide).

Per-issuer key health: `kubegate_issuer_keys_ready{issuer}` is 1 while the issuer has keys to
verify with (after a failed refresh the last good keys still serve), 0 before its first
successful fetch and when it has none; `kubegate_issuer_keys_last_success_timestamp_seconds`
says when its keys were last fetched (alert on `time() - ...`). Both exist for every configured
issuer from the start.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exchanger.verify.keys import KeyHealth


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
        self.issuer_keys_ready = Gauge(
            "kubegate_issuer_keys_ready", "1 while an issuer has keys to verify tokens with.",
            ["issuer"], registry=self.registry)
        self.issuer_keys_last_success = Gauge(
            "kubegate_issuer_keys_last_success_timestamp_seconds",
            "When an issuer's keys were last fetched successfully (0: never).",
            ["issuer"], registry=self.registry)
        self.audit_seq = Gauge(
            "kubegate_audit_chain_seq", "Sequence number of the last audit line written "
            "(anchor it elsewhere to detect deleted trailing lines).", registry=self.registry)
        self.audit_checkpoints = Counter(
            "kubegate_audit_checkpoints_total", "Audit checkpoint publications to a store, by "
            "result (ok/error).", ["result"], registry=self.registry)
        self.audit_checkpoint_seq = Gauge(
            "kubegate_audit_checkpoint_seq", "Sequence number of the last audit chain head "
            "published as a signed checkpoint.", registry=self.registry)

    def observe(self, *, result: str, reason: str, seconds: float) -> None:
        self.exchanges.labels(result=result, reason=reason).inc()
        self.latency.observe(seconds)

    def on_checkpoint(self, result: str, seq: int) -> None:
        self.audit_checkpoints.labels(result=result).inc()
        if result == "ok":
            self.audit_checkpoint_seq.set(seq)

    def on_key_fetch(self, issuer: str, result: str) -> None:
        self.key_fetches.labels(issuer=issuer, result=result).inc()

    def declare_issuers(self, names: Iterable[str]) -> None:
        """Every configured issuer's key gauges, at 0 until its first fetch."""
        for name in names:
            self.issuer_keys_ready.labels(issuer=name).set(0)
            self.issuer_keys_last_success.labels(issuer=name).set(0)

    def on_key_health(self, health: KeyHealth) -> None:
        self.issuer_keys_ready.labels(issuer=health.issuer).set(1 if health.serving else 0)
        self.issuer_keys_last_success.labels(issuer=health.issuer).set(health.last_success or 0)
