"""`kubegate sidecar --server https://...`: the sidecar exchanging over RFC 8693 (the
exchanger's `httpListen`) as a real process, against a real exchanger and the real
apiserver. The credential it serves works in the real kubectl, it refreshes before expiry,
it rides out an exchanger restart, a refusal reads exactly as over gRPC, and the process
never maps grpc or protobuf; its idle memory is within the issue's 30 MiB.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanger.server import start_exchanger
from tests.support.controlplane import ControlPlane, free_port
from tests.support.fixtures_exchanger import StartExchanger
from tests.support.kube import Cluster, Kubectl
from tests.support.sidecar import (
    KUBEGATE,
    Pipeline,
    SidecarProcess,
    Sidecars,
    mapped_files,
    rss_mib,
    setup_pipeline,
    write_pod_token,
)
from tests.support.wait import poll

MAX_IDLE_RSS_MIB = 30.0  # the target for an idle sidecar
IDLE_SECONDS = 5
GRPC_LIBRARIES = ("cygrpc", "_upb", "protobuf")  # grpc's and protobuf's extension modules


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Sidecars]:
    with Sidecars(tmp_path) as started:
        yield started


@pytest.fixture
def pipeline(cluster: Cluster, control_plane: ControlPlane,
             start_test_exchanger: StartExchanger, tmp_path: Path) -> Pipeline:
    """Fixed ports for gRPC and HTTPS, so the exchanger can be restarted on them."""
    return setup_pipeline(cluster, control_plane, start_test_exchanger, tmp_path,
                          listen=f"127.0.0.1:{free_port()}",
                          httpListen=f"127.0.0.1:{free_port()}")


def https_allowed(pipeline: Pipeline) -> list[dict[str, object]]:
    return [d for d in pipeline.exchanger.decisions()
            if d["decision"] == "allow" and str(d.get("peer", "")).startswith("https:")]


def kubectl_for(sidecar: SidecarProcess, control_plane: ControlPlane,
                tmp_path: Path) -> Kubectl:
    kubeconfig = tmp_path / "kubeconfig"
    status, served = sidecar.get("/v1/kubeconfig")
    assert status == 200, served
    kubeconfig.write_bytes(served)
    return Kubectl(binary=control_plane.kubectl_path, kubeconfig=kubeconfig)


def test_over_https_kubectl_gets_the_mapped_permissions_and_grpc_is_never_loaded(
    pipeline: Pipeline, sidecars: Sidecars, control_plane: ControlPlane, tmp_path: Path,
) -> None:
    socket_path, proxy_port = tmp_path / "run" / "kubegate.sock", free_port()
    sidecar = sidecars.start(pipeline.https_sidecar_args(
        socket_path, "--proxy-listen", f"127.0.0.1:{proxy_port}"), socket_path)
    sidecar.wait_ready()
    credential = sidecar.json("/v1/credential")
    assert [d["token_id"] for d in https_allowed(pipeline)] == [credential["token_id"]]

    kubectl = kubectl_for(sidecar, control_plane, tmp_path)
    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr
    assert not kubectl.can_i("get", "secrets", pipeline.web)

    libraries = mapped_files(sidecar.process.popen.pid)
    assert any("libssl" in path or "_ssl" in path for path in libraries)  # maps are read
    assert [p for p in libraries if any(name in p for name in GRPC_LIBRARIES)] == []
    assert "RFC 8693 over HTTP" in sidecar.log()
    assert sidecar.stop() == 0
    assert credential["token"] not in sidecar.log()
    assert "Traceback" not in sidecar.log()


def test_the_https_sidecar_refreshes_before_the_credential_expires(
    pipeline: Pipeline, sidecars: Sidecars, tmp_path: Path,
) -> None:
    socket_path = tmp_path / "kubegate.sock"
    # 10-minute credentials refreshed at 1 % of their life: a new one every ~6 s
    sidecar = sidecars.start(pipeline.https_sidecar_args(
        socket_path, "--lifetime", "10m", "--refresh-fraction", "0.01",
        "--refresh-jitter", "0"), socket_path)
    sidecar.wait_ready()
    first = sidecar.json("/v1/credential")
    assert poll(lambda: sidecar.json("/v1/credential")["session_id"] != first["session_id"],
                60, 0.2), sidecar.log()
    second = sidecar.json("/v1/credential")
    assert second["expires_in"] > 500  # a fresh 10-minute credential, long before the first
    assert first["expires_at"] <= second["expires_at"]  # one would have expired
    issued = [d["token_id"] for d in https_allowed(pipeline)]
    assert issued[:2] == [first["token_id"], second["token_id"]]
    assert "Traceback" not in sidecar.log()


def test_the_https_sidecar_serves_through_an_exchanger_restart(
    pipeline: Pipeline, sidecars: Sidecars, control_plane: ControlPlane, tmp_path: Path,
) -> None:
    socket_path = tmp_path / "kubegate.sock"
    # a refresh falls due every ~12 s, so several fail while the exchanger is down
    sidecar = sidecars.start(pipeline.https_sidecar_args(
        socket_path, "--lifetime", "10m", "--refresh-fraction", "0.02",
        "--refresh-jitter", "0", "--backoff-max", "2s"), socket_path)
    sidecar.wait_ready()
    kubectl = kubectl_for(sidecar, control_plane, tmp_path)
    exchanger = pipeline.exchanger
    http_port = exchanger.running.http_port
    exchanger.running.stop(grace=0)
    before = sidecar.json("/v1/credential")["session_id"]

    failed = lambda: transient_refreshes(sidecar) >= 2  # noqa: E731
    assert poll(failed, 60, 0.5), sidecar.log()
    assert sidecar.ready(), sidecar.log()  # the cached credential is still served
    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr

    restarted = start_exchanger(exchanger.config)
    try:
        assert restarted.http_port == http_port
        started = time.monotonic()
        assert poll(lambda: sidecar.json("/v1/credential")["session_id"] != before, 30, 0.2), \
            sidecar.log()
        # backoff-max 2s: the first retry after the restart succeeds, not minutes later
        assert time.monotonic() - started < 15
    finally:
        restarted.stop(grace=0)
    new = sidecar.json("/v1/credential")
    assert new["token_id"] in {d["token_id"] for d in https_allowed(pipeline)}
    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in sidecar.log()


def transient_refreshes(sidecar: SidecarProcess) -> int:
    for line in sidecar.get("/metrics")[1].decode().splitlines():
        if line.startswith('kubegate_sidecar_refreshes_total{result="transient"}'):
            return int(float(line.split()[-1]))
    return 0


@pytest.mark.parametrize("token", ["pod", "garbage"])
def test_a_refused_token_reads_the_same_over_https_as_over_grpc(
    pipeline: Pipeline, cluster: Cluster, sidecars: Sidecars, tmp_path: Path, token: str,
) -> None:
    token_file = tmp_path / "refused-token"
    if token == "pod":  # a valid token no mapping allows: PERMISSION_DENIED
        cluster.create_service_account(pipeline.ci, "intruder")
        write_pod_token(cluster, pipeline.ci, "intruder", "intruder-1", token_file)
    else:  # not a JWT at all: UNAUTHENTICATED MALFORMED_TOKEN
        token_file.write_text("not-a-jwt")

    lines = {}
    for server in (pipeline.exchanger.target, pipeline.https_url):
        result = subprocess.run(
            [*KUBEGATE, "sidecar", "--once", "--kubeconfig", str(tmp_path / "kubeconfig"),
             "--server", server, "--ca-file", str(pipeline.exchanger.running.ca_file),
             "--token-file", str(token_file)],
            capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1, result.stderr
        lines[server] = result.stderr
    grpc_line, https_line = lines.values()
    expected = ("denied: PERMISSION_DENIED NO_MATCHING_MAPPING: " if token == "pod" else
                "denied: UNAUTHENTICATED MALFORMED_TOKEN: ")
    assert expected in grpc_line
    assert https_line == grpc_line
    assert not (tmp_path / "kubeconfig").exists()

    socket_path = tmp_path / "kubegate.sock"
    args = pipeline.https_sidecar_args(socket_path, "--backoff-max", "1s")
    args[args.index("--token-file") + 1] = str(token_file)
    sidecar = sidecars.start(args, socket_path)
    sidecar.wait_answering()
    assert poll(lambda: sidecar.readyz()[1]["status"] == "denied", 30, 0.2), sidecar.log()
    time.sleep(3)  # backoff-max 1s: a transient failure would have been retried by now
    status, ready = sidecar.readyz()
    assert status == 503 and expected.split(": ", 1)[1].strip() in ready["reason"]
    https_denials = [d for d in pipeline.exchanger.decisions()
                     if d["decision"] == "deny" and str(d.get("peer", "")).startswith("https:")]
    assert len(https_denials) == 2  # --once, then the sidecar's one try: no loop
    assert "Traceback" not in sidecar.log()


def test_the_idle_https_sidecar_stays_within_30_mib(
    pipeline: Pipeline, sidecars: Sidecars, tmp_path: Path,
) -> None:
    """Benchmark 6's measure (VmRSS of the ready sidecar with its API proxy, after idling),
    for both routes: HTTPS within the target, and below gRPC."""
    measured = {}
    for route in ("grpc", "https"):
        socket_path = tmp_path / route / "kubegate.sock"
        args = pipeline.sidecar_args if route == "grpc" else pipeline.https_sidecar_args
        sidecar = sidecars.start(args(socket_path, "--proxy-listen",
                                      f"127.0.0.1:{free_port()}", "--log-level", "WARNING"),
                                 socket_path)
        sidecar.wait_ready(timeout=60)
        time.sleep(IDLE_SECONDS)
        measured[route] = rss_mib(sidecar.process.popen.pid)
        assert sidecar.stop() == 0
    print(f"idle sidecar RSS: gRPC {measured['grpc']:.1f} MiB, "
          f"HTTPS {measured['https']:.1f} MiB")
    assert measured["https"] <= MAX_IDLE_RSS_MIB, measured
    assert measured["https"] < measured["grpc"], measured


def test_kubegate_exchange_takes_the_same_https_url(
    pipeline: Pipeline, control_plane: ControlPlane, tmp_path: Path,
) -> None:
    """`kubegate exchange --server https://...` (no grpc on this route either): its kubeconfig
    works in the real kubectl, and the exchange is audited as an HTTPS one."""
    kubeconfig = tmp_path / "kubeconfig"
    result = subprocess.run(
        [*KUBEGATE, "exchange", "--server", pipeline.https_url,
         "--ca-file", str(pipeline.exchanger.running.ca_file),
         "--token-file", str(pipeline.token_file), "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert len(https_allowed(pipeline)) == 1
    kubectl = Kubectl(binary=control_plane.kubectl_path, kubeconfig=kubeconfig)
    listed = kubectl.run("get", "pods", "-n", pipeline.web)
    assert listed.returncode == 0, listed.stderr
