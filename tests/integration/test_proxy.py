"""Proxy mode against the real kube-apiserver and the real kubectl: a job's kubectl talks plain
HTTP to the proxy with no credentials, and reaches the apiserver as the credential's service
account, with exactly its permissions, whatever identity the client claims (its exec upgrades
included). Watches stream; upgraded connections relay both ways and pass a half-close on (a
test upstream stands in for the kubelet, which does not run here); a smuggling request is
answered 400 with not one byte sent upstream; a web page's request (DNS rebinding, another
origin) is answered 403 the same way; a slowloris client neither stops a `kubectl get` nor
grows the proxy's threads past its cap; and every request leaves one session record without
the token."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import queue
import secrets
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kubegate.credential import ClusterInfo, Credential
from sidecar.proxy import ApiProxy
from tests.support.controlplane import ControlPlane
from tests.support.kube import Cluster, Kubectl
from tests.support.pki import TestCA
from tests.support.smuggling import MALFORMED_HEADS, SMUGGLING

POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
SESSION = "session-7f3a"
Records = list[dict[str, Any]]
StartProxy = Callable[..., ApiProxy]


def make_credential(token: str, server: str, ca_pem: bytes) -> Credential:
    return Credential(
        token=token, token_type="Bearer", expires_at=int(time.time()) + 600,
        token_id="token-1", session_id=SESSION, mapping="ci-reads-pods",
        cluster=ClusterInfo(name="test", server=server, certificate_authority_data=ca_pem,
                            namespace="ci", service_account="job",
                            user="system:serviceaccount:ci:job", groups=()))


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def host_port(proxy: ApiProxy) -> tuple[str, int]:
    host, _, port = proxy.address.rpartition(":")
    return host, int(port)


def request(proxy: ApiProxy, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*host_port(proxy), timeout=20)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def read_until(sock: socket.socket, marker: bytes) -> tuple[bytes, bytes]:
    """Bytes up to and including marker, and whatever came after it in the same reads."""
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}: {data!r}")
        data += chunk
    end = data.index(marker) + len(marker)
    return data[:end], data[end:]


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kubegate-proxy")]


@pytest.fixture
def records() -> Records:
    return []


@pytest.fixture
def start_proxy(records: Records) -> Iterator[StartProxy]:
    started: list[ApiProxy] = []

    def start(credentials: Callable[[], Credential | None], listen: str = "127.0.0.1:0",
              registry: CollectorRegistry | None = None, **limits: Any) -> ApiProxy:
        proxy = ApiProxy(credentials, listen, recorder=records.append, registry=registry,
                         **limits)
        proxy.start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def job(cluster: Cluster, control_plane: ControlPlane, namespace: str) -> Credential:
    """A credential for service account `job`, which may read pods in namespace only."""
    cluster.create_service_account(namespace, "job")
    cluster.create_role(namespace, "pod-reader", POD_READER)
    cluster.bind_role(namespace, "pod-reader", service_account=(namespace, "job"))
    token = cluster.request_token(namespace, "job").token
    assert token
    return make_credential(token, control_plane.url, control_plane.ca_pem)


class JobKubectl:
    """The real kubectl with a kubeconfig that points at the proxy and holds no credentials."""

    def __init__(self, control_plane: ControlPlane, proxy: ApiProxy, folder: Path) -> None:
        self.kubeconfig = folder / "proxy.kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://{proxy.address}"}}],
            "users": [{"name": "job", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "job"}}],
            "current-context": "proxy",
        }))
        self.kubectl = Kubectl(binary=control_plane.kubectl_path, kubeconfig=self.kubeconfig)
        self.cache = f"--cache-dir={folder / 'kube-cache'}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl.run(self.cache, *args)

    def argv(self, *args: str) -> list[str]:
        return [str(self.kubectl.binary), f"--kubeconfig={self.kubeconfig}", self.cache, *args]

    def whoami(self, *flags: str) -> str:
        result = self.run("auth", "whoami", *flags, "-o", "jsonpath={.status.userInfo.username}")
        assert result.returncode == 0, result.stderr
        return result.stdout


# -- kubectl through the proxy, against the real apiserver ----------------------------------


def test_kubectl_through_the_proxy_has_exactly_the_service_accounts_permissions(
    job: Credential, cluster: Cluster, control_plane: ControlPlane, namespace: str,
    start_proxy: StartProxy, tmp_path: Path,
) -> None:
    cluster.create_pipeline_pod(namespace, "build-1", "job")
    other = cluster.create_namespace("other")
    kubectl = JobKubectl(control_plane, start_proxy(lambda: job), tmp_path)

    pods = kubectl.run("get", "pods", "-n", namespace, "-o", "name")
    assert pods.returncode == 0, pods.stderr
    assert pods.stdout.split() == ["pod/build-1"]

    secrets_ = kubectl.run("get", "secrets", "-n", namespace)
    assert secrets_.returncode != 0
    assert "Forbidden" in secrets_.stderr
    assert f"system:serviceaccount:{namespace}:job" in secrets_.stderr

    elsewhere = kubectl.run("get", "pods", "-n", other)
    assert elsewhere.returncode != 0
    assert "Forbidden" in elsewhere.stderr

    assert kubectl.whoami() == f"system:serviceaccount:{namespace}:job"


def test_a_client_token_and_impersonation_never_reach_the_apiserver(
    job: Credential, control_plane: ControlPlane, namespace: str, start_proxy: StartProxy,
    tmp_path: Path,
) -> None:
    kubectl = JobKubectl(control_plane, start_proxy(lambda: job), tmp_path)
    service_account = f"system:serviceaccount:{namespace}:job"

    assert kubectl.whoami("--token=bogus") == service_account
    assert kubectl.whoami("--as=system:admin", "--as-group=system:masters") == service_account
    as_admin = kubectl.run("get", "secrets", "-n", namespace,
                           "--as=system:admin", "--as-group=system:masters")
    assert as_admin.returncode != 0
    assert f'User "{service_account}" cannot list resource "secrets"' in as_admin.stderr
    assert "impersonate" not in as_admin.stderr


def test_a_watch_through_the_proxy_sees_a_pod_created_after_it_started(
    job: Credential, cluster: Cluster, control_plane: ControlPlane, namespace: str,
    start_proxy: StartProxy, records: Records, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar.proxy")
    cluster.create_pipeline_pod(namespace, "before", "job")
    kubectl = JobKubectl(control_plane, start_proxy(lambda: job), tmp_path)
    process = subprocess.Popen(  # noqa: S603
        kubectl.argv("get", "pods", "--watch", "-n", namespace, "-o", "name"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.strip())

    reader = threading.Thread(target=read_lines)
    reader.start()
    try:
        assert lines.get(timeout=30) == "pod/before"  # the list is done; the watch is open
        created = time.monotonic()
        cluster.create_pipeline_pod(namespace, "after", "job")
        assert lines.get(timeout=10) == "pod/after"
        assert time.monotonic() - created < 5
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=10)
        process.stdout.close()

    # kubectl going away mid-watch ends the upstream watch at once, quietly
    assert wait_for(lambda: any("watch=true" in r["path"] for r in records))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert job.token not in caplog.text


def test_kubectl_exec_upgrades_reach_the_apiserver_as_the_service_account_only(
    job: Credential, cluster: Cluster, control_plane: ControlPlane, namespace: str,
    start_proxy: StartProxy, records: Records, tmp_path: Path,
) -> None:
    """kubectl exec asks for a WebSocket upgrade, then SPDY/3.1. No kubelet runs here, so the
    apiserver refuses both; what counts is who it refuses, and that its answer relays."""
    cluster.create_pipeline_pod(namespace, "build-1", "job")
    kubectl = JobKubectl(control_plane, start_proxy(lambda: job), tmp_path)
    service_account = f"system:serviceaccount:{namespace}:job"

    refused = kubectl.run("exec", "-n", namespace, "build-1", "--", "true")
    assert refused.returncode != 0
    assert "unable to upgrade connection" in refused.stderr
    assert (f'User "{service_account}" cannot create resource "pods/exec"'
            in refused.stderr)
    as_admin = kubectl.run("exec", "-n", namespace, "build-1", "--as=system:admin",
                           "--as-group=system:masters", "--", "true")
    assert f'User "{service_account}" cannot create resource "pods/exec"' in as_admin.stderr

    cluster.create_role(namespace, "pod-exec", [
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}])
    cluster.bind_role(namespace, "pod-exec", service_account=(namespace, "job"))

    def reaches_the_exec_handler() -> bool:
        result = kubectl.run("exec", "-i", "-n", namespace, "build-1", "--", "true")
        return "pod build-1 does not have a host assigned" in result.stderr

    assert wait_for(reaches_the_exec_handler, timeout=20)
    exec_records = [r for r in records if "/pods/build-1/exec?" in r["path"]]
    assert {(r["method"], r["status"]) for r in exec_records} >= {
        ("GET", 403), ("POST", 403), ("GET", 400), ("POST", 400)}  # WebSocket, then SPDY
    assert not [r for r in exec_records if r["upgraded"]]
    assert job.token not in json.dumps(records)


def test_each_request_leaves_one_session_record_and_metric_without_the_token(
    job: Credential, namespace: str, start_proxy: StartProxy, records: Records,
) -> None:
    registry = CollectorRegistry()
    proxy = start_proxy(lambda: job, registry=registry)

    status, body = request(proxy, "GET", f"/api/v1/namespaces/{namespace}/pods?limit=5",
                           headers={"Authorization": "Bearer bogus"})
    assert status == 200, body
    assert json.loads(body)["kind"] == "PodList"
    status, _ = request(proxy, "GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert status == 403

    assert wait_for(lambda: len(records) == 2)
    pods, secrets_ = sorted(records, key=lambda r: r["status"])
    assert pods == {
        "event": "proxy.request", "method": "GET",
        "path": f"/api/v1/namespaces/{namespace}/pods?limit=5", "status": 200,
        "bytes_sent": pods["bytes_sent"], "bytes_received": 0,
        "duration_seconds": pods["duration_seconds"], "session_id": SESSION,
        "upgraded": False, "refused": "",
    }
    assert pods["bytes_sent"] > len(body) > 0
    assert 0 < pods["duration_seconds"] < 10
    assert (secrets_["status"], secrets_["session_id"]) == (403, SESSION)
    assert job.token not in json.dumps(records)
    assert registry.get_sample_value("kubegate_proxy_requests_total", {"code": "200"}) == 1
    assert registry.get_sample_value("kubegate_proxy_requests_total", {"code": "403"}) == 1
    assert registry.get_sample_value("kubegate_proxy_request_duration_seconds_count") == 2


def test_request_bodies_reach_the_apiserver_with_content_length_or_chunked(
    job: Credential, namespace: str, start_proxy: StartProxy, records: Records,
) -> None:
    proxy = start_proxy(lambda: job)
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def review(verb: str, resource: str) -> bytes:
        return json.dumps({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {
                "namespace": namespace, "verb": verb, "resource": resource}},
        }).encode()

    whole = review("list", "pods")
    status, body = request(proxy, "POST", path, body=whole,
                           headers={"Content-Type": "application/json"})
    assert status == 201, body
    assert json.loads(body)["status"]["allowed"] is True

    parts = review("list", "secrets")
    status, body = request(proxy, "POST", path, body=iter([parts[:20], parts[20:]]),
                           headers={"Content-Type": "application/json"})
    assert status == 201, body
    assert json.loads(body)["status"].get("allowed") is False

    assert wait_for(lambda: len(records) == 2)
    received = sorted(r["bytes_received"] for r in records)
    assert received[0] == len(whole)
    assert received[1] > len(parts)  # the chunked framing travels with the body


# -- answers of the proxy's own ---------------------------------------------------------------


def test_without_a_credential_the_proxy_answers_503(
    start_proxy: StartProxy, records: Records,
) -> None:
    proxy = start_proxy(lambda: None)

    status, body = request(proxy, "GET", "/api/v1/namespaces/ci/pods")

    assert status == 503
    assert json.loads(body)["message"] == "kubegate proxy: no valid credential yet"
    assert wait_for(lambda: len(records) == 1)
    assert (records[0]["status"], records[0]["session_id"]) == (503, "")


def test_an_unreachable_apiserver_gives_502_with_a_short_message(
    start_proxy: StartProxy, records: Records, caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = f"tok-{secrets.token_urlsafe(16)}"
    credential = make_credential(token, f"https://127.0.0.1:{port}", TestCA("unused").cert_pem)
    proxy = start_proxy(lambda: credential)

    status, body = request(proxy, "GET", "/api/v1/pods")

    assert status == 502
    assert json.loads(body)["message"] == "kubegate proxy: the API server is unreachable"
    assert wait_for(lambda: len(records) == 1)
    assert (records[0]["status"], records[0]["session_id"]) == (502, SESSION)
    assert token not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def test_an_apiserver_certificate_from_another_ca_gives_502_and_is_never_trusted(
    start_proxy: StartProxy, tmp_path: Path,
) -> None:
    upstream = UpgradeUpstream(tmp_path)
    credential = make_credential("tok", upstream.url, TestCA("some-other-ca").cert_pem)
    proxy = start_proxy(lambda: credential)
    try:
        status, body = request(proxy, "GET", "/api")
    finally:
        upstream.close()

    assert status == 502
    assert b"certificate is not trusted" in body
    assert upstream.heads == []


# -- upgraded connections (exec, attach, port-forward) through a test upstream --------------


class UpgradeUpstream:
    """A TLS server on 127.0.0.1 with a test CA of its own: it answers one upgrade request
    with 101 and a greeting in the same write, then echoes bytes until the proxy closes."""

    GREETING = b"hello from upstream\n"

    def __init__(self, folder: Path) -> None:
        ca = TestCA("kubegate-test-upgrade-upstream")
        self.ca_pem = ca.cert_pem
        cert, key = ca.issue_server(("127.0.0.1",)).write(folder, "upstream")
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._context.set_alpn_protocols(["h2", "http/1.1"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(30)
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.heads: list[list[tuple[str, str]]] = []
        self.alpn: str | None = None
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self._listener.accept()
        except OSError:
            return  # closed without a visitor
        try:
            with self._context.wrap_socket(raw, server_side=True) as tls:
                self.alpn = tls.selected_alpn_protocol()
                head, _ = read_until(tls, b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[:-2]
                self.heads.append([(lines[0], "")] + [
                    (name.strip(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:])])
                upgrade = self.header("upgrade")
                tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                            b"Upgrade: " + upgrade.encode() + b"\r\n\r\n" + self.GREETING)
                while data := tls.recv(65536):
                    tls.sendall(data)
        except (OSError, AssertionError):
            return  # the proxy went away, or refused our certificate

    def header(self, name: str) -> str:
        values = [v for n, v in self.heads[-1][1:] if n.lower() == name.lower()]
        assert len(values) == 1, (name, values)
        return values[0]

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes an accept still waiting
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)


def upgrade_request(protocol: str) -> bytes:
    return (
        "GET /api/v1/namespaces/ci/pods/build-1/exec?command=sh&stdin=true HTTP/1.1\r\n"
        "Host: 127.0.0.1:8001\r\nConnection: Upgrade\r\n"
        f"Upgrade: {protocol}\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        "Authorization: Bearer bogus\r\nProxy-Authorization: Basic eDp5\r\n"
        "Impersonate-User: system:admin\r\nimpersonate-group: system:masters\r\n"
        "Impersonate-Extra-Reason: test\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("protocol", ["websocket", "SPDY/3.1"])
def test_an_upgraded_connection_relays_bytes_both_ways_with_only_the_credentials_token(
    protocol: str, start_proxy: StartProxy, records: Records, tmp_path: Path,
) -> None:
    upstream = UpgradeUpstream(tmp_path)
    token = f"tok-{secrets.token_urlsafe(24)}"
    credential = make_credential(token, upstream.url, upstream.ca_pem)
    proxy = start_proxy(lambda: credential)
    stdin = bytes(range(256)) * 300  # binary, and larger than one read
    try:
        with socket.create_connection(host_port(proxy), timeout=10) as client:
            client.sendall(upgrade_request(protocol))
            head, rest = read_until(client, b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            while len(rest) < len(UpgradeUpstream.GREETING):
                rest += client.recv(65536)
            assert rest == UpgradeUpstream.GREETING
            client.sendall(stdin)
            echoed = b""
            while len(echoed) < len(stdin):
                echoed += client.recv(65536)
            assert echoed == stdin
            client.shutdown(socket.SHUT_WR)  # half-close: the upstream ends, then so do we
            assert client.recv(1) == b""
    finally:
        upstream.close()

    assert upstream.heads[0][0][0].startswith("GET /api/v1/namespaces/ci/pods/build-1/exec?")
    assert upstream.header("Authorization") == f"Bearer {token}"
    assert upstream.header("Host") == upstream.url.removeprefix("https://")
    assert upstream.header("Upgrade") == protocol
    assert upstream.header("Connection") == "Upgrade"
    assert upstream.header("X-Stream-Protocol-Version") == "v4.channel.k8s.io"
    names = [name.lower() for name, _ in upstream.heads[0][1:]]
    assert "proxy-authorization" not in names
    assert not [name for name in names if name.startswith("impersonate-")]
    assert upstream.alpn == "http/1.1"
    assert wait_for(lambda: len(records) == 1)
    record = records[0]
    assert (record["status"], record["upgraded"], record["session_id"]) == (101, True, SESSION)
    assert record["bytes_received"] == len(stdin)
    assert record["bytes_sent"] == len(head) + len(UpgradeUpstream.GREETING) + len(stdin)
    assert token not in json.dumps(records)


# -- header rules and request smuggling, against a real loopback upstream ------------------


class CountingUpstream:
    """A TLS server on 127.0.0.1 that keeps every byte each connection sent it, and answers
    each request head with answer (a small 200 and a close unless told)."""

    OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"

    def __init__(self, folder: Path, answer: bytes = OK) -> None:
        self._answer = answer
        ca = TestCA("kubegate-test-counting-upstream")
        self.ca_pem = ca.cert_pem
        cert, key = ca.issue_server(("127.0.0.1",)).write(folder, "counting")
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.received.append(b"")
            with contextlib.suppress(OSError), \
                    self._context.wrap_socket(raw, server_side=True) as tls:
                tls.settimeout(5)
                while b"\r\n\r\n" not in self.received[-1]:
                    if not (data := tls.recv(65536)):
                        break
                    self.received[-1] += data
                tls.sendall(self._answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)


def exchange_raw(proxy: ApiProxy, raw: bytes) -> bytes:
    with socket.create_connection(host_port(proxy), timeout=10) as client:
        client.sendall(raw)
        answer = b""
        while data := client.recv(65536):
            answer += data
    return answer


def test_smuggling_requests_are_refused_400_and_not_one_byte_reaches_the_upstream(
    start_proxy: StartProxy, records: Records, tmp_path: Path,
) -> None:
    upstream = CountingUpstream(tmp_path)
    token = f"tok-{secrets.token_urlsafe(16)}"
    proxy = start_proxy(lambda: make_credential(token, upstream.url, upstream.ca_pem))
    start = b"POST /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
    smuggled = b"GET /api/v1/secrets HTTP/1.1\r\nHost: x\r\n\r\n"
    attempts = {name: start + fields + b"\r\n0\r\n\r\n" + smuggled
                for name, fields in SMUGGLING.items()}
    attempts |= {name: head + smuggled for name, head in MALFORMED_HEADS.items()}
    try:
        for name, raw in attempts.items():
            answer = exchange_raw(proxy, raw)
            assert answer.startswith(b"HTTP/1.1 400 "), name
            assert answer.count(b"HTTP/1.1 ") == 1, name
            assert b"Connection: close\r\n" in answer, name
        assert upstream.received == []  # not a connection, let alone a byte

        ok = exchange_raw(proxy, b"GET /api/ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
    finally:
        upstream.close()

    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"{}")
    assert len(upstream.received) == 1  # the upstream counts what reaches it
    assert upstream.received[0].startswith(b"GET /api/ok HTTP/1.1\r\n")
    assert upstream.received[0].count(b"HTTP/1.1") == 1
    assert wait_for(lambda: len(records) == len(attempts) + 1)
    assert sorted(r["status"] for r in records) == [200] + [400] * len(attempts)
    assert token not in json.dumps(records)


def test_the_upstream_sees_only_the_credential_and_the_client_no_hop_by_hop_header(
    start_proxy: StartProxy, records: Records, tmp_path: Path,
) -> None:
    upstream = CountingUpstream(tmp_path, answer=(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close, X-Hop\r\n"
        b"Keep-Alive: timeout=5\r\nX-Hop: 1\r\nProxy-Authenticate: Basic\r\n"
        b"Audit-Id: c0ffee\r\nContent-Length: 2\r\n\r\n{}"))
    token = f"tok-{secrets.token_urlsafe(16)}"
    proxy = start_proxy(lambda: make_credential(token, upstream.url, upstream.ca_pem))
    try:
        answer = exchange_raw(proxy, (
            b"GET /api/v1/namespaces/ci/pods HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
            b"Authorization: Bearer bogus\r\nauthorization: Basic eDp5\r\n"
            b"Proxy-Authorization: Basic eDp5\r\nImpersonate-User: system:admin\r\n"
            b"IMPERSONATE-GROUP: system:masters\r\nImpersonate-Uid: 0\r\n"
            b"impersonate-extra-scopes: all\r\nConnection: keep-alive, X-Private\r\n"
            b"Keep-Alive: timeout=5\r\nX-Private: 1\r\nTE: trailers\r\n"
            b"Accept: application/json\r\n\r\n"))
    finally:
        upstream.close()

    sent = upstream.received[0].decode("latin-1").split("\r\n")
    assert sent[0] == "GET /api/v1/namespaces/ci/pods HTTP/1.1"
    assert sorted(line for line in sent[1:] if line) == sorted([
        f"Host: {upstream.url.removeprefix('https://')}", "Accept: application/json",
        f"Authorization: Bearer {token}", "Connection: close"])
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert head[0] == "HTTP/1.1 200 OK"
    assert sorted(head[1:]) == sorted([
        "Content-Type: application/json", "Audit-Id: c0ffee", "Content-Length: 2",
        "Connection: close"])
    assert answer.endswith(b"\r\n\r\n{}")
    assert token not in json.dumps(records)


# -- listening and stopping -----------------------------------------------------------------


def test_stop_ends_idle_and_upgraded_connections_and_closes_the_port(
    start_proxy: StartProxy, tmp_path: Path,
) -> None:
    upstream = UpgradeUpstream(tmp_path)
    credential = make_credential("tok", upstream.url, upstream.ca_pem)
    proxy = start_proxy(lambda: credential)
    address = host_port(proxy)
    with socket.create_connection(address, timeout=10) as tunnel, \
            socket.create_connection(address, timeout=10) as idle:
        tunnel.sendall(upgrade_request("websocket"))
        read_until(tunnel, UpgradeUpstream.GREETING)
        assert wait_for(lambda: len(proxy_threads()) == 3)  # accept + two connections

        started = time.monotonic()
        proxy.stop()

        assert time.monotonic() - started < 2
        assert proxy_threads() == []
        assert tunnel.recv(1) == b""
        assert idle.recv(1) == b""
    upstream.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2).close()


def test_a_unix_socket_listener_is_owner_only_and_serves_http(
    start_proxy: StartProxy, tmp_path: Path,
) -> None:
    path = tmp_path / "p.sock"
    proxy = start_proxy(lambda: None, listen=f"unix:{path}")

    assert proxy.address == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET /api HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head, _ = read_until(client, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    proxy.stop()
    assert not path.exists()


@pytest.mark.parametrize("listen", [
    "0.0.0.0:0", "10.0.0.1:8001", "[::]:0", "example.com:80", "8001", "127.0.0.1:99999",
    "unix:relative.sock",
])
def test_listen_refuses_anything_but_loopback_or_an_absolute_unix_path(listen: str) -> None:
    with pytest.raises(ValueError, match="listen"):
        ApiProxy(lambda: None, listen)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:8001", "[::1]:0", "127.0.0.2:0"])
def test_listen_accepts_loopback_addresses(listen: str) -> None:
    ApiProxy(lambda: None, listen)


# -- DNS rebinding and web pages -----------------------------------------------------------


REBINDING = {  # what a browser in the pod sends when a hostile page calls the proxy
    "rebound name": b"Host: evil.example:%d\r\n",
    "rebound name as localhost label": b"Host: localhost.evil.example:%d\r\n",
    "rebound via a wildcard DNS name": b"Host: 127.0.0.1.nip.io:%d\r\n",
    "the any address": b"Host: 0.0.0.0:%d\r\n",
    "fetch from a page": b"Host: 127.0.0.1:%d\r\nOrigin: https://evil.example\r\n",
    "WebSocket exec from a page": b"Host: localhost:%d\r\nOrigin: http://evil.example\r\n"
                                  b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
    "image or form, cross-site": b"Host: 127.0.0.1:%d\r\nSec-Fetch-Site: cross-site\r\n",
    "sandboxed frame": b"Host: 127.0.0.1:%d\r\nOrigin: null\r\n",
    "absolute-form to another host": b"Host: 127.0.0.1:%d\r\n",
}


def test_a_web_pages_request_is_refused_403_before_the_credential_is_read_or_a_byte_sent(
    start_proxy: StartProxy, records: Records, tmp_path: Path,
) -> None:
    upstream = CountingUpstream(tmp_path)
    token = f"tok-{secrets.token_urlsafe(16)}"
    reads: list[int] = []

    def credentials() -> Credential:
        reads.append(1)
        return make_credential(token, upstream.url, upstream.ca_pem)

    proxy = start_proxy(credentials, allowed_hosts=["kubegate-proxy"])
    port = host_port(proxy)[1]
    try:
        for name, fields in REBINDING.items():
            target = (b"http://evil.example/api/v1/secrets" if name.startswith("absolute")
                      else b"/api/v1/namespaces/ci/pods/build-1/exec?command=sh")
            answer = exchange_raw(proxy, b"GET " + target + b" HTTP/1.1\r\n"
                                  + fields.replace(b"%d", str(port).encode()) + b"\r\n")
            assert answer.startswith(b"HTTP/1.1 403 "), name
            assert b"Connection: close\r\n" in answer, name
        assert upstream.received == [] and reads == []

        for host in (b"localhost", b"127.0.0.1", b"kubegate-proxy"):
            ok = exchange_raw(proxy, b"GET /api HTTP/1.1\r\nHost: " + host + b":"
                              + str(port).encode() + b"\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 "), host
    finally:
        upstream.close()

    assert len(upstream.received) == len(reads) == 3
    assert wait_for(lambda: len(records) == len(REBINDING) + 3)
    refused = [r for r in records if r["status"] == 403]
    assert len(refused) == len(REBINDING)
    assert {r["refused"] for r in refused} == {"HOST_NOT_ALLOWED", "CROSS_ORIGIN"}
    assert {r["session_id"] for r in refused} == {""}
    assert token not in json.dumps(records)


def test_kubectl_through_the_proxy_works_with_its_loopback_host_and_no_origin(
    job: Credential, control_plane: ControlPlane, namespace: str, start_proxy: StartProxy,
    tmp_path: Path, records: Records,
) -> None:
    proxy = start_proxy(lambda: job)
    kubeconfig = JobKubectl(control_plane, proxy, tmp_path)
    localhost = tmp_path / "localhost"
    localhost.mkdir()
    by_name = JobKubectl(control_plane, proxy, localhost)
    by_name.kubeconfig.write_text(by_name.kubeconfig.read_text().replace(
        "127.0.0.1:", "localhost:"))

    for kubectl in (kubeconfig, by_name):
        result = kubectl.run("get", "pods", "-n", namespace)
        assert result.returncode == 0, result.stderr
    assert not [r for r in records if r["refused"]]


# -- connection cap and slow heads (slowloris) ---------------------------------------------

CAP = 16
HEAD_TIMEOUT = 3.0


class Slowloris:
    """count connections to the proxy, each sending one byte of a never-ending head every
    `pause` seconds; each connects again when the proxy closes it, until stopped."""

    def __init__(self, proxy: ApiProxy, count: int, pause: float = 1.0) -> None:
        self._address, self._pause = host_port(proxy), pause
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        head = b"GET /api/v1/pods HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: 1\r\n" * 10000
        while not self._stop.is_set():
            with contextlib.suppress(OSError), \
                    socket.create_connection(self._address, timeout=10) as sock:
                for byte in head:
                    sock.sendall(bytes([byte]))
                    if self._stop.wait(self._pause):
                        return

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def test_slowloris_clients_up_to_the_cap_do_not_stop_a_concurrent_kubectl_get(
    job: Credential, cluster: Cluster, control_plane: ControlPlane, namespace: str,
    start_proxy: StartProxy, tmp_path: Path,
) -> None:
    cluster.create_pipeline_pod(namespace, "build-1", "job")
    proxy = start_proxy(lambda: job, max_connections=CAP, head_timeout=HEAD_TIMEOUT)
    kubectl = JobKubectl(control_plane, proxy, tmp_path)
    most = 0
    slow = Slowloris(proxy, CAP - 1)
    try:
        assert wait_for(lambda: len(proxy_threads()) == CAP)  # the accept loop and CAP - 1
        for _ in range(3):
            started = time.monotonic()
            pods = kubectl.run("get", "pods", "-n", namespace, "-o", "name")
            assert pods.returncode == 0, pods.stderr
            assert pods.stdout.split() == ["pod/build-1"]
            assert time.monotonic() - started < 5
            most = max(most, len(proxy_threads()))
    finally:
        slow.stop()
    assert most <= CAP + 1


def test_with_every_slot_taken_kubectl_is_answered_503_at_once_and_gets_through_on_retry(
    job: Credential, cluster: Cluster, control_plane: ControlPlane, namespace: str,
    start_proxy: StartProxy, records: Records, tmp_path: Path,
) -> None:
    """The cap is full of slow heads: a new connection is answered 503 with Retry-After at
    once (client-go retries), and the head timeout frees the slots the slow heads hold."""
    cluster.create_pipeline_pod(namespace, "build-1", "job")
    proxy = start_proxy(lambda: job, max_connections=CAP, head_timeout=HEAD_TIMEOUT)
    kubectl = JobKubectl(control_plane, proxy, tmp_path)
    slow = Slowloris(proxy, CAP, pause=0.5)
    threads: list[int] = []
    watching = threading.Event()

    def count_threads() -> None:
        while not watching.wait(0.05):
            threads.append(len(proxy_threads()))

    counter = threading.Thread(target=count_threads)
    counter.start()
    try:
        assert wait_for(lambda: len(proxy_threads()) == CAP + 1)
        started = time.monotonic()
        with socket.create_connection(host_port(proxy), timeout=10) as over:
            answer = over.recv(65536)
        assert time.monotonic() - started < 0.5
        assert answer.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in answer

        started = time.monotonic()
        pods = kubectl.run("get", "pods", "-n", namespace, "-o", "name")
        assert pods.returncode == 0, pods.stderr
        assert pods.stdout.split() == ["pod/build-1"]
        assert time.monotonic() - started < HEAD_TIMEOUT + 10
    finally:
        slow.stop()
        watching.set()
        counter.join(10)

    assert max(threads) <= CAP + 1
    refused = [r["refused"] for r in records]
    assert refused.count("HEAD_TIMEOUT") >= CAP  # each slow head was cut at the head timeout
    assert "TOO_MANY_CONNECTIONS" in refused
