"""The sidecar's configuration: command-line flags over `KUBEGATE_*` environment variables,
validated all at once, returned as one frozen `SidecarConfig`.

Rules of this module:
- it is the sidecar's one reader of the environment: `load_config(args, environ)` receives
  `os.environ` from the command and nothing below it reads the environment again (a token in
  an environment variable, and the GitHub runtime's request token, are copied here);
- a flag wins over its environment variable; the subject-token source is taken as a whole
  from the flags when any source flag is given, else from the environment;
- every problem is collected and reported together (`SidecarConfigError.problems`); a bad
  configuration never half-starts a sidecar;
- secrets (a token from the environment, the GitHub request token) never appear in a repr.
"""

from __future__ import annotations

import argparse
import grp
import pwd
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from exchanger.addresses import is_local_address
from sidecar.plugin import DEFAULT_SOCKET_PATH
from sidecar.refresh import RefreshPolicy

DEFAULT_GITHUB_AUDIENCE = "kubegate"
DEFAULT_PLUGIN_COMMAND = ("kubegate",)
_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


class SidecarConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class TokenSourceConfig:
    kind: Literal["file", "env", "github-actions"]
    path: Path | None = None
    env_name: str = ""
    env_value: str = field(default="", repr=False)
    github_request_url: str = field(default="", repr=False)
    github_request_token: str = field(default="", repr=False)
    github_audience: str = DEFAULT_GITHUB_AUDIENCE


@dataclass(frozen=True, kw_only=True)
class SidecarConfig:
    target: str
    ca_file: Path | None
    plaintext: bool
    role: str
    lifetime: int  # seconds; 0 = the mapping's
    audiences: tuple[str, ...]
    token_source: TokenSourceConfig
    socket_path: Path
    socket_group: int | None  # set: socket 0660 owned by this group; else 0600
    allowed_uids: frozenset[int] | None
    proxy_listen: str | None
    metrics_listen: str | None
    policy: RefreshPolicy
    exchange_timeout: float  # seconds, of each exchange while a credential is cached
    plugin_command: tuple[str, ...]  # how the job runs `kubegate` (before `credential ...`)
    once: bool = False
    kubeconfig: Path | None = None
    log_level: str = "INFO"

    @property
    def socket_mode(self) -> int:
        return 0o660 if self.socket_group is not None else 0o600


# -- loading --------------------------------------------------------------------------------


class _Values:
    """Flag-or-environment lookups that collect problems instead of raising."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args, self.environ, self.problems = args, environ, list[str]()

    def raw(self, name: str) -> str | None:
        value = getattr(self.args, name.replace("-", "_"), None)
        if value is not None:
            return str(value)
        return self.environ.get(_env_name(name))

    def text(self, name: str, default: str = "") -> str:
        value = self.raw(name)
        return default if value is None else value.strip()

    def flag(self, name: str) -> bool:
        value = self.text(name).lower()
        if value in _TRUE | _FALSE:
            return value in _TRUE
        self.problems.append(f"{_where(name)}: expected true or false, got {value!r}")
        return False

    def seconds(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(name)
        if value is None:
            return default
        seconds = parse_seconds(value)
        if seconds is None or seconds < minimum:
            self.problems.append(f"{_where(name)}: expected a duration such as 30s or 5m"
                                 f"{f' of at least {minimum:g}s' if minimum else ''}, "
                                 f"got {value!r}")
            return default
        return seconds

    def fraction(self, name: str, default: float, *, allow_zero: bool) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 <= number < 1 or (number == 0 and not allow_zero):
            low = "[0" if allow_zero else "(0"
            self.problems.append(f"{_where(name)}: expected a number in {low}, 1), "
                                 f"got {value!r}")
            return default
        return number


def _env_name(name: str) -> str:
    return "KUBEGATE_" + name.upper().replace("-", "_")


def _where(name: str) -> str:
    return f"--{name} ({_env_name(name)})"


def parse_seconds(text: str) -> float | None:
    """Seconds from `90`, `2.5s`, `500ms`, `15m` or `2h`; None if it is none of those."""
    match = _SECONDS.match(text.strip())
    if match is None:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> SidecarConfig:
    """The sidecar's configuration, or SidecarConfigError listing every problem."""
    values = _Values(args, environ)
    once = values.flag("once")
    kubeconfig = _kubeconfig(values, once)
    target, ca_file, plaintext = _exchanger(values)
    config = SidecarConfig(
        target=target, ca_file=ca_file, plaintext=plaintext, role=values.text("role"),
        lifetime=int(values.seconds("lifetime", 0, minimum=1)),
        audiences=_audiences(values), token_source=_token_source(values),
        socket_path=Path(values.text("socket", DEFAULT_SOCKET_PATH)),
        socket_group=_group(values), allowed_uids=_uids(values),
        proxy_listen=_proxy_listen(values), metrics_listen=_metrics_listen(values),
        policy=_policy(values), exchange_timeout=values.seconds("exchange-timeout", 3.0,
                                                                minimum=0.1),
        plugin_command=_plugin_command(values), once=once, kubeconfig=kubeconfig,
        log_level=_log_level(values))
    if values.problems:
        raise SidecarConfigError(values.problems)
    return config


def _kubeconfig(values: _Values, once: bool) -> Path | None:
    path = values.text("kubeconfig")
    if once and not path:
        values.problems.append("--once needs --kubeconfig PATH")
    if path and not once:
        values.problems.append("--kubeconfig is only for --once (the sidecar serves "
                               "kubeconfigs on its socket)")
    return Path(path) if path else None


def _exchanger(values: _Values) -> tuple[str, Path | None, bool]:
    target, plaintext = values.text("server"), values.flag("plaintext")
    ca_text = values.text("ca-file")
    ca_file = Path(ca_text) if ca_text else None
    if not target:
        values.problems.append(f"{_where('server')}: required")
    elif not _host_port(target):
        values.problems.append(f"{_where('server')}: expected HOST:PORT, got {target!r}")
    elif plaintext and not is_local_address(target):
        values.problems.append(f"--plaintext is only allowed for a loopback server, not "
                               f"{target}")
    if plaintext and ca_file is not None:
        values.problems.append("--plaintext and --ca-file are mutually exclusive")
    if ca_file is not None and not ca_file.is_file():
        values.problems.append(f"{_where('ca-file')}: {ca_file}: no such file")
    return target, ca_file, plaintext


def _host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host.strip("[]")) and port.isdigit() and int(port) <= 65535


def _audiences(values: _Values) -> tuple[str, ...]:
    flags = getattr(values.args, "audience", None)
    if flags:
        return tuple(a.strip() for a in flags if a.strip())
    text = values.environ.get("KUBEGATE_AUDIENCES", "")
    return tuple(a.strip() for a in text.split(",") if a.strip())


_SOURCES = ("token-file", "token-env", "github-actions")


def _token_source(values: _Values) -> TokenSourceConfig:
    given = [n for n in _SOURCES if getattr(values.args, n.replace("-", "_"), None)]
    if not given:
        given = [n for n in _SOURCES if values.environ.get(_env_name(n), "").strip()]
    if len(given) != 1:
        values.problems.append("give exactly one subject-token source: --token-file, "
                               "--token-env or --github-actions" +
                               (f" (got {', '.join('--' + n for n in given)})" if given else ""))
        return TokenSourceConfig(kind="file", path=Path("/dev/null"))
    if given[0] == "token-file":
        return TokenSourceConfig(kind="file", path=Path(values.text("token-file")))
    if given[0] == "token-env":
        return _env_source(values)
    return _github_source(values)


def _env_source(values: _Values) -> TokenSourceConfig:
    name = values.text("token-env")
    value = values.environ.get(name, "")
    if not value.strip():
        values.problems.append(f"--token-env {name}: the environment variable is not set "
                               "or empty")
    return TokenSourceConfig(kind="env", env_name=name, env_value=value)


def _github_source(values: _Values) -> TokenSourceConfig:
    url = values.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    token = values.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not url or not token:
        values.problems.append("--github-actions needs ACTIONS_ID_TOKEN_REQUEST_URL and "
                               "ACTIONS_ID_TOKEN_REQUEST_TOKEN (give the job "
                               "`permissions: id-token: write`)")
    audience = values.text("github-audience", DEFAULT_GITHUB_AUDIENCE)
    if not audience:
        values.problems.append("--github-audience must not be empty")
    return TokenSourceConfig(kind="github-actions", github_request_url=url,
                             github_request_token=token, github_audience=audience)


def _group(values: _Values) -> int | None:
    name = values.text("socket-group")
    if not name:
        return None
    try:
        return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        values.problems.append(f"{_where('socket-group')}: no group named {name!r}")
        return None


def _uids(values: _Values) -> frozenset[int] | None:
    text = values.text("allowed-uids")
    if not text:
        return None
    uids: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        try:
            uids.add(int(item) if item.isdigit() else pwd.getpwnam(item).pw_uid)
        except KeyError:
            values.problems.append(f"{_where('allowed-uids')}: no user named {item!r}")
    return frozenset(uids)


def _proxy_listen(values: _Values) -> str | None:
    text = values.text("proxy-listen")
    if not text:
        return None
    if text.startswith("unix:"):
        if not text.removeprefix("unix:").startswith("/"):
            values.problems.append(f"{_where('proxy-listen')}: expected unix:/absolute/path")
    elif not (_host_port(text) and is_local_address(text)):
        values.problems.append(f"{_where('proxy-listen')}: expected 127.0.0.1:PORT (loopback "
                               f"only: the proxy acts with the credential) or unix:/path, "
                               f"got {text!r}")
    return text


def _metrics_listen(values: _Values) -> str | None:
    text = values.text("metrics-listen")
    if text and not _host_port(text):
        values.problems.append(f"{_where('metrics-listen')}: expected HOST:PORT, got {text!r}")
    return text or None


def _policy(values: _Values) -> RefreshPolicy:
    fraction = values.fraction("refresh-fraction", 0.5, allow_zero=False)
    jitter = values.fraction("refresh-jitter", 0.1, allow_zero=True)
    min_remaining = values.seconds("min-remaining", 30.0)
    backoff_max = values.seconds("backoff-max", 60.0, minimum=1.0)
    denial = values.seconds("denial-backoff", 300.0, minimum=1.0)
    return RefreshPolicy(fraction=fraction, jitter=jitter, min_remaining=min_remaining,
                         backoff_initial=1.0, backoff_max=backoff_max, denial_backoff=denial)


def _plugin_command(values: _Values) -> tuple[str, ...]:
    text = values.text("plugin-command")
    if not text:
        return DEFAULT_PLUGIN_COMMAND
    try:
        command = tuple(shlex.split(text))
    except ValueError as error:
        values.problems.append(f"{_where('plugin-command')}: {error}")
        return DEFAULT_PLUGIN_COMMAND
    return command or DEFAULT_PLUGIN_COMMAND


def _log_level(values: _Values) -> str:
    level = values.text("log-level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        values.problems.append(f"{_where('log-level')}: expected DEBUG, INFO, WARNING or "
                               f"ERROR, got {level!r}")
        return "INFO"
    return level
