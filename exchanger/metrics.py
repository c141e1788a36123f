"""Prometheus metrics of one exchanger process, on a registry of its own (so several
exchangers in one test process never collide).

Workers (`kubegate serve --workers N`, `exchanger.prefork`): each worker process writes its
values to the parent's PROMETHEUS_MULTIPROC_DIR (prometheus_client multiprocess mode) and
the parent serves one /metrics: counters and histograms are summed over every worker that
ever ran (a restarted worker's counts stay), each gauge says how its workers' values combine
(`multiprocess_mode`, "live": workers that run): the chain head per worker (`pid` label),
readiness-like gauges their minimum, the others their maximum. A single process ignores it.

Per-issuer key health: `kubegate_issuer_keys_ready{issuer}` is 1 while the issuer has keys to
verify with (after a failed refresh the last good keys still serve), 0 before its first
successful fetch and when it has none; `kubegate_issuer_keys_last_success_timestamp_seconds`
says when its keys were last fetched (alert on `time() - ...`). Both exist for every configured
issuer from the start.

The audit log: `kubegate_audit_writable` is 0 while it cannot be written (and the exchange
service is NOT_SERVING), `kubegate_audit_unrecorded_denials_total` counts the denials refused
meanwhile, `kubegate_audit_chain_seq` is the chain head.

TokenRequest sessions: `kubegate_sessions_issued_total{cluster,bound_to}` (bound to the
caller's pod or to a session Secret), `kubegate_sessions_revoked_total{cluster}` (a session
Secret deleted because the allow line could not be written),
`kubegate_sessions_reaped_total{cluster,reason}` (`expired`, `request_ended`,
`caller_pod_gone`, `revoked`, `job_finished`), and the
reaper's own health: `kubegate_session_reaper_runs_total{cluster,result}` (ok/error) and
`kubegate_session_reaper_last_success_timestamp_seconds{cluster}`.

Access requests: `kubegate_access_requests{state}` is how many requests the store holds in each
state (refreshed from the store by the expirer), `kubegate_access_events_total{event}` counts
lifecycle events (created, approved, denied, revoked, expired, activated, session-revoked), and
`kubegate_access_approval_seconds` is the time from a request's creation to its last needed
approval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exchanger.verify.keys import KeyHealth


class ExchangerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.exchanges = Counter(
            "kubegate_exchanges_total", "Exchanges by result (allow/deny) and reason.",
            ["result", "reason"], registry=self.registry)
        self._exchange_counts: dict[tuple[str, str], Counter] = {}
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
            multiprocess_mode="livemax", registry=self.registry)
        self.mapping_source_phase = Gauge(
            "kubegate_mapping_source_phase",
            "1 for the TrustMapping source's current phase (listing, watching, failing).",
            ["phase"], multiprocess_mode="livemax", registry=self.registry)
        self.issuer_keys_ready = Gauge(
            "kubegate_issuer_keys_ready", "1 while an issuer has keys to verify tokens with.",
            ["issuer"], multiprocess_mode="livemin", registry=self.registry)
        self.issuer_keys_last_success = Gauge(
            "kubegate_issuer_keys_last_success_timestamp_seconds",
            "When an issuer's keys were last fetched successfully (0: never).",
            ["issuer"], multiprocess_mode="livemin", registry=self.registry)
        self.audit_seq = Gauge(
            "kubegate_audit_chain_seq", "Sequence number of the last audit line written "
            "(anchor it elsewhere to detect deleted trailing lines).",
            multiprocess_mode="liveall", registry=self.registry)
        self.audit_writable = Gauge(
            "kubegate_audit_writable", "1 while the audit log takes lines; 0 from a line that "
            "could not be written until one is again (the exchange service is NOT_SERVING).",
            multiprocess_mode="livemin", registry=self.registry)
        self.audit_unrecorded_denials = Counter(
            "kubegate_audit_unrecorded_denials_total", "Denials whose audit line could not be "
            "written (each outage's count is recorded in a note once the log takes lines).",
            registry=self.registry)
        self.audit_checkpoints = Counter(
            "kubegate_audit_checkpoints_total", "Audit checkpoint publications to a store, by "
            "result (ok/error).", ["result"], registry=self.registry)
        self.audit_checkpoint_seq = Gauge(
            "kubegate_audit_checkpoint_seq", "Sequence number of the last audit chain head "
            "published as a signed checkpoint.", multiprocess_mode="livemax",
            registry=self.registry)

        self.sessions_issued = Counter(
            "kubegate_sessions_issued_total", "TokenRequest sessions issued, by cluster and "
            "what the token is bound to (pod/secret).", ["cluster", "bound_to"],
            registry=self.registry)
        self.sessions_revoked = Counter(
            "kubegate_sessions_revoked_total", "Sessions revoked at once because their allow "
            "line could not be written.", ["cluster"], registry=self.registry)
        self.sessions_reaped = Counter(
            "kubegate_sessions_reaped_total", "Sessions ended (their Secret deleted), by reason "
            "(expired/request_ended/caller_pod_gone/revoked/job_finished).",
            ["cluster", "reason"], registry=self.registry)
        self.reaper_runs = Counter(
            "kubegate_session_reaper_runs_total", "Session reaper runs by result (ok/error: "
            "a namespace or the run failed).", ["cluster", "result"], registry=self.registry)
        self.reaper_last_success = Gauge(
            "kubegate_session_reaper_last_success_timestamp_seconds", "When the session "
            "reaper last finished a run without error (0: never).", ["cluster"],
            multiprocess_mode="livemax", registry=self.registry)

        self.access_requests = Gauge(
            "kubegate_access_requests", "Access requests in the store, by state.", ["state"],
            multiprocess_mode="livemax", registry=self.registry)
        self.access_events = Counter(
            "kubegate_access_events_total", "Access request lifecycle events, by event.",
            ["event"], registry=self.registry)
        self.access_approval_seconds = Histogram(
            "kubegate_access_approval_seconds", "Time from an access request's creation to "
            "its last needed approval.",
            buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
            registry=self.registry)

    def on_access_event(self, event: str) -> None:
        self.access_events.labels(event=event).inc()

    def on_access_approved(self, seconds: float) -> None:
        self.access_approval_seconds.observe(max(0.0, seconds))

    def on_access_states(self, counts: Mapping[str, int]) -> None:
        """Every state's count (states absent from `counts` are 0)."""
        for state, count in counts.items():
            self.access_requests.labels(state=state).set(count)

    def on_mapping_source_state(self, phase: str) -> None:
        for name in ("listing", "watching", "failing"):
            self.mapping_source_phase.labels(phase=name).set(1 if name == phase else 0)

    def observe(self, *, result: str, reason: str, seconds: float) -> None:
        """Once per exchange: the labelled counter is looked up once per (result, reason)
        and kept (prometheus_client's `labels()` returns that same child each time, after
        checking the labels and taking a lock)."""
        child = self._exchange_counts.get((result, reason))
        if child is None:
            child = self._exchange_counts[result, reason] = self.exchanges.labels(
                result=result, reason=reason)
        child.inc()
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

    def on_session_issued(self, cluster: str, bound_to: str) -> None:
        self.sessions_issued.labels(cluster=cluster, bound_to=bound_to).inc()

    def on_session_revoked(self, cluster: str) -> None:
        self.sessions_revoked.labels(cluster=cluster).inc()

    def on_session_reaped(self, cluster: str, reason: str) -> None:
        self.sessions_reaped.labels(cluster=cluster, reason=reason).inc()

    def on_reaper_run(self, cluster: str, result: str, finished_at: float) -> None:
        self.reaper_runs.labels(cluster=cluster, result=result).inc()
        if result == "ok":
            self.reaper_last_success.labels(cluster=cluster).set(finished_at)
        else:
            self.reaper_last_success.labels(cluster=cluster)  # shown (at 0) from the first run


class WebhookMetrics:
    """Webhooks of just-in-time access, on the exchanger's registry (create once, pass to
    both the `Notifier` and the `CiWebhookServer`).

    Outgoing notifications: `kubegate_webhook_deliveries_total{event,result}` (ok, failed:
    the last attempt failed, dropped: the queue was full or the notifier stopped) and
    `kubegate_webhook_delivery_seconds` (one delivery, every attempt and back-off included).
    CI job webhooks: `kubegate_ci_webhook_requests_total{provider,result}` (revoked, ignored,
    ping, unauthorized, invalid, error) and `kubegate_ci_webhook_sessions_revoked_total
    {provider}`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deliveries = Counter(
            "kubegate_webhook_deliveries_total", "Lifecycle event webhook deliveries by "
            "event and result (ok/failed/dropped).", ["event", "result"], registry=registry)
        self.delivery_seconds = Histogram(
            "kubegate_webhook_delivery_seconds", "Time to deliver one lifecycle event to "
            "one webhook, retries included.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=registry)
        self.ci_requests = Counter(
            "kubegate_ci_webhook_requests_total", "CI job webhook requests by provider "
            "(github/gitlab) and result.", ["provider", "result"], registry=registry)
        self.ci_sessions_revoked = Counter(
            "kubegate_ci_webhook_sessions_revoked_total", "Sessions revoked because their CI "
            "job finished, by provider.", ["provider"], registry=registry)

    def on_delivery(self, *, event: str, result: str, seconds: float) -> None:
        self.deliveries.labels(event=event, result=result).inc()
        self.delivery_seconds.observe(seconds)

    def on_delivery_dropped(self, *, event: str) -> None:
        self.deliveries.labels(event=event, result="dropped").inc()

    def on_ci_request(self, *, provider: str, result: str, revoked: int = 0) -> None:
        self.ci_requests.labels(provider=provider, result=result).inc()
        if revoked:
            self.ci_sessions_revoked.labels(provider=provider).inc(revoked)
