"""The gateway's own credential comes from the cluster entry it fronts: a token file read again
when it changes (a projected token rotates), a client certificate, or a kubeconfig's user; a
kubeconfig that would run a program per request is refused at start, with the cluster named."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from exchanger.config import ClusterConfig
from exchanger.gateway.proxy_upstream import GatewayUpstreamError, gateway_upstream
from kubegate.files import write_secret_file
from tests.support.pki import TestCA

SERVER = "https://10.0.0.1:6443"


def entry(**fields: object) -> ClusterConfig:
    base: dict[str, object] = {"name": "prod", "server": SERVER, "ca_file": None,
                               "backend": "selfIssued"}
    return ClusterConfig(**{**base, **fields})  # type: ignore[arg-type]


def ca_file(folder: Path) -> Path:
    path = folder / "ca.crt"
    path.write_bytes(TestCA("kubegate-test-upstream").cert_pem)
    return path


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    write_secret_file(token, b"first\n")
    upstream = gateway_upstream(entry(ca_file=ca_file(tmp_path), token_file=token))
    assert upstream.token() == "first"
    assert (upstream.target.host, upstream.target.port) == ("10.0.0.1", 6443)
    write_secret_file(token, b"second\n")
    os.utime(token, (1, 1))  # a new mtime, whatever the clock's resolution
    assert upstream.token() == "second"


def test_a_client_certificate_means_no_bearer_token(tmp_path: Path) -> None:
    cert, key = TestCA("kubegate-test-client").issue_client("gateway").write(tmp_path, "gw")
    upstream = gateway_upstream(entry(ca_file=ca_file(tmp_path), client_cert_file=cert,
                                      client_key_file=key))
    assert upstream.token() == ""
    upstream.connector.context(upstream.ca_pem)  # the certificate and key load


def test_a_kubeconfig_gives_server_ca_and_token(tmp_path: Path) -> None:
    ca = TestCA("kubegate-test-kubeconfig").cert_pem
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {
            "server": "https://192.0.2.7:443",
            "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": "u", "user": {"token": "kubeconfig-token"}}]}))
    upstream = gateway_upstream(entry(server="", kubeconfig=kubeconfig))
    assert upstream.target.host == "192.0.2.7" and upstream.ca_pem == ca
    assert upstream.token() == "kubeconfig-token"


@pytest.mark.parametrize("user", [
    {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}},
    {"auth-provider": {"name": "oidc"}},
    {},
])
def test_a_kubeconfig_user_the_gateway_cannot_use_is_refused(tmp_path: Path,
                                                              user: dict[str, object]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": SERVER}}],
        "users": [{"name": "u", "user": user}]}))
    with pytest.raises(GatewayUpstreamError) as refused:
        gateway_upstream(entry(kubeconfig=kubeconfig))
    assert "cluster prod" in refused.value.detail


def test_an_entry_without_credentials_or_ca_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GatewayUpstreamError):
        gateway_upstream(entry(ca_file=ca_file(tmp_path)))
    with pytest.raises(GatewayUpstreamError):
        gateway_upstream(entry(token_file=tmp_path / "token"))


def test_a_spilled_client_key_is_removed_when_the_process_exits() -> None:
    import subprocess
    import sys

    code = ("from exchanger.gateway.proxy_upstream import _spill\n"
            "cert, key = _spill('t', b'cert', b'key')\n"
            "import os, stat\n"
            "assert stat.S_IMODE(os.stat(key).st_mode) == 0o600\n"
            "print(key.parent)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[4])
    folder = Path(done.stdout.strip())
    assert folder.name.startswith("kubegate-gateway-t-") and not folder.exists()
