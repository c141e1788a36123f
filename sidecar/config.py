"""The sidecar's configuration: command-line flags over `KUBEGATE_*` environment variables,
validated all at once, returned as one frozen `SidecarConfig`.

Rules of this module:
- it is the sidecar's one reader of the environment: `load_config(args, environ)` receives
  `os.environ` from the command and nothing below it reads the environment again (a token in
  an environment variable, and the GitHub runtime's request token, are copied here);
- a flag wins over its environment variable; the subject-token source is taken as a whole
  from the flags when any source flag is given, else from the environment;
- every problem is collected and reported together (`ConfigError.problems`); a bad
  configuration never half-starts a sidecar;
- secrets (a token from the environment, the GitHub request token) never appear in a repr.
"""

from __future__ import annotations

import argparse
import grp
import pwd
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubegate.addresses import parse_address, parse_host_port
from kubegate.client.settings import ExchangeSettings, read_exchange_settings
from kubegate.configread import FlagsOrEnv
from kubegate.errors import ConfigError
from kubegate.logformat import LOG_FORMATS, LogFormat
from kubegate.socketapi import DEFAULT_SOCKET_PATH
from sidecar.refresh import RefreshPolicy

DEFAULT_PLUGIN_COMMAND = ("kubegate",)
DEFAULT_PROXY_MAX_CONNECTIONS = 256
DEFAULT_PROXY_HEAD_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class ProxyLimits:
    """Who may call the API proxy and how much of it one may hold (`sidecar.proxy`)."""

    allowed_hosts: frozenset[str] = frozenset()  # Host names besides the loopback ones
    max_connections: int = DEFAULT_PROXY_MAX_CONNECTIONS
    head_timeout: float = DEFAULT_PROXY_HEAD_TIMEOUT  # seconds, accept to end of head


@dataclass(frozen=True, kw_only=True)
class SidecarConfig:
    exchange: ExchangeSettings  # the exchanger, role, lifetime, audiences, subject token
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
    log_format: LogFormat = "text"  # stderr lines: text, or JSON lines (kubegate.logformat)
    proxy: ProxyLimits = field(default_factory=lambda: ProxyLimits())

    @property
    def socket_mode(self) -> int:
        return 0o660 if self.socket_group is not None else 0o600


# -- loading --------------------------------------------------------------------------------


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> SidecarConfig:
    """The sidecar's configuration, or ConfigError listing every problem."""
    values = FlagsOrEnv(args, environ)
    once = values.switch("once")
    kubeconfig = _kubeconfig(values, once)
    config = SidecarConfig(
        exchange=read_exchange_settings(values, https=True),
        socket_path=Path(values.text("socket", DEFAULT_SOCKET_PATH)),
        socket_group=_group(values), allowed_uids=_uids(values),
        proxy_listen=_proxy_listen(values), metrics_listen=_metrics_listen(values),
        policy=_policy(values), exchange_timeout=values.duration("exchange-timeout", 3.0,
                                                                 minimum=0.1),
        plugin_command=_plugin_command(values), once=once, kubeconfig=kubeconfig,
        log_level=_log_level(values), log_format=_log_format(values),
        proxy=_proxy_limits(values))
    if values.problems:
        raise ConfigError(values.problems)
    return config


def _kubeconfig(values: FlagsOrEnv, once: bool) -> Path | None:
    path = values.text("kubeconfig")
    if once and not path:
        values.problem(None, "--once needs --kubeconfig PATH")
    if path and not once:
        values.problem(None, "--kubeconfig is only for --once (the sidecar serves "
                       "kubeconfigs on its socket)")
    return Path(path) if path else None


def _group(values: FlagsOrEnv) -> int | None:
    name = values.text("socket-group")
    if not name:
        return None
    try:
        return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        values.problem("socket-group", f"no group named {name!r}")
        return None


def _uids(values: FlagsOrEnv) -> frozenset[int] | None:
    text = values.text("allowed-uids")
    if not text:
        return None
    uids: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        try:
            uids.add(int(item) if item.isdigit() else pwd.getpwnam(item).pw_uid)
        except KeyError:
            values.problem("allowed-uids", f"no user named {item!r}")
    return frozenset(uids)


def _proxy_listen(values: FlagsOrEnv) -> str | None:
    text = values.text("proxy-listen")
    if not text:
        return None
    try:
        local = parse_address(text).is_local
    except ValueError as error:
        values.problem("proxy-listen", str(error))
        return text
    if not local:
        values.problem("proxy-listen", f"expected 127.0.0.1:PORT (loopback only: the proxy "
                       f"acts with the credential) or unix:/path, got {text!r}")
    return text


def _proxy_limits(values: FlagsOrEnv) -> ProxyLimits:
    hosts = frozenset(part.strip().lower() for part in
                      values.text("proxy-allowed-hosts").split(",") if part.strip())
    try:
        if hosts:  # the proxy's HTTP engine (h11...) is loaded only when the proxy runs
            from kubegate.http.hosts import HostPolicy

            HostPolicy(allowed_hosts=hosts)
    except ValueError:
        values.problem("proxy-allowed-hosts", "expected host names or IP addresses "
                       "(IPv6 in brackets), comma-separated, without ports")
        hosts = frozenset()
    maximum = values.text("proxy-max-connections", str(DEFAULT_PROXY_MAX_CONNECTIONS))
    if not (maximum.isascii() and maximum.isdigit() and 1 <= int(maximum) <= 65536):
        values.problem("proxy-max-connections", f"expected a whole number from 1 to 65536, "
                       f"got {maximum!r}")
        maximum = str(DEFAULT_PROXY_MAX_CONNECTIONS)
    timeout = values.duration("proxy-head-timeout", DEFAULT_PROXY_HEAD_TIMEOUT, minimum=0.1)
    return ProxyLimits(allowed_hosts=hosts, max_connections=int(maximum), head_timeout=timeout)


def _metrics_listen(values: FlagsOrEnv) -> str | None:
    text = values.text("metrics-listen")
    if text:
        try:
            parse_host_port(text)
        except ValueError as error:
            values.problem("metrics-listen", str(error))
    return text or None


def _policy(values: FlagsOrEnv) -> RefreshPolicy:
    fraction = _fraction(values, "refresh-fraction", 0.5, allow_zero=False)
    jitter = _fraction(values, "refresh-jitter", 0.1, allow_zero=True)
    min_remaining = values.duration("min-remaining", 30.0)
    backoff_max = values.duration("backoff-max", 60.0, minimum=1.0)
    denial = values.duration("denial-backoff", 300.0, minimum=1.0)
    return RefreshPolicy(fraction=fraction, jitter=jitter, min_remaining=min_remaining,
                         backoff_initial=1.0, backoff_max=backoff_max, denial_backoff=denial)


def _plugin_command(values: FlagsOrEnv) -> tuple[str, ...]:
    text = values.text("plugin-command")
    if not text:
        return DEFAULT_PLUGIN_COMMAND
    try:
        command = tuple(shlex.split(text))
    except ValueError as error:
        values.problem("plugin-command", str(error))
        return DEFAULT_PLUGIN_COMMAND
    return command or DEFAULT_PLUGIN_COMMAND


def _log_level(values: FlagsOrEnv) -> str:
    level = values.text("log-level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        values.problem("log-level", f"expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return "INFO"
    return level


def _log_format(values: FlagsOrEnv) -> LogFormat:
    text = values.text("log-format", "text").lower()
    if text == "json":
        return "json"
    if text != "text":
        values.problem("log-format", f"expected {' or '.join(LOG_FORMATS)}, got {text!r}")
    return "text"


def _fraction(values: FlagsOrEnv, flag: str, default: float, *, allow_zero: bool) -> float:
    value = values.raw(flag)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < 1 or (number == 0 and not allow_zero):
        values.problem(flag, f"expected a number in {'[0' if allow_zero else '(0'}, 1), "
                       f"got {value!r}")
        return default
    return number
