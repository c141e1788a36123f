"""Traces of the exchange use case: an `exchange` span with names and the outcome, one child per
step, its trace id in the audit line and the log lines; nothing of OpenTelemetry loaded while
tracing is off; the settings read from the standard OTEL_* variables."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from exchanger import tracing
from exchanger.exchange import ExchangeInput
from exchanger.mappings import MappingSet
from exchanger.tracing import TracingSettings, read_tracing_settings, start_tracing
from kubegate.errors import ConfigError, InvalidRequestError, KubegateError, UnavailableError
from kubegate.logformat import log_handler
from tests.unit.exchanger.test_exchange import FakeAudit, FakeBackend, exchanger, identity

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider.get_tracer("test"))
    yield exporter
    tracing.uninstall()
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    named = {span.name: span for span in finished}
    assert len(named) == len(finished), [span.name for span in finished]
    return named


def hex_id(number: int) -> str:
    return format(number, "032x")


def test_an_allowed_exchange_is_one_trace_of_exchange_and_its_four_steps(
    spans: InMemorySpanExporter,
) -> None:
    use_case, audit, _ = exchanger()
    use_case.exchange(ExchangeInput(subject_token="a.b.c", peer="ipv4:1"))
    named = by_name(spans)
    assert set(named) == {"exchange", "verify", "match", "issue", "audit"}
    root = named["exchange"]
    assert root.parent is None and root.context is not None
    for step in ("verify", "match", "issue", "audit"):
        span = named[step]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context is not None and span.context.trace_id == root.context.trace_id
    assert dict(root.attributes or {}) == {
        "kubegate.issuer": "github", "kubegate.mapping": "web", "kubegate.decision": "allow",
        "kubegate.reason": "OK", "kubegate.session_id": "session-1"}
    assert root.status.status_code == StatusCode.UNSET
    [record] = audit.records
    assert record.trace_id == hex_id(root.context.trace_id)
    assert json.loads(record.to_json())["trace_id"] == record.trace_id


def test_a_denial_is_traced_with_its_reason_and_never_a_claim_or_message(
    spans: InMemorySpanExporter,
) -> None:
    use_case, audit, _ = exchanger(mapping_set=MappingSet(mappings=()))
    with pytest.raises(KubegateError):
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    named = by_name(spans)
    assert set(named) == {"exchange", "verify", "match", "audit"}
    root = named["exchange"]
    assert dict(root.attributes or {}) == {
        "kubegate.issuer": "github", "kubegate.decision": "deny",
        "kubegate.reason": "NO_MATCHING_MAPPING"}
    assert (root.status.status_code, root.status.description) == (
        StatusCode.ERROR, "NO_MATCHING_MAPPING")
    assert named["match"].status.description == "NO_MATCHING_MAPPING"
    for span in named.values():
        assert not span.events  # no exception event: its message could quote a claim
        assert identity().subject not in span.to_json()
    assert audit.records[0].trace_id == hex_id(root.context.trace_id)  # type: ignore[union-attr]


def test_a_request_refused_before_it_was_read_is_traced_too(
    spans: InMemorySpanExporter,
) -> None:
    use_case, audit, _ = exchanger()
    use_case.refuse(ExchangeInput(subject_token=""),
                    InvalidRequestError("MALFORMED_REQUEST", public_message="not a request"))
    named = by_name(spans)
    assert set(named) == {"exchange", "audit"}
    assert named["exchange"].attributes == {"kubegate.decision": "deny",
                                            "kubegate.reason": "MALFORMED_REQUEST"}
    assert audit.records[0].trace_id == hex_id(named["exchange"].context.trace_id)  # type: ignore[union-attr]


def test_log_lines_of_an_exchange_carry_its_trace_id_and_session_id(
    spans: InMemorySpanExporter,
) -> None:
    """The lines the use case writes itself: an unrecorded credential it cannot revoke, and
    the denial that follows, which the failing log cannot record either."""

    class StuckBackend(FakeBackend):
        def revoke(self, credential: Any) -> None:
            raise UnavailableError("KUBERNETES_UNAVAILABLE", "503")

    lines = io.StringIO()
    handler = log_handler("json", lines)
    logger = logging.getLogger("exchanger.exchange")
    logger.addHandler(handler)
    try:
        use_case, _, _ = exchanger(audit=FakeAudit(fail=True), backend=StuckBackend())
        with pytest.raises(KubegateError):
            use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    finally:
        logger.removeHandler(handler)
    revoke, deny = [line for line in map(json.loads, lines.getvalue().splitlines())
                    if line["level"] == "ERROR"]  # (and the debug line, when enabled)
    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["verify", "match", "issue", "audit", "audit", "exchange"]  # allow, deny
    root = spans.get_finished_spans()[-1]
    for line in (revoke, deny):
        assert line["trace_id"] == hex_id(root.context.trace_id)  # type: ignore[union-attr]
        assert line["session_id"] == "session-1"
    assert "could not revoke unrecorded session session-1" in revoke["message"]
    assert "denial not recorded" in deny["message"]


def test_without_tracing_spans_are_one_shared_no_op_and_audit_lines_have_an_empty_trace_id(
) -> None:
    assert not tracing.enabled()
    with tracing.span("exchange", issuer="github") as first, tracing.span("verify") as second:
        first.set(decision="allow")
    assert first is second and first.trace_id == ""
    use_case, audit, _ = exchanger()
    use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert audit.records[0].trace_id == ""
    assert json.loads(audit.records[0].to_json())["trace_id"] == ""


def test_the_exchanger_imports_no_opentelemetry_while_tracing_is_off() -> None:
    program = """
import sys
from exchanger import server, tracing
from exchanger.exchange import Exchanger
from kubegate.commands import serve
assert tracing.read_tracing_settings({}) is None
with tracing.span("exchange") as root, tracing.span("verify"):
    root.set(decision="allow")
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "flag", "expected"), [
    ({}, "", None),
    ({"OTEL_SERVICE_NAME": "x"}, "", None),
    ({}, "http://collector:4318/", TracingSettings(
        exporters=("otlp",), endpoint="http://collector:4318/v1/traces")),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318", "OTEL_SERVICE_NAME": "kg-prod"}, "",
     TracingSettings(exporters=("otlp",), endpoint="https://c:4318/v1/traces",
                     service_name="kg-prod")),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/custom",
      "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318"}, "",
     TracingSettings(exporters=("otlp",), endpoint="http://t:9/custom")),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/custom"}, "http://flag:4318",
     TracingSettings(exporters=("otlp",), endpoint="http://flag:4318/v1/traces")),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, "", TracingSettings(
        exporters=("otlp",), endpoint="http://localhost:4318/v1/traces")),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, "", TracingSettings(
        exporters=("console", "otlp"), endpoint="http://localhost:4318/v1/traces")),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
     "http://flag:4318", None),
    ({"OTEL_SDK_DISABLED": "true"}, "http://flag:4318", None),
])
def test_tracing_settings_follow_the_standard_variables_and_the_flag(
    environ: dict[str, str], flag: str, expected: TracingSettings | None,
) -> None:
    assert read_tracing_settings(environ, flag) == expected


def test_unknown_exporters_and_bad_endpoints_are_reported_together() -> None:
    with pytest.raises(ConfigError) as bad:
        read_tracing_settings({"OTEL_TRACES_EXPORTER": "zipkin,otlp",
                               "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    assert bad.value.problems == [
        "OTEL_TRACES_EXPORTER: kubegate exports to otlp or console (or none), not zipkin",
        "OTEL_EXPORTER_OTLP_ENDPOINT: expected an http:// or https:// URL, got "
        "'collector:4318/v1/traces'"]


def test_started_tracing_opens_live_spans_until_stopped_and_exports_them_at_stop(
    capsys: pytest.CaptureFixture[str],
) -> None:
    running = start_tracing(TracingSettings(exporters=("console",),
                                            endpoint="http://127.0.0.1:9/v1/traces"))
    try:
        assert tracing.enabled()
        with tracing.span("exchange", decision="allow") as root:
            pass
        assert len(root.trace_id) == 32
    finally:
        running.stop()
    assert not tracing.enabled()
    exported = json.loads(capsys.readouterr().err)
    assert exported["name"] == "exchange"
    assert exported["context"]["trace_id"] == "0x" + root.trace_id
    assert exported["resource"]["attributes"]["service.name"] == "kubegate-exchanger"


def test_tracing_configured_without_the_sdk_installed_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace.export", None)
    with pytest.raises(ConfigError) as missing:
        start_tracing(TracingSettings(exporters=("otlp",), endpoint="http://c/v1/traces"))
    [problem] = missing.value.problems
    assert problem.startswith("tracing is configured but OpenTelemetry is not installed")
    assert "pip install opentelemetry-sdk" in problem and "\n" not in problem
    assert not tracing.enabled()
