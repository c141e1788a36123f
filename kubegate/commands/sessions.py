"""`kubegate sessions`: the credentials the exchanger issued (never the credentials themselves),
as recorded where every replica sees them; list them, show one, end one now.

    kubegate sessions list --active --request ar-0123456789abcdef
    kubegate sessions revoke s-... --reason "laptop lost"
    kubegate sessions play s-... --recordings /var/lib/kubegate/recordings --speed 2

`play`, and `show` given a recordings folder (`--recordings DIR` or `$KUBEGATE_RECORDINGS`),
read what the gateway recorded of the session's exec, attach and port-forward streams
(kubegate/commands/session_replay.py); `show` then lists the commands typed, also when the
exchanger cannot be reached.

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
from typing import TYPE_CHECKING

from kubegate.commands.access import EXIT_OK, Caller, add_action, call
from kubegate.commands.accessview import describe_session, print_json, show_sessions
from kubegate.commands.session_replay import (
    add_play_arguments,
    add_recordings_flag,
    print_commands,
    recordings_dir,
    run_play,
)

if TYPE_CHECKING:
    from kubegate.client.access import AccessClient

PROG = "kubegate sessions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="sessions_action", metavar="ACTION", required=True)
    listing = add_action(actions, "list", "list the sessions you may see", _list)
    listing.add_argument("--active", action="store_true", help="only sessions that still run")
    listing.add_argument("--request", metavar="ID",
                         help="only sessions opened with this access request")
    listing.add_argument("--cluster", metavar="C", help="only sessions on this cluster")
    show = add_action(actions, "show", "show one session", _show)
    show.add_argument("id", metavar="ID")
    add_recordings_flag(show)
    revoke = add_action(actions, "revoke", "end a session now", _revoke)
    revoke.add_argument("id", metavar="ID")
    revoke.add_argument("--reason", required=True, metavar="TEXT",
                        help="why (kept in the audit log)")
    play = actions.add_parser("play", help="replay a session's recorded terminal streams",
                              description="replay a session's recorded terminal streams")
    add_play_arguments(play)


def run(args: argparse.Namespace) -> int:
    if args.sessions_action == "play":
        return run_play(args)
    status = call(args, args.access_handler, PROG)
    if args.sessions_action == "show" and recordings_dir(args) is not None:
        found = print_commands(args, as_json=args.output == "json")
        return EXIT_OK if found else status
    return status


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


