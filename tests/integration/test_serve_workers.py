"""`kubegate serve --workers 2` as real processes: a parent and two exchanger workers on one
gRPC port and one RFC 8693 endpoint port. Connections are served by both workers (each
writes its own audit chain, and `kubegate audit verify` checks both), the parent's one
/metrics sums their counts, a worker killed with SIGKILL is replaced while the other keeps
answering, and SIGTERM on the parent stops everything with status 0. `--workers 1` stays the
single process it always was; a worker's audit file that does not verify stops the start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from exchanger.server import SERVICE_NAME
from exchanger.v1.exchange_pb2 import ExchangeRequest
from exchanger.v1.exchange_pb2_grpc import ExchangeServiceStub
from tests.support.auditlogs import not_json, write_log
from tests.support.controlplane import free_port
from tests.support.fixtures_exchanger import self_issued_entry, write_mappings
from tests.support.oauth_client import exchange_form
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
MAPPING = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: web}
spec:
  issuer: github
  claims:
  - {claim: repository_id, equals: "100"}
  grant: {cluster: local, namespace: web, user: "ci:web", groups: [deployers]}
"""
REPLACED_WITHIN = 10.0  # seconds: back-off 0.5 s + a worker's start on a loaded machine


def write_config(tmp_path: Path, issuer: GitHubActionsIssuer, health_port: int) -> Path:
    state = tmp_path / "state"
    write_mappings(state / "mappings", MAPPING)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "plaintext": True, "stateDir": str(state),
        "metricsListen": "127.0.0.1:0", "healthListen": f"127.0.0.1:{health_port}",
        "httpListen": "127.0.0.1:0",
        "rateLimit": {"perIdentity": {"rate": "1000/s", "burst": 1000}},
        "issuers": [{"name": "github", "url": issuer.url, "audiences": ["kubegate"],
                     "caFile": str(issuer.ca_path)}],
        "clusters": [{"name": "local", "server": "https://127.0.0.1:6443",
                      "backend": "selfIssued"}],
        "selfIssued": self_issued_entry()}))
    return config


def start(config: Path, workers: int, started: list[subprocess.Popen[str]],
          ) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`kubegate serve` and what its banner says, keyed by the word before the colon."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "kubegate", "serve", "--config", str(config),
         "--workers", str(workers)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(serve)
    assert serve.stdout is not None
    last = "  workers:" if workers > 1 else "  cluster:"  # the banner's last line
    banner: dict[str, str] = {}
    line = serve.stdout.readline()
    while line:
        key, _, value = line.strip().partition(":")
        banner[key] = value.strip()
        if line.startswith(last):
            break
        line = serve.stdout.readline()
    assert line, f"serve ended early: {banner} {serve.stderr.read() if serve.stderr else ''}"
    return serve, banner


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in text.split()}


def gone(pid: int) -> bool:
    """True once pid has ended and was reaped (a zombie leader may still have threads
    closing its sockets)."""
    return not Path(f"/proc/{pid}").exists()


def exchange(target: str, issuer: GitHubActionsIssuer) -> None:
    """One exchange on a TCP connection of its own (no subchannel shared with an earlier
    channel), without retries: it fails if the port does not answer."""
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) \
            as channel:
        answer = ExchangeServiceStub(channel).Exchange(ExchangeRequest(
            subject_token=issuer.mint(repository_id="100", audience="kubegate")), timeout=30)
    assert answer.credential


def token_exchange(url: str, issuer: GitHubActionsIssuer) -> None:
    """One exchange over the token endpoint (plaintext on loopback), a connection of its own."""
    form = urllib.parse.urlencode(exchange_form(issuer.mint(repository_id="100",
                                                            audience="kubegate"))).encode()
    with urllib.request.urlopen(url, data=form, timeout=30) as answer:
        assert answer.status == 200 and json.load(answer)["access_token"]


def allows(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines()
               if json.loads(line).get("decision") == "allow")


def metric(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name
               and labels.items() <= sample.labels.items())


def counted_allows(metrics_url: str) -> float:
    return metric(metrics_url, "kubegate_exchanges_total", result="allow")


def health_status(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(answer.status)


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for serve in started:
        if serve.poll() is None:
            serve.kill()
        serve.communicate(timeout=60)


def test_two_workers_share_the_port_the_audit_the_metrics_and_survive_a_killed_worker(
    tmp_path: Path, github_issuer: GitHubActionsIssuer, stopped: list[subprocess.Popen[str]],
) -> None:
    health_port = free_port()
    serve, banner = start(write_config(tmp_path, github_issuer, health_port), 2, stopped)
    target, metrics_url = banner["gRPC"].split()[0], "http://" + banner["metrics"].split()[0]
    workers = children(serve.pid)
    assert len(workers) == 2 and banner["workers"].startswith("2 (pids ")
    state = tmp_path / "state"
    files = [state / "audit.w0.log", state / "audit.w1.log"]

    made = 0
    while made < 200 and not all(allows(path) for path in files):
        exchange(target, github_issuer)
        made += 1
    assert all(allows(path) for path in files), f"one worker served all {made}"
    token_url = banner["OAuth"].split()[0]
    for _ in range(4):  # the RFC 8693 endpoint shares its port among the workers too
        token_exchange(token_url, github_issuer)
        made += 1
    assert sum(allows(path) for path in files) == made
    assert not (state / "audit.log").exists()
    assert counted_allows(metrics_url) == made
    assert health_status(health_port, "") == health_pb2.HealthCheckResponse.SERVING
    assert health_status(health_port, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING

    verify = subprocess.run([sys.executable, "-m", "kubegate", "audit", "verify",
                             str(state / "audit.log")], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert [line.split(":")[0] for line in verify.stdout.splitlines()] == [
        str(path) for path in files]

    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    assert poll(lambda: gone(killed), 10, 0.01)
    killed_at = time.monotonic()
    for _ in range(10):  # the other worker answers every new connection at once
        exchange(target, github_issuer)
    made += 10
    assert poll(lambda: len(children(serve.pid) - {killed}) == 2, REPLACED_WITHIN, 0.05), \
        children(serve.pid)
    replaced_after = time.monotonic() - killed_at
    (replacement,) = children(serve.pid) - workers
    assert replacement != killed
    assert poll(lambda: metric(metrics_url, "kubegate_workers", state="ready") == 2,
                REPLACED_WITHIN, 0.05)
    serving_after = time.monotonic() - killed_at
    assert metric(metrics_url, "kubegate_worker_restarts_total") == 1
    assert health_status(health_port, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING
    assert counted_allows(metrics_url) == made  # the killed worker's counts stay
    print(f"worker replaced {replaced_after:.2f}s, serving {serving_after:.2f}s after SIGKILL")

    serve.send_signal(signal.SIGTERM)
    _, stderr = serve.communicate(timeout=60)
    assert serve.returncode == 0, stderr
    running = children_alive(workers | {replacement})
    assert not running, f"orphans: {running}"
    assert f"(pid {killed}) ended with status -9" in stderr


def children_alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if not gone(pid)}


def test_one_worker_is_the_single_process_with_its_one_audit_file(
    tmp_path: Path, github_issuer: GitHubActionsIssuer, stopped: list[subprocess.Popen[str]],
) -> None:
    serve, banner = start(write_config(tmp_path, github_issuer, free_port()), 1, stopped)
    assert children(serve.pid) == set() and "workers" not in banner
    exchange(banner["gRPC"].split()[0], github_issuer)
    state = tmp_path / "state"
    assert allows(state / "audit.log") == 1
    assert sorted(path.name for path in state.glob("audit*")) == ["audit.log"]
    serve.send_signal(signal.SIGTERM)
    _, stderr = serve.communicate(timeout=60)
    assert serve.returncode == 0, stderr


def test_a_worker_file_that_does_not_verify_stops_the_start_with_one_message(
    tmp_path: Path, github_issuer: GitHubActionsIssuer,
) -> None:
    config = write_config(tmp_path, github_issuer, free_port())
    broken = write_log(tmp_path / "state" / "audit.w1.log")
    not_json(broken)
    done = subprocess.run([sys.executable, "-m", "kubegate", "serve", "--config", str(config),
                           "--workers", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr
    [message] = [line for line in done.stderr.splitlines() if "kubegate serve" in line]
    assert message.startswith(f"kubegate serve: cannot start: audit log {broken}: line ")
    assert not (tmp_path / "state" / "audit.w0.log").exists()  # checked before any worker
