"""The leak check itself (tests/support/leakcheck.py) can fail: a planted secret is found in
the artefact it was put in, named by kind and artefact but never shown, and a session that
leaks one exits non-zero."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.leakcheck import Finding, SecretRegistry, find_leaks

REPO = Path(__file__).resolve().parents[3]


def a_token() -> str:
    return "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0." + secrets.token_urlsafe(64)


def test_a_planted_token_is_found_in_its_artefact_and_named_without_the_secret() -> None:
    registry, token, other = SecretRegistry(), a_token(), a_token()
    registry.add_token("planted token", token)
    findings = find_leaks(registry, [
        ("a log record", f"refused the token {token} because"),
        ("an audit line", json.dumps({"caller": {"sub": "x"}, "detail": "fine"})),
        ("another token's header and payload", other + " " + token.rsplit(".", 1)[0]),
    ])
    assert findings == [Finding(kind="planted token", artefact="a log record")]
    assert token.rsplit(".", 1)[1] not in str(findings[0])


def test_a_token_is_found_inside_longer_text_and_json() -> None:
    registry, token = SecretRegistry(), a_token()
    registry.add_token("planted token", token)
    texts = [f"Bearer {token}", json.dumps({"credential": token}), f"x={token}&y=1",
             f"{token.rsplit('.', 1)[1]}"]
    assert [len(find_leaks(registry, [("t", text)])) for text in texts] == [1, 1, 1, 1]


def test_a_private_key_is_found_by_its_pem_lines_but_its_public_key_is_not() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    registry = SecretRegistry()
    registry.add_private_key_pem("planted key", private, public)
    assert find_leaks(registry, [("a JSON log line", json.dumps({"key": private}))]) == [
        Finding(kind="planted key", artefact="a JSON log line")]
    assert find_leaks(registry, [("the public key", public)]) == []


def test_short_values_are_not_secrets_the_check_could_tell_apart() -> None:
    registry = SecretRegistry()
    registry.add_token("short", "a.b." + "x" * 31)
    assert len(registry) == 0


def test_a_session_that_leaks_a_secret_exits_non_zero_naming_the_artefact_only(
    tmp_path: Path,
) -> None:
    secret = secrets.token_urlsafe(48)
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(f"""
        import logging

        def test_logs_a_token(secret_registry):
            secret_registry.add_token("planted token", "h.p.{secret}")
            logging.getLogger("exchanger.planted").warning("sent %s", "h.p.{secret}")

        def test_prints_nothing_secret():
            print("all good")
    """))
    environment = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.support.leakcheck", f"--basetemp={tmp_path / 'inner'}",
         str(tmp_path / "test_leaky.py")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
        check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "2 passed" in output and "SECRETS LEAKED" in output
    assert "a planted token appears in a log record of exchanger.planted" in output
    assert secret not in output
