"""`kubegate exchange`: exchange one subject token for a Kubernetes credential, once.

The subject token comes from a file, an environment variable, or (in a GitHub Actions job with
`permissions: id-token: write`) a fresh ID token fetched from the Actions runtime. The result is
printed as JSON or as an ExecCredential, or written to a kubeconfig (0600, atomically): one that
holds the credential, or (`--exec-kubeconfig`) one that holds no secret and whose exec plugin
repeats this exchange whenever kubectl needs a credential (CI jobs: nothing usable is left).

Rules of this command:
- it is an edge: `run` reads `os.environ` once and passes it down; nothing below reads it;
- a failure is one line on stderr (never a traceback, never a token) and an exit status:
  0 ok, 1 the exchange (or fetching the GitHub token) was denied or failed, 2 usage or
  configuration error (bad flags, an unreadable or empty token, a plaintext remote target,
  a --kubeconfig path that cannot be written);
- the ID-token request goes over https (http only to a loopback host), follows no redirects
  (they would carry the runtime's bearer token elsewhere) and reads at most 64 KiB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from exchanger import kubeconfig
from exchanger.addresses import is_local_address
from exchanger.client import Credential, ExchangeClient, ExchangeError
from exchanger.config import parse_duration

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_GITHUB_AUDIENCE = "kubegate"
ID_TOKEN_TIMEOUT_SECONDS = 10.0
ID_TOKEN_MAX_BYTES = 64 * 1024
ID_TOKEN_ATTEMPTS = 3  # the Actions toolkit retries its ID-token request too
PROG = "kubegate exchange"


class UsageError(Exception):
    """Bad flags or configuration: exit 2."""


class FetchError(Exception):
    """The GitHub Actions runtime did not hand out an ID token: exit 1. Transient when the
    runtime could not be reached or answered 429 or 5xx: worth another try."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="HOST:PORT",
                        help="the exchanger's gRPC address")
    parser.add_argument("--ca-file", type=Path, metavar="PATH",
                        help="CA certificates to trust for the exchanger (default: system roots)")
    parser.add_argument("--plaintext", action="store_true",
                        help="no TLS (only for a loopback --server)")
    parser.add_argument("--role", default="", metavar="NAME",
                        help="the trust mapping to use (needed when several match)")
    parser.add_argument("--lifetime", metavar="DURATION",
                        help="requested credential lifetime, e.g. 15m (default: the mapping's)")
    parser.add_argument("--audience", action="append", default=[], metavar="A",
                        help="audience of the issued credential (repeatable)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--token-file", type=Path, metavar="PATH",
                        help="read the subject token from a file")
    source.add_argument("--token-env", metavar="VAR",
                        help="read the subject token from an environment variable")
    source.add_argument("--github-actions", action="store_true",
                        help="fetch a fresh ID token from the GitHub Actions runtime "
                        "(ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN; trusts system roots or "
                        "SSL_CERT_FILE)")
    parser.add_argument("--github-audience", default=DEFAULT_GITHUB_AUDIENCE, metavar="A",
                        help="audience of the GitHub ID token (default: kubegate)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--output", choices=["json", "exec-credential"], default="json",
                        help="what to print: the credential as JSON (default), or an "
                        "ExecCredential for kubectl")
    output.add_argument("--kubeconfig", type=Path, metavar="PATH",
                        help="write a kubeconfig holding the credential (0600) instead of "
                        "printing it")
    output.add_argument("--exec-kubeconfig", type=Path, metavar="PATH",
                        help="check the grant with one exchange, then write a kubeconfig "
                        "that holds no secret: its user runs this same exchange (an exec "
                        "plugin) whenever kubectl needs a credential")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args, os.environ)
    except UsageError as error:
        return _fail(str(error), EXIT_USAGE)
    except FetchError as error:
        return _fail(f"cannot get a GitHub Actions ID token: {error}", EXIT_FAILED)


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {_one_line(message)}", file=sys.stderr)
    return status


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    check_target(args.server, plaintext=args.plaintext, ca_file=args.ca_file)
    lifetime = _lifetime(args.lifetime)
    token = read_subject_token(args, environ)
    try:
        with ExchangeClient(args.server, ca_file=args.ca_file,
                            plaintext=args.plaintext) as client:
            credential = client.exchange(token, role=args.role, lifetime=lifetime,
                                         audiences=args.audience)
    except ExchangeError as error:
        return _fail(describe_exchange_error(error), EXIT_FAILED)
    except OSError as error:  # e.g. --ca-file unreadable
        raise UsageError(f"cannot read {error.filename or args.ca_file}: "
                         f"{error.strerror}") from None
    return _emit(args, credential)


def check_target(server: str, *, plaintext: bool, ca_file: Path | None) -> None:
    if ":" not in server:
        raise UsageError(f"--server must be HOST:PORT, got {server!r}")
    if plaintext and not is_local_address(server):
        raise UsageError(f"--plaintext is only allowed for a loopback server, not {server}")
    if plaintext and ca_file is not None:
        raise UsageError("--plaintext and --ca-file are mutually exclusive")
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"--ca-file {ca_file}: no such file")


def _lifetime(text: str | None) -> int:
    if text is None:
        return 0
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise UsageError(f"--lifetime: {error}") from None
    if seconds <= 0:
        raise UsageError("--lifetime must be positive")
    return seconds


# -- the subject token ----------------------------------------------------------------------------


def read_subject_token(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    if args.token_file is not None:
        token = _read_token_file(args.token_file)
        where = f"--token-file {args.token_file}"
    elif args.token_env is not None:
        token = environ.get(args.token_env, "")
        where = f"environment variable {args.token_env}"
    else:
        token = fetch_github_token(environ, args.github_audience)
        where = "the GitHub Actions runtime"
    token = token.strip()
    if not token:
        raise UsageError(f"the subject token from {where} is empty or missing")
    return token


def _read_token_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--token-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"--token-file {path}: cannot read: {reason}") from None


def id_token_url(request_url: str, audience: str) -> str:
    """The runtime's request URL with `audience=` added to its query, URL-encoded."""
    parts = urlsplit(request_url)
    query = "&".join(q for q in (parts.query, urlencode({"audience": audience})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def check_id_token_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_local_address(f"{parts.hostname}:0"):
        return
    raise UsageError("ACTIONS_ID_TOKEN_REQUEST_URL must be an https URL "
                     "(http only for a loopback host)")


def fetch_github_token(environ: Mapping[str, str], audience: str, *,
                       timeout: float = ID_TOKEN_TIMEOUT_SECONDS,
                       max_bytes: int = ID_TOKEN_MAX_BYTES) -> str:
    request_url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not request_url or not request_token:
        raise UsageError("--github-actions needs ACTIONS_ID_TOKEN_REQUEST_URL and "
                         "ACTIONS_ID_TOKEN_REQUEST_TOKEN (give the job "
                         "`permissions: id-token: write`)")
    if not audience:
        raise UsageError("--github-audience must not be empty")
    check_id_token_url(request_url)
    url = id_token_url(request_url, audience)
    request = urllib.request.Request(url, headers={  # noqa: S310 - scheme checked above
        "Authorization": f"Bearer {request_token}", "Accept": "application/json",
        "User-Agent": "kubegate"})
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, FetchError) and e.transient),
        stop=stop_after_attempt(ID_TOKEN_ATTEMPTS),
        wait=wait_exponential_jitter(multiplier=0.5, max=4.0), reraise=True)
    return _token_from_reply(retrying(_get, request, timeout, max_bytes))


def _opener() -> urllib.request.OpenerDirector:
    """http(s) and nothing else: no redirects, no proxies, no other schemes."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.HTTPSHandler(context=ssl.create_default_context()),
                    urllib.request.HTTPHandler(), urllib.request.HTTPErrorProcessor(),
                    urllib.request.HTTPDefaultErrorHandler()):
        opener.add_handler(handler)
    return opener


def _get(request: urllib.request.Request, timeout: float, max_bytes: int) -> bytes:
    where = urlsplit(request.full_url)._replace(query="").geturl()  # the query may be a secret
    try:
        with _opener().open(request, timeout=timeout) as response:
            body: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise FetchError(f"{where} answered HTTP {error.code}",
                         transient=error.code == 429 or error.code >= 500) from None
    except (OSError, http.client.HTTPException) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise FetchError(f"{where} failed: {_one_line(str(reason))}",
                         transient=not isinstance(reason, ssl.SSLError)) from None
    if len(body) > max_bytes:
        raise FetchError(f"{where} answered more than {max_bytes} bytes")
    return body


def _token_from_reply(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise FetchError("the reply is not JSON") from None
    value = document.get("value") if isinstance(document, dict) else None
    if not isinstance(value, str) or not value:
        raise FetchError('the reply has no "value"')
    return value


# -- the result -----------------------------------------------------------------------------------


def describe_exchange_error(error: ExchangeError) -> str:
    """`denied: PERMISSION_DENIED NO_MATCHING_MAPPING: no trust mapping allows this exchange`."""
    denied = error.code.name in ("PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT",
                                 "FAILED_PRECONDITION")
    status = f"{error.code.name} {error.reason}" if error.reason else error.code.name
    return f"{'denied' if denied else 'failed'}: {status}: {error.message or 'no message'}"


def credential_json(credential: Credential) -> dict[str, Any]:
    cluster = credential.cluster
    return {
        "token": credential.token,
        "token_type": credential.token_type,
        "expires_at": kubeconfig.rfc3339(credential.expires_at),
        "token_id": credential.token_id,
        "session_id": credential.session_id,
        "mapping": credential.mapping,
        "cluster": {
            "name": cluster.name, "server": cluster.server, "namespace": cluster.namespace,
            "service_account": cluster.service_account, "user": cluster.user,
            "groups": list(cluster.groups),
        },
    }


def plugin_command(args: argparse.Namespace) -> list[str]:
    """This exchange as an exec plugin's command: same exchanger, role, lifetime, audiences
    and subject-token source, printing an ExecCredential. Paths are made absolute."""
    command = [shutil.which("kubegate") or "kubegate", "exchange", "--server", args.server]
    if args.plaintext:
        command.append("--plaintext")
    if args.ca_file is not None:
        command += ["--ca-file", str(args.ca_file.resolve())]
    for flag, value in (("--role", args.role), ("--lifetime", args.lifetime)):
        if value:
            command += [flag, value]
    for audience in args.audience:
        command += ["--audience", audience]
    if args.token_file is not None:
        command += ["--token-file", str(args.token_file.resolve())]
    elif args.token_env is not None:
        command += ["--token-env", args.token_env]
    else:
        command += ["--github-actions", "--github-audience", args.github_audience]
    return [*command, "--output", "exec-credential"]


def _write_exec_kubeconfig(args: argparse.Namespace, credential: Credential) -> int:
    document = kubeconfig.exec_kubeconfig(
        credential, plugin_command(args),
        install_hint="kubegate is not on PATH: pip install kubegate")
    try:
        kubeconfig.write_kubeconfig(args.exec_kubeconfig, document)
    except OSError as error:
        return _fail(f"cannot write {args.exec_kubeconfig}: {error.strerror}", EXIT_USAGE)
    print(f"wrote {args.exec_kubeconfig} (exec plugin: kubectl exchanges on demand; context "
          f"{credential.cluster.name}, namespace {credential.cluster.namespace or '-'})")
    return EXIT_OK


def _emit(args: argparse.Namespace, credential: Credential) -> int:
    if args.exec_kubeconfig is not None:
        return _write_exec_kubeconfig(args, credential)
    if args.kubeconfig is not None:
        try:
            kubeconfig.write_kubeconfig(args.kubeconfig,
                                        kubeconfig.token_kubeconfig(credential))
        except OSError as error:
            return _fail(f"cannot write {args.kubeconfig}: {error.strerror}", EXIT_USAGE)
        print(f"wrote {args.kubeconfig} (context {credential.cluster.name}, namespace "
              f"{credential.cluster.namespace or '-'}, expires "
              f"{kubeconfig.rfc3339(credential.expires_at)})")
        return EXIT_OK
    if args.output == "exec-credential":
        document = kubeconfig.exec_credential(credential, now=time.time())
    else:
        document = credential_json(credential)
    print(json.dumps(document, indent=2))
    return EXIT_OK
