"""Availability: a job calling the API through kubectl (with the sidecar's plugin kubeconfig)
every second sees zero failures while the exchanger is stopped for two minutes and restarted
on the same address; refreshing resumes afterwards (a new session)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exchanger.server import start_exchanger
from tests.support.controlplane import ControlPlane, free_port
from tests.support.fixtures_exchanger import StartExchanger
from tests.support.kube import Cluster, Kubectl
from tests.support.sidecar import Sidecars, setup_pipeline
from tests.support.wait import poll

OUTAGE_SECONDS = 120


@dataclass
class JobLoop:
    """`kubectl get pods` once a second, in a thread, recording every outcome."""

    kubectl: Kubectl
    namespace: str
    results: list[tuple[float, int, str]] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="job-loop")
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        next_call = time.monotonic()
        while not self._stopping.wait(max(0.0, next_call - time.monotonic())):
            next_call += 1.0
            try:
                result = self.kubectl.run("get", "pods", "-n", self.namespace, timeout=30)
                outcome = (time.monotonic(), result.returncode, result.stderr.strip()[-300:])
            except subprocess.TimeoutExpired:
                outcome = (time.monotonic(), -1, "kubectl timed out")
            self.results.append(outcome)

    def calls_between(self, start: float, end: float) -> int:
        return sum(1 for at, _, _ in self.results if start <= at <= end)

    def failures(self) -> list[tuple[float, int, str]]:
        return [result for result in self.results if result[1] != 0]


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Sidecars]:
    with Sidecars(tmp_path) as started:
        yield started


def transient_refreshes(metrics: bytes) -> int:
    found = re.search(rb'refreshes_total\{result="transient"\} (\d+)', metrics)
    return int(found.group(1)) if found else 0


def test_a_job_sees_no_failure_while_the_exchanger_is_down_for_two_minutes(
    cluster: Cluster, control_plane: ControlPlane, start_test_exchanger: StartExchanger,
    sidecars: Sidecars, tmp_path: Path,
) -> None:
    pipeline = setup_pipeline(cluster, control_plane, start_test_exchanger, tmp_path,
                              listen=f"127.0.0.1:{free_port()}")
    exchanger = pipeline.exchanger
    socket_path = tmp_path / "kubegate.sock"
    # 10-minute credentials refreshed at ~10 % of their life: a refresh falls due every
    # ~60 s, so at least one is attempted during the outage and one soon after it
    sidecar = sidecars.start(pipeline.sidecar_args(
        socket_path, "--lifetime", "10m", "--refresh-fraction", "0.1", "--backoff-max", "5s"),
        socket_path)
    sidecar.wait_ready()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(sidecar.get("/v1/kubeconfig")[1])
    job = JobLoop(Kubectl(binary=control_plane.kubectl_path, kubeconfig=kubeconfig),
                  pipeline.web)
    job.start()
    try:
        time.sleep(5)
        port = exchanger.running.port
        exchanger.running.stop(grace=0)
        down_at = time.monotonic()
        session_before = sidecar.json("/v1/credential")["session_id"]
        time.sleep(OUTAGE_SECONDS)
        up_at = time.monotonic()
        assert sidecar.ready(), sidecar.log()
        assert transient_refreshes(sidecar.get("/metrics")[1]) > 0, sidecar.log()

        restarted = start_exchanger(exchanger.config)
        try:
            assert restarted.port == port
            assert poll(lambda: sidecar.json("/v1/credential")["session_id"] != session_before,
                        30), sidecar.log()
            time.sleep(3)
        finally:
            restarted.stop(grace=0)
    finally:
        job.stop()

    assert job.failures() == []
    assert job.calls_between(down_at, up_at) >= OUTAGE_SECONDS * 0.8
    new_session = sidecar.json("/v1/credential")
    allowed = {d["token_id"] for d in exchanger.decisions() if d["decision"] == "allow"}
    assert new_session["token_id"] in allowed
    assert "Traceback" not in sidecar.log()
