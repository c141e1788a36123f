"""The exec plugin's credential cache end to end: `kubegate exchange --exec-kubeconfig` against a
TokenRequest exchanger on the real kube-apiserver, then real kubectl commands through the
kubeconfig it wrote. Ten commands make one exchange: one allow line in the audit log and one
session Secret, also when they start all at once from an empty cache; `--no-cache` exchanges
for every command; another identity never gets the cached credential."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exchanger.kube.port import SESSION_LABEL
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster
from tests.support.oidc import GitHubActionsIssuer

REPOSITORY_ID = "6160"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


@pytest.fixture
def web(cluster: Cluster) -> str:
    namespace = cluster.create_namespace("web")
    cluster.create_service_account(namespace, "deployer")
    cluster.create_role(namespace, "pod-reader", POD_READER)
    cluster.bind_role(namespace, "pod-reader", service_account=(namespace, "deployer"))
    return namespace


@pytest.fixture
def exchanger(web: str, control_plane: ControlPlane, start_test_exchanger: StartExchanger,
              github_issuer: GitHubActionsIssuer) -> TestExchanger:
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims:
  - {{claim: repository_id, equals: "{REPOSITORY_ID}"}}
  - {{claim: ref, equals: refs/heads/main}}
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer, maxLifetime: 15m}}
"""
    return start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)], mappings=mappings)


def environment(control_plane: ControlPlane, cache: Path) -> dict[str, str]:
    """kubegate (this venv) and kubectl on PATH, the cache in a folder of this test."""
    path = os.pathsep.join([str(Path(sys.executable).parent),
                            str(control_plane.kubectl_path.parent), "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(cache.parent), "KUBEGATE_CACHE_DIR": str(cache),
            "LANG": "C.UTF-8"}


def write_exec_kubeconfig(exchanger: TestExchanger, token_file: Path, kubeconfig: Path,
                          env: Mapping[str, str], *extra: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kubegate"), "exchange", "--server", exchanger.target,
         "--ca-file", str(exchanger.running.ca_file), "--token-file", str(token_file),
         "--role", "web-deploy", *extra, "--exec-kubeconfig", str(kubeconfig)],
        env=dict(env), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def kubectl_get_pods(kubeconfig: Path, namespace: str, env: Mapping[str, str]) -> None:
    done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-n",
                           namespace, "-o", "name"], env=dict(env), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


def allowed(exchanger: TestExchanger) -> list[dict[str, object]]:
    return [d for d in exchanger.decisions() if d["decision"] == "allow"]


def sessions(cluster: Cluster, namespace: str) -> list[str]:
    secrets = cluster.core.list_namespaced_secret(namespace, label_selector=SESSION_LABEL)
    return [s.metadata.name for s in secrets.items]


def token_file(folder: Path, issuer: GitHubActionsIssuer, name: str = "token") -> Path:
    path = folder / name
    path.write_text(issuer.mint(repository="octo-org/web", repository_id=REPOSITORY_ID,
                                audience="kubegate"))
    return path


def test_ten_kubectl_commands_make_one_exchange_and_one_session(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, control_plane: ControlPlane,
        cluster: Cluster, web: str, tmp_path: Path) -> None:
    cache, kubeconfig = tmp_path / "cache", tmp_path / "kubeconfig"
    env = environment(control_plane, cache)
    write_exec_kubeconfig(exchanger, token_file(tmp_path, github_issuer), kubeconfig, env)
    for _ in range(10):
        kubectl_get_pods(kubeconfig, web, env)

    (allow,) = allowed(exchanger)  # the check exchange filled the cache; kubectl used it
    assert sessions(cluster, web) == [f"kubegate-session-{allow['session_id']}"]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (entry,) = cache.glob("*.json")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_ten_parallel_kubectl_commands_on_an_empty_cache_make_one_exchange(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, control_plane: ControlPlane,
        cluster: Cluster, web: str, tmp_path: Path) -> None:
    cache, kubeconfig = tmp_path / "cache", tmp_path / "kubeconfig"
    env = environment(control_plane, cache)
    write_exec_kubeconfig(exchanger, token_file(tmp_path, github_issuer), kubeconfig, env)
    for path in cache.iterdir():
        path.unlink()  # as if the credential had run out: the next commands race for a new one

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: kubectl_get_pods(kubeconfig, web, env), range(10)))

    assert len(allowed(exchanger)) == 2  # the check, and one for all ten commands
    assert len(sessions(cluster, web)) == 2


def test_no_cache_exchanges_for_every_command(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, control_plane: ControlPlane,
        cluster: Cluster, web: str, tmp_path: Path) -> None:
    cache, kubeconfig = tmp_path / "cache", tmp_path / "kubeconfig"
    env = environment(control_plane, cache)
    write_exec_kubeconfig(exchanger, token_file(tmp_path, github_issuer), kubeconfig, env,
                          "--no-cache")
    for _ in range(3):
        kubectl_get_pods(kubeconfig, web, env)
    assert len(allowed(exchanger)) >= 4
    assert not cache.exists() or list(cache.iterdir()) == []


def test_another_subject_token_never_gets_the_cached_credential(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, control_plane: ControlPlane,
        cluster: Cluster, web: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = environment(control_plane, cache)
    first, second = token_file(tmp_path, github_issuer, "a"), token_file(tmp_path, github_issuer,
                                                                         "b")
    for number, token in enumerate((first, second)):
        kubeconfig = tmp_path / f"kubeconfig-{number}"
        write_exec_kubeconfig(exchanger, token, kubeconfig, env)
        kubectl_get_pods(kubeconfig, web, env)
        kubectl_get_pods(kubeconfig, web, env)
    assert len(allowed(exchanger)) == 2
    assert len({line["caller"]["jti"] for line in allowed(exchanger)}) == 2  # type: ignore[index]
    assert len(list(cache.glob("*.json"))) == 2
