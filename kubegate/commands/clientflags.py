"""The flags of every command that exchanges (`kubegate exchange`, `kubegate sidecar`,
`kubegate login`): one definition, read by `kubegate.client.settings.read_exchange_settings`;
and those of the commands that call the exchanger as someone (`kubegate access`, `kubegate
sessions`): the same address, trust and subject-token flags, or a person's sign-in."""

from __future__ import annotations

import argparse
from pathlib import Path

from kubegate.grammar import DURATION_EXAMPLES


def add_exchange_flags(parser: argparse.ArgumentParser, *, sources_required: bool,
                       sources: bool = True) -> None:
    """sources_required: one subject-token source flag must be given (no environment
    fallback); otherwise switches default to None so that `KUBEGATE_*` variables can stand in.
    sources=False: no subject-token source flags at all (`kubegate login` is the source).
    """
    switch_default = False if sources_required else None
    add = parser.add_argument
    _add_server_flags(parser, switch_default=switch_default)
    add("--role", metavar="NAME", help="the trust mapping to use (needed when several match)")
    add("--lifetime", metavar="DURATION",
        help=f"requested credential lifetime, e.g. {DURATION_EXAMPLES} (default: the "
        "mapping's)")
    add("--audience", action="append", metavar="A",
        help="audience of the issued credential (repeatable)")
    if sources:
        _add_source_flags(parser, sources_required=sources_required,
                          switch_default=switch_default)


def add_caller_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that calls the exchanger's other services (`kubegate access`,
    `kubegate sessions`) as someone: the exchanger's address and trust, and exactly one
    identity, a person's sign-in (`--issuer`, `--client-id`, as `kubegate login`) or a
    subject-token source (as `kubegate exchange`). None of them is required here, so that
    `KUBEGATE_*` variables can stand in; `kubegate.commands.access.read_caller` checks them."""
    _add_server_flags(parser, switch_default=None)
    person = parser.add_argument_group("a person's sign-in (as kubegate login)")
    add = person.add_argument
    add("--issuer", metavar="URL", help="sign in to this OpenID Connect issuer (https; "
        "http only on loopback); cached sign-ins are reused")
    add("--client-id", metavar="ID", help="the OAuth client registered for kubegate")
    add("--client-secret-file", type=Path, metavar="PATH",
        help="the client's secret, for a confidential client")
    add("--issuer-ca-file", type=Path, metavar="PATH",
        help="CA certificates to trust for the issuer (default: system roots)")
    add("--device", action="store_true", default=None,
        help="sign in with the device grant (a code to enter on another device)")
    add("--no-browser", action="store_true", default=None,
        help="do not open a browser; only print the sign-in URL on stderr")
    add("--listen-port", type=int, metavar="PORT",
        help="port on 127.0.0.1 for the browser's redirect (default: any free port)")
    _add_source_flags(parser, sources_required=False, switch_default=None)


def _add_server_flags(parser: argparse.ArgumentParser, *, switch_default: bool | None) -> None:
    add = parser.add_argument
    add("--server", metavar="HOST:PORT", help="the exchanger's gRPC address; exchange, "
        "login and sidecar also take https://HOST[:PORT], its RFC 8693 token endpoint")
    add("--ca-file", type=Path, metavar="PATH",
        help="CA certificates to trust for the exchanger (default: system roots)")
    add("--plaintext", action="store_true", default=switch_default,
        help="no TLS (only for a loopback --server)")


def _add_source_flags(parser: argparse.ArgumentParser, *, sources_required: bool,
                      switch_default: bool | None) -> None:
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=sources_required)
    source.add_argument("--token-file", type=Path, metavar="PATH",
                        help="read the subject token from a file (re-read at every exchange)")
    source.add_argument("--token-env", metavar="VAR",
                        help="read the subject token from an environment variable")
    source.add_argument("--gitlab-id-token", metavar="VAR",
                        help="a GitLab CI ID token: the variable named under the job's "
                        "`id_tokens:`")
    source.add_argument("--github-actions", action="store_true", default=switch_default,
                        help="fetch a fresh ID token from the GitHub Actions runtime "
                        "(ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN; trusts system roots or "
                        "SSL_CERT_FILE)")
    add("--github-audience", metavar="A",
        help="audience of the GitHub ID token (default: kubegate)")
