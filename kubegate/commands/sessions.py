"""`kubegate sessions`: the credentials the exchanger issued (never the credentials themselves),
as recorded where every replica sees them; list them, show one, end one now.

    kubegate sessions list --active --request ar-0123456789abcdef
    kubegate sessions revoke s-... --reason "laptop lost"

A caller sees their own sessions, approvers those of the mappings they approve, admins all.
Revoking deletes the session Secret, so a TokenRequest token stops working at once; a
self-issued or pod-bound credential (REVOCABLE no) runs until it expires.

The flags, identity, output and exit statuses are those of `kubegate access` (its module
holds the shared plumbing): one line on stderr prefixed `kubegate sessions: ` for a failure,
exit 0 ok, 1 refused or failed, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kubegate.commands.access import (
    EXIT_OK,
    Caller,
    add_action,
    call,
    describe,
    ends_in,
    principal,
    print_json,
    span,
    table,
    when,
)
from kubegate.credential import rfc3339

if TYPE_CHECKING:
    from kubegate.client.access import AccessClient, Session

PROG = "kubegate sessions"
SESSION_COLUMNS = ("ID", "ROLE", "CLUSTER", "NAMESPACE", "CALLER", "REQUEST", "STATE",
                   "REVOCABLE", "ENDS IN", "AGE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="sessions_action", metavar="ACTION", required=True)
    listing = add_action(actions, "list", "list the sessions you may see", _list)
    listing.add_argument("--active", action="store_true", help="only sessions that still run")
    listing.add_argument("--request", metavar="ID",
                         help="only sessions opened with this access request")
    listing.add_argument("--cluster", metavar="C", help="only sessions on this cluster")
    show = add_action(actions, "show", "show one session", _show)
    show.add_argument("id", metavar="ID")
    revoke = add_action(actions, "revoke", "end a session now", _revoke)
    revoke.add_argument("id", metavar="ID")
    revoke.add_argument("--reason", required=True, metavar="TEXT",
                        help="why (kept in the audit log)")


def run(args: argparse.Namespace) -> int:
    return call(args, args.access_handler, PROG)


def _list(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    sessions = client.sessions(active_only=args.active, access_request=args.request or "",
                               cluster=args.cluster or "")
    if args.output == "json":
        print_json({"sessions": sessions})
    elif sessions:
        show_sessions(args, sessions)
    else:
        print("no sessions", file=sys.stderr)
    return EXIT_OK


def _show(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    session = client.session(args.id)
    if args.output == "json":
        print_json(session)
    else:
        print(describe_session(session, now=time.time()))
    return EXIT_OK


def _revoke(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    show_sessions(args, [client.revoke_session(args.id, reason=args.reason)])
    return EXIT_OK


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
