"""`kubegate demo`: the whole exchange on one machine, with no cluster and no network.

It starts a stand-in for GitHub Actions' OIDC issuer, one for an organisation's sign-in
provider, and an exchanger (loopback, TLS from a generated CA, self-issued credentials) that
trusts them through two trust mappings, then makes four real gRPC exchanges: a deploy job the
CI mapping allows and a pull_request job it does not; an engineer in the SRE leads' group, who
gets a credential under her own name, and one outside it. Then break-glass (refused, asked
for, approved, granted, revoked), alice's credential through the identity-aware gateway in
front of a stand-in for kube-apiserver (`demo_gateway`), and the audit report's view of the
sessions. It prints the decisions, the audit lines they left and the audit chain's
verification, and stops everything. Exit status 0 when every step went as expected, 1
otherwise.

No credential is ever printed whole: only its first 12 characters.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from exchanger.audit.chain import verify_chain
from exchanger.auditreport.model import Problem
from exchanger.blast.identities import describe_identity
from exchanger.config import Config, build_config
from exchanger.mappings.validate import parse_mapping
from exchanger.server import RunningExchanger, start_exchanger
from kubegate.client.access import AccessClient
from kubegate.client.rpc import ExchangeClient
from kubegate.commands.demo_gateway import ApiServerStandIn, gateway_scene
from kubegate.commands.demo_scene import (
    BREAK_GLASS_MAPPING,
    BREAK_GLASS_NAME,
    CLUSTER_NAME,
    DEMO_JOBS,
    DEMO_MAPPING,
    MAPPING_NAME,
    PEOPLE_MAPPING,
    PEOPLE_MAPPING_NAME,
    DemoIssuer,
    DemoJob,
    demo_config,
    free_port,
    person_claims,
)
from kubegate.credential import Credential
from kubegate.errors import Code, ConfigError, ExchangeError, KubegateError
from kubegate.kubeconfig import rfc3339

SHOWN_CHARS = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, metavar="PATH",
                        help="keep the demo's state (TLS, keys, mappings, audit log) here "
                        "(default: a temporary folder, removed at the end)")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    job: DemoJob
    subject: str
    credential: Credential | None = None
    error: ExchangeError | None = None

    @property
    def as_expected(self) -> bool:
        if self.job.expect_allow:
            return self.credential is not None
        return self.error is not None and self.error.code is Code.PERMISSION_DENIED


def run(args: argparse.Namespace) -> int:
    try:
        with contextlib.ExitStack() as stack:
            state_dir = args.state_dir or Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="kubegate-demo-")))
            ok = _run_demo(state_dir.resolve(), stack, keep=args.state_dir is not None)
    except (ConfigError, KubegateError) as error:
        print(f"kubegate demo: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"kubegate demo: cannot start: {error}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def _run_demo(state_dir: Path, stack: contextlib.ExitStack, *, keep: bool) -> bool:
    issuer = stack.enter_context(DemoIssuer(state_dir / "issuer"))
    people = stack.enter_context(DemoIssuer(state_dir / "people-issuer"))
    api_server = stack.enter_context(ApiServerStandIn(state_dir / "apiserver"))
    mapping_file = state_dir / "mappings" / "web.yaml"
    mapping_file.parent.mkdir(parents=True, exist_ok=True)
    mapping_file.write_text(DEMO_MAPPING, encoding="utf-8")
    (state_dir / "mappings" / "people.yaml").write_text(PEOPLE_MAPPING, encoding="utf-8")
    (state_dir / "mappings" / "break-glass.yaml").write_text(BREAK_GLASS_MAPPING,
                                                              encoding="utf-8")
    config = build_config(
        demo_config(state_dir=state_dir, issuer_url=issuer.url, issuer_ca=issuer.ca_file,
                    people_url=people.url, people_ca=people.ca_file,
                    discovery_port=free_port(), api_server=api_server.url,
                    api_ca=api_server.ca_file, gateway_token_file=api_server.token_file),
        base=state_dir, environ={}, source="kubegate demo")
    audit_lines_before = _read_lines(config.audit_log)
    started = time.time()
    running = start_exchanger(config)
    stack.callback(running.stop)
    print(_header(state_dir, issuer, people, running, mapping_file, keep, api_server.url))
    with ExchangeClient(f"127.0.0.1:{running.port}", ca_file=running.ca_file) as client:
        outcomes = [_attempt(client, people if job.person else issuer, job)
                    for job in DEMO_JOBS]
    for number, outcome in enumerate(outcomes, start=1):
        print(_describe(number, outcome))
    glass_ok = _break_glass(running, people, len(outcomes) + 1)
    gateway_ok = _gateway(config, running, people, api_server, outcomes, len(outcomes) + 2)
    report_ok = _report(config.audit_log, len(outcomes) + 3, since=started)
    chain_ok = _show_audit(config.audit_log, len(audit_lines_before))
    ok = (chain_ok and glass_ok and gateway_ok and report_ok
          and all(o.as_expected for o in outcomes))
    print("\ndemo result: " + ("ok: the deploy job and alice were allowed, the pull_request "
                               "and bob denied; bob's break-glass worked only once alice "
                               "approved it; the gateway relayed alice as herself until her "
                               "session was revoked" if ok else "NOT as expected (see above)"))
    return ok


def _gateway(config: Config, running: RunningExchanger, people: DemoIssuer,
             api_server: ApiServerStandIn, outcomes: list[Outcome], number: int) -> bool:
    """Alice's credential (the sre-ops one above) through `kubegate gateway`; she revokes her
    own session with her ID token, as `kubegate sessions revoke` would."""
    alice = next((o.credential for o in outcomes if o.credential is not None
                  and o.credential.mapping == PEOPLE_MAPPING_NAME), None)
    if alice is None:
        print(f"\n[{number}] kubegate gateway: skipped, alice got no credential (UNEXPECTED)")
        return False
    id_token = people.mint(person_claims("alice@example.com", ["sre-leads", "engineers"]))
    return gateway_scene(config, stand_in=api_server, credential=alice,
                         revoke_as=lambda: id_token,
                         exchanger=(f"127.0.0.1:{running.port}", running.ca_file),
                         number=number)


def _break_glass(running: RunningExchanger, people: DemoIssuer, number: int) -> bool:
    """Bob (on call) is refused break-glass admin, asks for it with a reason, Alice (an SRE
    lead) approves, Bob's exchange then names the request and its approver, and Alice's
    revoke ends it (the next exchange is refused again)."""
    target = f"127.0.0.1:{running.port}"
    bob = people.mint(person_claims("bob@example.com", ["engineers"]))
    alice = people.mint(person_claims("alice@example.com", ["sre-leads", "engineers"]))
    print(f"\n[{number}] break-glass: bob@example.com (on call) asks for {BREAK_GLASS_NAME}")
    with ExchangeClient(target, ca_file=running.ca_file) as client:
        before = _attempt(client, people, DemoJob(
            title="", claims=person_claims("bob@example.com", ["engineers"]),
            expect_allow=False, person=True, role=BREAK_GLASS_NAME))
        refused = before.error.reason if before.error else "granted"
        print(f"    without approval   deny {refused} (expected APPROVAL_REQUIRED)")
        with AccessClient(target, token=lambda: bob, ca_file=running.ca_file) as as_bob:
            made = as_bob.create(role=BREAK_GLASS_NAME, reason="INC-1234 API latency, need "
                                 "to restart the controllers", duration=1800)
        print(f"    kubegate access request --role {BREAK_GLASS_NAME} --duration 30m "
              f"--reason 'INC-1234 ...'  -> {made.id} {made.state.value}")
        with AccessClient(target, token=lambda: alice, ca_file=running.ca_file) as as_alice:
            approved = as_alice.approve(made.id, comment="go ahead")
        print(f"    kubegate access approve {made.id}   (as alice@example.com) -> "
              f"{approved.state.value}, ends {rfc3339(approved.ends_at)}")
        try:
            credential = client.exchange(bob, role=BREAK_GLASS_NAME)
        except ExchangeError as error:
            print(f"    with approval      deny {error.reason} (UNEXPECTED)")
            return False
        print(f"    with approval      allow: user {credential.cluster.user} "
              f"[{', '.join(credential.cluster.groups)}], expires "
              f"{rfc3339(credential.expires_at)} (the audit line names {made.id} and its "
              "approver)")
        with AccessClient(target, token=lambda: alice, ca_file=running.ca_file) as as_alice:
            revoked = as_alice.revoke(made.id, reason="incident over")
        print(f"    kubegate access revoke {made.id}    (as alice@example.com) -> "
              f"{revoked.request.state.value}")
        try:
            client.exchange(bob, role=BREAK_GLASS_NAME)
            after = "granted"
        except ExchangeError as error:
            after = error.reason
        print(f"    after the revoke   deny {after} (expected APPROVAL_REQUIRED)")
    return (refused == after == "APPROVAL_REQUIRED"
            and credential.expires_at <= approved.ends_at)


def _report(audit_log: Path, number: int, *, since: float) -> bool:
    """What `kubegate audit report` makes of this run's sessions (no cluster here, so no
    cluster events to join: against a real one, --cluster-log adds what each session did)."""
    from exchanger.auditreport.join import build_report
    from exchanger.auditreport.kubegate_log import read_sessions
    from exchanger.auditreport.model import Filters

    problems: list[Problem] = []
    report = build_report(read_sessions([audit_log], problems), [],
                          filters=Filters(since=since), problems=problems)
    sessions = [entry.session for entry in report.sessions if entry.session.issued_at >= since]
    print(f"\n[{number}] kubegate audit report --kubegate-log {audit_log.name} --cluster-log "
          "<the API server's audit log>")
    for session in sessions:
        request = (f"; request {session.access_request} approved by "
                   f"{', '.join(session.approvers)}" if session.access_request else "")
        end = f"; {session.end_reason} early" if session.ended_at else ""
        print(f"    {session.mapping:<22} {session.who or session.subject} as "
              f"{session.user or session.service_account}{request}{end}")
    print("    (each row gains what the cluster saw with that credential, joined by its id; "
          "anything else is a bypass finding)")
    glass = [s for s in sessions if s.access_request]
    return not problems and len(glass) == 1 and glass[0].end_reason == "revoked"


def _header(state_dir: Path, issuer: DemoIssuer, people: DemoIssuer,
            running: RunningExchanger, mapping_file: Path, keep: bool, api_server: str,
            ) -> str:
    where = "kept" if keep else "removed at the end; keep it with --state-dir"
    return "\n".join([
        "kubegate demo: everything runs on 127.0.0.1; nothing leaves this machine",
        f"  state folder   {state_dir} ({where})",
        f"  demo issuer    {issuer.url} (a stand-in for GitHub Actions' OIDC issuer)",
        f"  sign-in issuer {people.url} (a stand-in for the organisation's OIDC "
        "provider: people's ID tokens)",
        f"  exchanger      127.0.0.1:{running.port} (gRPC over TLS, CA {running.ca_file})",
        f"  cluster        {CLUSTER_NAME} at {api_server} (not a cluster: a stand-in for "
        "kube-apiserver, for the gateway)",
        f"  trust mapping  {MAPPING_NAME} ({mapping_file})",
        f"                 admits {_who(DEMO_MAPPING)}",
        f"  trust mapping  {PEOPLE_MAPPING_NAME} ({mapping_file.parent / 'people.yaml'})",
        f"                 admits {_who(PEOPLE_MAPPING)}, each as the user oidc:<email>",
    ])


def _who(document: str) -> str:
    """Who a mapping admits, in the words of `kubegate mappings explain --blast-radius`."""
    mapping, problems = parse_mapping(yaml.safe_load(document), source="demo")
    return describe_identity(mapping) if mapping is not None else "; ".join(problems)


def _attempt(client: ExchangeClient, issuer: DemoIssuer, job: DemoJob) -> Outcome:
    subject = str(job.claims.get("email") or job.claims.get("sub", ""))
    token = issuer.mint(job.claims)
    try:
        return Outcome(job=job, subject=subject,
                       credential=client.exchange(token, role=job.role))
    except ExchangeError as error:
        return Outcome(job=job, subject=subject, error=error)


def _describe(number: int, outcome: Outcome) -> str:
    expected = "allow" if outcome.job.expect_allow else "deny"
    decision = "allow" if outcome.credential is not None else "deny"
    mark = "as expected" if outcome.as_expected else "UNEXPECTED"
    lines = [f"\n[{number}] {outcome.job.title}",
             f"    who asked    {outcome.subject}",
             f"    decision     {decision} (expected {expected}: {mark})"]
    if outcome.credential is not None:
        lines += _describe_credential(outcome.credential)
    if outcome.error is not None:
        lines += [f"    status       {outcome.error.code.name}",
                  f"    reason       {outcome.error.reason or '-'}",
                  f"    message      {outcome.error.message}"]
    return "\n".join(lines)


def _describe_credential(credential: Credential) -> list[str]:
    cluster = credential.cluster
    remaining = max(0, credential.expires_at - int(time.time()))
    return [
        f"    mapping      {credential.mapping}",
        f"    cluster      {cluster.name} {cluster.server}, namespace {cluster.namespace}",
        f"    user/groups  {cluster.user} [{', '.join(cluster.groups)}]",
        f"    token id     {credential.token_id}",
        f"    session id   {credential.session_id}",
        f"    expires      {rfc3339(credential.expires_at)} (in {remaining // 60}m "
        f"{remaining % 60}s)",
        f"    credential   {credential.token[:SHOWN_CHARS]}... ({credential.token_type}; "
        "truncated, never printed whole)",
    ]


def _read_lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return []


def _show_audit(path: Path, skip: int) -> bool:
    lines = _read_lines(path)
    print(f"\naudit log {path} (one hash-chained JSON line per decision; no tokens):")
    for line in lines[skip:]:
        print("  " + line.decode("utf-8", "replace").rstrip("\n"))
    report = verify_chain(lines)
    if report.ok:
        print(f"audit chain: ok, {report.lines_checked} lines verified "
              f"(head seq {report.head.seq}, hash {report.head.hash[:16]}...)")
    else:
        print(f"audit chain: BROKEN at line {report.first_bad_line}: {report.problem}")
    return report.ok
