"""Traces of exchanges: `with span(name, **attributes) as s:` around each step, a no-op until
tracing is set up.

    with tracing.span("exchange") as root:   # root.trace_id: 32 hex digits, "" when off
        with tracing.span("verify"):
            ...
        root.set(decision="allow", reason="OK")

Rules of this module:
- importing it imports no OpenTelemetry, and neither does `span()` while tracing is off: it
  hands out one shared no-op span, so an exchanger without tracing pays a call and an empty
  `with` per step (benchmark 12), never an SDK;
- `start_tracing(settings)` (by `kubegate serve`, only when `read_tracing_settings` says
  tracing is configured) imports the SDK; from then on `span()` opens real spans, nested by
  OpenTelemetry's context (a contextvar): a span opened inside another is its child;
- attributes are names, decisions and ids, never a token or a claim value: callers pass them
  by keyword and each becomes `kubegate.<keyword>`; empty values are left out;
- an exception leaving a span marks it ERROR with the error's reason (a KubegateError) or
  its type's name, never its message (messages may quote claims), and no exception event;
- the settings are the standard OpenTelemetry variables, read from the mapping the command
  hands in (this module never reads the environment itself).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from kubegate.errors import ConfigError, KubegateError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

TRACER_NAME: Final = "kubegate.exchanger"
DEFAULT_SERVICE_NAME: Final = "kubegate-exchanger"
DEFAULT_OTLP_ENDPOINT: Final = "http://localhost:4318"
TRACES_PATH: Final = "/v1/traces"
EXPORTERS: Final = frozenset({"otlp", "console"})


class Span(Protocol):
    @property
    def trace_id(self) -> str:
        """The trace's id as 32 lowercase hex digits; "" when tracing is off."""
        ...

    def set(self, **attributes: str) -> None:
        """Add attributes (`kubegate.<keyword>`); empty values are left out."""
        ...

    def __enter__(self) -> Span: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None: ...


class _NoSpan:
    """The span of an exchanger without tracing: one shared instance that does nothing."""

    __slots__ = ()
    trace_id = ""

    def set(self, **attributes: str) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        pass


_NO_SPAN: Final = _NoSpan()
_tracer: _OtelTracer | None = None


def span(name: str, **attributes: str) -> Span:
    """A span named `name`, child of the current one; the no-op span while tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.span(name, attributes)


def install(tracer: Tracer) -> None:
    """Open spans with this OpenTelemetry tracer from now on (`start_tracing`, tests)."""
    global _tracer
    _tracer = _OtelTracer(tracer)


def uninstall() -> None:
    """Back to no-op spans."""
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


# -- live spans (only ever built once the SDK is imported) ------------------------------------


class _OtelTracer:
    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode

        self.tracer, self.context, self.trace = tracer, context, trace
        self.status, self.error_code = Status, StatusCode.ERROR

    def span(self, name: str, attributes: Mapping[str, str]) -> _LiveSpan:
        return _LiveSpan(self, name, attributes)


class _LiveSpan:
    __slots__ = ("_otel", "_span", "_token")

    def __init__(self, otel: _OtelTracer, name: str, attributes: Mapping[str, str]) -> None:
        self._otel = otel
        self._span = otel.tracer.start_span(name, attributes=_attributes(attributes),
                                            record_exception=False,
                                            set_status_on_exception=False)
        self._token: object = None

    @property
    def trace_id(self) -> str:
        context = self._span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else ""

    def set(self, **attributes: str) -> None:
        self._span.set_attributes(_attributes(attributes))

    def __enter__(self) -> _LiveSpan:
        self._token = self._otel.context.attach(self._otel.trace.set_span_in_context(self._span))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is not None:
            reason = error.reason if isinstance(error, KubegateError) else type(error).__name__
            self._span.set_status(self._otel.status(self._otel.error_code, reason))
        self._otel.context.detach(self._token)
        self._span.end()


def _attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    return {f"kubegate.{key}": value for key, value in attributes.items() if value}


# -- settings: the standard OpenTelemetry variables ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    """Where spans go: `exporters` (otlp, console) and the OTLP/HTTP traces URL."""

    exporters: tuple[str, ...]
    endpoint: str
    service_name: str = DEFAULT_SERVICE_NAME

    def describe(self) -> str:
        where = [f"OTLP/HTTP {self.endpoint}" if name == "otlp" else "console (stderr)"
                 for name in self.exporters]
        return f"{', '.join(where)} as service {self.service_name}"


def read_tracing_settings(environ: Mapping[str, str],
                          otlp_endpoint: str = "") -> TracingSettings | None:
    """The tracing a command asks for, or None for none. `otlp_endpoint` (a flag) is a base
    URL like OTEL_EXPORTER_OTLP_ENDPOINT and wins over both variables. Tracing is on when an
    endpoint is given or OTEL_TRACES_EXPORTER names an exporter; OTEL_TRACES_EXPORTER=none
    and OTEL_SDK_DISABLED=true turn it off. Raises ConfigError naming each bad variable."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    problems: list[str] = []
    endpoint, source = _endpoint(environ, otlp_endpoint)
    named = [part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
             if part.strip()]
    if "none" in named:
        return None
    unknown = sorted(set(named) - EXPORTERS)
    if unknown:
        problems.append(f"OTEL_TRACES_EXPORTER: kubegate exports to otlp or console (or none), "
                        f"not {', '.join(unknown)}")
    exporters = tuple(dict.fromkeys(named)) or (("otlp",) if source else ())
    if "otlp" in exporters and urlsplit(endpoint).scheme not in ("http", "https"):
        problems.append(f"{source or 'OTEL_EXPORTER_OTLP_ENDPOINT'}: expected an http:// or "
                        f"https:// URL, got {endpoint!r}")
    if problems:
        raise ConfigError(problems)
    if not exporters:
        return None
    service = environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
    return TracingSettings(exporters=exporters, endpoint=endpoint, service_name=service)


def _endpoint(environ: Mapping[str, str], flag: str) -> tuple[str, str]:
    """The OTLP/HTTP traces URL and where it came from ("" for the default)."""
    if flag:
        return flag.rstrip("/") + TRACES_PATH, "--otlp-endpoint"
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + TRACES_PATH, "OTEL_EXPORTER_OTLP_ENDPOINT"
    return DEFAULT_OTLP_ENDPOINT + TRACES_PATH, ""


# -- the SDK ---------------------------------------------------------------------------------


class Tracing:
    """Tracing that runs: `stop()` exports what is left and turns `span()` back into a no-op."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider

    def stop(self) -> None:
        uninstall()
        self._provider.shutdown()  # flushes the batch processor's queue first


def start_tracing(settings: TracingSettings) -> Tracing:
    """Set up the SDK: a batch span processor per exporter (OTEL_BSP_* tune it; other
    OTEL_EXPORTER_OTLP_* variables, such as headers and certificates, are read by the OTLP
    exporter itself) and a resource named OTEL_SERVICE_NAME. Raises ConfigError when the
    OpenTelemetry packages are missing."""
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ConfigError([f"tracing is configured but OpenTelemetry is not installed "
                           f"({error.name}): pip install opentelemetry-sdk "
                           "opentelemetry-exporter-otlp-proto-http"]) from None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    for exporter in _exporters(settings):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider.get_tracer(TRACER_NAME))
    return Tracing(provider)


def _exporters(settings: TracingSettings) -> list[Any]:
    exporters: list[Any] = []
    if "otlp" in settings.exporters:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise ConfigError([f"OTLP export is configured but its exporter is not installed "
                               f"({error.name}): pip install "
                               "opentelemetry-exporter-otlp-proto-http"]) from None
        exporters.append(OTLPSpanExporter(endpoint=settings.endpoint))
    if "console" in settings.exporters:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporters.append(ConsoleSpanExporter(out=sys.stderr))
    return exporters
