"""What `kubegate access` and `kubegate sessions` print: tables, `name: value` blocks, JSON
lines, and the times in them (`ends in`, age). Pure formatting over the client's values; it
imports neither command."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubegate.credential import rfc3339

if TYPE_CHECKING:
    from kubegate.client.access import Principal, Session

REASON_WIDTH = 40


def print_json(value: object) -> None:
    from kubegate.client.access import as_json

    print(json.dumps(as_json(value)), flush=True)


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [columns, *rows]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def describe(rows: Sequence[tuple[str, str]]) -> str:
    """`name:  value` lines; rows without a value are left out, rows without a name indent."""
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name + ':' if name else '':<{width}}{' ' if name else '  '}{value}"
                     for name, value in rows if value)


def principal(who: Principal | None) -> str:
    if who is None or not who.subject:
        return "-"
    identity = f"{who.issuer}/{who.subject}"
    return f"{who.who} ({identity})" if who.who else identity


def cut(text: str, width: int = REASON_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def span(seconds: float) -> str:
    """A length of time in a table: 45s, 12m, 3h5m, 2d4h."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    days, rest = divmod(whole, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def ends_in(at: int, now: float) -> str:
    if not at:
        return "-"
    return span(at - now) if at > now else "ended"


def when(at: int, now: float) -> str:
    if not at:
        return ""
    relative = f"in {span(at - now)}" if at > now else f"{span(now - at)} ago"
    return f"{rfc3339(at)} ({relative})"


SESSION_COLUMNS = ("ID", "ROLE", "CLUSTER", "NAMESPACE", "CALLER", "REQUEST", "STATE",
                   "REVOCABLE", "ENDS IN", "AGE")


def show_sessions(args: argparse.Namespace, sessions: Sequence[Session]) -> None:
    if args.output == "json":
        for session in sessions:
            print_json(session)
        return
    now = time.time()
    print(table(SESSION_COLUMNS, [session_row(s, now=now) for s in sessions]), flush=True)


def session_row(session: Session, *, now: float) -> tuple[str, ...]:
    return (session.id, session.mapping, session.cluster, session.namespace or "-",
            session.caller.name or "-", session.access_request or "-", state(session),
            "yes" if session.revocable else "no",
            ends_in(session.not_after, now) if session.active else "-",
            span(now - session.issued_at) if session.issued_at else "-")


def state(session: Session) -> str:
    return "active" if session.active else (session.end_reason or "ended")


def describe_session(session: Session, *, now: float) -> str:
    return describe([
        ("id", session.id), ("state", state(session)), ("role", session.mapping),
        ("cluster", session.cluster), ("namespace", session.namespace),
        ("caller", principal(session.caller)), ("caller pod", session.caller_pod),
        ("access request", session.access_request),
        ("ci", ", ".join(f"{k}={v}" for k, v in sorted(session.ci.items()))),
        ("token id", session.token_id), ("revocable", "yes" if session.revocable else "no"),
        ("issued", when(session.issued_at, now)), ("expires", when(session.expires_at, now)),
        ("not after", when(session.not_after, now)),
        ("ended", rfc3339(session.ended_at) if session.ended_at else ""),
        ("ended by", principal(session.ended_by) if session.ended_by else ""),
    ])

