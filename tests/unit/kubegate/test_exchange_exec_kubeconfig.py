"""`kubegate exchange --exec-kubeconfig`: the kubeconfig's exec plugin repeats the same
exchange (exchanger, CA, role, lifetime, audiences, subject-token source) and prints an
ExecCredential; paths become absolute so later steps may run from anywhere."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from kubegate.commands.exchange import add_arguments, load_settings
from kubegate.commands.exchange import plugin_command as settings_command

ENVIRON = {"ACTIONS_ID_TOKEN_REQUEST_URL": "https://runtime.example/idtoken",
           "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runtime-bearer", "KUBEGATE_ID_TOKEN": "x.y.z",
           "T": "x.y.z"}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def plugin_command(args: argparse.Namespace) -> list[str]:
    return settings_command(load_settings(args, ENVIRON))


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no kubegate on PATH here


def test_a_github_actions_exchange_becomes_its_own_plugin(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("a CA bundle")
    args = parse("--server", "kubegate.example.com:443", "--ca-file", "ca.crt",
                 "--github-actions", "--github-audience", "kubegate-prod", "--role", "web",
                 "--lifetime", "20m", "--audience", "a1", "--audience", "a2",
                 "--exec-kubeconfig", "kubeconfig")
    assert plugin_command(args) == [
        "kubegate", "exchange", "--server", "kubegate.example.com:443",
        "--ca-file", str(tmp_path / "ca.crt"), "--role", "web", "--lifetime", "1200s",
        "--audience", "a1", "--audience", "a2",
        "--github-actions", "--github-audience", "kubegate-prod",
        "--output", "exec-credential"]


def test_token_file_and_env_sources_are_kept(tmp_path: Path) -> None:
    from_file = parse("--server", "127.0.0.1:8443", "--plaintext", "--token-file", "t",
                      "--exec-kubeconfig", "k")
    assert plugin_command(from_file)[3:] == [
        "127.0.0.1:8443", "--plaintext", "--token-file", str(tmp_path / "t"),
        "--output", "exec-credential"]
    from_env = parse("--server", "h:1", "--token-env", "KUBEGATE_ID_TOKEN",
                     "--exec-kubeconfig", "k")
    assert plugin_command(from_env)[-4:] == ["--token-env", "KUBEGATE_ID_TOKEN", "--output",
                                             "exec-credential"]


def test_an_installed_kubegate_is_named_by_its_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "kubegate"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + "/usr/bin")
    args = parse("--server", "h:1", "--token-env", "T", "--exec-kubeconfig", "k")
    assert plugin_command(args)[0] == str(program)


def test_exec_kubeconfig_excludes_the_other_outputs() -> None:
    with pytest.raises(SystemExit):
        parse("--server", "h:1", "--token-env", "T", "--exec-kubeconfig", "k",
              "--kubeconfig", "k2")


def test_no_cache_is_kept_in_the_plugin_command() -> None:
    args = parse("--server", "h:1", "--token-env", "T", "--no-cache", "--exec-kubeconfig", "k")
    assert args.no_cache is True
    command = settings_command(load_settings(args, ENVIRON), cache=not args.no_cache)
    assert command[-3:] == ["--no-cache", "--output", "exec-credential"]
    assert "--no-cache" not in plugin_command(parse("--server", "h:1", "--token-env", "T",
                                                    "--exec-kubeconfig", "k"))
