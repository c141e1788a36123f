"""`kubegate sidecar` as a real process against a real exchanger and the real apiserver: the
kubeconfig it serves makes the real kubectl run `kubegate credential` and reach the apiserver
with exactly the mapped permissions; one-shot mode writes a working kubeconfig; failures at
start are one clear line and a not-ready state; a denial is not retried in a loop; the socket
wants kubegate's header and keeps other users out."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanger.localtls import LocalCA
from tests.support.controlplane import ControlPlane, free_port
from tests.support.fixtures_exchanger import StartExchanger
from tests.support.kube import Cluster, Kubectl
from tests.support.sidecar import KUBEGATE, Pipeline, Sidecars, setup_pipeline, write_pod_token
from tests.support.wait import poll

NOBODY = 65534


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Sidecars]:
    with Sidecars(tmp_path) as started:
        yield started


@pytest.fixture
def pipeline(cluster: Cluster, control_plane: ControlPlane,
             start_test_exchanger: StartExchanger, tmp_path: Path) -> Pipeline:
    return setup_pipeline(cluster, control_plane, start_test_exchanger, tmp_path)


def lines_matching(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(pattern, line)]


def test_kubectl_with_the_served_kubeconfig_gets_exactly_the_mapped_permissions(
    pipeline: Pipeline, sidecars: Sidecars, control_plane: ControlPlane, tmp_path: Path,
) -> None:
    socket_path = tmp_path / "run" / "kubegate.sock"
    sidecar = sidecars.start(pipeline.sidecar_args(socket_path), socket_path)
    sidecar.wait_ready()
    token = sidecar.json("/v1/credential")["token"]

    status, served = sidecar.get("/v1/kubeconfig")
    assert status == 200
    assert token.encode() not in served
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(served)
    kubectl = Kubectl(binary=control_plane.kubectl_path, kubeconfig=kubeconfig)

    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr
    assert kubectl.can_i("list", "pods", pipeline.web)
    assert not kubectl.can_i("get", "secrets", pipeline.web)
    assert not kubectl.can_i("list", "pods", pipeline.ci)
    assert kubectl.run("get", "secrets", "-n", pipeline.web).returncode != 0

    assert sidecar.get_without_header("/v1/credential")[0] == 403
    assert sidecar.get_without_header("/v1/exec-credential")[0] == 403
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600

    assert sidecar.stop() == 0  # SIGTERM: a clean stop
    assert not socket_path.exists()
    assert "Traceback" not in sidecar.log()
    assert token not in sidecar.log()


def test_with_proxy_listen_kubectl_reaches_the_apiserver_without_any_credential(
    pipeline: Pipeline, sidecars: Sidecars, control_plane: ControlPlane, tmp_path: Path,
) -> None:
    socket_path, port = tmp_path / "kubegate.sock", free_port()
    sidecar = sidecars.start(
        pipeline.sidecar_args(socket_path, "--proxy-listen", f"127.0.0.1:{port}"), socket_path)
    sidecar.wait_ready()
    kubeconfig = tmp_path / "proxy-kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "job", "user": {}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "job"}}],
        "current-context": "proxy"}))
    kubectl = Kubectl(binary=control_plane.kubectl_path, kubeconfig=kubeconfig)

    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr
    assert kubectl.run("get", "secrets", "-n", pipeline.web).returncode != 0

    metrics = sidecar.get("/metrics")[1].decode()
    assert re.search(r'kubegate_proxy_requests_total\{code="200"\} [1-9]', metrics), metrics
    session = sidecar.json("/v1/credential")["session_id"]
    records = [json.loads(line.split("kubegate.session: ", 1)[1])
               for line in lines_matching(sidecar.log(), "kubegate.session: ")]
    assert any(r["session_id"] == session and r["status"] == 200 for r in records), records
    assert sidecar.stop() == 0
    assert "Traceback" not in sidecar.log()


def test_one_shot_mode_writes_a_working_private_kubeconfig(
    pipeline: Pipeline, control_plane: ControlPlane, tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "out" / "kubeconfig"
    result = subprocess.run(
        [*KUBEGATE, "sidecar", "--once", "--kubeconfig", str(kubeconfig),
         "--server", pipeline.exchanger.target,
         "--ca-file", str(pipeline.exchanger.running.ca_file),
         "--token-file", str(pipeline.token_file)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"wrote {kubeconfig}" in result.stdout
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    kubectl = Kubectl(binary=control_plane.kubectl_path, kubeconfig=kubeconfig)
    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr
    assert kubectl.run("get", "secrets", "-n", pipeline.web).returncode != 0


def test_one_shot_mode_fails_with_one_line_when_denied(
    pipeline: Pipeline, cluster: Cluster, tmp_path: Path,
) -> None:
    cluster.create_service_account(pipeline.ci, "intruder")
    token_file = tmp_path / "intruder-token"
    write_pod_token(cluster, pipeline.ci, "intruder", "intruder-1", token_file)
    kubeconfig = tmp_path / "kubeconfig"
    result = subprocess.run(
        [*KUBEGATE, "sidecar", "--once", "--kubeconfig", str(kubeconfig),
         "--server", pipeline.exchanger.target,
         "--ca-file", str(pipeline.exchanger.running.ca_file), "--token-file", str(token_file)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "denied: PERMISSION_DENIED" in result.stderr
    assert not kubeconfig.exists()


def test_a_missing_token_file_is_one_clear_line_and_not_ready_until_it_appears(
    pipeline: Pipeline, sidecars: Sidecars, tmp_path: Path,
) -> None:
    socket_path = tmp_path / "kubegate.sock"
    late_token = tmp_path / "projected" / "token"
    args = pipeline.sidecar_args(socket_path, "--backoff-max", "2s")
    args[args.index("--token-file") + 1] = str(late_token)
    sidecar = sidecars.start(args, socket_path)
    sidecar.wait_answering()
    time.sleep(4)  # several retries

    status, ready = sidecar.readyz()
    assert status == 503
    assert ready["status"] == "no-subject-token"
    assert f"{late_token}: no such file" in ready["reason"]
    assert len(lines_matching(sidecar.log(), "no such file")) == 1
    assert "Traceback" not in sidecar.log()

    late_token.parent.mkdir()
    shutil.copy(pipeline.token_file, late_token)
    sidecar.wait_ready(timeout=15)


def test_an_exchanger_unreachable_at_start_is_one_clear_line_and_not_ready(
    sidecars: Sidecars, tmp_path: Path,
) -> None:
    ca_file = LocalCA("unused").write(tmp_path / "ca.crt")
    token_file = tmp_path / "token"
    token_file.write_text("not-even-a-jwt")
    socket_path = tmp_path / "kubegate.sock"
    sidecar = sidecars.start(
        ["--server", f"127.0.0.1:{free_port()}", "--ca-file", str(ca_file),
         "--token-file", str(token_file), "--socket", str(socket_path), "--backoff-max", "1s"],
        socket_path)
    sidecar.wait_answering()
    time.sleep(4)  # several retries at most a second apart

    status, ready = sidecar.readyz()
    assert status == 503
    assert ready["status"] == "unavailable" and "UNAVAILABLE" in ready["reason"]
    status, body = sidecar.get("/v1/exec-credential")
    assert status == 503 and "UNAVAILABLE" in json.loads(body)["error"]
    refreshes = sidecar.get("/metrics")[1].decode()
    failures = re.search(r'refreshes_total\{result="transient"\} (\d+)', refreshes)
    assert failures is not None and int(failures.group(1)) >= 3
    assert len(lines_matching(sidecar.log(), "UNAVAILABLE")) == 1
    assert "Traceback" not in sidecar.log()
    assert sidecar.running


def test_a_bad_configuration_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*KUBEGATE, "sidecar", "--server", "no-port", "--token-file", str(tmp_path / "t"),
         "--refresh-fraction", "1.5", "--socket-group", "no-such-group-here",
         "--socket", str(tmp_path / "s.sock")],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("kubegate sidecar: bad configuration: ")
    for problem in ("--server", "--refresh-fraction", "no-such-group-here"):
        assert problem in lines[0]
    assert not (tmp_path / "s.sock").exists()


def test_a_denial_is_not_retried_in_a_loop(
    pipeline: Pipeline, cluster: Cluster, sidecars: Sidecars, tmp_path: Path,
) -> None:
    cluster.create_service_account(pipeline.ci, "intruder")
    token_file = tmp_path / "intruder-token"
    write_pod_token(cluster, pipeline.ci, "intruder", "intruder-1", token_file)
    socket_path = tmp_path / "kubegate.sock"
    args = pipeline.sidecar_args(socket_path, "--backoff-max", "1s")
    args[args.index("--token-file") + 1] = str(token_file)
    sidecar = sidecars.start(args, socket_path)
    sidecar.wait_answering()
    assert poll(lambda: sidecar.readyz()[1]["status"] == "denied", 20, 0.2), sidecar.log()
    time.sleep(5)

    denials = [d for d in pipeline.exchanger.decisions() if d["decision"] == "deny"]
    assert len(denials) == 1
    assert denials[0]["status"] == "PERMISSION_DENIED"
    status, ready = sidecar.readyz()
    assert status == 503 and "PERMISSION_DENIED" in ready["reason"]
    denied_lines = lines_matching(sidecar.log(), "exchange denied")
    assert len(denied_lines) == 1
    assert "not retrying" in denied_lines[0]
    assert "Traceback" not in sidecar.log()


def _python_for_others() -> str:
    """An interpreter another user may run (this one may live under a private /root)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        path = Path(candidate)
        if path.exists() and all(p.stat().st_mode & 0o001 for p in [path, *path.parents]):
            return candidate
    pytest.fail("no Python interpreter that uid 65534 may run")


CONNECT = """
import errno, os, socket, sys
os.stat(sys.argv[1])  # the folder is open to this user; only the socket's mode is in the way
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    client.connect(sys.argv[1])
except OSError as error:
    print(errno.errorcode[error.errno])
else:
    print("connected")
"""


def test_another_user_cannot_open_the_socket(pipeline: Pipeline, sidecars: Sidecars) -> None:
    folder = Path(tempfile.mkdtemp(prefix="kubegate-sock-", dir="/tmp"))
    try:
        folder.chmod(0o755)  # anyone may look in; the socket itself is 0600
        socket_path = folder / "kubegate.sock"
        sidecar = sidecars.start(pipeline.sidecar_args(socket_path), socket_path)
        sidecar.wait_answering()
        python = _python_for_others()

        def connect(**user: int) -> str:
            result = subprocess.run([python, "-I", "-S", "-c", CONNECT, str(socket_path)],
                                    capture_output=True, text=True, timeout=30, check=False,
                                    **user)
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()

        assert connect() == "connected"  # the client works, as the sidecar's own user
        assert connect(user=NOBODY, group=NOBODY, extra_groups=[]) == "EACCES"
    finally:
        sidecars.__exit__(None, None, None)
        shutil.rmtree(folder, ignore_errors=True)
