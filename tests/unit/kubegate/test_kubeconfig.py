"""Documents for kubectl: the ExecCredential reports expiry early but never in the past,
kubeconfigs have the shapes kubectl reads, an exec kubeconfig holds no secret, and a written
kubeconfig is private (0600)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import yaml

from kubegate.credential import ClusterInfo, Credential
from kubegate.kubeconfig import (
    EXEC_API_VERSION,
    exec_credential,
    exec_kubeconfig,
    reported_expiry,
    rfc3339,
    token_kubeconfig,
    write_kubeconfig,
)

NOW = 1_700_000_000  # 2023-11-14T22:13:20Z
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjaTpvY3RvLW9yZy93ZWIifQ.c2lnbmF0dXJl"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def credential(*, expires_at: int = NOW + 900, ca: bytes = CA) -> Credential:
    return Credential(
        token=TOKEN, token_type="urn:ietf:params:oauth:token-type:jwt", expires_at=expires_at,
        token_id="tid-1", session_id="sid-1", mapping="web-deploy",
        cluster=ClusterInfo(name="demo", server="https://10.0.0.1:6443",
                            certificate_authority_data=ca, namespace="web",
                            service_account="", user="ci:octo-org/web",
                            groups=("kubegate:deployers",)),
    )


def test_rfc3339_is_utc_with_a_z_and_whole_seconds() -> None:
    assert rfc3339(NOW) == "2023-11-14T22:13:20Z"
    assert rfc3339(NOW + 0.9) == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(("expires_in", "margin", "now", "reported"), [
    (900, 60, NOW, NOW + 840),          # a minute early: client-go keeps no margin of its own
    (900, 0, NOW, NOW + 900),           # no margin asked: the real expiry
    (30, 60, NOW, NOW),                 # less left than the margin: now, not the past
    (-100, 60, NOW, NOW),               # already expired: still not before now
    (900, 60, NOW + 0.25, NOW + 840),
    (30, 60, NOW + 0.25, NOW + 1),      # a fraction of a second rounds up, never down
])
def test_exec_credential_expiry_is_early_by_the_margin_but_never_before_now(
        expires_in: int, margin: int, now: float, reported: int) -> None:
    assert reported_expiry(NOW + expires_in, now=now, margin=margin) == reported


def test_a_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin"):
        reported_expiry(NOW, now=NOW, margin=-1)


def test_exec_credential_has_the_v1_shape_with_token_and_expiry() -> None:
    assert exec_credential(credential(), now=NOW) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": TOKEN, "expirationTimestamp": "2023-11-14T22:27:20Z"},
    }


def test_exec_credential_uses_the_default_margin_of_a_minute() -> None:
    status = exec_credential(credential(expires_at=NOW + 600), now=NOW)["status"]
    assert status["expirationTimestamp"] == rfc3339(NOW + 540)


def test_token_kubeconfig_names_cluster_user_and_context_with_the_namespace() -> None:
    document = token_kubeconfig(credential())
    assert (document["apiVersion"], document["kind"]) == ("v1", "Config")
    (cluster,) = document["clusters"]
    assert cluster["name"] == "demo"
    assert cluster["cluster"]["server"] == "https://10.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == CA
    (user,) = document["users"]
    assert user["user"] == {"token": TOKEN}
    (context,) = document["contexts"]
    assert context["context"] == {"cluster": "demo", "user": user["name"], "namespace": "web"}
    assert document["current-context"] == context["name"]


def test_a_cluster_without_a_ca_leaves_certificate_authority_data_out() -> None:
    (cluster,) = token_kubeconfig(credential(ca=b""))["clusters"]
    assert cluster["cluster"] == {"server": "https://10.0.0.1:6443"}


def test_exec_kubeconfig_runs_the_command_never_interactively_and_holds_no_token() -> None:
    document = exec_kubeconfig(credential(), ["kubegate", "credential", "--socket", "/run/s"])
    (user,) = document["users"]
    assert user["user"] == {"exec": {
        "apiVersion": EXEC_API_VERSION, "command": "kubegate",
        "args": ["credential", "--socket", "/run/s"], "interactiveMode": "Never",
        "provideClusterInfo": False,
    }}
    assert TOKEN not in json.dumps(document)
    assert "token" not in user["user"]
    (context,) = document["contexts"]
    assert context["context"]["namespace"] == "web"


def test_exec_kubeconfig_takes_cluster_info_env_and_a_namespace() -> None:
    info = credential().cluster
    document = exec_kubeconfig(info, ["kubegate-credential"], env={"KUBEGATE_ROLE": "deploy"},
                               namespace="staging")
    plugin = document["users"][0]["user"]["exec"]
    assert (plugin["command"], plugin["args"]) == ("kubegate-credential", [])
    assert plugin["env"] == [{"name": "KUBEGATE_ROLE", "value": "deploy"}]
    assert document["contexts"][0]["context"]["namespace"] == "staging"


def test_exec_kubeconfig_needs_a_command() -> None:
    with pytest.raises(ValueError, match="command"):
        exec_kubeconfig(credential(), [])


@pytest.mark.parametrize("name", ["kubeconfig", "config.yaml", "config.json"])
def test_write_kubeconfig_writes_a_0600_file_that_reads_back(tmp_path: Path,
                                                             name: str) -> None:
    path = tmp_path / "nested" / name
    document = token_kubeconfig(credential())
    write_kubeconfig(path, document)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = json.loads(path.read_text()) if name.endswith(".json") else yaml.safe_load(
        path.read_text())
    assert loaded == document
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left behind


def test_write_kubeconfig_replaces_a_looser_file_with_a_0600_one(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("old")
    path.chmod(0o644)
    write_kubeconfig(path, token_kubeconfig(credential()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text())["users"][0]["user"]["token"] == TOKEN
