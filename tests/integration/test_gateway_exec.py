"""Interactive sessions through `kubegate gateway`, with the real kubectl and the real
kube-apiserver: `kubectl exec -it` under a real pty, `kubectl logs -f` and `kubectl
port-forward` work through the gateway (over kubectl's default WebSocket and over SPDY); the
exec session's asciicast recording holds, byte for byte, what the shell printed on kubectl's
terminal; a revoke in the middle of an exec stream ends kubectl's exec within one second; and a
vendor (a person signed in at Dex, the vendor's identity provider) gets in inside the mapping's
window, while a vendor whose window is not open is refused 403 OUTSIDE_WINDOW, and recorded.

THE KUBELET IS A STAND-IN: these machines have no kubelet (nor a container runtime), so the API
server proxies exec/attach/port-forward/logs to tools/stub-kubelet (tests/support/kubelet.py),
which serves the kubelet's routes with the kubelet's own streaming library in front of local
processes. Everything between kubectl and that stub is real: kubectl, the gateway, the API
server and its upgrade-aware proxy.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from exchanger.access.model import Requester, SessionEnd
from exchanger.access.revocation import Revoker
from exchanger.access.sqlite_store import SqliteStores
from exchanger.config import load_config
from exchanger.gateway.recording.errors import RecordingReadError
from exchanger.gateway.recording.replay import read_cast, session_casts
from exchanger.server import RunningExchanger, start_exchanger
from kubegate.client.rpc import ExchangeClient
from kubegate.credential import Credential
from tests.support.controlplane import ControlPlane, free_port
from tests.support.dex import CONFIDENTIAL_CLIENT, Dex
from tests.support.fixtures_exchanger import self_issued_entry, write_mappings
from tests.support.gateway import (
    GatewayProcess,
    gateway_cluster_entry,
    gateway_service_account,
    start_gateway_process,
)
from tests.support.kube import Cluster
from tests.support.kubelet import StubNode, echo_server, log_line, run_under_pty, stub_node
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

AUDIENCE = "kubegate"
USER = "ci:octo-org/ops"
GROUP = "kubegate:operators"
VENDOR_GROUP = "vendor-sre"
POD = "shell"
CUT_WITHIN = 1.0  # issue 19: a revoked session's open streams close within one second
ONCALL = Requester(issuer="corp", subject="oncall-2", who="bob@example.com")
OPERATOR_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/exec", "pods/attach", "pods/portforward"],
     "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
TRANSPORTS = {
    "websocket": {},
    "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
             "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"},
}
MAPPINGS = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: ops-gateway}}
spec:
  issuer: github
  claims: [{{claim: repository, equals: octo-org/ops}}]
  grant: {{cluster: test, namespace: {ns}, user: "{user}", groups: ["{group}"], maxLifetime: 15m}}
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: vendor-in-window}}
spec:
  issuer: vendor
  description: the vendor's SRE, only in the maintenance window (open now)
  claims: [{{claim: email, equals: carol@example.com}}]
  grant: {{cluster: test, namespace: {ns}, user: "vendor:carol", groups: ["{vendor}"],
          maxLifetime: 10m}}
  windows: [{{start: "{open_start}", end: "{open_end}"}}]
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: vendor-next-window}}
spec:
  issuer: vendor
  description: another vendor SRE, whose window opens tomorrow
  claims: [{{claim: email, equals: bob@example.com}}]
  grant: {{cluster: test, namespace: {ns}, user: "vendor:bob", groups: ["{vendor}"],
          maxLifetime: 10m}}
  windows: [{{start: "{later_start}", end: "{later_end}"}}]
"""


# typed into the shell: wait (up to 10 s, in the shell) until the terminal is 20x70, say so
RESIZED = (b'i=0; until [ "$(stty size)" = "20 70" ] || [ $i -gt 100 ]; do sleep 0.1; '
           b'i=$((i + 1)); done; echo resized $(stty size); ')


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Setup:
    exchanger: RunningExchanger
    gateway: GatewayProcess
    state: Path
    namespace: str
    folder: Path
    plane: ControlPlane

    def credential(self, issuer: GitHubActionsIssuer) -> Credential:
        with ExchangeClient(f"127.0.0.1:{self.exchanger.port}",
                            ca_file=self.exchanger.ca_file) as client:
            return client.exchange(issuer.mint(repository="octo-org/ops", audience=AUDIENCE))

    def kubectl(self, token: str, *args: str) -> list[str]:
        kubeconfig = self.gateway.kubeconfig(token, self.folder, self.namespace)
        return [str(self.plane.kubectl_path), f"--kubeconfig={kubeconfig}", *args]

    def revoke(self, session_id: str) -> None:
        stores = SqliteStores(self.state / "access.db")
        try:
            Revoker(stores.sessions, {}, time.time).revoke_session(
                session_id, by=ONCALL, reason=SessionEnd.REVOKED)
        finally:
            stores.close()


@pytest.fixture(scope="module")
def node(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubNode]:
    with stub_node(cluster, tmp_path_factory.mktemp("stub-kubelet")) as started:
        yield started


@pytest.fixture(scope="module")
def setup(cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
          dex: Dex, node: StubNode, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("gateway-exec")
    namespace = cluster.create_namespace("gwexec")
    cluster.create_role(namespace, "operator", OPERATOR_RULES)
    cluster.bind_role(namespace, "operator", group=GROUP)
    cluster.bind_role(namespace, "operator", group=VENDOR_GROUP)
    node.create_pod(namespace, POD)
    state = folder / "state"
    now = time.time()
    write_mappings(state / "mappings", MAPPINGS.format(
        ns=namespace, user=USER, group=GROUP, vendor=VENDOR_GROUP,
        open_start=utc(now - 120), open_end=utc(now + 3600),
        later_start=utc(now + 86400), later_end=utc(now + 90000)))
    token_file = gateway_service_account(cluster, folder)
    document: dict[str, Any] = {
        "listen": "127.0.0.1:0", "stateDir": str(state), "reloadInterval": "1s",
        "issuers": [{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                     "caFile": str(github_issuer.ca_path)},
                    {"name": "vendor", "url": dex.url, "caFile": str(dex.ca_path),
                     "audiences": [CONFIDENTIAL_CLIENT], "kind": "oidc"}],
        "clusters": [gateway_cluster_entry(control_plane, token_file, "test")],
        "selfIssued": self_issued_entry(),
        "gateway": {"listen": "127.0.0.1:0", "cluster": "test"},
    }
    config_file = folder / "exchanger.yaml"
    config_file.write_text(yaml.safe_dump(document))
    exchanger = start_exchanger(load_config(config_file))  # writes the signing key first
    try:
        with start_gateway_process(document, folder) as gateway:
            yield Setup(exchanger=exchanger, gateway=gateway, state=state, namespace=namespace,
                        folder=folder, plane=control_plane)
    finally:
        exchanger.stop(grace=0)


@pytest.fixture(params=sorted(TRANSPORTS))
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    return {**os.environ, **TRANSPORTS[request.param]}


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """A queue fed with stream's lines by a daemon thread (reads with deadlines)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def recorded_stdout(gateway: GatewayProcess, session_id: str) -> str:
    """Everything the session's recordings hold as stdout ("o" events), in order; "" while a
    cast has no header yet (the writer holds the first events until it knows the size)."""
    try:
        return "".join(data for path in session_casts(gateway.recordings, session_id)
                       for _, code, data in read_cast(path).events if code == "o")
    except RecordingReadError:
        return ""


# -- exec -it, recorded ------------------------------------------------------------------------


def test_exec_tty_works_and_its_recording_is_what_the_terminal_showed(
        setup: Setup, github_issuer: GitHubActionsIssuer, env: dict[str, str]) -> None:
    credential = setup.credential(github_issuer)
    code, output = run_under_pty(
        setup.kubectl(credential.token, "exec", "-it", POD, "--", "/bin/sh"), env,
        RESIZED + b"echo hel''lo-$((6 * 7)); exit\r", rows=31, cols=97, resize_to=(20, 70))
    shown = output.decode()
    assert code == 0, shown + setup.gateway.log_tail()
    assert "\r\nhello-42\r\n" in shown and "\r\nresized 20 70\r\n" in shown, shown

    assert poll(lambda: recorded_stdout(setup.gateway, credential.session_id) == shown, 10,
                0.1), (f"recorded {recorded_stdout(setup.gateway, credential.session_id)!r}\n"
                       f"shown    {shown!r}")
    (cast,) = [read_cast(p) for p in session_casts(setup.gateway.recordings,
                                                   credential.session_id)]
    assert (cast.header["version"], cast.header["width"], cast.header["height"]) == (2, 97, 31)
    assert [data for _, code_, data in cast.events if code_ == "r"][-1] == "70x20"
    typed = "".join(data for _, code_, data in cast.events if code_ == "i")
    assert "echo hel''lo-$((6 * 7)); exit" in typed

    def upgraded() -> list[dict[str, Any]]:  # recorded when the stream has ended
        return [r for r in setup.gateway.records() if r["session_id"] == credential.session_id
                and r["gateway"]["upgraded"]]

    assert poll(lambda: bool(upgraded()), 10, 0.1), setup.gateway.records()[-2:]
    (exec_record,) = upgraded()
    assert f"/namespaces/{setup.namespace}/pods/{POD}/exec" in exec_record["gateway"]["path"]
    assert exec_record["gateway"]["status"] == 101 and exec_record["gateway"]["bytes_out"] > 0


def test_attach_through_the_gateway_is_recorded(
        setup: Setup, github_issuer: GitHubActionsIssuer) -> None:
    credential = setup.credential(github_issuer)
    _, output = run_under_pty(
        setup.kubectl(credential.token, "attach", "-it", POD), dict(os.environ),
        b"echo attached-$((40 + 2))\r", rows=24, cols=80, prompt=b"try pressing enter",
        stop_at=b"attached-42")
    assert b"attached-42" in output, output + setup.gateway.log_tail().encode()
    assert poll(lambda: "attached-42" in recorded_stdout(setup.gateway, credential.session_id),
                15, 0.1), (recorded_stdout(setup.gateway, credential.session_id),
                           setup.gateway.records()[-2:], setup.gateway.log_tail())
    names = [p.name for p in session_casts(setup.gateway.recordings, credential.session_id)]
    assert any("attach" in name for name in names), names


# -- revoke mid-exec ---------------------------------------------------------------------------


def test_a_revoke_ends_an_open_exec_stream_within_a_second(
        setup: Setup, github_issuer: GitHubActionsIssuer, env: dict[str, str]) -> None:
    credential = setup.credential(github_issuer)
    argv = setup.kubectl(credential.token, "exec", "-i", POD, "--",
                         "sh", "-c", "echo ready; exec cat")
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                          stderr=subprocess.PIPE, text=True, env=env) as kubectl:
        assert kubectl.stdout is not None and kubectl.stdin is not None
        lines = lines_of(kubectl.stdout)
        try:
            assert lines.get(timeout=60) == "ready", setup.gateway.log_tail()
            kubectl.stdin.write("still here\n")
            kubectl.stdin.flush()
            assert lines.get(timeout=30) == "still here"  # the stream is open both ways
            setup.revoke(credential.session_id)
            revoked = time.monotonic()
            kubectl.wait(timeout=30)
            took = time.monotonic() - revoked
        finally:
            if kubectl.poll() is None:
                kubectl.kill()
    print(f"\nrevoke -> kubectl exec ended after {took:.3f} s (exit {kubectl.returncode})")
    assert took <= CUT_WITHIN, f"kubectl exec ended {took:.2f} s after the revoke"
    # (its exit code is kubectl's: 1 over WebSocket, 0 over SPDY, whose stream just closes)

    def cut() -> list[dict[str, Any]]:
        return [r for r in setup.gateway.records() if r["session_id"] == credential.session_id
                and r["gateway"]["ended_by"] == "revoked"]

    assert poll(lambda: bool(cut()), 10, 0.1), setup.gateway.records()[-3:]
    after = subprocess.run(setup.kubectl(credential.token, "get", "pods"), capture_output=True,
                           text=True, timeout=60, check=False)
    assert after.returncode != 0


# -- logs -f and port-forward ------------------------------------------------------------------


def test_logs_follow_through_the_gateway(setup: Setup,
                                         github_issuer: GitHubActionsIssuer) -> None:
    credential = setup.credential(github_issuer)
    with subprocess.Popen(setup.kubectl(credential.token, "logs", "-f", POD),  # noqa: S603
                          stdout=subprocess.PIPE, text=True) as follow:
        assert follow.stdout is not None
        lines = lines_of(follow.stdout)
        try:
            got = [lines.get(timeout=60) for _ in range(6)]  # 3 logged + 3 followed (0.2 s)
        finally:
            follow.kill()
    assert got == [log_line(n, setup.namespace, POD) for n in range(1, 7)]

    def followed() -> list[dict[str, Any]]:  # recorded when kubectl has gone
        return [r for r in setup.gateway.records() if r["session_id"] == credential.session_id
                and "/log" in r["gateway"]["path"]]

    assert poll(lambda: bool(followed()), 10, 0.1), setup.gateway.records()[-2:]
    assert followed()[-1]["gateway"]["bytes_out"] > 0


def test_port_forward_through_the_gateway(setup: Setup, github_issuer: GitHubActionsIssuer,
                                          env: dict[str, str]) -> None:
    credential = setup.credential(github_issuer)
    local = free_port()
    log_path = setup.folder / f"port-forward-{local}.log"
    with echo_server() as target, log_path.open("w") as log, subprocess.Popen(  # noqa: S603
            setup.kubectl(credential.token, "port-forward", f"pod/{POD}", f"{local}:{target}"),
            stdout=log, stderr=subprocess.STDOUT, env=env) as forward:
        try:
            assert poll(lambda: "Forwarding from" in log_path.read_text()
                        or forward.poll() is not None, 60, 0.1)
            assert forward.poll() is None, log_path.read_text() + setup.gateway.log_tail()
            for n in range(2):  # two connections through one port-forward stream
                payload = f"through the gateway {n} ".encode() * 2000
                assert _echoed(local, payload) == payload
        finally:
            forward.terminate()
            forward.wait(timeout=10)


def _echoed(port: int, payload: bytes) -> bytes:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


# -- a vendor and its window -------------------------------------------------------------------


def test_a_vendor_gets_in_inside_its_window_and_is_refused_outside_it(
        setup: Setup, dex: Dex) -> None:
    inside = str(dex.password_grant("carol@example.com")["id_token"])
    shell = subprocess.run(setup.kubectl(inside, "exec", POD, "--", "sh", "-c", "echo vendor-in"),
                           capture_output=True, text=True, timeout=60, check=False)
    assert shell.returncode == 0, shell.stderr + setup.gateway.log_tail()
    assert shell.stdout == "vendor-in\n"

    outside = str(dex.password_grant("bob@example.com")["id_token"])
    refused = subprocess.run(setup.kubectl(outside, "get", "pods"), capture_output=True,
                             text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr or "forbidden" in refused.stderr, refused.stderr

    def window() -> list[dict[str, Any]]:  # a record is written once its answer is sent
        return [r for r in setup.gateway.records() if r["reason"] == "OUTSIDE_WINDOW"]

    assert poll(lambda: bool(window()), 10, 0.1), setup.gateway.records()[-3:]
    assert all(r["status"] == "403" for r in window())
    let_in = [r for r in setup.gateway.records() if r["gateway"].get("user") == "vendor:carol"
              and r["reason"] == "OK"]
    assert let_in and VENDOR_GROUP in let_in[-1]["gateway"]["groups"]
    assert inside not in setup.gateway.audit_log.read_text()
    assert outside not in setup.gateway.audit_log.read_text()
