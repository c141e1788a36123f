"""What the proxy tells about each request it relayed: the session record for the recorder,
and Prometheus metrics, both built from a `ProxiedRequest`.

Rules of this module:
- a `ProxiedRequest` holds no secret: the token never leaves the header rewrite, and the path
  is the client's (Kubernetes API paths carry none);
- metric labels are bounded: the status code only, never a path or a user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# A client that went away before any answer was written (nginx's convention).
CLIENT_CLOSED = 499


@dataclass(frozen=True, kw_only=True)
class ProxiedRequest:
    method: str
    path: str  # path and query as the client sent them (Kubernetes API paths carry no secrets)
    status: int
    bytes_sent: int  # to the client: head, body, and for an upgrade everything relayed
    bytes_received: int  # from the client after the head: body, or relayed upgrade bytes
    duration_seconds: float
    session_id: str  # of the credential used; empty when there was none
    upgraded: bool
    refused: str = ""  # the reason when the proxy answered itself (HOST_NOT_ALLOWED, ...)


def session_record(request: ProxiedRequest) -> dict[str, Any]:
    """The record handed to the recorder, one per proxied request."""
    return {
        "event": "proxy.request",
        "method": request.method,
        "path": request.path,
        "status": request.status,
        "bytes_sent": request.bytes_sent,
        "bytes_received": request.bytes_received,
        "duration_seconds": round(request.duration_seconds, 6),
        "session_id": request.session_id,
        "upgraded": request.upgraded,
        "refused": request.refused,
    }


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "kubegate_proxy_requests_total", "Requests relayed by the API proxy, by status.",
            ["code"], registry=self.registry)
        self.duration = Histogram(
            "kubegate_proxy_request_duration_seconds",
            "Time from a request's head to the end of its answer (watches and upgraded "
            "connections included, so the top buckets are long).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600),
            registry=self.registry)

    def observe(self, request: ProxiedRequest) -> None:
        self.requests.labels(code=str(request.status)).inc()
        self.duration.observe(request.duration_seconds)
