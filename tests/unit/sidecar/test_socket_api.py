"""The sidecar's socket API over a real Unix socket: the request header is required, the
socket is private, readiness follows the credential, the ExecCredential expires early, the
kubeconfig holds no secret, and a uid allowlist is enforced by peer credentials."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

from kubegate.commands.credential import get
from kubegate.credential import ClusterInfo, Credential
from kubegate.kubeconfig import rfc3339
from sidecar.api import ApiServer, SocketApi, SocketInUseError
from sidecar.keeper import KeeperState
from tests.support.sidecar import UnixHTTPConnection

NOW = 1_700_000_000.0
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3ZWI6ZGVwbG95ZXIifQ.c2lnbmF0dXJl"


def credential(expires_at: float = NOW + 600) -> Credential:
    return Credential(
        token=TOKEN, token_type="urn:ietf:params:oauth:token-type:jwt",
        expires_at=int(expires_at), token_id="jti-1", session_id="session-1",
        mapping="ci-deploys-web",
        cluster=ClusterInfo(name="test", server="https://127.0.0.1:6443",
                            certificate_authority_data=b"CA", namespace="web",
                            service_account="deployer", user="", groups=()))


@dataclass
class FakeCache:
    held: Credential | None = None
    error: str | None = None

    def current(self) -> Credential | None:
        return self.held

    def state(self) -> KeeperState:
        return KeeperState(
            ready=self.held is not None, status="ready" if self.held else "unavailable",
            last_error=self.error, expires_in=self.held.expires_at - NOW if self.held else None,
            session_id=self.held.session_id if self.held else None, refreshed_at=None)


@dataclass
class Served:
    cache: FakeCache
    path: Path

    def get(self, target: str) -> tuple[int, bytes]:
        return get(str(self.path), target)

    def get_without_header(self, target: str) -> tuple[int, bytes]:
        connection = UnixHTTPConnection(str(self.path))
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def start(path: Path, cache: FakeCache, *, allowed_uids: frozenset[int] | None = None,
          group: int | None = None, registry: CollectorRegistry | None = None) -> ApiServer:
    api = SocketApi(cache, socket_path=path, plugin_command=["/opt/bin/kubegate"],
                    clock=lambda: NOW, registry=registry, allowed_uids=allowed_uids)
    server = ApiServer(api, path, mode=0o660 if group is not None else 0o600, group=group)
    server.start()
    return server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    cache = FakeCache(held=credential())
    path = tmp_path / "run" / "kubegate.sock"
    registry = CollectorRegistry()
    Counter("kubegate_proxy_requests_total", "a proxy's counter", ["code"],
            registry=registry).labels(code="200").inc()
    server = start(path, cache, registry=registry)
    yield Served(cache, path)
    server.stop()


def test_a_request_without_the_header_is_refused(served: Served) -> None:
    status, body = served.get_without_header("/v1/credential")
    assert status == 403
    assert "X-Kubegate-Request" in json.loads(body)["error"]
    assert TOKEN.encode() not in body
    assert served.get("/v1/credential")[0] == 200


def test_the_header_must_say_true(served: Served) -> None:
    connection = UnixHTTPConnection(str(served.path))
    try:
        connection.request("GET", "/v1/exec-credential", headers={"X-Kubegate-Request": "1"})
        assert connection.getresponse().status == 403
    finally:
        connection.close()


def test_probes_need_no_header(served: Served) -> None:
    assert served.get_without_header("/healthz")[0] == 200
    assert served.get_without_header("/readyz")[0] == 200


def test_the_socket_is_0600_by_default(served: Served) -> None:
    assert stat.S_IMODE(served.path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(served.path.stat().st_mode)


def test_with_a_group_the_socket_is_0660_and_owned_by_it(tmp_path: Path) -> None:
    path = tmp_path / "group.sock"
    server = start(path, FakeCache(), group=os.getgid())
    try:
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == os.getgid()
    finally:
        server.stop()


def test_readyz_is_503_before_a_credential_and_200_after(tmp_path: Path) -> None:
    cache = FakeCache(error="exchange failed: UNAVAILABLE: failed to connect")
    path = tmp_path / "k.sock"
    server = start(path, cache)
    try:
        status, body = get(str(path), "/readyz")
        assert status == 503
        assert "UNAVAILABLE" in json.loads(body)["reason"]
        cache.held = credential()
        status, body = get(str(path), "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
    finally:
        server.stop()


def test_v1_answers_503_with_the_reason_when_there_is_no_credential(served: Served) -> None:
    served.cache.held, served.cache.error = None, "exchange denied: PERMISSION_DENIED X: no"
    for target in ("/v1/credential", "/v1/exec-credential", "/v1/kubeconfig"):
        status, body = served.get(target)
        assert status == 503, target
        assert "PERMISSION_DENIED" in json.loads(body)["error"]


def test_the_credential_endpoint_gives_token_session_and_cluster(served: Served) -> None:
    status, body = served.get("/v1/credential")
    document = json.loads(body)
    assert status == 200
    assert document["token"] == TOKEN
    assert document["session_id"] == "session-1" and document["token_id"] == "jti-1"
    assert document["mapping"] == "ci-deploys-web"
    assert document["cluster"]["namespace"] == "web"
    assert document["expires_in"] == 600
    assert document["cluster"]["certificate_authority_data"] == "Q0E="  # b"CA"


def test_the_credential_json_is_a_superset_of_kubegate_exchange_output() -> None:
    from kubegate.commands.exchange import credential_json as exchange_json
    from sidecar.api import credential_json

    ours, theirs = credential_json(credential(), now=NOW), exchange_json(credential())
    assert {k: ours[k] for k in theirs if k != "cluster"} == \
        {k: v for k, v in theirs.items() if k != "cluster"}
    assert {k: ours["cluster"][k] for k in theirs["cluster"]} == theirs["cluster"]


def test_the_exec_credential_expires_a_minute_early(served: Served) -> None:
    status, body = served.get("/v1/exec-credential")
    document = json.loads(body)
    assert status == 200
    assert document["apiVersion"] == "client.authentication.k8s.io/v1"
    assert document["kind"] == "ExecCredential"
    assert document["status"]["token"] == TOKEN
    assert document["status"]["expirationTimestamp"] == rfc3339(NOW + 600 - 60)


def test_the_kubeconfig_runs_the_plugin_and_holds_no_token(served: Served) -> None:
    status, body = served.get("/v1/kubeconfig")
    assert status == 200
    assert TOKEN.encode() not in body
    document = yaml.safe_load(body)
    exec_config = document["users"][0]["user"]["exec"]
    assert exec_config["command"] == "/opt/bin/kubegate"
    assert exec_config["args"] == ["credential", "--socket", str(served.path)]
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert document["contexts"][0]["context"]["namespace"] == "web"
    as_json = json.loads(served.get("/v1/kubeconfig?format=json")[1])
    assert as_json["users"] == document["users"]


def test_metrics_show_expiry_and_registered_proxy_counters(served: Served) -> None:
    status, body = served.get("/metrics")
    assert status == 200
    assert b'kubegate_proxy_requests_total{code="200"} 1.0' in body
    assert served.get_without_header("/metrics")[0] == 403


def test_unknown_paths_and_methods_are_refused(served: Served) -> None:
    assert served.get("/v1/nothing")[0] == 404
    connection = UnixHTTPConnection(str(served.path))
    try:
        connection.request("POST", "/v1/credential", body=b"{}",
                           headers={"X-Kubegate-Request": "true"})
        assert connection.getresponse().status == 405
    finally:
        connection.close()


def test_a_uid_not_on_the_allowlist_is_refused(tmp_path: Path) -> None:
    other_uid = os.getuid() + 1
    path = tmp_path / "allow.sock"
    server = start(path, FakeCache(held=credential()), allowed_uids=frozenset({other_uid}))
    try:
        status, body = get(str(path), "/v1/credential")
        assert status == 403
        assert f"uid {os.getuid()}" in json.loads(body)["error"]
    finally:
        server.stop()
    server = start(path, FakeCache(held=credential()), allowed_uids=frozenset({os.getuid()}))
    try:
        assert get(str(path), "/v1/credential")[0] == 200
    finally:
        server.stop()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))  # a socket file nobody listens on, as a killed sidecar leaves
    leftover.close()
    assert path.exists()
    server = start(path, FakeCache(held=credential()))
    try:
        assert get(str(path), "/healthz")[0] == 200
    finally:
        server.stop()


def test_a_live_socket_is_never_taken_over(served: Served) -> None:
    with pytest.raises(SocketInUseError, match="another process"):
        start(served.path, FakeCache())
    assert served.get("/healthz")[0] == 200


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises(SocketInUseError, match="not a socket"):
        start(path, FakeCache())
    assert path.read_text() == "precious"


def test_stop_removes_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "gone.sock"
    server = start(path, FakeCache())
    server.stop()
    assert not path.exists()


def test_an_idle_keep_alive_connection_does_not_block_stop(tmp_path: Path) -> None:
    path = tmp_path / "idle.sock"
    server = start(path, FakeCache(held=credential()))
    connection = UnixHTTPConnection(str(path))
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()  # connection stays open (HTTP/1.1 keep-alive)
        began = time.monotonic()
        server.stop()
        assert time.monotonic() - began < 2
    finally:
        connection.close()
    with pytest.raises((FileNotFoundError, ConnectionRefusedError, http.client.HTTPException)):
        get(str(path), "/healthz")
