"""A real `kubegate serve` exports its traces by OTLP/HTTP to a receiver in this test, and logs
JSON lines: one exchange is one trace (`exchange` and its `verify`, `match`, `issue`, `audit`
children), whose id is the audit line's `trace_id` and the log lines'; no token anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from kubegate.client.rpc import ExchangeClient
from tests.support.fixtures_exchanger import self_issued_entry, write_mappings
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
MAPPING = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: web}
spec:
  issuer: github
  claims:
  - {claim: repository_id, equals: "100"}
  grant: {cluster: local, namespace: web, user: "ci:web", groups: [deployers]}
"""
STEPS = {"verify", "match", "issue", "audit"}


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    attributes: dict[str, str]
    service: str


class OTLPReceiver:
    """An OTLP/HTTP traces endpoint on loopback: `POST /v1/traces`, protobuf only."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.content_types: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = self.headers.get("Content-Type", "")
                if self.path != "/v1/traces" or kind != "application/x-protobuf":
                    self.send_error(415 if self.path == "/v1/traces" else 404)
                    return
                receiver.take(body, kind)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def traces_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    def take(self, body: bytes, kind: str) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                received += [ReceivedSpan(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(), name=span.name,
                    attributes={a.key: a.value.string_value for a in span.attributes},
                    service=service) for span in scope_spans.spans]
        with self._lock:
            self.spans += received
            self.content_types.append(kind)

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def serve_config(tmp_path: Path, issuer: GitHubActionsIssuer) -> Path:
    state = tmp_path / "state"
    write_mappings(state / "mappings", MAPPING)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "plaintext": True, "stateDir": str(state),
        "metricsListen": "", "reloadInterval": "1s",
        "issuers": [{"name": "github", "url": issuer.url, "audiences": ["kubegate"],
                     "caFile": str(issuer.ca_path)}],
        "clusters": [{"name": "local", "server": "https://127.0.0.1:6443",
                      "backend": "selfIssued"}],
        "selfIssued": self_issued_entry()}))
    return config


def started(serve: subprocess.Popen[str]) -> tuple[str, list[str]]:
    """The gRPC address from what `kubegate serve` prints, and the lines it printed."""
    assert serve.stdout is not None
    lines = [serve.stdout.readline()]
    while lines[-1] and not lines[-1].startswith("  traces:"):
        lines.append(serve.stdout.readline())
    assert lines[-1], f"serve ended early: {lines}"
    target = next(line for line in lines if line.startswith("  gRPC:")).split()[1]
    return target, lines


def test_one_exchange_is_one_exported_trace_named_in_the_audit_line_and_the_json_logs(
    tmp_path: Path, github_issuer: GitHubActionsIssuer, receiver: OTLPReceiver,
) -> None:
    config = serve_config(tmp_path, github_issuer)
    environ = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_url,
               "OTEL_SERVICE_NAME": "kubegate-under-test", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "kubegate", "serve", "--config", str(config),
         "--log-format", "json", "--log-level", "DEBUG", "--workers", "1"],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    token = github_issuer.mint(repository_id="100", audience="kubegate")
    try:
        target, shown = started(serve)
        assert shown[-1].strip() == (f"traces:    OTLP/HTTP {receiver.traces_url} as service "
                                     "kubegate-under-test")
        with ExchangeClient(target, plaintext=True) as client:
            credential = client.exchange(token)
        assert poll(lambda: len(receiver.spans) >= 5, 15, 0.05), receiver.spans
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=30)
    finally:
        serve.kill()
    assert serve.returncode == 0, stderr

    spans = {span.name: span for span in receiver.spans}
    assert len(receiver.spans) == 5 and set(spans) == {"exchange"} | STEPS
    assert set(receiver.content_types) == {"application/x-protobuf"}
    root = spans["exchange"]
    assert root.parent_span_id == "" and len(root.trace_id) == 32
    assert {span.trace_id for span in receiver.spans} == {root.trace_id}
    assert {spans[step].parent_span_id for step in STEPS} == {root.span_id}
    assert root.attributes == {
        "kubegate.issuer": "github", "kubegate.mapping": "web", "kubegate.decision": "allow",
        "kubegate.reason": "OK", "kubegate.session_id": credential.session_id}
    assert {span.service for span in receiver.spans} == {"kubegate-under-test"}

    audit = [json.loads(line) for line in
             (tmp_path / "state" / "audit.log").read_text().splitlines()]
    [allow] = [line for line in audit if line.get("decision") == "allow"]
    assert allow["trace_id"] == root.trace_id
    assert allow["session_id"] == credential.session_id

    logged = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    assert logged and all({"time", "level", "logger", "message"} <= set(line)
                          for line in logged)
    [during] = [line for line in logged if line.get("trace_id")]
    assert (during["trace_id"], during["session_id"]) == (root.trace_id, credential.session_id)
    assert during["message"] == "exchange allowed: mapping web"
    signature = token.rsplit(".", 1)[1]
    for text in (stderr, "".join(shown), repr(receiver.spans)):
        assert signature not in text and credential.token.rsplit(".", 1)[1] not in text
