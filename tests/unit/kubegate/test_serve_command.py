"""`kubegate serve` that cannot start says why in one message and exits non-zero, never with a
traceback: here, an audit log whose last complete line does not verify (a torn one is
recovered, see tests/unit/exchanger/test_audit_resume.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.auditlogs import CASES, write_log

ROOT = Path(__file__).resolve().parents[3]


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubegate", "serve", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )


@pytest.mark.parametrize("case", CASES)
def test_serve_with_a_corrupt_audit_log_prints_one_message_and_exits_1(
    tmp_path: Path, case: str,
) -> None:
    corrupt, line, problem = CASES[case]
    log = write_log(tmp_path / "audit.log")
    corrupt(log)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "plaintext": True,
                                      "stateDir": str(tmp_path / "state"),
                                      "auditLog": str(log)}))
    result = serve(config)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [message] = [text for text in result.stderr.splitlines() if "kubegate serve" in text]
    assert message.startswith(f"kubegate serve: cannot start: audit log {log}: line {line} ")
    assert problem in message and f"kubegate audit verify {log}" in message
    assert "move it aside" in message
    assert result.stdout == ""  # it never got as far as describing a running exchanger


def test_serve_with_a_configured_checkpoint_key_missing_says_how_to_make_one(
    tmp_path: Path,
) -> None:
    key = tmp_path / "keys" / "audit.pem"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "plaintext": True, "stateDir": str(tmp_path / "state"),
        "audit": {"checkpoints": {"key": str(key), "witness": {"url": "https://w.example"}}}}))
    result = serve(config)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (f"kubegate serve: cannot start: audit checkpoint key {key}: not found; create one "
            f"with `kubegate audit key --create --file {key}`") in result.stderr
    assert not key.exists()


def test_the_start_banner_names_the_token_endpoint_when_there_is_one(tmp_path: Path) -> None:
    from exchanger.config import build_config
    from kubegate.commands.serve import describe

    config = build_config(
        {"listen": "127.0.0.1:8443", "httpListen": "127.0.0.1:8445", "stateDir": str(tmp_path),
         "clusters": [{"name": "dev", "server": "https://10.0.0.2:6443",
                       "backend": "selfIssued"}],
         "selfIssued": {"listen": "127.0.0.1:8444"}},
        base=tmp_path, environ={}, source="c.yaml")
    banner = describe(config, 8443, None, 8444, token_endpoint="https://127.0.0.1:8445")
    assert "  OAuth:     https://127.0.0.1:8445/oauth2/token (RFC 8693" in banner
    assert "OAuth" not in describe(config, 8443, None, 8444)
