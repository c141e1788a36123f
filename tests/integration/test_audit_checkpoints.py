"""Signed audit checkpoints end to end: a real exchanger publishes its chain head to a
ConfigMap on the real kube-apiserver (and to an HTTPS witness), `kubegate audit verify
--checkpoints` proves the file against them, and a rewrite of the file that recomputes every
hash fails; an exchanger restarted on the rewritten file does not sign over the evidence."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml

from exchanger.audit.checkpoint import open_checkpoint
from exchanger.audit.note import parse_verifier_key
from exchanger.audit.stores import config_map_key
from exchanger.server import start_exchanger
from kubegate.cli import main
from kubegate.errors import ExchangeError
from tests.support.auditlogs import rewrite_from, write_log
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster, Kubectl
from tests.support.pki import TestCA
from tests.support.wait import poll
from tests.support.witness import Witness

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "test.example/audit/exchanger-a"
CONFIG_MAP = "kubegate-audit-checkpoints"


def deny(exchanger: TestExchanger, count: int) -> None:
    """`count` decisions in the audit log: refused exchanges are enough."""
    with exchanger.client(attempts=1) as client:
        for _ in range(count):
            with pytest.raises(ExchangeError):
                client.exchange("not-a-jwt")


def published_size(cluster: Cluster, namespace: str) -> int:
    try:
        found = cluster.core.read_namespaced_config_map(CONFIG_MAP, namespace)
    except Exception:  # not created yet
        return -1
    note = (found.data or {}).get(config_map_key(ORIGIN))
    return int(note.split("\n")[1]) if note else -1


def verify(log: Path, key: str, *sources: str) -> int:
    return main(["audit", "verify", str(log), *sources, "--key", key])


@pytest.fixture
def exchanger(start_test_exchanger: StartExchanger, control_plane: ControlPlane,
              namespace: str) -> TestExchanger:
    return start_test_exchanger(
        issuers=[], clusters=[cluster_entry(control_plane)], mappings="",
        audit={"checkpoints": {"interval": "1s", "origin": ORIGIN,
                               "configMap": {"namespace": namespace}}})


def test_checkpoints_on_the_cluster_prove_the_file_and_catch_a_rewrite(
    exchanger: TestExchanger, cluster: Cluster, control_plane: ControlPlane, namespace: str,
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    key, log = exchanger.running.checkpoint_verifier_key, exchanger.config.audit_log
    assert parse_verifier_key(key).name == "kubegate.io/audit"
    deny(exchanger, 3)
    assert poll(lambda: published_size(cluster, namespace) == 3, 15, 0.2)
    deny(exchanger, 2)
    exchanger.running.stop(grace=0)  # the last head is published at shutdown
    assert published_size(cluster, namespace) == 5
    from_cluster = ["--from-configmap", f"{namespace}/{CONFIG_MAP}",
                    "--kubeconfig", str(control_plane.admin_kubeconfig_path)]
    assert verify(log, key, *from_cluster) == 0
    assert capsys.readouterr().out.endswith(
        f"ok, 5 lines; extends 1 signed checkpoint of {ORIGIN} (the latest at line 5)\n")
    saved = tmp_path / "checkpoints.yaml"
    kubectl = Kubectl(binary=control_plane.kubectl_path,
                      kubeconfig=control_plane.admin_kubeconfig_path)
    listing = kubectl.run("get", "configmap", CONFIG_MAP, "-n", namespace, "-o", "yaml")
    assert listing.returncode == 0, listing.stderr
    saved.write_text(listing.stdout)
    assert verify(log, key, "--checkpoints", str(saved)) == 0

    rewrite_from(log, 2)  # edit line 2, recompute every hash after it
    assert main(["audit", "verify", str(log)]) == 0  # the chain alone cannot tell
    capsys.readouterr()
    assert verify(log, key, *from_cluster) == 1
    out = capsys.readouterr().out
    assert f"checkpoint configmap {namespace}/{CONFIG_MAP} key {config_map_key(ORIGIN)} " \
           f"({ORIGIN} at size 5): line 5 has hash " in out
    assert "the file was rewritten at or before line 5" in out
    assert verify(log, key, "--checkpoints", str(saved)) == 1

    with caplog.at_level(logging.ERROR):
        restarted = start_exchanger(exchanger.config)
        try:
            assert poll(lambda: "does not extend the checkpoint" in caplog.text, 10, 0.2)
        finally:
            restarted.stop(grace=0)
    assert published_size(cluster, namespace) == 5, "the evidence was signed over"
    capsys.readouterr()
    assert verify(log, key, *from_cluster) == 1


def refuse_one(shown: str) -> None:
    """One malformed request to the plaintext listener `  gRPC: HOST:PORT (plaintext)`."""
    target = shown.split()[1]
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary("/exchanger.v1.ExchangeService/Exchange")(b"\x08\x01",
                                                                       timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_serve_prints_the_verifier_key_and_publishes_to_a_witness_until_it_stops(
    tmp_path: Path,
) -> None:
    log = write_log(tmp_path / "audit.log", 3)
    with Witness(TestCA("witness CA"), tmp_path) as witness:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "listen": "127.0.0.1:0", "plaintext": True, "stateDir": str(tmp_path / "state"),
            "auditLog": str(log), "metricsListen": "",
            "audit": {"checkpoints": {"origin": ORIGIN, "interval": "1h", "witness": {
                "url": witness.url, "caFile": str(witness.ca_file)}}}}))
        serve = subprocess.Popen(
            [sys.executable, "-m", "kubegate", "serve", "--config", str(config)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert serve.stdout is not None
            lines = [serve.stdout.readline()]
            while lines[-1] and not lines[-1].startswith("  audit log:"):
                lines.append(serve.stdout.readline())
            lines += [serve.stdout.readline(), serve.stdout.readline()]
            assert poll(lambda: len(witness.received) == 1, 15, 0.1)  # at start: seq 3
            refuse_one(next(line for line in lines if line.startswith("  gRPC:")))
            serve.send_signal(signal.SIGTERM)
            _, stderr = serve.communicate(timeout=30)
        finally:
            serve.kill()
    assert serve.returncode == 0, stderr
    shown = next(i for i, line in enumerate(lines) if line.startswith("  checkpoints: "))
    key = parse_verifier_key(lines[shown + 1].strip())
    assert (tmp_path / "state" / "audit-checkpoint-key.pem").stat().st_mode & 0o777 == 0o600
    assert len(witness.received) == 2  # at start, and at shutdown with the denial's line
    checkpoint = open_checkpoint(witness.received[-1].encode(), [key])
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 4)
    folder = tmp_path / "received"
    folder.mkdir()
    (folder / "last.checkpoint").write_text(witness.received[-1])
    assert verify(log, str(key), "--checkpoints", str(folder)) == 0
