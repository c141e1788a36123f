"""What a client needs to exchange: the exchanger's address and trust, the role, lifetime and
audiences it asks for, and where its subject token comes from. `kubegate exchange` and the
sidecar (long-running and `--once`) read the same flags (or `KUBEGATE_*` variables) into the
same `ExchangeSettings`, checked by the same rules.

Rules of this module:
- plaintext only to a loopback exchanger, and never together with a CA file;
- `--server HOST:PORT` is gRPC's address; `--server https://HOST[:PORT]` (or `http://` on
  loopback, which is `--plaintext`) is the RFC 8693 token endpoint's, taken only by callers
  that can exchange over HTTPS (`https=True`: the sidecar, `kubegate exchange`, `kubegate
  login`); `kubegate.client.exchanger_url` checks the URL;
- exactly one subject-token source; a token from the environment (and the GitHub runtime's
  request token) is copied here once and never appears in a repr;
- every problem goes to the `FlagsOrEnv` reader; nothing raises for bad input;
- a person's sign-in (`kind="login"`, `kubegate login`) is a source too: its settings are
  read by `kubegate.login.settings`, and its module is imported only when a token is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kubegate.addresses import parse_host_port
from kubegate.client.exchanger_url import is_url, parse_exchanger_url
from kubegate.client.sources import (
    EnvTokenSource,
    FileTokenSource,
    GitHubActionsTokenSource,
    GitLabTokenSource,
    SubjectTokenSource,
)
from kubegate.configread import FlagsOrEnv, env_name
from kubegate.grammar import parse_whole_seconds
from kubegate.login.settings import LoginSettings

DEFAULT_GITHUB_AUDIENCE = "kubegate"
SOURCE_FLAGS = ("token-file", "token-env", "gitlab-id-token", "github-actions")


@dataclass(frozen=True, kw_only=True)
class TokenSourceConfig:
    kind: Literal["file", "env", "gitlab", "github-actions", "login"]
    path: Path | None = None
    env_name: str = ""
    env_value: str = field(default="", repr=False)
    github_request_url: str = field(default="", repr=False)
    github_request_token: str = field(default="", repr=False)
    github_audience: str = DEFAULT_GITHUB_AUDIENCE
    login: LoginSettings | None = None


@dataclass(frozen=True, kw_only=True)
class ExchangeSettings:
    target: str  # gRPC's HOST:PORT, or the token endpoint's origin (transport https)
    ca_file: Path | None
    plaintext: bool
    role: str
    lifetime: int  # seconds; 0 = the mapping's
    audiences: tuple[str, ...]
    token_source: TokenSourceConfig
    transport: Literal["grpc", "https"] = "grpc"


def token_source(config: TokenSourceConfig) -> SubjectTokenSource:
    if config.kind == "file" and config.path is not None:
        return FileTokenSource(config.path)
    if config.kind == "env":
        return EnvTokenSource(config.env_name, config.env_value)
    if config.kind == "gitlab":
        return GitLabTokenSource(config.env_name, config.env_value)
    if config.kind == "login" and config.login is not None:
        from kubegate.login.source import LoginTokenSource

        return LoginTokenSource(config.login)
    return GitHubActionsTokenSource(config.github_request_url, config.github_request_token,
                                    config.github_audience)


def read_exchange_settings(values: FlagsOrEnv, *, source: TokenSourceConfig | None = None,
                           https: bool = False) -> ExchangeSettings:
    """source: the subject-token source when the command has its own (no source flags);
    https: the caller can exchange over HTTPS, so `--server` may be a URL."""
    transport: Literal["grpc", "https"] = "https" if is_url(values.text("server")) else "grpc"
    if transport == "https":
        target, ca_file, plaintext = _token_endpoint(values, allowed=https)
    else:
        target, ca_file, plaintext = _exchanger(values)
    lifetime = values.parsed("lifetime", parse_whole_seconds, 0)
    if values.given("lifetime") and lifetime <= 0:
        values.problem("lifetime", "must be positive")
    return ExchangeSettings(
        target=target, ca_file=ca_file, plaintext=plaintext, role=values.text("role"),
        lifetime=lifetime, audiences=_audiences(values),
        token_source=source if source is not None else _token_source(values),
        transport=transport)


def _exchanger(values: FlagsOrEnv) -> tuple[str, Path | None, bool]:
    target, plaintext = values.text("server"), values.switch("plaintext")
    address = None
    if not target:
        values.problem("server", "required")
    else:
        try:
            address = parse_host_port(target)
        except ValueError as error:
            values.problem("server", str(error))
    if plaintext and address is not None and not address.is_local:
        values.problem(None, f"--plaintext is only allowed for a loopback server, not {target}")
    return target, _ca_file(values, plaintext), plaintext


def _token_endpoint(values: FlagsOrEnv, *, allowed: bool) -> tuple[str, Path | None, bool]:
    """`--server https://HOST[:PORT]` (`http://` on loopback: plaintext)."""
    target, plaintext = values.text("server"), values.switch("plaintext")
    if not allowed:
        values.problem("server", "this command speaks gRPC only: give the exchanger's "
                       "HOST:PORT, not a URL")
        return target, _ca_file(values, plaintext), plaintext
    try:
        url = parse_exchanger_url(target)
    except ValueError as error:
        values.problem("server", str(error))
        return target, _ca_file(values, plaintext), plaintext
    if plaintext and not url.plaintext:
        values.problem(None, "--plaintext contradicts an https:// --server (http:// is "
                       "plaintext, on loopback only)")
    return str(url), _ca_file(values, url.plaintext), url.plaintext


def _ca_file(values: FlagsOrEnv, plaintext: bool) -> Path | None:
    ca_text = values.text("ca-file")
    ca_file = Path(ca_text) if ca_text else None
    if plaintext and ca_file is not None:
        values.problem(None, "--plaintext and --ca-file are mutually exclusive")
    if ca_file is not None and not ca_file.is_file():
        values.problem("ca-file", f"{ca_file}: no such file")
    return ca_file


def _audiences(values: FlagsOrEnv) -> tuple[str, ...]:
    flags = getattr(values.args, "audience", None)
    if flags:
        return tuple(a.strip() for a in flags if a.strip())
    text = values.environ.get("KUBEGATE_AUDIENCES", "") if values.env else ""
    return tuple(a.strip() for a in text.split(",") if a.strip())


def _token_source(values: FlagsOrEnv) -> TokenSourceConfig:
    given = [n for n in SOURCE_FLAGS if getattr(values.args, n.replace("-", "_"), None)]
    if not given and values.env:
        given = [n for n in SOURCE_FLAGS if values.environ.get(env_name(n), "").strip()]
    if len(given) != 1:
        listed = ", ".join("--" + n for n in SOURCE_FLAGS)
        values.problem(None, f"give exactly one subject-token source: {listed}"
                       + (f" (got {', '.join('--' + n for n in given)})" if given else ""))
        return TokenSourceConfig(kind="file", path=Path("/dev/null"))
    if given[0] == "token-file":
        return TokenSourceConfig(kind="file", path=Path(values.text("token-file")))
    if given[0] in ("token-env", "gitlab-id-token"):
        return _env_source(values, given[0])
    return _github_source(values)


def _env_source(values: FlagsOrEnv, flag: str) -> TokenSourceConfig:
    name = values.text(flag)
    value = values.environ.get(name, "")
    if not value.strip():
        values.problem(None, f"--{flag} {name}: the environment variable is not set or empty"
                       + (" (declare it under the job's `id_tokens:`)"
                          if flag == "gitlab-id-token" else ""))
    return TokenSourceConfig(kind="env" if flag == "token-env" else "gitlab", env_name=name,
                             env_value=value)


def _github_source(values: FlagsOrEnv) -> TokenSourceConfig:
    url = values.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    token = values.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not url or not token:
        values.problem(None, "--github-actions needs ACTIONS_ID_TOKEN_REQUEST_URL and "
                       "ACTIONS_ID_TOKEN_REQUEST_TOKEN (give the job "
                       "`permissions: id-token: write`)")
    audience = values.text("github-audience", DEFAULT_GITHUB_AUDIENCE)
    if not audience:
        values.problem(None, "--github-audience must not be empty")
    return TokenSourceConfig(kind="github-actions", github_request_url=url,
                             github_request_token=token, github_audience=audience)
