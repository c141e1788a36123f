"""The stand-in kubelet behind the REAL kube-apiserver, reached by the REAL kubectl, no gateway:
`kubectl exec -i` round-trips bytes and reports the exit code, `kubectl exec -it` under a real
pty runs a shell that sees a terminal of the client's size, `kubectl logs -f` streams followed
lines, `kubectl port-forward` reaches a local echo server and `kubectl attach` joins the
container's shell. Each over kubectl's default (WebSocket) and over SPDY
(KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false, KUBECTL_PORT_FORWARD_WEBSOCKETS=false).

These machines have no kubelet, so tests/support/kubelet.py's stub (the kubelet's own streaming
library in front of local processes) stands in for it; everything between kubectl and the stub
is real. This file proves the stand-in, so the gateway tests can rely on it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane, free_port
from tests.support.kube import Cluster
from tests.support.kubelet import (
    StubNode,
    echo_server,
    log_line,
    require_stub_kubelet,
    run_under_pty,
    stub_node,
)

TRANSPORTS = {
    "websocket": {},
    "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
             "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"},
}
POD = "shell"


@pytest.fixture(scope="module")
def node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubNode]:
    with stub_node(cluster, tmp_path_factory.mktemp("stub-kubelet")) as started:
        yield started


@pytest.fixture(scope="module")
def pod_namespace(cluster: Cluster, node: StubNode) -> str:
    namespace = cluster.create_namespace("kubelet")
    node.create_pod(namespace, POD)
    return namespace


@pytest.fixture(params=sorted(TRANSPORTS))
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    return {**os.environ, **TRANSPORTS[request.param]}


def kubectl(plane: ControlPlane, namespace: str, *args: str) -> list[str]:
    return [str(plane.kubectl_path), f"--kubeconfig={plane.admin_kubeconfig_path}",
            "-n", namespace, *args]


def test_exec_stdin_round_trips_bytes_and_exit_code(
        control_plane: ControlPlane, pod_namespace: str, env: dict[str, str]) -> None:
    payload = bytes(range(256)) * 64 + b"end\n"
    done = subprocess.run(kubectl(control_plane, pod_namespace, "exec", "-i", POD, "--", "cat"),
                          input=payload, capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == payload

    failed = subprocess.run(
        kubectl(control_plane, pod_namespace, "exec", POD, "--",
                "sh", "-c", "echo oops >&2; exit 3"),
        capture_output=True, env=env, timeout=60, check=False)
    assert failed.returncode == 3
    assert b"oops" in failed.stderr


def test_exec_tty_runs_a_shell_on_a_terminal_of_the_clients_size(
        control_plane: ControlPlane, pod_namespace: str, env: dict[str, str]) -> None:
    code, output = run_under_pty(
        kubectl(control_plane, pod_namespace, "exec", "-it", POD, "--", "/bin/sh"),
        env, b"tty; stty size; echo hel''lo; exit\r", rows=33, cols=101)
    text = output.decode(errors="replace")
    assert code == 0, text
    assert "/dev/pts/" in text, text
    assert "33 101" in text, text
    assert "\r\nhello\r\n" in text, text  # the pty's line discipline, not a pipe's bare "\n"


def test_logs_follow_streams_new_lines(
        control_plane: ControlPlane, pod_namespace: str) -> None:
    plain = subprocess.run(kubectl(control_plane, pod_namespace, "logs", POD),
                           capture_output=True, text=True, timeout=60, check=False)
    assert plain.stdout.splitlines() == [log_line(n, pod_namespace, POD) for n in (1, 2, 3)]

    with subprocess.Popen(kubectl(control_plane, pod_namespace, "logs", "-f", POD),  # noqa: S603
                          stdout=subprocess.PIPE, text=True) as follow:
        try:
            assert follow.stdout is not None
            lines = [follow.stdout.readline().rstrip("\n") for _ in range(6)]
        finally:
            follow.kill()
    assert lines == [log_line(n, pod_namespace, POD) for n in range(1, 7)]


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with echo_server() as port:
        yield port


def test_port_forward_reaches_a_local_echo_server(
        control_plane: ControlPlane, pod_namespace: str, env: dict[str, str], echo_port: int,
        tmp_path: Path) -> None:
    local = free_port()
    log = (tmp_path / "port-forward.log").open("w+")
    forward = subprocess.Popen(  # noqa: S603
        kubectl(control_plane, pod_namespace, "port-forward", f"pod/{POD}", f"{local}:{echo_port}"),
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while "Forwarding from" not in Path(log.name).read_text():
            assert forward.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, "port-forward never listened"
            time.sleep(0.1)
        for round_trip in range(2):  # two connections through one port-forward session
            payload = f"ping {round_trip} ".encode() * 1000
            with socket.create_connection(("127.0.0.1", local), timeout=30) as conn:
                conn.sendall(payload)
                received = b""
                while len(received) < len(payload):
                    chunk = conn.recv(65536)
                    assert chunk, "the forwarded connection closed early"
                    received += chunk
            assert received == payload
    finally:
        forward.terminate()
        forward.wait(timeout=10)
        log.close()


def test_attach_joins_the_containers_shell(
        control_plane: ControlPlane, pod_namespace: str, env: dict[str, str]) -> None:
    code, output = run_under_pty(
        kubectl(control_plane, pod_namespace, "attach", "-it", POD), env,
        b"echo attached-$((40 + 2))\r", rows=24, cols=80, prompt=b"try pressing enter",
        stop_at=b"attached-42", timeout=60)
    assert b"attached-42" in output, output  # attach lasts as long as its client: killed here
    del code


def test_the_stand_in_refuses_to_listen_beyond_loopback() -> None:
    binary = require_stub_kubelet()
    for address in ("0.0.0.0:0", "[::]:0", "192.0.2.1:0"):
        refused = subprocess.run([str(binary), "-listen", address], capture_output=True,  # noqa: S603
                                 text=True, timeout=30, check=False)
        assert refused.returncode == 1, address
        assert "a test stand-in listens on a loopback IP only" in refused.stderr
