"""`kubegate audit verify FILE --checkpoints ... --key ...` proves the file extends every
signed checkpoint of its log, and names the checkpoint and line when it does not;
`kubegate audit key` prints the verifier key and makes a key file only when asked."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exchanger.audit.chain import verify_chain
from exchanger.audit.checkpoint import Checkpoint, sign_checkpoint
from exchanger.audit.note import NoteSigner
from exchanger.audit.signing import load_key
from exchanger.audit.stores import config_map_key
from kubegate.cli import main
from tests.support.auditlogs import append_lines, rewrite_from, write_log

ROOT = Path(__file__).resolve().parents[3]
ORIGIN = "kubegate.io/audit/exchanger-0"


def new_key(tmp_path: Path, name: str = "kubegate.io/audit") -> NoteSigner:
    return NoteSigner(name, load_key(tmp_path / f"{name.replace('/', '_')}.pem", create=True))


def publish(log: Path, signer: NoteSigner, folder: Path, origin: str = ORIGIN) -> Path:
    """A checkpoint of the log as it is now, written to a file in `folder`."""
    with log.open("rb") as lines:
        head = verify_chain(lines).head
    folder.mkdir(exist_ok=True)
    path = folder / f"{config_map_key(origin)}-{head.seq}.checkpoint"
    path.write_text(sign_checkpoint(Checkpoint.of(origin, head), signer))
    return path


def verify(*args: str | Path) -> int:
    return main(["audit", "verify", *map(str, args)])


def test_a_log_that_extends_its_checkpoints_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log, signer = write_log(tmp_path / "audit.log", 3), new_key(tmp_path)
    folder = tmp_path / "checkpoints"
    publish(log, signer, folder)
    append_lines(log, 2)
    publish(log, signer, folder)
    append_lines(log, 1)
    assert verify(log, "--checkpoints", folder, "--key", signer.verifier) == 0
    assert capsys.readouterr().out == (
        f"{log}: ok, 6 lines; extends 2 signed checkpoints of {ORIGIN} (the latest at line 5)\n")


def test_a_rewritten_log_fails_naming_the_checkpoint_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log, signer = write_log(tmp_path / "audit.log", 5), new_key(tmp_path)
    checkpoint = publish(log, signer, tmp_path / "checkpoints")
    rewrite_from(log, 3)
    assert verify(log) == 0  # the chain alone cannot tell
    capsys.readouterr()
    assert verify(log, "--checkpoints", checkpoint, "--key", signer.verifier) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{log}: checkpoint {checkpoint} ({ORIGIN} at size 5): line 5 has "
                          "hash "), out
    assert "the file was rewritten at or before line 5" in out


def test_a_rotated_key_keeps_old_checkpoints_verifiable_with_both_verifier_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log, folder = write_log(tmp_path / "audit.log", 2), tmp_path / "checkpoints"
    old, new = new_key(tmp_path, "kubegate.io/audit"), new_key(tmp_path, "kubegate.io/audit-2")
    publish(log, old, folder)
    append_lines(log, 2)
    publish(log, new, folder)
    assert verify(log, "--checkpoints", folder, "--key", old.verifier, "--key",
                  new.verifier) == 0
    capsys.readouterr()
    assert verify(log, "--checkpoints", folder, "--key", new.verifier) == 1
    assert "no signature by a given key (signed by kubegate.io/audit+" in capsys.readouterr().out


def test_a_checkpoint_changed_after_signing_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log, signer = write_log(tmp_path / "audit.log", 3), new_key(tmp_path)
    path = publish(log, signer, tmp_path / "checkpoints")
    path.write_text(path.read_text().replace("\n3\n", "\n2\n"))
    assert verify(log, "--checkpoints", path, "--key", signer.verifier) == 1
    assert "does not verify: the note was changed after it was signed" in capsys.readouterr().out


def test_checkpoints_of_several_logs_need_an_origin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log, signer = write_log(tmp_path / "audit.log", 3), new_key(tmp_path)
    other = write_log(tmp_path / "other.log", 4)
    folder = tmp_path / "checkpoints"
    publish(log, signer, folder)
    publish(other, signer, folder, origin="kubegate.io/audit/exchanger-1")
    assert verify(log, "--checkpoints", folder, "--key", signer.verifier) == 2
    assert "checkpoints of 2 logs" in capsys.readouterr().err
    assert verify(log, "--checkpoints", folder, "--key", signer.verifier,
                  "--origin", ORIGIN) == 0
    capsys.readouterr()
    assert verify(log, "--checkpoints", folder, "--key", signer.verifier,
                  "--origin", "nobody") == 1
    assert "no checkpoint of nobody" in capsys.readouterr().out


def test_a_config_map_document_is_a_checkpoint_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    log, signer = write_log(tmp_path / "audit.log", 3), new_key(tmp_path)
    note = publish(log, signer, tmp_path / "checkpoints").read_text()
    document = tmp_path / "configmap.yaml"
    document.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubegate-audit-checkpoints", "namespace": "kubegate"},
        "data": {config_map_key(ORIGIN): note}}))
    assert verify(log, "--checkpoints", document, "--key", signer.verifier) == 0
    rewrite_from(log, 1)
    capsys.readouterr()
    assert verify(log, "--checkpoints", document, "--key", signer.verifier) == 1
    assert (f"checkpoint {document} (configmap kubegate/kubegate-audit-checkpoints) key "
            f"{config_map_key(ORIGIN)} ({ORIGIN} at size 3): line 3") in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--checkpoints", "CP"], "checkpoints need --key"),
    (["--checkpoints", "CP", "--key", "not-a-key"], "--key: "),
    (["--key", "K"], "--key and --origin go with --checkpoints"),
    (["LOG", "--checkpoints", "CP", "--key", "K"], "checks one FILE"),
    (["--checkpoints", "missing", "--key", "K"], "missing: cannot read"),
])
def test_wrong_calls_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str,
) -> None:
    log, signer = write_log(tmp_path / "audit.log", 1), new_key(tmp_path)
    checkpoint = publish(log, signer, tmp_path / "checkpoints")
    replace = {"CP": str(checkpoint), "K": str(signer.verifier), "LOG": str(log),
               "missing": str(tmp_path / "missing")}
    assert verify(log, *[replace.get(a, a) for a in args]) == 2
    assert message in capsys.readouterr().err


def test_audit_key_creates_a_private_key_file_and_prints_its_verifier_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "keys" / "audit.pem"
    assert main(["audit", "key", "--file", str(path)]) == 1
    assert "not found; create one with `kubegate audit key --create" in capsys.readouterr().err
    assert main(["audit", "key", "--file", str(path), "--create"]) == 0
    printed = capsys.readouterr().out.strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert printed == str(NoteSigner("kubegate.io/audit", load_key(path)).verifier)
    assert main(["audit", "key", "--file", str(path), "--name", "prod.example/audit"]) == 0
    assert capsys.readouterr().out.startswith("prod.example/audit+")
    assert "PRIVATE" not in printed and path.read_bytes().decode() not in printed


def test_audit_key_reads_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "stateDir": str(tmp_path / "state"),
        "audit": {"checkpoints": {"keyName": "prod.example/audit",
                                  "witness": {"url": "https://w.example/cp"}}}}))
    assert main(["audit", "key", "--config", str(config)]) == 1  # the default key is made at start
    capsys.readouterr()
    assert main(["audit", "key", "--config", str(config), "--create"]) == 0
    assert capsys.readouterr().out.startswith("prod.example/audit+")
    assert (tmp_path / "state" / "audit-checkpoint-key.pem").exists()
    config.write_text(yaml.safe_dump({"stateDir": str(tmp_path / "state")}))
    assert main(["audit", "key", "--config", str(config)]) == 2
    assert "no audit.checkpoints" in capsys.readouterr().err


def test_the_checkpoint_check_runs_as_a_module_without_a_traceback(tmp_path: Path) -> None:
    log, signer = write_log(tmp_path / "audit.log", 4), new_key(tmp_path)
    checkpoint = publish(log, signer, tmp_path / "checkpoints")
    rewrite_from(log, 2)
    result = subprocess.run(
        [sys.executable, "-m", "kubegate", "audit", "verify", str(log), "--checkpoints",
         str(checkpoint), "--key", str(signer.verifier)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "line 4 has hash" in result.stdout
