"""A real Kubernetes control plane for the benchmarks and the tests: etcd and kube-apiserver
as child processes.

It lives in bench/ because `bench/run` works from a fresh clone with kubegate and its `bench`
extra only (no pytest, nothing of tests/); the tests import it from here (pytest puts bench/
on the path) through tests/support/controlplane.py.

The binaries are built from the pinned Go modules by `tools/build-control-plane.sh` into a
per-machine cache; `KUBEBUILDER_ASSETS` (the envtest convention) points at ready ones instead.

Invariants:
- everything listens on loopback only, on ports the OS picked;
- every child is started in its own process group with a parent-death signal, so an
  interrupted or killed test run leaves no etcd or apiserver behind;
- the audit policy logs at Metadata level, so no token body ever lands in the audit log.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchanger.localtls import LocalCA, key_pem, new_ec_key, public_key_pem

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("kube-apiserver", "kubectl", "etcd")
START_TIMEOUT = float(os.environ.get("KUBEGATE_CONTROL_PLANE_START_TIMEOUT", "90"))

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/readyz*", "/healthz*", "/livez*"]
- level: Metadata
"""

EMPTY_AUTHENTICATION_CONFIG = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt: []
"""

HOW_TO_GET_BINARIES = (
    "the control plane binaries (kube-apiserver, kubectl, etcd) are missing: run "
    "tools/build-control-plane.sh (needs Go >= 1.26 and the Go module proxy), or set "
    "KUBEBUILDER_ASSETS to a folder that holds them"
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be found or started."""


def versions() -> dict[str, str]:
    pairs = {}
    for line in (REPO / "tools" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def cache_bin_dir() -> Path:
    pinned = versions()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (
        base / "kubegate" / "control-plane"
        / f"kube-{pinned['KUBE_VERSION']}-etcd-{pinned['ETCD_VERSION']}"
    )


def find_binaries() -> Path | None:
    """The folder holding all three binaries, or None when they are not there."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    folder = Path(assets) if assets else cache_bin_dir()
    if all(os.access(folder / name, os.X_OK) for name in BINARIES):
        return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(kw_only=True)
class Process:
    """One child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=grace)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_process(name: str, argv: list[str], workdir: Path) -> Process:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - argv is built here, not from input
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, cwd=workdir,  # noqa: PLW1509
        )
    return Process(name=name, popen=popen, log_path=log_path)


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, process: Process | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise ControlPlaneError(
                f"{process.name} exited with {process.popen.returncode} while waiting for "
                f"{what}:\n{process.log_tail()}"
            )
        if check():
            return
        time.sleep(0.2)
    tail = process.log_tail() if process else ""
    raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


class ControlPlane:
    """etcd + kube-apiserver on loopback, with the files tests need to reach them.

    Attributes a test may use: `url`, `ca_path`, `ca_pem`, `issuer`, `jwks_uri`,
    `audit_log_path`, `authentication_config_path`, `admin_cert_path`, `admin_key_path`,
    `admin_kubeconfig_path`, `kubectl_path`, `sa_public_key_pem`.

    The service-account issuer is the API server's own URL, with its JWKS there too, unless
    `issuer` says otherwise (`--service-account-issuer`). With another issuer, `jwks_uri`
    (`--service-account-jwks-uri`) is left out by default, and the API server publishes
    `https://<advertise address>:<port>/openid/v1/jwks` in its discovery document, as it does
    in kubeadm and kind clusters (issuer `https://kubernetes.default.svc.cluster.local`).

    With `audit_webhook` (a webhook kubeconfig: the sink's URL, its CA, optionally a client
    certificate), the API server also sends every audit event, under the same policy, to that
    webhook (`--audit-webhook-mode=blocking`: each event is sent as the request is served, so
    a test waits for no batch timer); start the receiver before the control plane.
    """

    def __init__(self, bin_dir: Path, workdir: Path, *, issuer: str | None = None,
                 jwks_uri: str | None = None, audit_webhook: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.audit_webhook = audit_webhook
        self.workdir = workdir
        self.kubectl_path = bin_dir / "kubectl"
        self._processes: list[Process] = []
        self._write_files()
        if issuer is not None:
            self.issuer = issuer
        self._jwks_uri_flag = jwks_uri if issuer is not None else self.jwks_uri
        if issuer is not None:
            self.jwks_uri = jwks_uri or f"{self.url}/openid/v1/jwks"  # the advertise address

    # -- files -------------------------------------------------------------------------

    def _write_files(self) -> None:
        work = self.workdir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.issuer = self.url
        self.jwks_uri = f"{self.url}/openid/v1/jwks"

        serving_ca = LocalCA("kubegate-test-apiserver-ca")
        self.ca_path = serving_ca.write(work / "ca.crt")
        self.ca_pem = serving_ca.cert_pem
        self.serving_cert_path, self.serving_key_path = serving_ca.issue_server().write(
            work, "serving"
        )

        client_ca = LocalCA("kubegate-test-client-ca")
        self.client_ca_path = client_ca.write(work / "client-ca.crt")
        self.admin_cert_path, self.admin_key_path = client_ca.issue_client(
            "admin", ("system:masters",)
        ).write(work, "admin")

        sa_key = new_ec_key()  # ES256 service-account tokens
        self.sa_key_path = work / "sa.key"
        self.sa_key_path.touch(mode=0o600)
        self.sa_key_path.write_bytes(key_pem(sa_key))
        self.sa_public_key_pem = public_key_pem(sa_key)
        self.sa_pub_path = work / "sa.pub"
        self.sa_pub_path.write_bytes(self.sa_public_key_pem)

        self.audit_policy_path = work / "audit-policy.yaml"
        self.audit_policy_path.write_text(AUDIT_POLICY)
        self.audit_log_path = work / "audit.log"
        self.authentication_config_path = work / "authentication-config.yaml"
        self.authentication_config_path.write_text(EMPTY_AUTHENTICATION_CONFIG)
        self.admin_kubeconfig_path = work / "admin.kubeconfig"
        self.admin_kubeconfig_path.touch(mode=0o600)
        self.admin_kubeconfig_path.write_text(
            json.dumps(self.kubeconfig(
                user={"client-certificate": str(self.admin_cert_path),
                      "client-key": str(self.admin_key_path)}
            ))
        )

    def kubeconfig(self, *, user: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig document for this cluster with the given `users[].user` entry."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "certificate-authority": str(self.ca_path)}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {
                "cluster": "test", "user": "test", "namespace": namespace}}],
            "current-context": "test",
        }

    def set_authentication_config(self, document: str) -> None:
        """Atomically replace the AuthenticationConfiguration; the apiserver reloads it."""
        tmp = self.authentication_config_path.with_suffix(".tmp")
        tmp.write_text(document)
        tmp.replace(self.authentication_config_path)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start_etcd()
            self._start_apiserver()
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        etcd = start_process("etcd", [
            str(self.bin_dir / "etcd"),
            "--data-dir", str(self.workdir / "etcd-data"),
            "--listen-client-urls", self.etcd_url,
            "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ], self.workdir)
        self._processes.append(etcd)
        wait_until(lambda: _http_ok(f"{self.etcd_url}/health"), timeout=START_TIMEOUT,
                   what="etcd /health", process=etcd)

    def _start_apiserver(self) -> None:
        apiserver = start_process("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # loopback cannot back the kubernetes Service
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.serving_cert_path}",
            f"--tls-private-key-file={self.serving_key_path}",
            f"--client-ca-file={self.client_ca_path}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.issuer}",
            *([f"--service-account-jwks-uri={self._jwks_uri_flag}"] if self._jwks_uri_flag
              else []),
            f"--service-account-key-file={self.sa_pub_path}",
            f"--service-account-signing-key-file={self.sa_key_path}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            f"--authentication-config={self.authentication_config_path}",
            f"--audit-policy-file={self.audit_policy_path}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json",
            *self._audit_webhook_flags(),
            f"--cert-dir={self.workdir / 'certs'}",
        ], self.workdir)
        self._processes.append(apiserver)
        context = self.ssl_context()
        wait_until(lambda: _http_ok(f"{self.url}/readyz", context), timeout=START_TIMEOUT,
                   what="kube-apiserver /readyz", process=apiserver)
        admin = self.admin_ssl_context()
        wait_until(lambda: _http_ok(f"{self.url}/api/v1/namespaces/default", admin),
                   timeout=30, what="namespace default", process=apiserver)

    def _audit_webhook_flags(self) -> list[str]:
        if self.audit_webhook is None:
            return []
        return [f"--audit-webhook-config-file={self.audit_webhook}",
                "--audit-webhook-mode=blocking", "--audit-webhook-initial-backoff=1s"]

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._processes]

    # -- clients -----------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def admin_ssl_context(self) -> ssl.SSLContext:
        context = self.ssl_context()
        context.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
        return context


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def audit_events(path: Path) -> Iterator[dict[str, Any]]:
    """Every event in a JSON-lines audit log, oldest first."""
    if not path.exists():
        return
    with path.open() as log:
        for line in log:
            if line.strip():
                yield json.loads(line)


def cluster_entry(plane: ControlPlane, name: str = "test") -> dict[str, Any]:
    """A tokenRequest cluster entry of kubegate's config for this control plane, with admin
    credentials."""
    return {"name": name, "server": plane.url, "caFile": str(plane.ca_path),
            "credentials": {"clientCertFile": str(plane.admin_cert_path),
                            "clientKeyFile": str(plane.admin_key_path)}}
