"""`kubegate login` as a command: one-line errors and exit statuses, the exchange flags, the
login subject-token source, the exec plugin's command and kubeconfig, and the plugin's cache
hit (a fresh ID token and a fresh credential) that imports no grpc, HTTP, TLS or pyjwt."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubegate.cli import main
from kubegate.client.settings import TokenSourceConfig, token_source
from kubegate.client.sources import fingerprint_of
from kubegate.commands import login as command
from kubegate.credential import ClusterInfo
from kubegate.kubeconfig import exec_kubeconfig
from kubegate.login.settings import LoginSettings
from kubegate.login.store import CachedLogin, LoginCache

ROOT = Path(__file__).resolve().parents[3]
ISSUER, CLIENT = "https://id.example.com", "kubegate-cli"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEGATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(("argv", "words"), [
    (["--issuer", "http://id.example.com"], "--issuer 'http://id.example.com': must be an "
     "https URL (http only for 127.0.0.1, ::1 or localhost)"),
    (["--issuer", "http://[::ffff:8.8.8.8]"], "must be an https URL"),
    (["--issuer", ISSUER, "--timeout", "5"], "--timeout: expected a duration"),
    (["--issuer", ISSUER, "--scopes", "email"], "--scopes: must include openid"),
    (["--issuer", ISSUER, "--client-secret-file", "/nonexistent"], "--client-secret-file"),
    (["--issuer", ISSUER, "--issuer-ca-file", "/nonexistent"], "--issuer-ca-file"),
    (["--issuer", ISSUER, "--role", "web"], "--role: only with --output or --exec-kubeconfig"),
    (["--issuer", ISSUER, "--output", "exec-credential"], "--server: required"),
    (["--issuer", ISSUER, "--output", "json", "--server", "10.0.0.1:443", "--plaintext"],
     "--plaintext is only allowed for a loopback server"),
])
def test_usage_problems_are_one_line_and_exit_2(argv: list[str], words: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["login", "--client-id", CLIENT, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kubegate login: ") and captured.err.count("\n") == 1
    assert words in captured.err


def test_a_cache_file_others_may_read_is_exit_2_with_the_fix(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = LoginCache(cache_dir / "login").store(cached_login())
    path.chmod(0o644)
    assert main(["login", "--issuer", ISSUER, "--client-id", CLIENT]) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {path}" in err and "id.token" not in err


def test_a_fresh_cached_login_is_reported_on_stdout_without_a_request(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    login = cached_login()
    LoginCache(cache_dir / "login").store(login)
    assert main(["login", "--issuer", ISSUER, "--client-id", CLIENT, "--no-browser"]) == 0
    captured = capsys.readouterr()
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(login.expiry))
    assert captured.out == (f"signed in to {ISSUER} as alice@example.com; ID token valid "
                            f"until {until}\n")
    assert captured.err == ""


def cached_login(expires_in: int = 900) -> CachedLogin:
    return CachedLogin(issuer=ISSUER, client_id=CLIENT, id_token="id.token.cached",
                       refresh_token="refresh", expiry=int(time.time()) + expires_in,
                       who="alice@example.com")


def login_settings(folder: Path, **changes: object) -> LoginSettings:
    return LoginSettings(**{"issuer": ISSUER, "client_id": CLIENT, "cache_folder": folder,
                            **changes})  # type: ignore[arg-type]


def test_the_login_source_fingerprints_a_fresh_cached_id_token_only(cache_dir: Path) -> None:
    source = token_source(TokenSourceConfig(kind="login",
                                            login=login_settings(cache_dir / "login")))
    assert source.fingerprint() is None  # nothing cached: never signs in to find out
    LoginCache(cache_dir / "login").store(cached_login())
    assert source.fingerprint() == fingerprint_of("id.token.cached")
    assert source.read() == "id.token.cached"
    LoginCache(cache_dir / "login").store(cached_login(expires_in=30))
    assert source.fingerprint() is None


def test_the_exec_plugin_command_repeats_the_sign_in_and_the_exchange(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    args = command_args(["--issuer", ISSUER, "--client-id", CLIENT, "--issuer-ca-file",
                         str(ca), "--scopes", "openid email", "--listen-port", "8000",
                         "--server", "exchanger.example.com:443", "--ca-file", str(ca),
                         "--role", "web", "--lifetime", "15m", "--audience", "a",
                         "--exec-kubeconfig", str(tmp_path / "kubeconfig")])
    login = command.read_login_settings(args, os.environ)
    settings = command._exchange_settings(args, login, os.environ)
    plugin = command.plugin_command(login, settings)
    assert plugin[1:] == [
        "login", "--issuer", ISSUER, "--client-id", CLIENT, "--scopes", "openid email",
        "--issuer-ca-file", str(ca), "--listen-port", "8000",
        "--server", "exchanger.example.com:443", "--ca-file", str(ca), "--role", "web",
        "--lifetime", "900s", "--audience", "a", "--output", "exec-credential"]
    cluster = ClusterInfo(name="c", server="https://k", certificate_authority_data=b"",
                          namespace="n")
    user = exec_kubeconfig(cluster, plugin, interactive_mode="IfAvailable")["users"][0]
    assert user["user"]["exec"]["interactiveMode"] == "IfAvailable"
    assert exec_kubeconfig(cluster, plugin)["users"][0]["user"]["exec"][
        "interactiveMode"] == "Never"
    with pytest.raises(ValueError, match="interactive_mode"):
        exec_kubeconfig(cluster, plugin, interactive_mode="Sometimes")


def command_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


HIT = """
import json, os, sys, time
from pathlib import Path
from kubegate.cli import main
from kubegate.client.cache import CacheEntry, CredentialCache
from kubegate.client.cached_exchange import ca_digest, cache_key, subject_identity
from kubegate.commands import login as command
from kubegate.credential import ClusterInfo, Credential
from kubegate.login.store import CachedLogin, LoginCache, login_folder

argv = ["--issuer", "https://id.example.com", "--client-id", "kubegate-cli",
        "--server", "127.0.0.1:1", "--plaintext", "--role", "web",
        "--output", "exec-credential"]
now = int(time.time())
LoginCache(login_folder(os.environ)).store(CachedLogin(
    issuer="https://id.example.com", client_id="kubegate-cli", id_token="id.token.cached",
    refresh_token="r", expiry=now + 900, who="alice@example.com"))
args = command_args = None
import argparse
parser = argparse.ArgumentParser()
command.add_arguments(parser)
args = parser.parse_args(argv)
settings = command._exchange_settings(args, command.read_login_settings(args, os.environ),
                                      os.environ)
identity, _ = subject_identity(settings.token_source)
key = cache_key(settings, identity=identity, ca=ca_digest(None))
cache = CredentialCache(Path(os.environ["KUBEGATE_CACHE_DIR"]))
cache.prepare()
cache.store(CacheEntry(key=key, obtained_at=now, credential=Credential(
    token="cached.credential.token", token_type="jwt", expires_at=now + 900, token_id="t",
    session_id="s", mapping="web", cluster=ClusterInfo(
        name="c", server="https://s", certificate_authority_data=b"", namespace="n"))),
    now=now)
status = main(["login", *argv])
heavy = [m for m in ("grpc", "yaml", "tenacity", "urllib.request", "http.client", "ssl",
                     "jwt", "cryptography", "kubernetes", "exchanger", "webbrowser",
                     "kubegate.login.session", "kubegate.client.rpc") if m in sys.modules]
print(json.dumps([status, heavy]))
"""


def test_the_exec_plugin_hit_makes_no_request_and_imports_nothing_heavy(
        tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KUBEGATE_CACHE_DIR": str(tmp_path / "c")}
    result = subprocess.run([sys.executable, "-c", HIT], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    *printed, last = result.stdout.splitlines()
    assert json.loads(last) == [0, []], result.stderr
    document = json.loads("\n".join(printed))
    assert document["kind"] == "ExecCredential"
    assert document["status"]["token"] == "cached.credential.token"
    assert result.stderr == ""
