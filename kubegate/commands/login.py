"""`kubegate login`: a person signs in to the organisation's OpenID Connect provider, and
(with the exchange flags) exchanges the ID token for a Kubernetes credential.

    kubegate login --issuer URL --client-id ID            # signed in to URL as EMAIL; ...
    kubegate login ... --server HOST:PORT --role R --output exec-credential   # kubectl's plugin
    kubegate login ... --server HOST:PORT --role R --exec-kubeconfig PATH     # writes it

The code flow with PKCE opens a browser (or, `--device`, the device grant prints a code);
the tokens are cached per (issuer, client) in the user's cache folder (`kubegate.login`), and
the ID token is refreshed before it expires, so only the first kubectl command asks anything.

Rules of this command:
- it is an edge: `run` reads `os.environ` once and passes it down;
- stdout holds only the result (the summary line, the ExecCredential, the credential JSON, or
  the kubeconfig notice); the sign-in URL, the device code and notices go to stderr;
- the exec plugin's path (`--output exec-credential`) on a cache hit (a fresh ID token and a
  fresh credential) makes no network call and imports no grpc, HTTP client, TLS or pyjwt;
- a failure is one line on stderr prefixed `kubegate login: ` (never a token, code, verifier
  or refresh token) and an exit status: 0 ok, 1 signing in or the exchange failed (denied,
  timed out, a forged callback), 2 usage or configuration (bad flags, a non-HTTPS issuer, a
  cache file others may read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from kubegate import kubeconfig
from kubegate.client.cached_exchange import obtain_credential
from kubegate.client.settings import ExchangeSettings, TokenSourceConfig, read_exchange_settings
from kubegate.commands.clientflags import add_exchange_flags
from kubegate.configread import FlagsOrEnv
from kubegate.credential import Credential, credential_json, rfc3339
from kubegate.errors import ExchangeError, SubjectTokenError, UsageError
from kubegate.grammar import DURATION_EXAMPLES
from kubegate.login.settings import (
    DEFAULT_SCOPES,
    DEFAULT_TIMEOUT,
    LoginSettings,
    read_login_settings,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "kubegate login"
EXCHANGE_FLAGS = ("server", "ca_file", "plaintext", "role", "lifetime", "audience")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--issuer", metavar="URL", required=True,
        help="the OpenID Connect issuer (https; http only on loopback)")
    add("--client-id", metavar="ID", required=True, help="the OAuth client registered for "
        "kubegate at the provider")
    add("--client-secret-file", type=Path, metavar="PATH",
        help="the client's secret, for a confidential client (default: a public client)")
    add("--scopes", default=DEFAULT_SCOPES, metavar="'S ...'",
        help=f"space-separated scopes to ask for (default: {DEFAULT_SCOPES!r})")
    add("--issuer-ca-file", type=Path, metavar="PATH",
        help="CA certificates to trust for the issuer (default: system roots)")
    add("--device", action="store_true",
        help="the device grant: print a code to enter on another device, no local browser")
    add("--no-browser", action="store_true",
        help="do not open a browser; only print the sign-in URL (always printed on stderr)")
    add("--listen-port", type=int, default=0, metavar="PORT",
        help="port on 127.0.0.1 for the browser's redirect (default: any free port; give "
        "one when the provider only accepts registered redirect URIs)")
    add("--timeout", default=DEFAULT_TIMEOUT, metavar="DURATION",
        help=f"how long to wait for the person to sign in, e.g. {DURATION_EXAMPLES} "
        f"(default: {DEFAULT_TIMEOUT})")
    add_exchange_flags(parser, sources_required=False, sources=False)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output", choices=["json", "exec-credential"],
                        help="exchange the ID token (needs --server) and print the "
                        "credential as JSON, or as an ExecCredential for kubectl (cached)")
    output.add_argument("--exec-kubeconfig", type=os.path.abspath, metavar="PATH",
                        help="sign in, check the grant with one exchange, then write a "
                        "kubeconfig (0600) whose user runs `kubegate login ... --output "
                        "exec-credential` whenever kubectl needs a credential")


def run(args: argparse.Namespace) -> int:
    environ = os.environ
    try:
        login = read_login_settings(args, environ)
        if args.output is None and args.exec_kubeconfig is None:
            _refuse_exchange_flags(args)
            return _sign_in(login)
        settings = _exchange_settings(args, login, environ)
        credential = _obtain(args, settings, environ)
    except UsageError as error:
        return fail(str(error), EXIT_USAGE)
    except ExchangeError as error:
        return fail(error.describe(), EXIT_FAILED)
    except SubjectTokenError as error:  # LoginError: signing in failed
        return fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return _emit(args, login, settings, credential)


def fail(message: str, status: int) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return status


def _refuse_exchange_flags(args: argparse.Namespace) -> None:
    given = [name for name in EXCHANGE_FLAGS if getattr(args, name, None)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{flags}: only with --output or --exec-kubeconfig")


def _sign_in(settings: LoginSettings) -> int:
    from kubegate.login.session import LoginSession

    login = LoginSession(settings).fresh()
    print(f"signed in to {settings.issuer} as {login.who}; ID token valid until "
          f"{rfc3339(login.expiry)}")
    return EXIT_OK


def _exchange_settings(args: argparse.Namespace, login: LoginSettings,
                       environ: Mapping[str, str]) -> ExchangeSettings:
    values = FlagsOrEnv(args, environ, env=False)
    settings = read_exchange_settings(values, source=TokenSourceConfig(kind="login",
                                                                       login=login),
                                      https=True)
    if values.problems:
        raise UsageError("; ".join(values.problems))
    return settings


def _obtain(args: argparse.Namespace, settings: ExchangeSettings,
            environ: Mapping[str, str]) -> Credential:
    return obtain_credential(settings, environ, cached=args.output != "json",
                             refresh=args.exec_kubeconfig is not None, warn=_warn)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def plugin_command(login: LoginSettings, settings: ExchangeSettings) -> list[str]:
    """This sign-in and exchange as an exec plugin's command (paths absolute): kubectl runs it
    and reads the ExecCredential it prints."""
    import shutil

    command = [shutil.which("kubegate") or "kubegate", "login", "--issuer", login.issuer,
               "--client-id", login.client_id]
    if login.client_secret_file is not None:
        command += ["--client-secret-file", str(login.client_secret_file)]
    if login.scopes != tuple(DEFAULT_SCOPES.split()):
        command += ["--scopes", " ".join(login.scopes)]
    if login.issuer_ca_file is not None:
        command += ["--issuer-ca-file", str(login.issuer_ca_file)]
    if login.device:
        command.append("--device")
    if login.listen_port:
        command += ["--listen-port", str(login.listen_port)]
    command += ["--server", settings.target]
    if settings.plaintext:
        command.append("--plaintext")
    if settings.ca_file is not None:
        command += ["--ca-file", str(settings.ca_file.resolve())]
    if settings.role:
        command += ["--role", settings.role]
    if settings.lifetime:
        command += ["--lifetime", f"{settings.lifetime}s"]
    for audience in settings.audiences:
        command += ["--audience", audience]
    return [*command, "--output", "exec-credential"]


def _emit(args: argparse.Namespace, login: LoginSettings, settings: ExchangeSettings,
          credential: Credential) -> int:
    if args.exec_kubeconfig is not None:
        document = kubeconfig.exec_kubeconfig(
            credential, plugin_command(login, settings), interactive_mode="IfAvailable",
            install_hint="kubegate is not on PATH: pip install kubegate")
        try:
            kubeconfig.write_kubeconfig(Path(args.exec_kubeconfig), document)
        except OSError as error:
            return fail(f"cannot write {args.exec_kubeconfig}: {error.strerror}", EXIT_USAGE)
        cluster = credential.cluster
        print(f"wrote {args.exec_kubeconfig} (exec plugin: kubectl signs you in to "
              f"{login.issuer} when needed; context {cluster.name}, namespace "
              f"{cluster.namespace or '-'})")
        return EXIT_OK
    if args.output == "exec-credential":
        document = kubeconfig.exec_credential(credential, now=time.time())
    else:
        document = credential_json(credential)
    print(json.dumps(document, indent=2))
    return EXIT_OK
