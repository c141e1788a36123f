"""The sidecar's configuration: flags over KUBEGATE_* variables, every problem reported at
once, secrets kept out of reprs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from kubegate.commands.sidecar import add_arguments
from kubegate.errors import ConfigError
from sidecar.config import load_config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_with_only_a_server_and_a_token_file() -> None:
    config = load_config(parse("--server", "127.0.0.1:8443", "--token-file", "/t"), {})
    assert config.socket_path == Path("/var/run/kubegate/kubegate.sock")
    assert config.socket_mode == 0o600 and config.allowed_uids is None
    assert (config.policy.fraction, config.policy.jitter) == (0.5, 0.1)
    assert config.policy.min_remaining == 30 and config.exchange_timeout == 3
    assert config.policy.denial_backoff == 300
    assert config.plugin_command == ("kubegate",)
    source = config.exchange.token_source
    assert source.kind == "file" and source.path == Path("/t")


def test_the_environment_fills_in_what_flags_do_not_give() -> None:
    environ = {"KUBEGATE_SERVER": "exchanger.kubegate:8443", "KUBEGATE_TOKEN_FILE": "/t",
               "KUBEGATE_SOCKET": "/run/k.sock", "KUBEGATE_AUDIENCES": "a, b",
               "KUBEGATE_REFRESH_FRACTION": "0.25", "KUBEGATE_MIN_REMAINING": "1m",
               "KUBEGATE_ALLOWED_UIDS": "1000,1001", "KUBEGATE_SOCKET_GROUP": str(os.getgid()),
               "KUBEGATE_PLUGIN_COMMAND": "/usr/bin/env kubegate"}
    config = load_config(parse("--socket", "/flag.sock"), environ)
    assert config.exchange.target == "exchanger.kubegate:8443"
    assert config.socket_path == Path("/flag.sock")  # the flag wins
    assert config.exchange.audiences == ("a", "b")
    assert config.policy.fraction == 0.25 and config.policy.min_remaining == 60
    assert config.allowed_uids == frozenset({1000, 1001})
    assert config.socket_mode == 0o660 and config.socket_group == os.getgid()
    assert config.plugin_command == ("/usr/bin/env", "kubegate")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    args = parse("--server", "nohost", "--token-file", "/t",
                 "--refresh-fraction", "1", "--refresh-jitter", "x", "--min-remaining", "soon",
                 "--proxy-listen", "0.0.0.0:8001", "--ca-file", str(tmp_path / "absent"),
                 "--allowed-uids", "no-such-user-here", "--log-level", "chatty", "--once")
    with pytest.raises(ConfigError) as raised:
        load_config(args, {})
    text = str(raised.value)
    assert len(raised.value.problems) == 9
    for fragment in ("--server", "--refresh-fraction",
                     "--refresh-jitter", "--min-remaining", "loopback only", "no such file",
                     "no-such-user-here", "--log-level", "--once needs --kubeconfig"):
        assert fragment in text


def test_plaintext_is_only_for_a_loopback_exchanger() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        load_config(parse("--server", "10.0.0.1:8443", "--plaintext", "--token-file", "/t"), {})
    config = load_config(parse("--server", "127.0.0.1:8443", "--plaintext",
                               "--token-file", "/t"), {})
    assert config.exchange.plaintext


def test_source_flags_replace_source_variables_as_a_whole() -> None:
    environ = {"KUBEGATE_TOKEN_FILE": "/from-env", "CI_JOB_JWT": "eyJ.token.sig"}
    config = load_config(parse("--server", "h:1", "--token-env", "CI_JOB_JWT"), environ)
    assert config.exchange.token_source.kind == "env"
    assert config.exchange.token_source.env_value == "eyJ.token.sig"


def test_secrets_from_the_environment_stay_out_of_reprs() -> None:
    environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://runtime.example/idtoken?x=1",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-bearer-secret",
               "CI_JOB_JWT": "eyJ.token.sig"}
    github = load_config(parse("--server", "h:1", "--github-actions"), environ)
    from_env = load_config(parse("--server", "h:1", "--token-env", "CI_JOB_JWT"), environ)
    assert "runtime-bearer-secret" not in repr(github)
    assert "eyJ.token.sig" not in repr(from_env)


def test_an_unset_token_variable_is_a_configuration_problem() -> None:
    with pytest.raises(ConfigError, match="CI_JOB_JWT: the environment variable"):
        load_config(parse("--server", "h:1", "--token-env", "CI_JOB_JWT"), {})


@pytest.mark.parametrize(("text", "seconds"), [
    ("2.5s", 2.5), ("500ms", 0.5), ("15m", 900), ("1h30m", 5400), ("90s", 90),
])
def test_durations_use_the_one_grammar(text: str, seconds: float) -> None:
    config = load_config(parse("--server", "h:1", "--token-file", "/t",
                               "--min-remaining", text), {})
    assert config.policy.min_remaining == seconds


@pytest.mark.parametrize("text", ["90", "soon", "-1s", "", "1d"])
def test_bad_durations_are_refused_with_the_grammar_message(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--min-remaining \(KUBEGATE_MIN_REMAINING\): "
                       "expected a duration such as 90s, 15m, 1h30m or 500ms"):
        load_config(parse("--server", "h:1", "--token-file", "/t", f"--min-remaining={text}"),
                    {})


def test_two_subject_token_sources_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--server", "h:1", "--token-file", "/t", "--token-env", "X")
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("server", ["nohost", "h:", "h:99999", "[::1]", "a b:1", "h/x:1"])
def test_bad_exchanger_addresses_are_refused(server: str) -> None:
    with pytest.raises(ConfigError, match="--server"):
        load_config(parse("--server", server, "--token-file", "/t"), {})


def test_two_subject_token_sources_in_the_environment_are_refused() -> None:
    environ = {"KUBEGATE_TOKEN_FILE": "/t", "KUBEGATE_GITHUB_ACTIONS": "true"}
    with pytest.raises(ConfigError, match="exactly one subject-token source"):
        load_config(parse("--server", "h:1"), environ)


def test_proxy_limits_default_and_come_from_flags_or_the_environment() -> None:
    base = ("--server", "h:1", "--token-file", "/t")
    defaults = load_config(parse(*base), {}).proxy
    assert defaults.allowed_hosts == frozenset()
    assert (defaults.max_connections, defaults.head_timeout) == (256, 10.0)

    environ = {"KUBEGATE_PROXY_ALLOWED_HOSTS": "Kubegate-Proxy, [::2] ,sidecar.ci.svc",
               "KUBEGATE_PROXY_MAX_CONNECTIONS": "32", "KUBEGATE_PROXY_HEAD_TIMEOUT": "2s"}
    proxy = load_config(parse(*base, "--proxy-max-connections", "64"), environ).proxy
    assert proxy.allowed_hosts == frozenset({"kubegate-proxy", "[::2]", "sidecar.ci.svc"})
    assert (proxy.max_connections, proxy.head_timeout) == (64, 2.0)  # the flag wins


def test_bad_proxy_limits_are_reported_together() -> None:
    args = parse("--server", "h:1", "--token-file", "/t",
                 "--proxy-allowed-hosts", "ok,evil.example:80", "--proxy-max-connections", "0",
                 "--proxy-head-timeout", "0s")
    with pytest.raises(ConfigError) as raised:
        load_config(args, {})
    text = str(raised.value)
    assert len(raised.value.problems) == 3
    for flag in ("--proxy-allowed-hosts", "--proxy-max-connections", "--proxy-head-timeout"):
        assert flag in text
