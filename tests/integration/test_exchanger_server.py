"""The exchanger as a server: real gRPC on loopback with TLS, the standard health and
reflection services, denials with a machine-readable reason, no UNKNOWN status ever,
Prometheus metrics, and trust mappings reloaded without a restart."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from exchanger.exchange import Exchanger
from exchanger.identity import Identity
from exchanger.mappings import MappingSet
from exchanger.service import ExchangeServicer
from exchanger.v1 import exchange_pb2, exchange_pb2_grpc
from kubegate.cli import main
from kubegate.client.rpc import channel_for
from kubegate.errors import ExchangeError
from tests.support.auditlogs import LINES, torn, write_log
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, self_issued_entry
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

MAPPING = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: github
  claims:
  - {{claim: repository_id, equals: "{repository_id}"}}
  grant: {{cluster: local, namespace: web, user: "ci:web", groups: [deployers]}}
"""



@pytest.fixture
def exchanger(start_test_exchanger: StartExchanger,
              github_issuer: GitHubActionsIssuer) -> TestExchanger:
    """A self-issued exchanger (no cluster needed) trusting the GitHub-shaped issuer."""
    return start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443",
                   "backend": "selfIssued"}],
        mappings=MAPPING.format(name="web", repository_id="100"),
        self_issued=self_issued_entry(), metricsListen="127.0.0.1:0")


@pytest.fixture
def channel(exchanger: TestExchanger) -> Iterator[grpc.Channel]:
    with channel_for(exchanger.target, ca_file=exchanger.running.ca_file) as channel:
        yield channel


def test_health_service_reports_serving(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "exchanger.v1.ExchangeService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_exchange_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [answer] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in answer.list_services_response.service}
    assert {"exchanger.v1.ExchangeService", "grpc.health.v1.Health"} <= names


def test_plaintext_connection_to_the_tls_port_fails(exchanger: TestExchanger) -> None:
    with grpc.insecure_channel(exchanger.target) as plain:
        stub = exchange_pb2_grpc.ExchangeServiceStub(plain)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Exchange(exchange_pb2.ExchangeRequest(subject_token="x"), timeout=3)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


def test_denial_carries_its_reason_as_error_info(channel: grpc.Channel) -> None:
    stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
    with pytest.raises(grpc.RpcError) as denied:
        stub.Exchange(exchange_pb2.ExchangeRequest(subject_token="not-a-jwt"), timeout=5)
    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rpc_status.from_call(denied.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("kubegate.io", "MALFORMED_TOKEN")
    assert "not-a-jwt" not in denied.value.details()


def test_allowed_exchange_returns_everything_a_kubeconfig_needs(
    exchanger: TestExchanger, github_issuer: GitHubActionsIssuer,
) -> None:
    token = github_issuer.mint(repository_id="100", audience="kubegate")
    with exchanger.client() as client:
        credential = client.exchange(token, lifetime=700)
    assert credential.mapping == "web"
    assert credential.cluster.server == "https://127.0.0.1:6443"
    assert (credential.cluster.user, credential.cluster.groups) == ("ci:web", ("deployers",))
    assert credential.token_id and credential.session_id
    assert abs(credential.expires_at - time.time() - 700) < 5


def test_metrics_count_exchanges_by_result_and_reason(
    exchanger: TestExchanger, github_issuer: GitHubActionsIssuer,
) -> None:
    with exchanger.client() as client:
        client.exchange(github_issuer.mint(repository_id="100", audience="kubegate"))
        with pytest.raises(ExchangeError):
            client.exchange(github_issuer.mint(repository_id="666", audience="kubegate"))
    url = f"http://127.0.0.1:{exchanger.running.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    assert 'kubegate_exchanges_total{reason="OK",result="allow"} 1.0' in text
    assert 'kubegate_exchanges_total{reason="NO_MATCHING_MAPPING",result="deny"} 1.0' in text
    assert "kubegate_exchange_duration_seconds_count 2.0" in text
    assert 'kubegate_key_fetches_total{issuer="github",result="ok"}' in text
    assert "kubegate_audit_chain_seq 2.0" in text


def test_changed_mapping_folder_is_reloaded_and_a_bad_reload_keeps_the_last_good_set(
    exchanger: TestExchanger, github_issuer: GitHubActionsIssuer,
) -> None:
    folder: Path = exchanger.config.mappings
    token = github_issuer.mint(repository_id="200", audience="kubegate")

    def allowed() -> bool:
        with exchanger.client(attempts=1) as client:
            try:
                return client.exchange(token).mapping == "web-200"
            except ExchangeError:
                return False

    assert not allowed()
    (folder / "second.yaml").write_text(MAPPING.format(name="web-200", repository_id="200"))
    assert poll(allowed, 10)

    (folder / "broken.yaml").write_text("apiVersion: kubegate.io/v1alpha1\nkind: Nope\n")
    time.sleep(2.5)  # past the 1 s reload interval: the bad set was read and refused
    assert allowed()
    url = f"http://127.0.0.1:{exchanger.running.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert 'kubegate_mapping_reloads_total{result="error"}' in response.read().decode()


class ExplodingVerifier:
    def verify(self, token: str) -> Identity:
        raise RuntimeError(f"a bug that mentions the token {token}")


def test_unexpected_error_reaches_the_client_as_internal_with_a_log_id_never_unknown() -> None:
    exchanger = Exchanger(verifier=ExplodingVerifier(), mappings=MappingSet(mappings=()),
                          backends={}, audit=_NullAudit(), clock=time.time)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(ExchangeServicer(exchanger), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
            with pytest.raises(grpc.RpcError) as failed:
                stub.Exchange(exchange_pb2.ExchangeRequest(subject_token="secret.tok.en"),
                              timeout=5)
    finally:
        server.stop(0).wait()
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert failed.value.details().startswith("internal error (log id ")
    assert "secret.tok.en" not in failed.value.details()


class _NullAudit:
    def append(self, record: object) -> None:
        pass


def test_a_torn_audit_tail_is_recovered_at_start_kept_and_explained_by_verify(
    start_test_exchanger: StartExchanger, github_issuer: GitHubActionsIssuer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A power loss mid-write leaves an incomplete last line: the exchanger starts anyway
    (no crash loop), keeps the bytes beside the log and records that in the chain."""
    log = write_log(tmp_path / "audit.log")
    torn(log)
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443",
                   "backend": "selfIssued"}],
        mappings=MAPPING.format(name="web", repository_id="100"),
        self_issued=self_issued_entry(), auditLog=str(log))
    with exchanger.client() as client:
        client.exchange(github_issuer.mint(audience="kubegate", repository_id="100"))
    [kept] = tmp_path.glob("audit.log.torn-*")
    assert [line["decision"] for line in exchanger.decisions()][LINES:] == ["note", "allow"]
    assert main(["audit", "verify", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{log}: ok, {LINES + 2} lines"
    assert out[1].startswith(f"  line {LINES + 1}: note TORN_TAIL_RECOVERED: at start the log "
                             "ended in an incomplete line (a crash mid-write) of 30 bytes, "
                             f"moved to {kept.name}")
    assert out[2] == f"    {kept}: present, sha256 matches"
