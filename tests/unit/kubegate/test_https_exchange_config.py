"""Choosing the HTTPS route: `--server https://HOST[:PORT]` (http:// on loopback) for the
sidecar, `kubegate exchange` and `kubegate login`, refused by gRPC-only commands; the URL's
rules; the sidecar's port for it; and the proof that a sidecar on this route never imports
grpc or protobuf."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from exchanger.verify.reasons import TOKEN_REASONS
from kubegate.client.exchanger_url import parse_exchanger_url
from kubegate.client.settings import read_exchange_settings
from kubegate.client.token_answers import SUBJECT_TOKEN_REASONS, refusal
from kubegate.commands.sidecar import add_arguments
from kubegate.configread import FlagsOrEnv
from kubegate.credential import ClusterInfo, Credential
from kubegate.errors import Code, ConfigError, ExchangeError
from sidecar.config import load_config
from sidecar.exchange_port import GrpcExchangePort, HttpsExchangePort, exchange_port

HEAVY = ("grpc", "google.protobuf", "grpc_status", "tenacity", "exchanger",
         "kubegate.client.rpc")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(("text", "shown", "plaintext"), [
    ("https://kubegate.example.com", "https://kubegate.example.com:443", False),
    ("https://kubegate.example.com:8445/", "https://kubegate.example.com:8445", False),
    ("https://[::1]:8445", "https://[::1]:8445", False),
    ("http://127.0.0.1:8445", "http://127.0.0.1:8445", True),
    ("http://localhost:8445", "http://localhost:8445", True),
])
def test_an_exchanger_url_is_an_origin(text: str, shown: str, plaintext: bool) -> None:
    url = parse_exchanger_url(text)
    assert (str(url), url.plaintext) == (shown, plaintext)


@pytest.mark.parametrize(("text", "why"), [
    ("grpc://h:1", "scheme"), ("ftp://h:1", "scheme"),
    ("https://user:s3cret@h:1", "no user"),
    ("https://h:1/oauth2/token", "no path"), ("https://h:1?x=1", "no path"),
    ("https://h:1#f", "no path"), ("https://h:99999", "not a URL"),
    ("https://h:0", "port 0"), ("https://a b:1", "host"), ("https://", "host"),
    ("http://10.0.0.1:8445", "loopback"), ("http://kubegate.example.com:80", "loopback"),
])
def test_a_bad_exchanger_url_is_refused_without_echoing_it(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        parse_exchanger_url(text)
    assert "s3cret" not in str(caught.value)


def test_the_sidecar_takes_an_https_server_and_keeps_grpc_the_default(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("x")
    config = load_config(parse("--server", "https://127.0.0.1:8445/", "--ca-file",
                               str(ca_file), "--token-file", "/t"), {})
    assert config.exchange.transport == "https"
    assert config.exchange.target == "https://127.0.0.1:8445"
    assert not config.exchange.plaintext and config.exchange.ca_file == ca_file
    assert isinstance(exchange_port(config.exchange), HttpsExchangePort)
    config = load_config(parse("--token-file", "/t"),
                         {"KUBEGATE_SERVER": "http://127.0.0.1:8445"})
    assert (config.exchange.transport, config.exchange.plaintext) == ("https", True)
    config = load_config(parse("--server", "127.0.0.1:8443", "--token-file", "/t"), {})
    assert config.exchange.transport == "grpc"
    assert isinstance(exchange_port(config.exchange), GrpcExchangePort)


@pytest.mark.parametrize(("argv", "problem"), [
    (("--server", "https://127.0.0.1:8445", "--plaintext"), "contradicts"),
    (("--server", "http://127.0.0.1:8445", "--ca-file", "/etc/hostname"), "mutually exclusive"),
    (("--server", "https://127.0.0.1:8445", "--ca-file", "/no/such/ca"), "no such file"),
    (("--server", "https://10.0.0.1:8445/token"), "no path"),
])
def test_bad_https_settings_are_configuration_problems(argv: tuple[str, ...],
                                                       problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(parse(*argv, "--token-file", "/t"), {})


def test_a_grpc_only_command_refuses_a_url() -> None:
    args = argparse.Namespace(server="https://127.0.0.1:8445", plaintext=None, ca_file=None,
                              role=None, lifetime=None, audience=None, token_file="/t",
                              token_env=None, gitlab_id_token=None, github_actions=None)
    values = FlagsOrEnv(args, {}, env=False)
    read_exchange_settings(values)  # https=False: `kubegate access`, `kubegate sessions`
    assert any("speaks gRPC only" in problem for problem in values.problems)


def test_the_client_knows_every_subject_token_reason_of_verification() -> None:
    assert frozenset(TOKEN_REASONS) == SUBJECT_TOKEN_REASONS


def test_an_ambiguous_status_is_told_apart_by_the_reason() -> None:
    def code(status: int, error: str, reason: str) -> Code:
        body = json.dumps({"error": error, "kubegate_reason": reason,
                           "error_description": "d"}).encode()
        return refusal(status, body).code

    assert code(400, "invalid_request", "TOKEN_EXPIRED") is Code.UNAUTHENTICATED
    assert code(400, "invalid_request", "MALFORMED_FORM") is Code.INVALID_ARGUMENT
    assert code(403, "access_denied", "NO_MATCHING_MAPPING") is Code.PERMISSION_DENIED
    assert code(403, "access_denied", "UNKNOWN_CLUSTER") is Code.FAILED_PRECONDITION
    assert code(408, "invalid_request", "REQUEST_TIMEOUT") is Code.DEADLINE_EXCEEDED
    assert code(413, "invalid_request", "REQUEST_TOO_LARGE") is Code.RESOURCE_EXHAUSTED


class FlakyClient:
    def __init__(self, error: ExchangeError | None) -> None:
        self.error, self.closed = error, False

    def exchange(self, subject_token: str, **_: object) -> Credential:
        if self.error is not None:
            raise self.error
        return Credential(token="t", token_type="jwt", expires_at=1, token_id="j",  # noqa: S106
                          session_id="s", mapping="m",
                          cluster=ClusterInfo(name="c", server="s", namespace="n",
                                              certificate_authority_data=b""))

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("error", "dropped"), [
    (ExchangeError(Code.UNAVAILABLE, "", "down"), True),
    (ExchangeError(Code.PERMISSION_DENIED, "NO_MATCHING_MAPPING", "no"), False),
])
def test_the_port_starts_afresh_after_a_transient_failure_only(
    error: ExchangeError, dropped: bool,
) -> None:
    config = load_config(parse("--server", "https://127.0.0.1:8445", "--token-file", "/t"), {})
    made: list[FlakyClient] = []

    class Port(HttpsExchangePort):
        def _make(self) -> FlakyClient:  # type: ignore[override]
            made.append(FlakyClient(error))
            return made[-1]

    port = Port(config.exchange)
    for _ in range(2):
        with pytest.raises(ExchangeError):
            port.exchange("token", timeout=1)
    assert len(made) == (2 if dropped else 1)
    assert made[0].closed is dropped


SIDECAR_ON_HTTPS = """
import json, sys
from kubegate.cli import build_parser
from sidecar import main
from sidecar.config import load_config
args = build_parser("sidecar").parse_args(["sidecar", "--server", sys.argv[1],
                                           "--token-file", sys.argv[2]])
config = load_config(args, {})
port = main.exchange_port(config.exchange)
try:
    port.exchange("not-a-token", timeout=0.5)  # nothing listens: UNAVAILABLE
except Exception as error:
    failed = type(error).__name__ + " " + str(error.code.name)
print(json.dumps([failed, [m for m in sys.argv[3].split(",") if m in sys.modules]]))
"""


def test_a_sidecar_exchanging_over_https_never_imports_grpc(tmp_path: Path) -> None:
    """A fresh interpreter: the sidecar's command, configuration, main module and port, and
    one exchange attempt over HTTPS, with nothing of grpc, protobuf or the server loaded."""
    from tests.support.controlplane import free_port

    result = subprocess.run(
        [sys.executable, "-c", SIDECAR_ON_HTTPS, f"https://127.0.0.1:{free_port()}",
         str(tmp_path / "token"), ",".join(HEAVY)],
        capture_output=True, text=True, check=True, timeout=60)
    failed, heavy = json.loads(result.stdout.splitlines()[-1])
    assert failed == "ExchangeError UNAVAILABLE"  # the HTTPS client did run
    assert heavy == []
