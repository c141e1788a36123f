"""`kubegate status` without a network: static keys, a self-issued cluster (kubegate holds no
credentials for it, so it is not checked), and the mapping folder's loaded and rejected counts.
Against real issuers and API servers: tests/integration/test_key_layouts.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegate.cli import main
from tests.support.auditlogs import LINES, edited, torn, write_log

STATIC_JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
                         "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
                         "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}

MAPPING = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: NAME}
spec:
  issuer: ISSUER
  claims: [{claim: sub, equals: ci}]
  grant: {cluster: local, namespace: ci, user: ci, groups: [deployers], maxLifetime: 15m}
"""


def mapping(name: str, issuer: str = "fixed") -> str:
    return MAPPING.replace("NAME", name).replace("ISSUER", issuer)


def config_file(folder: Path, **extra: Any) -> Path:
    (folder / "mappings").mkdir(exist_ok=True)
    document = {
        "listen": "127.0.0.1:0", "stateDir": str(folder / "state"),
        "mappings": str(folder / "mappings"),
        "issuers": [{"name": "fixed", "url": "https://issuer.example", "audiences": ["kubegate"],
                     "algorithms": ["ES256"], "keys": {"static": STATIC_JWKS}}],
        "clusters": [{"name": "local", "server": "https://127.0.0.1:6443",
                      "backend": "selfIssued"}],
        "selfIssued": {"listen": "127.0.0.1:8444"}, **extra,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_all_well_exits_0_and_shows_every_part(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = config_file(tmp_path)
    (tmp_path / "mappings" / "ci.yaml").write_text(mapping("ci"))
    code, out, _ = status(capsys, "--config", str(config))
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert ["fixed", "ok", "static", "1", "0s", "ago", "-"] in lines
    assert ["local", "not-checked", "https://127.0.0.1:6443", "-", "-"] in lines
    assert ["files", str(tmp_path / "mappings"), "read", "1", "0"] in lines


def test_a_rejected_document_holds_back_the_whole_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_file(tmp_path)
    (tmp_path / "mappings" / "ci.yaml").write_text(mapping("ci"))
    (tmp_path / "mappings" / "more.yaml").write_text(
        mapping("ci") + "---\n" + mapping("other", issuer="nobody"))
    code, out, _ = status(capsys, "--config", str(config), "--output", "json")
    assert code == 1
    (files,) = json.loads(out)["mappings"]
    assert (files["loaded"], files["rejected"]) == (0, 2)  # a duplicate name, an unknown issuer
    assert any("duplicate" in problem for problem in files["problems"])
    assert any("nobody" in problem for problem in files["problems"])


def test_json_reports_issuers_and_clusters(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(capsys, "--config", str(config_file(tmp_path)), "--output", "json")
    report = json.loads(out)
    assert code == 0
    assert report["issuers"] == [{"name": "fixed", "source": "static", "state": "ok",
                                  "keys": 1, "last_success": report["issuers"][0]["last_success"],
                                  "error": ""}]
    assert report["clusters"][0]["reachable"] is None


def test_a_bad_config_exits_2_naming_the_field(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = config_file(tmp_path, issuers=[{"name": "x", "url": "http://plain"}])
    code, out, err = status(capsys, "--config", str(config))
    assert code == 2 and out == ""
    assert "issuers[0]" in err


def test_a_cluster_key_source_must_be_a_cluster_kubegate_can_ask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_file(tmp_path, issuers=[
        {"name": "in-cluster", "url": "https://kubernetes.default.svc.cluster.local",
         "audiences": ["kubegate"], "keys": {"kubernetes": {"cluster": "local"}}}])
    code, _, err = status(capsys, "--config", str(config))
    assert code == 2
    assert "'local' is not a configured tokenRequest cluster" in err


def test_the_audit_log_is_reported_as_a_start_would_find_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "audit.log"
    config = config_file(tmp_path, auditLog=str(log))
    code, out, _ = status(capsys, "--config", str(config), "--output", "json")
    assert code == 0 and json.loads(out)["audit"]["state"] == "new"
    write_log(log)
    torn(log)
    before = log.read_bytes()
    code, out, _ = status(capsys, "--config", str(config), "--output", "json")
    audit = json.loads(out)["audit"]
    assert code == 0 and (audit["state"], audit["seq"]) == ("torn", LINES)
    assert "a start moves it aside" in audit["detail"]
    assert log.read_bytes() == before, "status reads the log, never repairs it"
    log.unlink()
    edited(write_log(log))
    code, out, _ = status(capsys, "--config", str(config))
    assert code == 1
    [row] = [line for line in out.splitlines() if line.startswith(str(log))]
    assert row.split()[1] == "corrupt" and "does not verify" in row
