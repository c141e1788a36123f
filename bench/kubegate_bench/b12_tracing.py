"""Benchmark 12: what tracing costs the exchange use case, in-process (no gRPC).

It starts benchmark 1's exchanger configuration in this process (as `breakdown` does; the
audit log without fsync, so the use case's CPU is the denominator, not the disk), takes the
`Exchanger` it builds and times `Exchanger.exchange` on fresh RS256 tokens:
- with tracing off, the span and log-scope calls an exchange makes (`exchanger.tracing`'s
  no-op facade, `kubegate.logformat.request_scope`) replayed on their own, against the whole
  exchange: what "off" costs over the bare use case (target: < 2 %). Which spans one exchange
  opens is read from a traced exchange first, so the replay cannot drift from the code;
- with tracing on (the SDK, a batch span processor, an exporter that drops the spans), against
  tracing off: for information.
Off and on are timed interleaved, so drift hits both alike.
"""

from __future__ import annotations

import functools
import itertools
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from exchanger import tracing
from exchanger.exchange import ExchangeInput
from kubegate.logformat import request_scope, set_session_id
from kubegate_bench import b1_throughput
from kubegate_bench.common import Context, Outcome, Row, best_per_call
from kubegate_bench.tokens import BenchIssuer

TITLE = "tracing: span calls of one exchange, off and on"
MAX_OFF_SHARE = 0.02
PEER = "ipv4:127.0.0.1:5000"
log = logging.getLogger("exchanger.exchange")  # the use case's logger, for the replay


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="12", title=TITLE)
    issuer = BenchIssuer()
    folder = Path(tempfile.mkdtemp(prefix="b12-", dir=ctx.work))
    with _InProcessExchanger(issuer, folder) as exchanger:
        tokens = itertools.cycle([issuer.mint() for _ in range(ctx.sizes.token_pool)])
        names = _traced_span_names(exchanger, next(tokens))
        rounds = max(10, ctx.sizes.verify_rounds // 3)
        best = {"off": float("inf"), "on": float("inf"), "facade": float("inf")}
        calls = {"off": functools.partial(_exchange, exchanger, tokens),
                 "on": _traced(functools.partial(_exchange, exchanger, tokens)),
                 "facade": functools.partial(_facade, names)}
        for _ in range(ctx.sizes.repeats):
            for key, call in calls.items():
                call()  # warm
                best[key] = min(best[key], best_per_call(call, rounds, 1))
    outcome.rows.append(Row(
        bench="12", name=f"tracing off: the {len(names)} span calls and log scope of one "
        "exchange", value=best["facade"] * 1e6, unit="us",
        baseline="Exchanger.exchange, tracing off", baseline_value=best["off"] * 1e6,
        check="ratio<=", target=MAX_OFF_SHARE,
        note=f"spans {', '.join(names)}; the no-op facade, replayed on its own"))
    outcome.rows.append(Row(
        bench="12", name="Exchanger.exchange, tracing on (SDK, batch processor)",
        value=best["on"] * 1e6, unit="us", baseline="Exchanger.exchange, tracing off",
        baseline_value=best["off"] * 1e6, note="spans dropped by the exporter"))
    outcome.data = {"us": {key: seconds * 1e6 for key, seconds in best.items()},
                    "spans": list(names), "rounds": rounds}
    return outcome


class _InProcessExchanger:
    """The `Exchanger` of benchmark 1's configuration, started in this process."""

    def __init__(self, issuer: BenchIssuer, folder: Path) -> None:
        self._issuer, self._folder = issuer, folder

    def __enter__(self) -> Any:
        from exchanger import server
        from exchanger.config import load_config

        captured: list[Any] = []
        original, audit_log = server.Exchanger, server.AuditLog  # type: ignore[attr-defined]

        class Capturing(original):  # type: ignore[misc, valid-type]
            def __init__(self, **parts: Any) -> None:
                super().__init__(**parts)
                captured.append(self)

        server.Exchanger = Capturing  # type: ignore[attr-defined]
        server.AuditLog = functools.partial(audit_log, fsync=False)  # type: ignore[attr-defined]
        try:
            self._running = server.start_exchanger(
                load_config(b1_throughput._config(self._issuer, self._folder)))
        finally:
            server.Exchanger, server.AuditLog = original, audit_log  # type: ignore[attr-defined]
        return captured[0]

    def __exit__(self, *_: object) -> None:
        self._running.stop(grace=0)


def _exchange(exchanger: Any, tokens: Iterator[str]) -> None:
    exchanger.exchange(ExchangeInput(subject_token=next(tokens), peer=PEER))


def _traced(call: Callable[[], None]) -> Callable[[], None]:
    """`call` with tracing on: the SDK with a batch processor whose exporter drops spans."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    tracer = provider.get_tracer("bench")

    def traced() -> None:
        tracing.install(tracer)
        try:
            call()
        finally:
            tracing.uninstall()

    return traced


def _traced_span_names(exchanger: Any, token: str) -> tuple[str, ...]:
    """The spans one allowed exchange opens, outermost first, read from a traced exchange."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider.get_tracer("bench"))
    try:
        _exchange(exchanger, iter([token]))
    finally:
        tracing.uninstall()
    finished = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    return tuple(span.name for span in finished)


def _facade(names: Sequence[str]) -> None:
    """What an exchange does for traces and logs while tracing is off, and nothing else: the
    root span with its log scope and summary, a span per step, the session id named, and the
    (disabled) debug line."""
    root_name, *steps = names
    with tracing.span(root_name) as root, request_scope(root.trace_id):
        for step in steps:
            with tracing.span(step):
                pass
        set_session_id("session")
        root.set(issuer="bench", mapping="web-deploy", decision="allow", reason="OK",
                 session_id="session")
        log.debug("exchange allowed: mapping %s", "web-deploy")
