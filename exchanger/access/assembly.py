"""Just-in-time access, assembled from the config for one exchanger: the stores, the gate the
exchange passes, the revoker, the notifier, the expirer, the CI job webhooks and the two
gRPC servicers. `exchanger.server` starts the server around them.

Rules of this module:
- every part with a thread or a socket is started here and handed back in `stoppables`, in
  start order (the server stops them in reverse: the CI webhooks and the expirer before the
  notifier they emit to);
- the gate sees the access store through `ActivationReporter`, so the first exchange that
  uses a request emits `activated`;
- the access services are rate-limited per identity like exchanges, on a budget of their
  own (a burst of lists never starves the same person's exchanges).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exchanger.access.ciwebhooks import CiWebhookServer
from exchanger.access.events import AccessEvents, ActivationReporter
from exchanger.access.expirer import Expirer, expirer_worker
from exchanger.access.gate import AccessGate
from exchanger.access.notify import Notifier
from exchanger.access.operations import AccessOperations, Mappings, SessionOperations
from exchanger.access.ports import SessionStore
from exchanger.access.revocation import Revoker
from exchanger.access.service import AccessServicer, Authenticator, SessionServicer
from exchanger.access.stores import open_stores
from exchanger.audit.log import AuditSink
from exchanger.config import Config
from exchanger.kube.client import KubernetesClient
from exchanger.metrics import ExchangerMetrics, WebhookMetrics
from exchanger.ratelimit import IdentityRateLimiter
from exchanger.verify.verifier import Verifier

__all__ = ["AccessParts", "build_access"]


@dataclass(kw_only=True)
class AccessParts:
    gate: AccessGate
    sessions: SessionStore
    revoker: Revoker
    access: AccessServicer
    session_service: SessionServicer
    stoppables: list[Any] = field(default_factory=list)
    ci_webhook_port: int = 0


def build_access(config: Config, clients: Mapping[str, KubernetesClient],
                 mappings: Mappings, verifier: Verifier, audit: AuditSink,
                 metrics: ExchangerMetrics, clock: Callable[[], float], *,
                 singletons: bool = True) -> AccessParts:
    """Build and start the parts; on failure, stop what was started and raise. Without
    `singletons` (a worker other than 0 of `serve --workers N`) the expirer and the CI
    job webhooks, which must run once per replica, are not started."""
    requests, sessions = open_stores(config.access, lambda name: clients[name].api_client)
    revoker = Revoker(sessions, clients, clock, observer=metrics)
    webhook_metrics = WebhookMetrics(metrics.registry)
    notifier = Notifier(config.access.webhooks, clock, metrics=webhook_metrics)
    events = AccessEvents(audit, notifier, metrics, clock)
    operations = AccessOperations.build(store=requests, revoker=revoker, mappings=mappings,
                                        admins=config.access.admins, events=events,
                                        clock=clock)
    auth = Authenticator(verifier, IdentityRateLimiter(config.rate_limit, clock))
    parts = AccessParts(
        gate=AccessGate(ActivationReporter(requests, events), clock), sessions=sessions,
        revoker=revoker, access=AccessServicer(operations, auth),
        session_service=SessionServicer(SessionOperations(
            sessions=sessions, rights=operations.rights, revoker=revoker, requests=requests),
            auth))
    try:
        _start(parts, notifier.start, notifier)
        if singletons:
            _start(parts, None, expirer_worker(Expirer(requests, mappings, events, clock,
                                                       gauge=metrics)))
        if singletons and config.access.ci_webhooks is not None:
            server = CiWebhookServer(config.access.ci_webhooks, tls=config.tls,
                                     plaintext=config.plaintext, revoker=revoker,
                                     metrics=webhook_metrics)
            _start(parts, server.start, server)
            parts.ci_webhook_port = server.port
    except BaseException:
        for part in reversed(parts.stoppables):
            part.stop()
        raise
    return parts


def _start(parts: AccessParts, start: Callable[[], object] | None, part: Any) -> None:
    (start or part.start)()
    parts.stoppables.append(part)
