"""Faults of kubegate's neighbours and of its own resources, end to end over gRPC:

- the key endpoint down, unreachable, slow, answering garbage or a huge body: the last good keys
  keep verifying, no worker waits longer than one bounded fetch, and with nothing cached the
  caller gets UNAVAILABLE KEYS_UNAVAILABLE;
- the Kubernetes API down, slow (past the cluster's requestTimeout) or answering 403, 409, 429,
  500, 503 to the TokenRequest (a fault-injecting stand-in in front of the real apiserver), and a
  granted service account that does not exist: FAILED_PRECONDITION or UNAVAILABLE with a reason,
  and no session Secret left behind on the real cluster;
- the audit log on a full disk, from the start or filling up mid-run, or not writable at all:
  exchanges are refused (UNAVAILABLE AUDIT_UNAVAILABLE) and nothing is issued; meanwhile the
  exchange service reports NOT_SERVING and counts the denials it could not record, and once
  the log takes lines again one note records them and it reports SERVING;
- many concurrent callers, an oversized message, and one identity flooding: the flood gets
  RESOURCE_EXHAUSTED RATE_LIMITED while another identity is served promptly;
- a restart in the middle of a load: no audit line lost, the chain intact, no session twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exchanger.audit.log import AuditWriteError
from exchanger.server import AUDIT_PROBE_SECONDS, SERVICE_NAME, start_exchanger
from kubegate.cli import main as kubegate
from kubegate.client.rpc import channel_for
from kubegate.credential import Credential
from kubegate.errors import ExchangeError
from tests.support.controlplane import ControlPlane, free_port
from tests.support.faultproxy import FaultProxy, KubeFault
from tests.support.fixtures_exchanger import (
    StartExchanger,
    TestExchanger,
    cluster_entry,
    self_issued_entry,
)
from tests.support.hostile import (
    ApiAuditTail,
    DecisionLog,
    OffsetClock,
    attempt,
    session_secrets,
    start_exchanger_in,
    token_requests,
)
from tests.support.kube import Cluster
from tests.support.oidc import GitHubActionsIssuer, JWKSFault
from tests.support.pki import TestCA
from tests.support.wait import poll

AUDIENCE = "kubegate"
COOLDOWN = 60  # KeyCache's default: an unknown kid fetches at most once per minute


def github_entry(issuer: GitHubActionsIssuer) -> dict[str, Any]:
    return {"name": "github", "url": issuer.url, "audiences": [AUDIENCE],
            "caFile": str(issuer.ca_path)}


def mapping(grant: str, *, name: str = "web", claim: str = "repository_owner_id",
            value: str = "65") -> str:
    return f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: github
  claims: [{{claim: {claim}, equals: "{value}"}}]
  grant: {grant}
"""


SELF_ISSUED_GRANT = '{cluster: local, namespace: web, user: "ci:web"}'
LOCAL_CLUSTER = {"name": "local", "server": "https://127.0.0.1:6443", "backend": "selfIssued"}


def start_self_issued(start: StartExchanger, issuer: GitHubActionsIssuer,
                      clock: Callable[[], float] = time.time, **extra: Any) -> TestExchanger:
    return start(issuers=[github_entry(issuer)], clusters=[LOCAL_CLUSTER],
                 mappings=mapping(SELF_ISSUED_GRANT), self_issued=self_issued_entry(),
                 clock=clock, **extra)


def refusal(outcome: Credential | ExchangeError) -> tuple[str, str]:
    assert isinstance(outcome, ExchangeError), f"not refused: {outcome}"
    return outcome.code.name, outcome.reason


def unknown_kid_token(issuer: GitHubActionsIssuer) -> str:
    return issuer.mint(audience=AUDIENCE, header_overrides={"kid": f"unknown-{time.time_ns()}"})


# -- the key endpoint -----------------------------------------------------------------------------

ENDPOINT_FAULTS = {"down (503)": JWKSFault.DOWN, "garbage": JWKSFault.GARBAGE,
                   "huge body": JWKSFault.HUGE, "slow": JWKSFault.SLOW, "unreachable": None}


@pytest.mark.parametrize("fault", ENDPOINT_FAULTS.keys())
def test_last_good_keys_keep_verifying_while_the_key_endpoint_fails(
    oidc_ca: TestCA, start_test_exchanger: StartExchanger, fault: str,
) -> None:
    with GitHubActionsIssuer(oidc_ca) as issuer:
        clock = OffsetClock()
        exchanger = start_self_issued(start_test_exchanger, issuer, clock)
        assert isinstance(attempt(exchanger, issuer.mint(audience=AUDIENCE)), Credential)
        known, unknown = issuer.mint(audience=AUDIENCE), unknown_kid_token(issuer)
        fetches = issuer.request_count(issuer.jwks_path)
        kind = ENDPOINT_FAULTS[fault]
        if kind is None:
            issuer.stop()
        else:
            issuer.set_jwks_fault(kind, delay_seconds=0.5)
        clock.advance(COOLDOWN + 1)

        assert refusal(attempt(exchanger, unknown)) == ("UNAUTHENTICATED", "UNKNOWN_KEY")
        if kind is not None:
            assert issuer.request_count(issuer.jwks_path) == fetches + 1  # it did try, once
        assert isinstance(attempt(exchanger, known), Credential)


def test_no_worker_is_stuck_while_the_key_endpoint_is_slow(
    oidc_ca: TestCA, start_test_exchanger: StartExchanger,
) -> None:
    """A slow refetch for unknown kids holds only the callers that need it (one fetch, shared,
    bounded); callers whose kid is known never wait for it."""
    with GitHubActionsIssuer(oidc_ca) as issuer:
        clock = OffsetClock()
        exchanger = start_self_issued(start_test_exchanger, issuer, clock)
        assert isinstance(attempt(exchanger, issuer.mint(audience=AUDIENCE)), Credential)
        fetches = issuer.request_count(issuer.jwks_path)
        issuer.set_jwks_fault(JWKSFault.SLOW, delay_seconds=3.0)
        clock.advance(COOLDOWN + 1)
        with ThreadPoolExecutor(max_workers=12) as pool:
            started = time.monotonic()
            waiting = [pool.submit(timed, attempt, exchanger, unknown_kid_token(issuer))
                       for _ in range(4)]
            assert poll(lambda: issuer.request_count(issuer.jwks_path) > fetches, 2, 0.02)
            known = [pool.submit(timed, attempt, exchanger, issuer.mint(audience=AUDIENCE))
                     for _ in range(24)]
            served = [future.result() for future in known]
            served_by = time.monotonic() - started
            stuck = [future.result() for future in waiting]
        assert all(isinstance(outcome, Credential) for outcome, _ in served)
        assert max(seconds for _, seconds in served) < 1.5 and served_by < 2.5
        assert [refusal(outcome) for outcome, _ in stuck] == [
            ("UNAUTHENTICATED", "UNKNOWN_KEY")] * 4
        assert all(seconds < 3.0 + 3.0 for _, seconds in stuck)
        assert issuer.request_count(issuer.jwks_path) == fetches + 1  # one fetch for all four


def timed(call: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    return call(*args), time.monotonic() - started


@pytest.mark.parametrize("fault", ["down (503)", "garbage", "huge body", "unreachable",
                                   "slow past the fetch timeout"])
def test_with_nothing_cached_a_failing_key_endpoint_is_unavailable_keys_unavailable(
    oidc_ca: TestCA, start_test_exchanger: StartExchanger, fault: str,
) -> None:
    with GitHubActionsIssuer(oidc_ca) as issuer:
        token = issuer.mint(audience=AUDIENCE)
        entry = github_entry(issuer)
        if fault == "unreachable":
            issuer.stop()
        elif fault == "slow past the fetch timeout":
            issuer.set_jwks_fault(JWKSFault.SLOW, delay_seconds=8.0)  # the fetch gives up at 5 s
        else:
            issuer.set_jwks_fault(ENDPOINT_FAULTS[fault])
        exchanger = start_test_exchanger(
            issuers=[entry], clusters=[LOCAL_CLUSTER], mappings=mapping(SELF_ISSUED_GRANT),
            self_issued=self_issued_entry())
        decisions = DecisionLog(exchanger)
        outcome, seconds = timed(attempt, exchanger, token)
        assert refusal(outcome) == ("UNAVAILABLE", "KEYS_UNAVAILABLE")
        assert seconds < 8.0
        [line] = decisions.new()
        assert (line["decision"], line["reason"], line["status"]) == (
            "deny", "KEYS_UNAVAILABLE", "UNAVAILABLE")


def test_key_endpoint_that_recovers_serves_again_without_a_restart(
    oidc_ca: TestCA, start_test_exchanger: StartExchanger,
) -> None:
    with GitHubActionsIssuer(oidc_ca) as issuer:
        issuer.set_jwks_fault(JWKSFault.DOWN)
        clock = OffsetClock()
        exchanger = start_self_issued(start_test_exchanger, issuer, clock)
        assert refusal(attempt(exchanger, issuer.mint(audience=AUDIENCE))) == (
            "UNAVAILABLE", "KEYS_UNAVAILABLE")
        issuer.set_jwks_fault(None)
        clock.advance(COOLDOWN + 1)
        assert isinstance(attempt(exchanger, issuer.mint(audience=AUDIENCE)), Credential)


# -- the Kubernetes API ---------------------------------------------------------------------------


class KubeWorld:
    def __init__(self, exchanger: TestExchanger, proxy: FaultProxy, cluster: Cluster,
                 namespace: str, issuer: GitHubActionsIssuer) -> None:
        self.exchanger, self.proxy, self.cluster = exchanger, proxy, cluster
        self.namespace, self.issuer = namespace, issuer

    def token(self, **job: Any) -> str:
        return self.issuer.mint(audience=AUDIENCE, **job)


@pytest.fixture(scope="module")
def kube(cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeWorld]:
    namespace = cluster.create_namespace("faults")
    cluster.create_service_account(namespace, "deployer")
    folder = tmp_path_factory.mktemp("kube-faults")
    grant = f"{{cluster: test, namespace: {namespace}, serviceAccount: %s}}"
    mappings = (mapping(grant % "deployer", name="deployer", claim="repository_id", value="74")
                + "\n---\n"
                + mapping(grant % "ghost", name="ghost", claim="repository_id", value="75"))
    with FaultProxy(control_plane, TestCA("kube-fault-proxy-ca"), folder) as proxy:
        exchanger = start_exchanger_in(
            folder / "exchanger", issuers=[github_entry(github_issuer)],
            clusters=[cluster_entry(control_plane) | {"server": proxy.url,
                                                       "caFile": str(proxy.ca_path),
                                                       "requestTimeout": "2s"}],
            mappings=mappings)
        try:
            yield KubeWorld(exchanger, proxy, cluster, namespace, github_issuer)
        finally:
            exchanger.running.stop(grace=0)


KUBE_FAULTS = {
    "403 forbidden": (KubeFault.FORBIDDEN, "FAILED_PRECONDITION", "KUBEGATE_FORBIDDEN"),
    "409 conflict": (KubeFault.CONFLICT, "FAILED_PRECONDITION", "CONFLICT"),
    "429 throttled": (KubeFault.THROTTLED, "UNAVAILABLE", "KUBERNETES_THROTTLED"),
    "500 server error": (KubeFault.SERVER_ERROR, "UNAVAILABLE", "KUBERNETES_UNAVAILABLE"),
    "503 unavailable": (KubeFault.UNAVAILABLE, "UNAVAILABLE", "KUBERNETES_UNAVAILABLE"),
    "slow past the request timeout": (KubeFault.HANG, "UNAVAILABLE", "KUBERNETES_UNAVAILABLE"),
}


@pytest.mark.parametrize("case", KUBE_FAULTS.keys())
def test_failed_token_request_is_refused_with_a_reason_and_leaves_no_session_secret(
    kube: KubeWorld, case: str,
) -> None:
    fault, code, reason = KUBE_FAULTS[case]
    decisions = DecisionLog(kube.exchanger)
    kube.proxy.set_fault(fault)
    try:
        outcome, seconds = timed(attempt, kube.exchanger, kube.token())
    finally:
        kube.proxy.set_fault(None)
    assert refusal(outcome) == (code, reason)
    assert seconds < 2 + 3  # the cluster's requestTimeout, and some slack
    [line] = decisions.new()
    assert (line["decision"], line["reason"], line["status"], line["token_id"]) == (
        "deny", reason, code, "")
    assert session_secrets(kube.cluster, kube.namespace) == []
    # it was half-made for real: a Secret was created, the TokenRequest failed, the Secret went
    assert kube.proxy.requests("POST", f"/namespaces/{kube.namespace}/secrets$")[-1] == 201
    assert kube.proxy.requests("POST", "/token$")[-1] == fault.value
    assert kube.proxy.requests("DELETE", "/secrets/kubegate-session-")[-1] == 200


def test_token_request_for_a_service_account_that_does_not_exist_leaves_nothing(
    kube: KubeWorld,
) -> None:
    decisions = DecisionLog(kube.exchanger)
    outcome = attempt(kube.exchanger, kube.token(repository_id="75"))
    assert refusal(outcome) == ("FAILED_PRECONDITION", "OBJECT_NOT_FOUND")
    assert decisions.new()[0]["reason"] == "OBJECT_NOT_FOUND"
    assert session_secrets(kube.cluster, kube.namespace) == []


def test_the_fault_proxy_passes_a_healthy_exchange_through(kube: KubeWorld) -> None:
    outcome = attempt(kube.exchanger, kube.token())
    assert isinstance(outcome, Credential)
    name = f"kubegate-session-{outcome.session_id}"
    assert session_secrets(kube.cluster, kube.namespace) == [name]
    kube.cluster.core.delete_namespaced_secret(name, kube.namespace)


def test_kubernetes_api_down_is_unavailable_and_creates_nothing(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    start_test_exchanger: StartExchanger,
) -> None:
    namespace = cluster.create_namespace("down")
    cluster.create_service_account(namespace, "deployer")
    exchanger = start_test_exchanger(
        issuers=[github_entry(github_issuer)],
        clusters=[cluster_entry(control_plane) | {"server": f"https://127.0.0.1:{free_port()}"}],
        mappings=mapping(f"{{cluster: test, namespace: {namespace}, serviceAccount: deployer}}"))
    outcome = attempt(exchanger, github_issuer.mint(audience=AUDIENCE))
    assert refusal(outcome) == ("UNAVAILABLE", "KUBERNETES_UNAVAILABLE")
    assert session_secrets(cluster, namespace) == []


# -- the audit log --------------------------------------------------------------------------------


def test_audit_log_on_a_full_disk_refuses_exchanges_and_revokes_what_was_issued(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    start_test_exchanger: StartExchanger,
) -> None:
    namespace = cluster.create_namespace("full")
    cluster.create_service_account(namespace, "deployer")
    api_audit = ApiAuditTail(control_plane.audit_log_path)
    exchanger = start_test_exchanger(
        issuers=[github_entry(github_issuer)], clusters=[cluster_entry(control_plane)],
        mappings=mapping(f"{{cluster: test, namespace: {namespace}, serviceAccount: deployer}}"),
        auditLog="/dev/full")
    outcome = attempt(exchanger, github_issuer.mint(audience=AUDIENCE))
    assert refusal(outcome) == ("UNAVAILABLE", "AUDIT_UNAVAILABLE")
    # the apiserver did issue a token bound to the session Secret; deleting the Secret revoked it
    assert poll(lambda: len(token_requests(api_audit.new(), namespace)) == 1, 5, 0.1)
    assert session_secrets(cluster, namespace) == []


def test_self_issued_exchange_with_a_full_disk_is_refused(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
) -> None:
    exchanger = start_self_issued(start_test_exchanger, github_issuer, auditLog="/dev/full")
    assert refusal(attempt(exchanger, github_issuer.mint(audience=AUDIENCE))) == (
        "UNAVAILABLE", "AUDIT_UNAVAILABLE")


def open_descriptors_of(path: Path) -> list[int]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == str(path.resolve()):
                found.append(int(name))
        except OSError:
            continue
    return found


def test_audit_log_filling_up_mid_run_refuses_until_space_returns_and_the_chain_holds(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exchanger = start_self_issued(start_test_exchanger, github_issuer)
    path = exchanger.config.audit_log
    assert isinstance(attempt(exchanger, github_issuer.mint(audience=AUDIENCE)), Credential)
    [descriptor] = open_descriptors_of(path)
    kept = os.dup(descriptor)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, descriptor)  # the disk behind the open log is full from now on
        for _ in range(2):
            assert refusal(attempt(exchanger, github_issuer.mint(audience=AUDIENCE))) == (
                "UNAVAILABLE", "AUDIT_UNAVAILABLE")
    finally:
        os.dup2(kept, descriptor)  # space is back
        os.close(full)
        os.close(kept)
    assert isinstance(attempt(exchanger, github_issuer.mint(audience=AUDIENCE)), Credential)

    assert [line["decision"] for line in exchanger.decisions()] == ["allow", "note", "allow"]
    assert exchanger.decisions()[1]["note"]["count"] == 2  # the two refusals' denials
    assert kubegate(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(": ok, 3 lines")


def exchange_health(exchanger: TestExchanger) -> int:
    with channel_for(exchanger.target, ca_file=exchanger.running.ca_file) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5).status)


def unrecorded_denials(exchanger: TestExchanger) -> float:
    value = exchanger.running.metrics.registry.get_sample_value(
        "kubegate_audit_unrecorded_denials_total")
    return value or 0.0


def test_readiness_follows_the_audit_log_and_one_note_records_the_denials_it_missed(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)
    exchanger = start_self_issued(start_test_exchanger, github_issuer)
    path = exchanger.config.audit_log
    assert exchange_health(exchanger) == serving
    assert isinstance(attempt(exchanger, github_issuer.mint(audience=AUDIENCE)), Credential)
    [descriptor] = open_descriptors_of(path)
    kept = os.dup(descriptor)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, descriptor)  # the disk behind the open log is full from now on
        assert refusal(attempt(exchanger, github_issuer.mint(audience=AUDIENCE))) == (
            "UNAVAILABLE", "AUDIT_UNAVAILABLE")  # an allow unrecorded is no allow: a denial
        assert refusal(attempt(exchanger, "not-a-token"))[0] == "UNAUTHENTICATED"
        assert exchange_health(exchanger) == not_serving
        assert unrecorded_denials(exchanger) == 2
        time.sleep(AUDIT_PROBE_SECONDS * 1.5)  # the probe tried, and wrote nothing
        assert exchange_health(exchanger) == not_serving
        assert exchanger.running.metrics.registry.get_sample_value(
            "kubegate_audit_writable") == 0
    finally:
        os.dup2(kept, descriptor)  # space is back
        os.close(full)
        os.close(kept)
    # nobody calls a replica that is not ready: the probe finds out on its own
    assert poll(lambda: exchange_health(exchanger) == serving, AUDIT_PROBE_SECONDS * 3, 0.1)
    lines = exchanger.audit_lines()
    assert [line["decision"] for line in lines] == ["allow", "note"]
    assert (lines[1]["reason"], lines[1]["note"]["count"]) == ("UNRECORDED_DENIALS", 2)
    assert exchanger.running.metrics.registry.get_sample_value("kubegate_audit_writable") == 1
    assert kubegate(["audit", "verify", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(": ok, 2 lines")
    assert out[1].startswith("  line 2: note UNRECORDED_DENIALS: the log could not be written")
    assert "2 denials were refused unrecorded" in out[1]


def test_unwritable_audit_log_keeps_the_exchanger_from_starting(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger, tmp_path: Path,
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(AuditWriteError) as refused:
        start_self_issued(start_test_exchanger, github_issuer,
                          auditLog=str(tmp_path / "not-a-folder" / "audit.log"))
    assert refused.value.reason == "AUDIT_UNAVAILABLE"


# -- load ------------------------------------------------------------------------------------------


def test_many_concurrent_callers_and_an_oversized_message(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
) -> None:
    exchanger = start_self_issued(start_test_exchanger, github_issuer)
    oversized = github_issuer.mint(audience=AUDIENCE, extra_claims={"padding": "x" * 70_000})
    assert refusal(attempt(exchanger, oversized)) == ("RESOURCE_EXHAUSTED", "")
    tokens = [github_issuer.mint(audience=AUDIENCE) for _ in range(64)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(lambda token: timed(attempt, exchanger, token), tokens))
    assert all(isinstance(outcome, Credential) for outcome, _ in outcomes)
    assert max(seconds for _, seconds in outcomes) < 10
    allowed = [line for line in exchanger.decisions() if line["decision"] == "allow"]
    assert len(allowed) == 64 and len({line["session_id"] for line in allowed}) == 64


def test_a_flooding_identity_is_rate_limited_without_slowing_another(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
) -> None:
    exchanger = start_self_issued(start_test_exchanger, github_issuer,
                                  rateLimit={"perIdentity": {"rate": "1/s", "burst": 5}})
    flooder = github_issuer.mint(audience=AUDIENCE, repository="octo-org/flood")
    quiet = [github_issuer.mint(audience=AUDIENCE, repository="octo-org/quiet")
             for _ in range(5)]
    stop = threading.Event()

    def flood() -> Counter[tuple[str, str]]:
        seen: Counter[tuple[str, str]] = Counter()
        with exchanger.client(attempts=1) as client:
            while not stop.is_set():
                try:
                    client.exchange(flooder)
                    seen["OK", ""] += 1
                except ExchangeError as error:
                    seen[error.code.name, error.reason] += 1
        return seen

    with ThreadPoolExecutor(max_workers=4) as pool:
        floods = [pool.submit(flood) for _ in range(4)]
        time.sleep(0.3)
        served = [timed(attempt, exchanger, token) for token in quiet]
        stop.set()
        seen = sum((future.result() for future in floods), Counter())
    assert all(isinstance(outcome, Credential) for outcome, _ in served)
    assert max(seconds for _, seconds in served) < 1.0
    assert seen["RESOURCE_EXHAUSTED", "RATE_LIMITED"] >= 20
    assert 5 <= seen["OK", ""] <= 5 + 3  # the burst, and the refill of the flood's seconds
    limited = [line for line in exchanger.decisions() if line["reason"] == "RATE_LIMITED"]
    assert {line["caller"]["sub"] for line in limited} == {
        "repo:octo-org/flood:ref:refs/heads/main"}


# -- restart ---------------------------------------------------------------------------------------


def test_restart_in_the_middle_of_a_load_loses_no_audit_line_and_no_session_is_issued_twice(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exchanger = start_self_issued(start_test_exchanger, github_issuer,
                                  listen=f"127.0.0.1:{free_port()}")
    received: list[Credential] = []
    lock = threading.Lock()

    def caller() -> None:
        with exchanger.client(attempts=10, retry_budget=30, timeout=5) as client:
            for _ in range(20):
                credential = client.exchange(github_issuer.mint(audience=AUDIENCE))
                with lock:
                    received.append(credential)

    second = None
    with ThreadPoolExecutor(max_workers=4) as pool:
        callers = [pool.submit(caller) for _ in range(4)]
        try:
            assert poll(lambda: len(received) >= 25, 20, 0.01)
            exchanger.running.stop(grace=3)
            assert len(received) < 80  # stopped in the middle of the load
            second = start_exchanger(exchanger.config)  # same address, state and audit log
            for future in callers:
                future.result()
        finally:
            if second is not None:
                second.stop(grace=3)

    assert len(received) == 80
    allowed = [line for line in exchanger.decisions() if line["decision"] == "allow"]
    assert Counter(line["token_id"] for line in allowed) == Counter(
        credential.token_id for credential in received)  # each once, none unrecorded
    assert len({line["session_id"] for line in allowed}) == len(allowed) == 80
    assert kubegate(["audit", "verify", str(exchanger.config.audit_log)]) == 0
    assert capsys.readouterr().out.strip().endswith(f": ok, {len(exchanger.audit_lines())} lines")
