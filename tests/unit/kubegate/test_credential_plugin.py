"""`kubegate credential`, the kubectl exec plugin: light imports, prints the sidecar's
ExecCredential, and fails with one clear line when the sidecar is not there."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubegate.commands import credential as plugin
from sidecar.api import ApiServer, SocketApi
from tests.unit.sidecar.test_socket_api import NOW, TOKEN, FakeCache, credential

HEAVY = ("grpc", "kubernetes", "yaml", "prometheus_client", "google.protobuf", "jwt",
         "cryptography", "kubegate.client.rpc", "exchanger.config", "sidecar.api", "http.client")


@pytest.fixture
def sidecar_socket(tmp_path: Path) -> Iterator[tuple[Path, FakeCache]]:
    path = tmp_path / "kubegate.sock"
    cache = FakeCache(held=credential())
    server = ApiServer(SocketApi(cache, socket_path=path, plugin_command=["kubegate"],
                                 clock=lambda: NOW), path)
    server.start()
    yield path, cache
    server.stop()


def run_plugin(socket_path: Path | None, *, ready: bool = False) -> int:
    return plugin.run(argparse.Namespace(socket=str(socket_path) if socket_path else None,
                                         ready=ready))


def test_the_plugin_imports_neither_grpc_nor_the_kubernetes_client(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from kubegate.cli import main\n"
        f"status = main(['credential', '--socket', {str(tmp_path / 'none.sock')!r}])\n"
        f"print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules], "
        "'kubegate.commands.credential' in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=30)
    status, heavy, loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded and status == 1  # it did run the plugin (no sidecar there)
    assert heavy == []


def test_the_plugin_prints_the_exec_credential(
    sidecar_socket: tuple[Path, FakeCache], capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = sidecar_socket
    assert run_plugin(path) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "ExecCredential"
    assert document["status"]["token"] == TOKEN


def test_the_socket_comes_from_the_environment_without_a_flag(
    sidecar_socket: tuple[Path, FakeCache], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _ = sidecar_socket
    monkeypatch.setenv("KUBEGATE_SOCKET", str(path))
    assert run_plugin(None) == 0
    assert json.loads(capsys.readouterr().out)["status"]["token"] == TOKEN


def test_a_missing_socket_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_plugin(tmp_path / "absent.sock") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("kubegate credential: no socket at ")
    assert "is the kubegate sidecar running" in lines[0]


def test_a_sidecar_without_a_credential_says_why(
    sidecar_socket: tuple[Path, FakeCache], capsys: pytest.CaptureFixture[str],
) -> None:
    path, cache = sidecar_socket
    cache.held, cache.error = None, "exchange denied: PERMISSION_DENIED NO_MATCHING_MAPPING"
    assert run_plugin(path) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "NO_MATCHING_MAPPING" in captured.err and "HTTP 503" in captured.err
    assert len(captured.err.splitlines()) == 1


def test_ready_check_exits_0_with_a_credential_and_1_without_printing_it(
    sidecar_socket: tuple[Path, FakeCache], capsys: pytest.CaptureFixture[str],
) -> None:
    path, cache = sidecar_socket
    assert run_plugin(path, ready=True) == 0
    assert capsys.readouterr().out == ""
    cache.held, cache.error = None, "exchanger unreachable"
    assert run_plugin(path, ready=True) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not ready" in captured.err and TOKEN not in captured.err


def test_a_socket_nobody_listens_on_is_reported_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    path = tmp_path / "dead.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()
    assert run_plugin(path) == 1
    assert "nothing listens on" in capsys.readouterr().err


def test_a_reply_is_cut_at_its_content_length() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: x\r\nContent-Length: 2\r\n\r\n{}trailing"
    assert plugin.parse_reply(reply) == (200, b"{}")


@pytest.mark.parametrize("reply", [
    b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
    b"HTTP/1.1 OK\r\n\r\n",
])
def test_a_reply_that_is_not_whole_http_is_refused(reply: bytes) -> None:
    with pytest.raises(plugin.ReplyError):
        plugin.parse_reply(reply)
