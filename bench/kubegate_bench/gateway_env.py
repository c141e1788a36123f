"""The gateway as tests and benchmark 17 run it: `kubegate gateway --config F` as a real
process on a real config (the exchanger's, with a `gateway:` section), the narrowly scoped
service account it calls the API server as, and kubeconfigs whose server is the gateway.
Shared with the tests (tests/support/gateway.py re-exports it), so it imports no tests and no
pytest: bench/ runs from a fresh clone.

    token_file = gateway_service_account(cluster, tmp_path)      # impersonate rights only
    document = {..., "gateway": gateway_section(cluster="test", token_file=...)}
    with start_gateway_process(document, tmp_path) as gateway:   # waits until it listens
        kubectl = gateway.kubectl(plane, credential.token, tmp_path)
        kubectl.run("get", "--raw", "/api")
        gateway.records()                                         # its audit lines

The gateway's RBAC here is what deploy/ ships: a ClusterRole with `impersonate` on users,
groups and `userextras/kubegate.io/session`, nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubegate.files import write_secret_file
from kubegate_bench.cluster import Cluster, Kubectl
from kubegate_bench.controlplane import ControlPlane, Process, start_process, wait_until

GATEWAY_NAMESPACE = "kubegate-gateway"
GATEWAY_ACCOUNT = "kubegate-gateway"
GATEWAY_USER = f"system:serviceaccount:{GATEWAY_NAMESPACE}:{GATEWAY_ACCOUNT}"
IMPERSONATE_RULES = [
    {"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/kubegate.io/session"],
     "verbs": ["impersonate"]},
]
START_TIMEOUT = 60.0


def gateway_service_account(cluster: Cluster, folder: Path) -> Path:
    """The gateway's identity in the cluster (a service account bound to the impersonate-only
    ClusterRole, idempotent) and a file holding a 1 h token for it (0600)."""
    core, rbac = cluster.core, cluster.rbac
    if not any(n.metadata.name == GATEWAY_NAMESPACE for n in core.list_namespace().items):
        core.create_namespace({"metadata": {"name": GATEWAY_NAMESPACE}})
        cluster.create_service_account(GATEWAY_NAMESPACE, GATEWAY_ACCOUNT)
        rbac.create_cluster_role({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "kubegate-gateway-impersonator"}, "rules": IMPERSONATE_RULES})
        rbac.create_cluster_role_binding({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "kubegate-gateway-impersonator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "kubegate-gateway-impersonator"},
            "subjects": [{"kind": "ServiceAccount", "name": GATEWAY_ACCOUNT,
                          "namespace": GATEWAY_NAMESPACE}]})
    token = cluster.request_token(GATEWAY_NAMESPACE, GATEWAY_ACCOUNT, seconds=3600).token
    path = folder / f"gateway-token-{uuid.uuid4().hex[:8]}"
    write_secret_file(path, str(token).encode())
    return path


def gateway_cluster_entry(plane: ControlPlane, token_file: Path, name: str = "test",
                          ) -> dict[str, Any]:
    """A self-issued cluster entry whose credentials are the gateway's service account."""
    return {"name": name, "server": plane.url, "caFile": str(plane.ca_path),
            "backend": "selfIssued", "credentials": {"tokenFile": str(token_file)}}


@dataclass
class GatewayProcess:
    """A running `kubegate gateway`."""

    process: Process
    url: str
    ca_file: Path
    audit_log: Path
    recordings: Path
    config_file: Path

    def kubeconfig(self, token: str, folder: Path, namespace: str = "default") -> Path:
        path = folder / f"gateway-kubeconfig-{uuid.uuid4().hex[:8]}"
        document = {
            "apiVersion": "v1", "kind": "Config", "current-context": "gateway",
            "clusters": [{"name": "gateway", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "gateway", "user": {"token": token}}],
            "contexts": [{"name": "gateway", "context": {
                "cluster": "gateway", "user": "gateway", "namespace": namespace}}],
        }
        write_secret_file(path, json.dumps(document).encode())
        return path

    def kubectl(self, plane: ControlPlane, token: str, folder: Path) -> Kubectl:
        return Kubectl(binary=plane.kubectl_path, kubeconfig=self.kubeconfig(token, folder))

    def records(self) -> list[dict[str, Any]]:
        """The gateway's audit lines (decision `gateway`) so far."""
        if not self.audit_log.exists():
            return []
        lines = [json.loads(line) for line in self.audit_log.read_text().splitlines() if line]
        return [line for line in lines if line.get("decision") == "gateway"]

    def verify_audit(self) -> subprocess.CompletedProcess[str]:
        """`kubegate audit verify` on the gateway's request log."""
        return subprocess.run(  # noqa: S603
            [sys.executable, "-m", "kubegate", "audit", "verify", str(self.audit_log)],
            capture_output=True, text=True, timeout=60, check=False)

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


@contextmanager
def start_gateway_process(document: dict[str, Any], folder: Path, log_level: str = "DEBUG",
                          ) -> Iterator[GatewayProcess]:
    """Write document as the config file, run `kubegate gateway` on it, wait until it prints
    where it listens; stop it (SIGTERM) at the end, and raise if it did not exit 0 then."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "gateway-config.yaml"
    config_file.write_text(yaml.safe_dump(document))
    process = start_process(f"gateway-{uuid.uuid4().hex[:6]}", [
        sys.executable, "-m", "kubegate", "gateway", "--config", str(config_file),
        "--log-level", log_level], folder)
    try:
        wait_until(lambda: "listening on https://" in _read(process.log_path),
                   timeout=START_TIMEOUT, what="the gateway to listen", process=process)
        text = _read(process.log_path)
        url = "https://" + text.split("listening on https://", 1)[1].split()[0]
        state = Path(document.get("stateDir", folder))
        section = document["gateway"]
        yield GatewayProcess(
            process=process, url=url, ca_file=state / "tls" / "gateway-ca.crt",
            audit_log=Path(section.get("audit", {}).get("path",
                                                         state / "gateway-audit.log")),
            recordings=Path(section.get("recordings", state / "recordings")),
            config_file=config_file)
    finally:
        process.stop()
    # reached only when the body did not raise: SIGTERM is a clean stop
    if process.popen.returncode != 0:
        raise RuntimeError(f"the gateway exited {process.popen.returncode}:\n"
                           + process.log_tail())


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
