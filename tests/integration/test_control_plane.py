"""The ground is real: a TokenRequest token authenticates against the real kube-apiserver,
RBAC allows exactly what is bound, tokens verify offline through the cluster's discovery,
bound tokens die with their object, and the audit log carries the token's credential id."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from tests.support.controlplane import ControlPlane, audit_events
from tests.support.kube import Cluster, Kubectl
from tests.support.wait import poll

POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]



@pytest.fixture
def deployer(cluster: Cluster, namespace: str) -> str:
    """A service account `deployer` allowed to read pods in `namespace`, and nothing else."""
    cluster.create_service_account(namespace, "deployer")
    cluster.create_role(namespace, "pod-reader", POD_READER)
    cluster.bind_role(namespace, "pod-reader", service_account=(namespace, "deployer"))
    return "deployer"


def test_token_request_token_gets_exactly_what_its_role_binding_grants(
    cluster: Cluster, namespace: str, deployer: str,
    kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    other = cluster.create_namespace()
    token = cluster.request_token(namespace, deployer).token
    kubectl = kubectl_with_token(token)

    listed = kubectl.run("get", "pods", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["items"] == []
    assert kubectl.can_i("list", "pods", namespace)
    assert not kubectl.can_i("get", "secrets", namespace)
    assert not kubectl.can_i("create", "pods", namespace)
    assert not kubectl.can_i("list", "pods", other)

    denied = kubectl.run("get", "pods", "-n", other)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    whoami = kubectl.run("auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    username = json.loads(whoami.stdout)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{namespace}:{deployer}"


def test_garbage_token_is_rejected_by_the_apiserver(
    kubectl_with_token: Callable[[str], Kubectl], namespace: str,
) -> None:
    result = kubectl_with_token("not-a-token").run("get", "pods", "-n", namespace)
    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower() or "must be logged in" in result.stderr.lower()


def test_token_verifies_offline_against_the_jwks_named_by_discovery(
    cluster: Cluster, control_plane: ControlPlane, namespace: str, deployer: str,
) -> None:
    token = cluster.request_token(namespace, deployer, audiences=["kubegate"]).token
    context = ssl.create_default_context(cafile=str(control_plane.ca_path))

    def get_json(url: str) -> dict[str, object]:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:  # anonymous
            return json.load(response)  # type: ignore[no-any-return]

    discovery = get_json(f"{control_plane.issuer}/.well-known/openid-configuration")
    assert discovery["issuer"] == control_plane.issuer
    assert discovery["id_token_signing_alg_values_supported"] == ["ES256"]
    keys = jwt.PyJWKSet.from_dict(get_json(str(discovery["jwks_uri"])))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)

    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="kubegate",
                        issuer=control_plane.issuer)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:{deployer}"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == deployer
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key.key, algorithms=["ES256"], audience="someone-else")


def test_pod_bound_token_names_its_pod_like_a_projected_token(
    cluster: Cluster, namespace: str, deployer: str,
) -> None:
    pod = cluster.create_pipeline_pod(namespace, "pipeline", deployer)
    token = cluster.request_token(namespace, deployer, audiences=["kubegate"], bound_to=pod).token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kubernetes.io"]["pod"] == {"name": "pipeline", "uid": pod.metadata.uid}
    review = cluster.token_review(token, ["kubegate"])
    assert review.authenticated
    assert review.user.extra["authentication.kubernetes.io/pod-name"] == ["pipeline"]


def test_secret_bound_token_stops_working_after_the_secret_is_deleted(
    cluster: Cluster, namespace: str, deployer: str,
    kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    secret = cluster.create_secret(namespace, "session")
    token = cluster.request_token(namespace, deployer, bound_to=secret).token
    kubectl = kubectl_with_token(token)
    assert kubectl.run("get", "pods", "-n", namespace).returncode == 0

    cluster.core.delete_namespaced_secret("session", namespace)

    # The apiserver caches successful authentications for about 10 s.
    assert poll(lambda: kubectl.run("get", "pods", "-n", namespace).returncode != 0, 30)
    assert not cluster.token_review(token).authenticated


def test_audit_log_records_the_token_jti_as_credential_id(
    cluster: Cluster, control_plane: ControlPlane, namespace: str, deployer: str,
    kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    token = cluster.request_token(namespace, deployer).token
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert kubectl_with_token(token).run("get", "pods", "-n", namespace).returncode == 0

    def logged() -> bool:
        return any(
            event.get("user", {}).get("extra", {})
            .get("authentication.kubernetes.io/credential-id") == [f"JTI={jti}"]
            and event["objectRef"].get("namespace") == namespace
            for event in audit_events(control_plane.audit_log_path)
            if event.get("objectRef")
        )

    assert poll(logged, 15), "no audit event carries the token's credential id"
    issued = [
        e for e in audit_events(control_plane.audit_log_path)
        if e.get("annotations", {}).get("authentication.kubernetes.io/issued-credential-id")
        == f"JTI={jti}"
    ]
    assert issued, "the TokenRequest event does not name the issued credential id"
    assert token not in control_plane.audit_log_path.read_text()


def test_stop_leaves_no_process_behind(tmp_path: Path, control_plane: ControlPlane) -> None:
    second = ControlPlane(control_plane.bin_dir, tmp_path)
    second.start()
    pids = second.pids()
    assert len(pids) == 2
    second.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from kubegate_bench.controlplane import ControlPlane
plane = ControlPlane(Path(sys.argv[1]), Path(sys.argv[2]))
plane._start_etcd()
print(plane.pids()[0], flush=True)
time.sleep(600)
"""


def test_children_die_when_the_test_run_is_killed(
    tmp_path: Path, control_plane: ControlPlane,
) -> None:
    bin_dir = control_plane.bin_dir
    repo = Path(__file__).resolve().parents[2]
    runner = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(bin_dir), str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo / "bench")},
    )
    try:
        assert runner.stdout is not None
        etcd_pid = int(runner.stdout.readline())
        os.kill(etcd_pid, 0)  # running
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        if runner.stdout:
            runner.stdout.close()

    def gone() -> bool:
        try:
            os.kill(etcd_pid, 0)
        except ProcessLookupError:
            return True
        # a zombie until init reaps it counts as gone
        return Path(f"/proc/{etcd_pid}/stat").read_text().split()[2] == "Z"

    assert poll(gone, 10)
