"""`start_gateway(config)`: the whole gateway from the config alone: its serving TLS (generated
on loopback when `gateway.tls` is absent), its own way to the API server (the fronted
cluster's entry), the identity half (`identity_assembly`), the recorder of streams, the
request log, and the listener; `stop()` ends them in reverse order.

Rules of this module: a failure while starting stops what was started before it is raised;
the request log is opened before the listener, so no request is ever served unrecorded;
the metrics server (`gateway.metricsListen`) starts after the listener, so its `/healthz`
answers 200 only once the gateway listens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchanger.audit.log import AuditLog
from exchanger.config import Config
from exchanger.gateway.audit import GatewayAudit
from exchanger.gateway.identity_assembly import start_identity
from exchanger.gateway.metrics import GatewayMetrics, serve_metrics
from exchanger.gateway.proxy import GatewayParts
from exchanger.gateway.proxy_sessions import SessionConnections
from exchanger.gateway.proxy_upstream import gateway_upstream
from exchanger.gateway.recording import RecordingTaps
from exchanger.gateway.server import GatewayServer, server_context
from exchanger.gateway.settings import GatewaySettings
from exchanger.localtls import ensure_local_tls
from kubegate.addresses import parse_host_port

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RunningGateway:
    server: GatewayServer
    settings: GatewaySettings
    ca_file: Path | None  # the generated CA clients trust, None with configured TLS
    metrics: GatewayMetrics
    metrics_port: int = 0  # where /metrics and /healthz are served, 0 without metricsListen
    closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{_reachable(self.settings.listen, self.server.port)}"

    @property
    def metrics_url(self) -> str:
        """`http://HOST:PORT/metrics`, "" without `gateway.metricsListen`."""
        if not self.metrics_port:
            return ""
        return f"http://{_reachable(self.settings.metrics_listen, self.metrics_port)}/metrics"

    def stop(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("gateway: stopping a part failed")
        self.closers.clear()


def _reachable(listen: str, port: int) -> str:
    """HOST:PORT to connect to what listens on listen (bound to port)."""
    host = parse_host_port(listen).host
    unspecified = host == "localhost" or (host.replace(".", "").replace(":", "")
                                           .strip("0") == "")  # 0.0.0.0 or ::
    shown = "127.0.0.1" if unspecified else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"{shown}:{port}"


def start_gateway(config: Config, clock: Callable[[], float] = time.time) -> RunningGateway:
    settings = config.gateway
    if settings is None:
        raise ValueError("the config has no gateway section")
    tls = settings.tls
    if tls.generated_ca_file is not None:
        host = parse_host_port(settings.listen).host
        ensure_local_tls(tls.generated_ca_file, tls.cert_file, tls.key_file,
                         hosts=tuple(dict.fromkeys((host, "127.0.0.1", "localhost"))),
                         name="kubegate gateway local CA")
    context = server_context(tls.cert_file, tls.key_file)
    upstream = gateway_upstream(config.cluster(settings.cluster))
    closers: list[Callable[[], Any]] = []
    metrics, metrics_port = GatewayMetrics(), 0
    try:
        audit_log = AuditLog(settings.audit_log)
        closers.append(audit_log.close)
        identity = start_identity(config, clock)
        closers.append(identity.stop)
        sessions = SessionConnections(clock, on_cut=metrics.on_session_cut)
        closers.append(sessions.stop)
        settings.recordings.mkdir(parents=True, exist_ok=True, mode=0o700)
        parts = GatewayParts(authenticator=identity.authenticator, upstream=upstream,
                             sessions=sessions, taps=RecordingTaps(settings.recordings))
        server = GatewayServer(parts, listen=settings.listen, tls=context,
                               audit=GatewayAudit(audit_log),
                               max_connections=settings.max_connections, metrics=metrics)
        identity.ends.subscribe(server.cut)
        server.start()
        closers.append(server.stop)
        if settings.metrics_listen:
            served = serve_metrics(settings.metrics_listen, metrics,
                                   healthy=lambda: server.listening)
            closers.append(served.stop)
            metrics_port = served.port
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return RunningGateway(server=server, settings=settings, ca_file=tls.generated_ca_file,
                          metrics=metrics, metrics_port=metrics_port, closers=closers)
