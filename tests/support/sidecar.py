"""What sidecar integration tests share: a pipeline set up against the real apiserver (an
exchanger trusting the cluster's pod tokens, a pipeline pod's token written to a file as the
kubelet would), and `kubegate sidecar` run as a real process, reached over its socket."""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kubegate.commands.credential import get
from tests.support.controlplane import ControlPlane, Process, start_process
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster
from tests.support.wait import poll

AUDIENCE = "kubegate"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
KUBEGATE = [sys.executable, "-m", "kubegate"]  # the CLI of this checkout, as a module


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket, for requests the plugin's client does not make (no
    header, other methods, keep-alive)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """Namespaces ci (the pipeline's) and web (where it deploys), and an exchanger mapping
    ci's `pipeline` service account to web's `deployer` (pods: get, list, watch)."""

    exchanger: TestExchanger
    ci: str
    web: str
    token_file: Path  # the pipeline pod's projected token, as the kubelet writes it

    @property
    def https_url(self) -> str:
        """The exchanger's RFC 8693 token endpoint (`httpListen`), for `--server`."""
        assert self.exchanger.running.http_port, "the exchanger has no httpListen"
        return f"https://127.0.0.1:{self.exchanger.running.http_port}"

    def https_sidecar_args(self, socket_path: Path, *extra: str) -> list[str]:
        """sidecar_args, with the exchanger's HTTPS token endpoint as `--server`."""
        args = self.sidecar_args(socket_path, *extra)
        args[args.index("--server") + 1] = self.https_url
        return args

    def sidecar_args(self, socket_path: Path, *extra: str) -> list[str]:
        return ["--server", self.exchanger.target,
                "--ca-file", str(self.exchanger.running.ca_file),
                "--token-file", str(self.token_file), "--socket", str(socket_path),
                "--plugin-command", " ".join(KUBEGATE), *extra]


def setup_pipeline(cluster: Cluster, control_plane: ControlPlane,
                   start_test_exchanger: StartExchanger, folder: Path, *,
                   listen: str = "127.0.0.1:0", **exchanger_fields: Any) -> Pipeline:
    """exchanger_fields: more top-level exchanger config fields (e.g. httpListen)."""
    ci, web = cluster.create_namespace("ci"), cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    cluster.create_service_account(ci, "pipeline")
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: ci-deploys-web}}
spec:
  issuer: cluster
  claims:
  - claim: [kubernetes.io, namespace]
    equals: {ci}
  - claim: [kubernetes.io, serviceaccount, name]
    equals: pipeline
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer, maxLifetime: 15m}}
"""
    exchanger = start_test_exchanger(
        issuers=[{"name": "cluster", "url": control_plane.issuer, "audiences": [AUDIENCE],
                  "algorithms": ["ES256"],
                  "keys": {"kubernetes": {"cluster": "test", "tokenReview": True}}}],
        clusters=[cluster_entry(control_plane)], mappings=mappings, listen=listen,
        **exchanger_fields)
    token_file = folder / "token"
    write_pod_token(cluster, ci, "pipeline", "build-1", token_file)
    return Pipeline(exchanger=exchanger, ci=ci, web=web, token_file=token_file)


def write_pod_token(cluster: Cluster, namespace: str, service_account: str, pod: str,
                    path: Path) -> None:
    """A pod of service_account and its pod-bound token in path (0600), as the kubelet does."""
    bound = cluster.create_pipeline_pod(namespace, pod, service_account)
    token = cluster.request_token(namespace, service_account, audiences=[AUDIENCE],
                                  bound_to=bound).token
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)


def rss_mib(pid: int) -> float:
    """A process's resident set size now (VmRSS), in MiB, as benchmark 6 reads it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def mapped_files(pid: int) -> set[str]:
    """The files a process has mapped (shared libraries and extension modules)."""
    return {line.split(maxsplit=5)[5] for line in
            Path(f"/proc/{pid}/maps").read_text().splitlines() if len(line.split()) == 6}


@dataclass
class SidecarProcess:
    process: Process
    socket_path: Path

    def get(self, path: str) -> tuple[int, bytes]:
        return get(str(self.socket_path), path)

    def get_without_header(self, path: str) -> tuple[int, bytes]:
        connection = UnixHTTPConnection(str(self.socket_path))
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def answers(self) -> bool:
        try:
            self.get("/healthz")
        except OSError:
            return False
        return True

    def ready(self) -> bool:
        return self.answers() and self.readyz()[0] == 200

    def wait_answering(self, timeout: float = 30) -> None:
        if not poll(lambda: self.answers() or not self.running, timeout, 0.1):
            raise AssertionError(f"the sidecar did not answer:\n{self.log()}")
        assert self.running, f"the sidecar exited:\n{self.log()}"

    def wait_ready(self, timeout: float = 30) -> None:
        if not poll(lambda: self.ready() or not self.running, timeout, 0.1) or not self.running:
            raise AssertionError(f"the sidecar did not become ready:\n{self.log()}")

    @property
    def running(self) -> bool:
        return self.process.popen.poll() is None

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        self.process.stop()
        return int(self.process.popen.returncode)


class Sidecars:
    """Starts `kubegate sidecar` processes; stops whichever still run on exit."""

    def __init__(self, folder: Path) -> None:
        self._folder, self._started = folder, list[SidecarProcess]()

    def start(self, args: Sequence[str], socket_path: Path) -> SidecarProcess:
        name = f"sidecar-{len(self._started)}"
        process = start_process(name, [*KUBEGATE, "sidecar", *args], self._folder)
        started = SidecarProcess(process, socket_path)
        self._started.append(started)
        return started

    def __enter__(self) -> Sidecars:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for started in self._started:
            started.process.stop()
