"""Prometheus metrics of one gateway process, on a registry of its own, served with `GET /healthz`
on `gateway.metricsListen` (`serve_metrics`).

- `kubegate_gateway_requests_total{verb,code}`: every request, refusals included (`code`: the
  HTTP status answered, `499` when the client left first);
- `kubegate_gateway_refusals_total{reason}`: the gateway's own answers by reason code
  (`IMPERSONATION_REFUSED`, `SESSION_ENDED`, `TOO_MANY_CONNECTIONS`, ...);
- `kubegate_gateway_request_duration_seconds{verb}`: upgraded streams (exec, attach,
  port-forward) are left out: they last as long as a shell;
- `kubegate_gateway_open_connections`, `kubegate_gateway_sessions_cut_total{reason}` (a
  session's open connections cut here: `revoked`, `expired`, `window-closed`, ...), and
  `kubegate_gateway_recording_failures_total` (request records the log did not take).

Rules of this module: label values are bounded: a verb outside the Kubernetes verbs and HTTP
methods is `other`, a reason not shaped like a code is `OTHER`, so a client's text never
becomes a series; `/healthz` answers 200 while `healthy()` (the gateway listens), else 503.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from exchanger.gateway.audit import GatewayRequest
from kubegate.addresses import parse_host_port

VERBS: Final = frozenset({"get", "list", "watch", "create", "update", "patch", "delete",
                          "deletecollection", "head", "options", "post", "put", "connect",
                          "trace", "-"})
_CODE: Final = re.compile(r"[A-Z][A-Z0-9_]{0,47}")
_CUT: Final = re.compile(r"[a-z][a-z-]{0,31}")
HEALTH_PATH: Final = "/healthz"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "kubegate_gateway_requests_total", "Requests by verb and HTTP status answered "
            "(refusals included).", ["verb", "code"], registry=self.registry)
        self.refusals = Counter(
            "kubegate_gateway_refusals_total", "Requests the gateway answered itself, by "
            "reason code.", ["reason"], registry=self.registry)
        self.duration = Histogram(
            "kubegate_gateway_request_duration_seconds", "Time from a request's head to its "
            "end, by verb (upgraded streams left out).", ["verb"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                     1800),
            registry=self.registry)
        self.open_connections = Gauge(
            "kubegate_gateway_open_connections", "Client connections open now.",
            registry=self.registry)
        self.sessions_cut = Counter(
            "kubegate_gateway_sessions_cut_total", "Sessions whose open connections were cut, "
            "by why the session ended.", ["reason"], registry=self.registry)
        self.recording_failures = Counter(
            "kubegate_gateway_recording_failures_total", "Request records that could not be "
            "written to the gateway's request log.", registry=self.registry)

    def on_request(self, request: GatewayRequest) -> None:
        verb = request.verb if request.verb in VERBS else "other"
        self.requests.labels(verb=verb, code=str(request.status)).inc()
        if request.refused:
            self.refusals.labels(reason=_bounded(_CODE, request.refused, "OTHER")).inc()
        if not request.upgraded:
            self.duration.labels(verb=verb).observe(max(0.0, request.duration_seconds))

    def on_session_cut(self, why: str) -> None:
        self.sessions_cut.labels(reason=_bounded(_CUT, why, "other")).inc()

    def on_recording_failure(self) -> None:
        self.recording_failures.inc()

    def count_open_connections(self, count: Callable[[], int]) -> None:
        self.open_connections.set_function(count)


def _bounded(shape: re.Pattern[str], value: str, other: str) -> str:
    return value if shape.fullmatch(value) else other


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Probes and scrapes are not worth a log line each."""


@dataclass(frozen=True)
class MetricsServer:
    port: int  # the bound port (a test's port 0)
    stop: Callable[[], None]


def serve_metrics(listen: str, metrics: GatewayMetrics, healthy: Callable[[], bool],
                  ) -> MetricsServer:
    """Serve /metrics and /healthz on listen (HOST:PORT, checked by the config loader) from
    a thread of its own, like prometheus_client's `start_http_server` plus the probe path."""
    scrape = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            scraped: Iterable[bytes] = scrape(environ, start_response)
            return scraped
        ok = healthy()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain; charset=utf-8")])
        return [b"ok\n" if ok else b"not listening\n"]

    address = parse_host_port(listen)

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in address.bind_host else socket.AF_INET

    server = make_server(address.bind_host, address.port, app, Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="gateway-metrics",
                              daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return MetricsServer(port=server.server_port, stop=stop)
