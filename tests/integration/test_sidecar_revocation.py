"""A revoked credential, against the real apiserver and a real exchanger (TokenRequest backend:
deleting the session Secret revokes the token, once the apiserver's ~10 s token cache lets
go): the first 401 the proxy relays makes the sidecar drop that credential (not ready, /v1/*
503, `kubegate credential --ready` exit 1) and exchange again once, at once; the next request
through the proxy succeeds with the new session."""

from __future__ import annotations

import http.client
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchanger.server import start_exchanger
from tests.support.controlplane import ControlPlane, free_port
from tests.support.fixtures_exchanger import StartExchanger
from tests.support.kube import Cluster
from tests.support.sidecar import KUBEGATE, Pipeline, SidecarProcess, Sidecars, setup_pipeline
from tests.support.wait import poll

REVOCATION_SECONDS = 45  # the apiserver caches a token's validity for about 10 s


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Sidecars]:
    with Sidecars(tmp_path) as started:
        yield started


@pytest.fixture
def pipeline(cluster: Cluster, control_plane: ControlPlane,
             start_test_exchanger: StartExchanger, tmp_path: Path) -> Pipeline:
    return setup_pipeline(cluster, control_plane, start_test_exchanger, tmp_path,
                          listen=f"127.0.0.1:{free_port()}")


def list_pods(port: int, namespace: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def start_with_proxy(pipeline: Pipeline, sidecars: Sidecars,
                     tmp_path: Path) -> tuple[SidecarProcess, int]:
    port = free_port()
    socket_path = tmp_path / "run" / "kubegate.sock"
    sidecar = sidecars.start(pipeline.sidecar_args(
        socket_path, "--proxy-listen", f"127.0.0.1:{port}", "--backoff-max", "2s"), socket_path)
    sidecar.wait_ready()
    assert list_pods(port, pipeline.web) == 200
    return sidecar, port


def revoke(cluster: Cluster, pipeline: Pipeline, session_id: str) -> None:
    cluster.core.delete_namespaced_secret(f"kubegate-session-{session_id}", pipeline.web)


def wait_refused(port: int, namespace: str, sidecar: SidecarProcess) -> list[int]:
    """Statuses through the proxy until the first that is not 200 (the apiserver's 401)."""
    statuses: list[int] = []

    def refused() -> bool:
        statuses.append(list_pods(port, namespace))
        return statuses[-1] != 200

    assert poll(refused, REVOCATION_SECONDS, 0.5), sidecar.log()
    return statuses


def credential_ready(sidecar: SidecarProcess) -> int:
    return subprocess.run([*KUBEGATE, "credential", "--ready", "--socket",
                           str(sidecar.socket_path)], capture_output=True, timeout=30,
                          check=False).returncode


def test_a_revoked_credential_is_replaced_once_and_the_next_request_succeeds(
    pipeline: Pipeline, cluster: Cluster, sidecars: Sidecars, tmp_path: Path,
) -> None:
    sidecar, port = start_with_proxy(pipeline, sidecars, tmp_path)
    first = sidecar.json("/v1/credential")["session_id"]
    revoke(cluster, pipeline, first)

    assert wait_refused(port, pipeline.web, sidecar)[-1] == 401
    assert poll(lambda: sidecar.ready() and list_pods(port, pipeline.web) == 200, 10), \
        sidecar.log()
    second = sidecar.json("/v1/credential")["session_id"]
    assert second != first
    log = sidecar.log()
    assert log.count("the API server refused the credential") == 1, log
    allowed = [d for d in pipeline.exchanger.decisions() if d["decision"] == "allow"]
    assert len(allowed) == 2  # the first exchange and one forced by the 401: no loop
    assert "Traceback" not in log


def test_the_sidecar_is_not_ready_until_a_working_credential_is_back(
    pipeline: Pipeline, cluster: Cluster, sidecars: Sidecars, tmp_path: Path,
) -> None:
    sidecar, port = start_with_proxy(pipeline, sidecars, tmp_path)
    first = sidecar.json("/v1/credential")["session_id"]
    exchanger = pipeline.exchanger
    exchanger.running.stop(grace=0)  # the forced refresh cannot succeed yet
    revoke(cluster, pipeline, first)

    assert wait_refused(port, pipeline.web, sidecar)[-1] == 401
    # the proxy reports the 401 once the answer is relayed: the keeper hears it a moment later
    assert poll(lambda: sidecar.readyz()[0] == 503, 5), sidecar.log()
    status, readyz = sidecar.readyz()
    assert status == 503 and not readyz["ready"], readyz
    assert "refused the credential" in readyz["reason"]
    assert credential_ready(sidecar) == 1
    assert sidecar.get("/v1/credential")[0] == 503
    assert list_pods(port, pipeline.web) == 503  # no credential: the revoked one is not used

    restarted = start_exchanger(exchanger.config)
    try:
        assert poll(sidecar.ready, 20), sidecar.log()
        assert credential_ready(sidecar) == 0
        assert sidecar.json("/v1/credential")["session_id"] != first
        assert list_pods(port, pipeline.web) == 200
    finally:
        restarted.stop(grace=0)
