"""`kubegate access`: ask for a role that needs approval, decide, revoke and follow requests.

    kubegate access request --role prod-admin --reason "INC-42: API down" --duration 30m --wait
    kubegate access list --state pending        # an approver's queue
    kubegate access approve ar-0123456789abcdef --comment "ok, paged"
    kubegate access revoke ar-0123456789abcdef --reason "incident over"

Every action calls the exchanger (`--server`, `--ca-file`, `--plaintext`) as exactly one
identity: a person's sign-in (`--issuer`, `--client-id`: the cached one, refreshed or signed
in again on stderr when needed, as `kubegate login`) or a subject-token source (as
`kubegate exchange`); every flag also reads `KUBEGATE_<FLAG>`. The shared plumbing of
`kubegate sessions` is here too: reading the caller, the error boundary, tables and JSON.

Rules of this command:
- it is an edge: `run` reads `os.environ` once and passes it down;
- grpc is imported only when a call is made (`kubegate.client.access`);
- stdout holds only results: a table (default) or `-o json`, one JSON document per line
  (`kubegate.client.access.as_json`); prompts, waiting notices and errors go to stderr;
- a failure is one line on stderr prefixed `kubegate access: ` with the exchanger's code,
  reason and message (`PERMISSION_DENIED SELF_APPROVAL: you cannot approve your own
  request`), never a traceback or a token; exit 0 ok, 1 refused or failed (also denied, revoked
  or timed out under `--wait`), 2 usage (bad flags, not exactly one identity, an unreadable
  token file).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubegate.client.settings import SOURCE_FLAGS, TokenSourceConfig, read_exchange_settings
from kubegate.commands.accessview import (
    cut,
    describe,
    ends_in,
    principal,
    print_json,
    show_sessions,
    span,
    table,
    when,
)
from kubegate.commands.clientflags import add_caller_flags
from kubegate.configread import FlagsOrEnv, env_name
from kubegate.credential import rfc3339
from kubegate.errors import ExchangeError, SubjectTokenError, UsageError
from kubegate.grammar import DURATION_EXAMPLES, parse_duration, parse_whole_seconds

if TYPE_CHECKING:
    from kubegate.client.access import AccessClient, AccessRequest

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "kubegate access"
STATES = ("pending", "approved", "active", "denied", "expired", "revoked")
PERSON_FLAGS = ("issuer", "client-id")
DEFAULT_WAIT = "10m"
WATCH_ROUND_SECONDS = 30.0  # a --wait watch is reopened this often, after a fresh get
MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's range

Action = Callable[["AccessClient", argparse.Namespace, "Caller"], int]


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Where the exchanger is, and who calls it."""

    target: str
    ca_file: Path | None
    plaintext: bool
    source: TokenSourceConfig


# -- flags ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="access_action", metavar="ACTION", required=True)
    request = add_action(actions, "request", "ask for a role whose mapping needs approval",
                         _request)
    request.add_argument("--role", required=True, metavar="NAME",
                         help="the trust mapping asked for")
    request.add_argument("--reason", required=True, metavar="TEXT",
                         help="why the access is needed (shown to approvers)")
    request.add_argument("--duration", metavar="DURATION", help="how long the access lasts "
                         f"once approved, e.g. {DURATION_EXAMPLES} (default: the mapping's "
                         "approval.maxDuration)")
    request.add_argument("--ticket", metavar="T", help="a ticket or incident reference")
    request.add_argument("--wait", action="store_true", help="wait until the request is "
                         "approved (exit 0), denied, revoked or expired (exit 1)")
    request.add_argument("--timeout", metavar="DURATION", help="with --wait: how long to "
                         f"wait (default: {DEFAULT_WAIT}; exit 1 when it passes)")
    listing = add_action(actions, "list", "list the requests you may see", _list)
    listing.add_argument("--state", action="append", choices=STATES,
                         help="only requests in this state (repeatable)")
    listing.add_argument("--role", metavar="R", help="only requests for this mapping")
    listing.add_argument("--mine", action="store_true", help="only your own requests")
    show = add_action(actions, "show", "show one request with its approvals", _show)
    show.add_argument("id", metavar="ID")
    approve = add_action(actions, "approve", "approve a pending request", _approve)
    approve.add_argument("id", metavar="ID")
    approve.add_argument("--comment", default="", metavar="TEXT",
                         help="kept with the approval")
    for name, summary, handler in (
            ("deny", "deny a pending request", _deny),
            ("revoke", "end a request and every session it opened", _revoke)):
        action = add_action(actions, name, summary, handler)
        action.add_argument("id", metavar="ID")
        action.add_argument("--reason", required=True, metavar="TEXT",
                            help="why (shown to the requester)")
    watch = add_action(actions, "watch", "print every change to a request you may see, one "
                       "line each, until interrupted", _watch)
    watch.add_argument("--role", metavar="R", help="only requests for this mapping")
    watch.add_argument("--mine", action="store_true", help="only your own requests")
    watch.add_argument("--timeout", metavar="DURATION",
                       help="stop after this long (exit 0); default: until interrupted")


def add_action(actions: Any, name: str, summary: str, handler: Action) -> argparse.ArgumentParser:
    """An action with the caller flags and `-o`; `run` calls handler with a client."""
    parser: argparse.ArgumentParser = actions.add_parser(name, help=summary,
                                                         description=summary)
    add_caller_flags(parser)
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table",
                        help="a table (default), or JSON: one document per line")
    parser.set_defaults(access_handler=handler)
    return parser


# -- who calls --------------------------------------------------------------------------------


def read_caller(args: argparse.Namespace, environ: Mapping[str, str]) -> Caller:
    values = FlagsOrEnv(args, environ)
    kinds = _identities(values)
    source: TokenSourceConfig | None = None
    if len(kinds) != 1:
        listed = ", ".join("--" + n for n in SOURCE_FLAGS)
        got = f" (got {', '.join(kinds)})" if kinds else ""
        values.problem(None, "give exactly one identity: --issuer and --client-id (a "
                       f"person's sign-in), or one of {listed}{got}")
        source = TokenSourceConfig(kind="file", path=Path(os.devnull))
    elif kinds == ["a sign-in"]:
        source = _login_source(values)
    settings = read_exchange_settings(values, source=source)
    if values.problems:
        raise UsageError("; ".join(values.problems))
    return Caller(target=settings.target, ca_file=settings.ca_file,
                  plaintext=settings.plaintext, source=settings.token_source)


def _identities(values: FlagsOrEnv) -> list[str]:
    """The identities given: flags on the command line, else variables."""
    flags = [f for f in (*PERSON_FLAGS, *SOURCE_FLAGS)
             if getattr(values.args, f.replace("-", "_"), None) not in (None, False)]
    if not flags:
        flags = [f for f in (*PERSON_FLAGS, *SOURCE_FLAGS)
                 if values.environ.get(env_name(f), "").strip()]
    kinds = ["a sign-in" if f in PERSON_FLAGS else "--" + f for f in flags]
    return list(dict.fromkeys(kinds))


def _login_source(values: FlagsOrEnv) -> TokenSourceConfig | None:
    from kubegate.login.settings import DEFAULT_SCOPES, DEFAULT_TIMEOUT, read_login_settings

    def path(flag: str) -> Path | None:
        return Path(values.text(flag)) if values.text(flag) else None

    login = argparse.Namespace(
        issuer=values.text("issuer"), client_id=values.text("client-id"),
        client_secret_file=path("client-secret-file"), issuer_ca_file=path("issuer-ca-file"),
        scopes=DEFAULT_SCOPES, timeout=DEFAULT_TIMEOUT, device=values.switch("device"),
        no_browser=values.switch("no-browser"),
        listen_port=values.parsed("listen-port", parse_port, 0))
    try:
        return TokenSourceConfig(kind="login", login=read_login_settings(login, values.environ))
    except UsageError as error:
        values.problem(None, str(error))
        return TokenSourceConfig(kind="file", path=Path(os.devnull))


def parse_port(value: object) -> int:
    if not str(value).isdigit():
        raise ValueError(f"expected a port number, got {value!r}")
    return int(str(value))


# -- one call, one error boundary -------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    return call(args, args.access_handler, PROG)


def call(args: argparse.Namespace, action: Action, prog: str) -> int:
    """Read the caller, make the client, run action; every failure is one line and a status."""
    caller: Caller | None = None
    try:
        caller = read_caller(args, os.environ)
        from kubegate.client.access import AccessClient  # grpc: only when a call is made
        from kubegate.client.settings import token_source

        source = token_source(caller.source)
        with AccessClient(caller.target, token=source.read, ca_file=caller.ca_file,
                          plaintext=caller.plaintext) as client:
            return action(client, args, caller)
    except UsageError as error:
        return fail(prog, str(error), EXIT_USAGE)
    except SubjectTokenError as error:  # LoginError too: signing in failed
        fetched = caller is not None and caller.source.kind in ("github-actions", "login")
        return fail(prog, str(error), EXIT_FAILED if fetched else EXIT_USAGE)
    except ExchangeError as error:
        return fail(prog, str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return fail(prog, "interrupted", 130)


def fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return status


def seconds_of(text: str, flag: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None
    if seconds <= 0:
        raise UsageError(f"{flag}: must be positive")
    return seconds


# -- the actions ------------------------------------------------------------------------------


def _request(client: AccessClient, args: argparse.Namespace, caller: Caller) -> int:
    duration = _duration(args.duration)
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout: only with --wait")
    wait = seconds_of(args.timeout or DEFAULT_WAIT, "--timeout")
    created = client.create(role=args.role, reason=args.reason, ticket=args.ticket or "",
                            duration=duration)
    show_requests(args, [created])
    if not args.wait:
        return EXIT_OK
    print(f"{PROG}: {created.id} is {created.state}; waiting up to {args.timeout or DEFAULT_WAIT}"
          " for its approval", file=sys.stderr, flush=True)
    final, decided = wait_for_decision(client, created, timeout=wait)
    if not decided:
        return fail(PROG, f"timed out after {args.timeout or DEFAULT_WAIT}: {final.id} is "
                    f"still {final.state} ({approvals(final)} approvals)", EXIT_FAILED)
    if args.output == "json":
        print_json(final)
    if final.state.granted:
        names = ", ".join(a.approver.name for a in final.approvals) or "-"
        print(f"approved by {names}; exchange with {exchange_hint(caller, final.mapping)}",
              file=sys.stderr if args.output == "json" else sys.stdout)
        return EXIT_OK
    return fail(PROG, ended(final), EXIT_FAILED)


def _duration(text: str | None) -> int:
    if text is None:
        return 0
    try:
        seconds = parse_whole_seconds(text)
    except ValueError as error:
        raise UsageError(f"--duration: {error}") from None
    if not 0 < seconds <= MAX_DURATION_SECONDS:
        raise UsageError("--duration: must be positive" if seconds <= 0 else
                         "--duration: too long")
    return seconds


def wait_for_decision(client: AccessClient, request: AccessRequest, *, timeout: float,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep,
                      ) -> tuple[AccessRequest, bool]:
    """(the request once no longer pending, True), or (its last state, False) after timeout.
    Each round reads it and watches from that version for at most WATCH_ROUND_SECONDS, so a
    change between the read and the watch, a broken stream or an exchanger restart costs at
    most a round; transient failures are tried again until the deadline."""
    from kubegate.client.access import State

    deadline, current = clock() + timeout, request
    while True:
        try:
            current = client.get(request.id)
            if current.state is not State.PENDING:
                return current, True
            remaining = deadline - clock()
            if remaining <= 0:
                return current, False
            for event in client.watch(since=current.version, role=request.mapping,
                                      mine_only=True,
                                      timeout=min(remaining, WATCH_ROUND_SECONDS)):
                if event.request.id == request.id:
                    current = event.request
                    if current.state is not State.PENDING:
                        return current, True
        except ExchangeError as error:
            if not error.transient:
                raise
            sleep(min(1.0, max(0.0, deadline - clock())))


def exchange_hint(caller: Caller, role: str) -> str:
    """The command that exchanges with the approved request, as this caller."""
    server = f"--server {caller.target}" + (" --plaintext" if caller.plaintext else "") + (
        f" --ca-file {caller.ca_file}" if caller.ca_file else "")
    source, login = caller.source, caller.source.login
    if source.kind == "login" and login is not None:
        return (f"kubegate login --issuer {login.issuer} --client-id {login.client_id} "
                f"{server} --role {role} --exec-kubeconfig PATH (or --output json)")
    flag = {"file": f"--token-file {source.path}", "env": f"--token-env {source.env_name}",
            "gitlab": f"--gitlab-id-token {source.env_name}"}.get(source.kind,
                                                                   "--github-actions")
    return f"kubegate exchange {server} --role {role} {flag}"


def ended(request: AccessRequest) -> str:
    by = f" by {request.decided_by.name}" if request.decided_by else ""
    why = f": {request.decision_reason}" if request.decision_reason else ""
    return f"{request.id} was {request.state}{by}{why}"


def _list(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    from kubegate.client.access import State

    requests = client.list(states=tuple(State(s) for s in dict.fromkeys(args.state or ())),
                           role=args.role or "", mine_only=args.mine)
    if args.output == "json":
        print_json({"requests": requests})
    elif requests:
        show_requests(args, requests)
    else:
        print("no access requests", file=sys.stderr)
    return EXIT_OK


def _show(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    request = client.get(args.id)
    if args.output == "json":
        print_json(request)
    else:
        print(describe_request(request, now=time.time()))
    return EXIT_OK


def _approve(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    show_requests(args, [client.approve(args.id, comment=args.comment)])
    return EXIT_OK


def _deny(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    show_requests(args, [client.deny(args.id, reason=args.reason)])
    return EXIT_OK


def _revoke(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:

    revoked = client.revoke(args.id, reason=args.reason)
    if args.output == "json":
        print_json(revoked)
        return EXIT_OK
    show_requests(args, [revoked.request])
    if revoked.sessions:
        print()
        show_sessions(args, revoked.sessions)
    return EXIT_OK


def _watch(client: AccessClient, args: argparse.Namespace, _: Caller) -> int:
    timeout = seconds_of(args.timeout, "--timeout") if args.timeout else None
    try:
        for event in client.watch(role=args.role or "", mine_only=args.mine, timeout=timeout):
            if args.output == "json":
                print_json(event)
            else:
                print(event_line(event.kind, event.request, now=time.time()), flush=True)
    except ExchangeError as error:
        if timeout is None or error.code.name != "DEADLINE_EXCEEDED":
            raise
    except KeyboardInterrupt:
        pass
    return EXIT_OK


# -- output -----------------------------------------------------------------------------------


REQUEST_COLUMNS = ("ID", "STATE", "ROLE", "REQUESTER", "REASON", "APPROVALS", "ENDS IN", "AGE")


def show_requests(args: argparse.Namespace, requests: Sequence[AccessRequest]) -> None:
    if args.output == "json":
        for request in requests:
            print_json(request)
        return
    now = time.time()
    print(table(REQUEST_COLUMNS, [request_row(r, now=now) for r in requests]), flush=True)


def request_row(request: AccessRequest, *, now: float) -> tuple[str, ...]:
    return (request.id, request.state.value, request.mapping, request.requester.name or "-",
            cut(request.reason), approvals(request),
            ends_in(request.ends_at, now) if request.state.granted else "-",
            span(now - request.created_at) if request.created_at else "-")


def approvals(request: AccessRequest) -> str:
    return f"{len(request.approvals)}/{request.approvals_required or '?'}"


def event_line(kind: str, request: AccessRequest, *, now: float) -> str:
    line = (f"{rfc3339(now)}  {kind}  {request.id}  {request.state}  {request.mapping}  "
            f"{request.requester.name or '-'}  approvals {approvals(request)}")
    if request.decided_by is not None:
        line += f"  by {request.decided_by.name}"
    reason = request.decision_reason or request.reason
    return line + (f"  {cut(reason)}" if reason else "")


def describe_request(request: AccessRequest, *, now: float) -> str:
    rows = [("id", request.id), ("state", request.state.value), ("role", request.mapping),
            ("requester", principal(request.requester)), ("reason", request.reason),
            ("ticket", request.ticket), ("duration", span(request.duration)),
            ("bound", ", ".join(f"{k}={v}" for k, v in sorted(request.bound.items()))),
            ("created", when(request.created_at, now)), ("approvals", approvals(request))]
    rows += [("", f"{principal(a.approver)} at {rfc3339(a.at)}"
              + (f": {a.comment}" if a.comment else "")) for a in request.approvals]
    rows += [("starts", when(request.starts_at, now)), ("ends", when(request.ends_at, now)),
             ("decided by", principal(request.decided_by) if request.decided_by else ""),
             ("decision", request.decision_reason), ("uses", str(request.uses))]
    return describe(rows)


# -- shared with `kubegate sessions` ---------------------------------------------------------


