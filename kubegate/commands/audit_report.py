"""`kubegate audit report`: what was brokered against what the cluster saw.

Reads kubegate audit logs (sessions) and Kubernetes audit logs (events, streamed), joins them
by credential id (`exchanger.auditreport.join`), hands every event to the bypass detector and
the least-privilege recorder, and writes a terminal summary, JSON or one HTML file.

Exit status: 0 when the report was written (lines that could not be read are listed in it,
they do not fail the command), 2 when the command was called wrongly or nothing could be
written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from exchanger.auditreport.bypass import (
    Allowlist,
    AllowlistError,
    BypassDetector,
    approved_requests_of,
)
from exchanger.auditreport.cluster_log import iter_events
from exchanger.auditreport.join import EventObserver, Report, build_report
from exchanger.auditreport.kubegate_log import read_sessions
from exchanger.auditreport.leastpriv import LeastPrivilege, Scope, least_privilege_section
from exchanger.auditreport.model import Filters, Problem
from exchanger.auditreport.render import as_json, format_time, summary
from kubegate.commands.auditexits import EXIT_OK, EXIT_UNREADABLE
from kubegate.grammar import parse_duration

__all__ = ["parse_moment", "run_report"]


def parse_moment(text: str | None, now: float) -> float:
    """Unix seconds of `text`: RFC 3339 (`2026-01-02T03:04:05Z`), or a duration before
    `now` (`2h`, `30m`, `1h30m`); 0 for none. Raises ValueError."""
    if not text:
        return 0.0
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an RFC 3339 time or a duration before now such as 2h, "
                         f"got {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z or +00:00)")
    return moment.timestamp()


def _moment(flag: str, text: str | None, now: float) -> float:
    try:
        return parse_moment(text, now)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}") from None


def _filters(args: argparse.Namespace, now: float) -> Filters:
    return Filters(since=_moment("--since", args.since, now),
                   until=_moment("--until", args.until, now), session=args.session,
                   identity=args.identity, mapping=args.mapping, run=args.run)


def _scope(filters: Filters) -> Scope:
    if filters.run:
        return "run"
    return "mapping" if filters.mapping else "session"


def _render(report: Report, output: str, extra: dict[str, Any]) -> str:
    if output == "text":
        return summary(report)
    document = {**as_json(report), **extra}
    if output == "json":
        return json.dumps(document, indent=2, sort_keys=True) + "\n"
    from exchanger.auditreport.html import render_html

    return render_html(document)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def run_report(args: argparse.Namespace) -> int:
    now = time.time()
    try:
        filters = _filters(args, now)
        allowlist = Allowlist(args.allow_user)
    except (ValueError, AllowlistError) as error:
        print(f"kubegate audit report: {error}", file=sys.stderr)
        return EXIT_UNREADABLE
    problems: list[Problem] = []
    sessions = read_sessions(args.kubegate_log, problems)
    recorder = LeastPrivilege(filters=filters)
    observers: list[EventObserver] = [
        BypassDetector(sessions, allowlist, exchanger_users=args.exchanger_user,
                       approved_requests=approved_requests_of(sessions.sessions())),
        recorder]
    report = build_report(sessions, iter_events(args.cluster_log, problems), filters=filters,
                          observers=observers, problems=problems)
    extra = {"generated_at": format_time(now),
             "least_privilege": least_privilege_section(recorder, scope=_scope(filters))}
    try:
        _write(_render(report, args.output, extra), args.out)
    except OSError as error:
        print(f"kubegate audit report: {args.out}: cannot write: {error.strerror}",
              file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK
