"""The sidecar's configuration: flags over KUBEGATE_* variables, every problem reported at
once, secrets kept out of reprs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from sidecar.config import SidecarConfigError, is_local_address, load_config, parse_seconds
from sidecar.flags import add_arguments


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
    assert config.token_source.kind == "file" and config.token_source.path == Path("/t")


def test_the_environment_fills_in_what_flags_do_not_give() -> None:
    environ = {"KUBEGATE_SERVER": "exchanger.kubegate:8443", "KUBEGATE_TOKEN_FILE": "/t",
               "KUBEGATE_SOCKET": "/run/k.sock", "KUBEGATE_AUDIENCES": "a, b",
               "KUBEGATE_REFRESH_FRACTION": "0.25", "KUBEGATE_MIN_REMAINING": "1m",
               "KUBEGATE_ALLOWED_UIDS": "1000,1001", "KUBEGATE_SOCKET_GROUP": str(os.getgid()),
               "KUBEGATE_PLUGIN_COMMAND": "/usr/bin/env kubegate"}
    config = load_config(parse("--socket", "/flag.sock"), environ)
    assert config.target == "exchanger.kubegate:8443"
    assert config.socket_path == Path("/flag.sock")  # the flag wins
    assert config.audiences == ("a", "b")
    assert config.policy.fraction == 0.25 and config.policy.min_remaining == 60
    assert config.allowed_uids == frozenset({1000, 1001})
    assert config.socket_mode == 0o660 and config.socket_group == os.getgid()
    assert config.plugin_command == ("/usr/bin/env", "kubegate")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    args = parse("--server", "nohost", "--token-file", "/t", "--token-env", "X",
                 "--refresh-fraction", "1", "--refresh-jitter", "x", "--min-remaining", "soon",
                 "--proxy-listen", "0.0.0.0:8001", "--ca-file", str(tmp_path / "absent"),
                 "--allowed-uids", "no-such-user-here", "--log-level", "chatty", "--once")
    with pytest.raises(SidecarConfigError) as raised:
        load_config(args, {})
    text = str(raised.value)
    assert len(raised.value.problems) == 10
    for fragment in ("--server", "exactly one subject-token source", "--refresh-fraction",
                     "--refresh-jitter", "--min-remaining", "loopback only", "no such file",
                     "no-such-user-here", "--log-level", "--once needs --kubeconfig"):
        assert fragment in text


def test_plaintext_is_only_for_a_loopback_exchanger() -> None:
    with pytest.raises(SidecarConfigError, match="loopback"):
        load_config(parse("--server", "10.0.0.1:8443", "--plaintext", "--token-file", "/t"), {})
    config = load_config(parse("--server", "127.0.0.1:8443", "--plaintext",
                               "--token-file", "/t"), {})
    assert config.plaintext


def test_source_flags_replace_source_variables_as_a_whole() -> None:
    environ = {"KUBEGATE_TOKEN_FILE": "/from-env", "CI_JOB_JWT": "eyJ.token.sig"}
    config = load_config(parse("--server", "h:1", "--token-env", "CI_JOB_JWT"), environ)
    assert config.token_source.kind == "env"
    assert config.token_source.env_value == "eyJ.token.sig"


def test_secrets_from_the_environment_stay_out_of_reprs() -> None:
    environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://runtime.example/idtoken?x=1",
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-bearer-secret",
               "CI_JOB_JWT": "eyJ.token.sig"}
    github = load_config(parse("--server", "h:1", "--github-actions"), environ)
    from_env = load_config(parse("--server", "h:1", "--token-env", "CI_JOB_JWT"), environ)
    assert "runtime-bearer-secret" not in repr(github)
    assert "eyJ.token.sig" not in repr(from_env)


def test_an_unset_token_variable_is_a_configuration_problem() -> None:
    with pytest.raises(SidecarConfigError, match="CI_JOB_JWT: the environment variable"):
        load_config(parse("--server", "h:1", "--token-env", "CI_JOB_JWT"), {})


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("2.5s", 2.5), ("500ms", 0.5), ("15m", 900), ("2h", 7200), ("soon", None),
    ("-1s", None), ("", None),
])
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1:1", True), ("[::1]:1", True), ("localhost:1", True), ("10.0.0.1:1", False),
    ("exchanger.kubegate:8443", False),
])
def test_loopback_addresses_agree_with_the_exchanger(address: str, local: bool) -> None:
    from exchanger.config import is_local_address as exchanger_rule

    assert is_local_address(address) == exchanger_rule(address) == local
