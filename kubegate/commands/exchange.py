"""`kubegate exchange`: exchange one subject token for a Kubernetes credential, once.

The subject token comes from a file, an environment variable, a GitLab CI `id_tokens:`
variable, or (in a GitHub Actions job with `permissions: id-token: write`) a fresh ID token
fetched from the Actions runtime. The result is printed as JSON or as an ExecCredential, or
written to a kubeconfig (0600, atomically): one that holds the credential, or
(`--exec-kubeconfig`) one that holds no secret and whose exec plugin repeats this exchange
whenever kubectl needs a credential.

As that exec plugin (`--output exec-credential`) it keeps the credential in a 0600 file of the
user's cache folder (`kubegate.client.cache`) and hands it out again until shortly before it
expires, so ten kubectl commands make one exchange, not ten; `--exec-kubeconfig`'s check
exchange fills that cache. `--no-cache` (kept in the plugin's command) turns it off. CI
integrations point `KUBEGATE_CACHE_DIR` into the job's own temporary folder, so nothing
usable is left once the job's subject token and that folder are gone.

Rules of this command:
- it is an edge: `run` reads `os.environ` once and passes it down; nothing below reads it;
- only the exec plugin's output and `--exec-kubeconfig` use the credential cache: a credential
  printed as JSON or written to a kubeconfig goes to someone who keeps it themselves;
- a cache that cannot be used (a folder others may enter) costs a warning line and an
  exchange, never the call;
- a failure is one line on stderr (never a traceback, never a token) and an exit status:
  0 ok, 1 the exchange (or fetching the subject token) was denied or failed, 2 usage or
  configuration error (bad flags, an unreadable or empty token, a plaintext remote target,
  a --kubeconfig path that cannot be written).
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
from kubegate.client.cache import CACHE_DIR_ENV
from kubegate.client.cached_exchange import obtain_credential
from kubegate.client.settings import ExchangeSettings, read_exchange_settings
from kubegate.commands.clientflags import add_exchange_flags
from kubegate.configread import FlagsOrEnv
from kubegate.credential import Credential, credential_json
from kubegate.errors import ExchangeError, SubjectTokenError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "kubegate exchange"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_exchange_flags(parser, sources_required=True)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output", choices=["json", "exec-credential"], default="json",
                        help="what to print: the credential as JSON (default), or an "
                        "ExecCredential for kubectl")
    output.add_argument("--kubeconfig", type=os.path.abspath, metavar="PATH",
                        help="write a kubeconfig holding the credential (0600) instead of "
                        "printing it")
    output.add_argument("--exec-kubeconfig", type=os.path.abspath, metavar="PATH",
                        help="check the grant with one exchange, then write a kubeconfig "
                        "that holds no secret: its user runs this same exchange (an exec "
                        "plugin) whenever kubectl needs a credential")
    parser.add_argument("--no-cache", action="store_true",
                        help="the exec plugin's output (and --exec-kubeconfig) keeps the "
                        "credential in the user's cache folder ($" + CACHE_DIR_ENV + ", else "
                        "$XDG_CACHE_HOME/kubegate/credentials) until shortly before it "
                        "expires; this exchanges every time instead")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args, os.environ)
        credential = obtain(args, settings, os.environ)
    except UsageError as error:
        return fail(str(error), EXIT_USAGE)
    except SubjectTokenError as error:
        # a token that cannot be read here (a file, a variable) is a usage error; one that
        # the GitHub runtime did not hand out is a failure, like a denial
        fetched = settings.token_source.kind == "github-actions"
        return fail(str(error), EXIT_FAILED if fetched else EXIT_USAGE)
    except ExchangeError as error:
        return fail(error.describe(), EXIT_FAILED)
    return _emit(args, settings, credential)


def load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> ExchangeSettings:
    values = FlagsOrEnv(args, environ, env=False)
    settings = read_exchange_settings(values, https=True)
    if values.problems:
        raise UsageError("; ".join(values.problems))
    return settings


def obtain(args: argparse.Namespace, settings: ExchangeSettings,
           environ: Mapping[str, str]) -> Credential:
    """The credential: through the cache for the exec plugin's paths, else one exchange."""
    cached = args.output == "exec-credential" or args.exec_kubeconfig is not None
    return obtain_credential(settings, environ, cached=cached and not args.no_cache,
                             refresh=args.exec_kubeconfig is not None, warn=_warn)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def fail(message: str, status: int) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return status


def plugin_command(settings: ExchangeSettings, *, cache: bool = True) -> list[str]:
    """This exchange as an exec plugin's command: same exchanger, role, lifetime, audiences
    and subject-token source (and `--no-cache` when not cache), printing an ExecCredential.
    Paths are made absolute."""
    import shutil  # with zlib, bz2 and lzma: not for the exec plugin's every call

    command = [shutil.which("kubegate") or "kubegate", "exchange", "--server", settings.target]
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
    source = settings.token_source
    if source.kind == "file" and source.path is not None:
        command += ["--token-file", str(source.path.resolve())]
    elif source.kind == "env":
        command += ["--token-env", source.env_name]
    elif source.kind == "gitlab":
        command += ["--gitlab-id-token", source.env_name]
    else:
        command += ["--github-actions", "--github-audience", source.github_audience]
    if not cache:
        command.append("--no-cache")
    return [*command, "--output", "exec-credential"]


def write_kubeconfig(path: str, document: Mapping[str, object]) -> str | None:
    """None when written (0600, atomically), else the one line saying why not."""
    try:
        kubeconfig.write_kubeconfig(Path(path), document)
    except OSError as error:
        return f"cannot write {path}: {error.strerror}"
    return None


def _emit(args: argparse.Namespace, settings: ExchangeSettings, credential: Credential) -> int:
    cluster = credential.cluster
    if args.exec_kubeconfig is not None:
        document = kubeconfig.exec_kubeconfig(
            credential, plugin_command(settings, cache=not args.no_cache),
            install_hint="kubegate is not on PATH: pip install kubegate")
        if problem := write_kubeconfig(args.exec_kubeconfig, document):
            return fail(problem, EXIT_USAGE)
        print(f"wrote {args.exec_kubeconfig} (exec plugin: kubectl exchanges on demand; "
              f"context {cluster.name}, namespace {cluster.namespace or '-'})")
        return EXIT_OK
    if args.kubeconfig is not None:
        if problem := write_kubeconfig(args.kubeconfig, kubeconfig.token_kubeconfig(credential)):
            return fail(problem, EXIT_USAGE)
        print(f"wrote {args.kubeconfig} (context {cluster.name}, namespace "
              f"{cluster.namespace or '-'}, expires {kubeconfig.rfc3339(credential.expires_at)})")
        return EXIT_OK
    if args.output == "exec-credential":
        document = kubeconfig.exec_credential(credential, now=time.time())
    else:
        document = credential_json(credential)
    print(json.dumps(document, indent=2))
    return EXIT_OK
