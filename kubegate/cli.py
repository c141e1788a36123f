"""The `kubegate` command: one entry point, one subcommand per job.

Subcommand modules are imported only when their subcommand runs, so `kubegate credential`
(run by kubectl before every command) never pays for grpc or the Kubernetes client.
A subcommand module provides `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol

from kubegate import __version__


class Subcommand(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# name -> (module, one-line help). Order is the order `kubegate --help` lists them in.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("kubegate.commands.serve", "run the exchanger (embedded default without --config)"),
    "exchange": ("kubegate.commands.exchange",
                 "exchange a subject token once; print a credential or write a kubeconfig"),
    "demo": ("kubegate.commands.demo",
             "start local issuers and an exchanger; show allowed and denied exchanges of CI "
             "jobs and of people"),
    "status": ("kubegate.commands.status", "what an exchanger with a config sees: each "
               "issuer's keys, each cluster's API server, its trust mappings"),
    "audit": ("kubegate.commands.audit", "verify audit logs and checkpoints; report what "
              "was brokered against the cluster's audit log (report), or receive it live "
              "(sink)"),
    "mappings": ("kubegate.commands.mappings",
                 "validate trust mappings (schema and lints), or explain a token's match"),
    "scan": ("kubegate.commands.scan", "find standing privilege and paths around the broker "
             "in a cluster (read-only; table, JSON or SARIF)"),
    "sidecar": ("kubegate.commands.sidecar", "keep a fresh credential and serve it on a "
                "local socket (--once: write a kubeconfig and exit)"),
    "credential": ("kubegate.commands.credential",
                   "kubectl exec credential plugin: print the sidecar's ExecCredential"),
    "login": ("kubegate.commands.login", "sign a person in with OpenID Connect (browser or "
              "device code); with --server, exchange the ID token (kubectl's exec plugin)"),
    "logout": ("kubegate.commands.logout", "forget a person's cached sign-in"),
    "access": ("kubegate.commands.access", "just-in-time access: request a role that needs "
               "approval, approve, deny, revoke, list and watch requests"),
    "sessions": ("kubegate.commands.sessions", "list, show and revoke the sessions (issued "
                 "credentials) the exchanger recorded"),
    "gateway": ("kubegate.commands.gateway", "run the identity-aware gateway in front of an "
                "API server: every request authenticated, recorded, cut on revoke"),
}


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubegate",
        description="Exchange a CI/CD workload identity token for a short-lived, scoped, "
        "audited Kubernetes credential.",
    )
    parser.add_argument("--version", action="version", version=f"kubegate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name == selected:
            module: Subcommand = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
