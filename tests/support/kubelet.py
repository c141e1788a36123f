"""A stand-in kubelet, so the REAL kube-apiserver can proxy exec, attach, port-forward and logs.

These machines have no kubelet (no container runtime either), so `kubectl exec` against the test
control plane has nobody to reach. `tools/stub-kubelet` is a small Go program built on the
kubelet's own streaming library (k8s.io/cri-streaming: the real SPDY/WebSocket remotecommand and
portforward protocols) whose "containers" are local processes: exec runs a real local command
(a pty when tty), attach joins one shell per container, port-forward dials 127.0.0.1:<port>,
logs are fixed lines (`log_line`) plus one every 0.2 s when followed. It is a TEST STAND-IN:
loopback only, and it ignores the API server's client certificate.

`tools/build-stub-kubelet.sh` builds it into the per-machine cache (keyed by a hash of its
source), or `STUB_KUBELET` names a ready binary. Without it a test skips saying how to get it,
and fails under CI=true (`require_stub_kubelet`).

`StubNode` starts the stub and registers a Node for it whose only address is InternalIP
127.0.0.1 and whose kubelet port (status.daemonEndpoints.kubeletEndpoint.Port) is the stub's:
that is where the API server dials (it does not verify kubelet serving certificates unless
--kubelet-certificate-authority is set, and the test control plane does not set it).
`create_pod` makes a Pod bound to the node (spec.nodeName) and marks it Running through the
status subresource, as a kubelet would.

`run_under_pty` runs kubectl on a real terminal (`kubectl exec -it` and `attach -it` want one)
and `echo_server` is what `kubectl port-forward` reaches.

Rules of this module: the stub is a real process, stopped with the node (its Node object is
deleted); nothing here stands in for the API server, which does all the proxying itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import select
import socketserver
import ssl
import struct
import subprocess
import termios
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import kubernetes.client as k8s
import pytest

from tests.support.controlplane import REPO, Process, start_process, versions, wait_until
from tests.support.kube import Cluster

__all__ = ["CONTAINER", "StubNode", "echo_server", "find_stub_kubelet", "log_line",
           "require_stub_kubelet", "run_under_pty", "stub_node"]

HOW_TO_GET_STUB_KUBELET: Final = (
    "stub-kubelet is missing: run tools/build-stub-kubelet.sh (needs Go >= 1.26 and the Go "
    "module proxy; it builds tools/stub-kubelet), or set STUB_KUBELET to a stub-kubelet binary"
)
CONTAINER: Final = "main"
_SOURCE: Final = REPO / "tools" / "stub-kubelet"
_LISTENING: Final = re.compile(r"stub-kubelet listening on (127\.0\.0\.1:\d+)")


def log_line(number: int, namespace: str, pod: str, container: str = CONTAINER) -> str:
    """Line `number` (from 1) of what the stub serves as a container's log."""
    return f"stub-kubelet log line {number} of {namespace}/{pod}/{container}"


def cached_stub_kubelet() -> Path:
    """Where tools/build-stub-kubelet.sh puts the binary for the current source."""
    digest = hashlib.sha256()
    names = ["go.mod", "go.sum", *sorted(p.name for p in _SOURCE.glob("*.go"))]
    for name in names:
        digest.update((_SOURCE / name).read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    version = versions()["STUB_KUBELET_STREAMING_VERSION"]
    return (base / "kubegate" / "tools" / f"stub-kubelet-{version}-{digest.hexdigest()[:12]}"
            / "stub-kubelet")


def find_stub_kubelet() -> Path | None:
    ready = os.environ.get("STUB_KUBELET")
    binary = Path(ready) if ready else cached_stub_kubelet()
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def require_stub_kubelet() -> Path:
    binary = find_stub_kubelet()
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {HOW_TO_GET_STUB_KUBELET}", pytrace=False)
        pytest.skip(HOW_TO_GET_STUB_KUBELET)
    return binary


class StubNode:
    """One running stub-kubelet and the Node object that points the API server at it."""

    def __init__(self, cluster: Cluster, process: Process, port: int) -> None:
        self.cluster = cluster
        self.process = process
        self.port = port
        self.name = f"stub-node-{uuid.uuid4().hex[:8]}"

    def register(self) -> None:
        core = self.cluster.core
        core.create_node(k8s.V1Node(metadata=k8s.V1ObjectMeta(
            name=self.name, labels={"kubegate.io/stub-kubelet": "true"})))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        core.patch_node_status(self.name, {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "StubKubeletReady",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        }})

    def create_pod(self, namespace: str, name: str, *, container: str = CONTAINER) -> None:
        """A Pod on this node, Running with one running container, as a kubelet reports it."""
        core = self.cluster.core
        core.create_namespaced_pod(namespace, k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1PodSpec(node_name=self.name, containers=[
                k8s.V1Container(name=container, image="stub.invalid/shell:1")]),
        ))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        core.patch_namespaced_pod_status(name, namespace, {"status": _running_status(
            container, now)})

    def stop(self) -> None:
        with suppress(k8s.ApiException):
            self.cluster.core.delete_node(self.name)
        self.process.stop()


def _running_status(container: str, now: str) -> dict[str, Any]:
    return {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{
            "name": container, "ready": True, "restartCount": 0, "started": True,
            "image": "stub.invalid/shell:1", "imageID": "", "containerID": "stub://" + container,
            "state": {"running": {"startedAt": now}},
        }],
    }


def _listening_port(process: Process) -> int | None:
    match = _LISTENING.search(process.log_path.read_text(errors="replace"))
    return int(match.group(1).rsplit(":", 1)[1]) if match else None


def _healthy(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the stub's certificate is self-signed, made at start
    try:
        with urllib.request.urlopen(  # noqa: S310 - a fixed https loopback URL
                f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextmanager
def stub_node(cluster: Cluster, workdir: Path) -> Iterator[StubNode]:
    """Start a stub-kubelet on loopback and register its Node; both go away on exit."""
    binary = require_stub_kubelet()
    workdir.mkdir(parents=True, exist_ok=True)
    process = start_process("stub-kubelet", [str(binary), "-listen", "127.0.0.1:0"], workdir)
    try:
        wait_until(lambda: _listening_port(process) is not None, timeout=30,
                   what="stub-kubelet to listen", process=process)
        port = _listening_port(process)
        assert port is not None
        wait_until(lambda: _healthy(port), timeout=30, what="stub-kubelet /healthz",
                   process=process)
        node = StubNode(cluster, process, port)
        node.register()
    except BaseException:
        process.stop()
        raise
    try:
        yield node
    finally:
        node.stop()


# -- driving kubectl's streams ---------------------------------------------------------------


def _take_terminal() -> None:  # pragma: no cover - runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # its controlling terminal: SIGWINCH on a resize


def run_under_pty(argv: list[str], env: dict[str, str], typed: bytes, *, rows: int, cols: int,
                  prompt: bytes = b"$ ", stop_at: bytes | None = None,
                  resize_to: tuple[int, int] | None = None,
                  timeout: float = 60) -> tuple[int, bytes]:
    """Run argv with a real terminal of rows x cols as its stdio and controlling terminal;
    once `prompt` shows, resize it to `resize_to` (rows, cols) when given, and type `typed`;
    read until it exits (or `stop_at` shows: then it is killed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env,  # noqa: S603
                            start_new_session=True, preexec_fn=_take_terminal)  # noqa: PLW1509
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    sent = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: kubectl exited and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and prompt in output:
                if resize_to is not None:  # the kernel signals kubectl, which tells the server
                    fcntl.ioctl(controller, termios.TIOCSWINSZ,
                                struct.pack("HHHH", *resize_to, 0, 0))
                os.write(controller, typed)
                sent = True
            if stop_at is not None and stop_at in output:
                proc.kill()
                break
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return code, bytes(output)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@contextmanager
def echo_server() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1 (what `kubectl port-forward` reaches); its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
