"""`kubegate demo` on a machine with no cluster and no network: it finishes well within a
minute, shows for CI jobs and for people one allowed and one denied exchange each, break-glass,
alice's credential through the gateway (in front of a stand-in for kube-apiserver), with
verified audit chains, and never prints a whole token."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.")


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "demo", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return run_demo()


def test_the_demo_exits_0_with_an_allow_and_a_deny_for_jobs_and_for_people(
        demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert out.count("decision     allow (expected allow: as expected)") == 2
    assert out.count("decision     deny (expected deny: as expected)") == 2
    assert "mapping      web-production-deploy" in out
    assert "user/groups  ci:octo-org/web [kubegate:deployers]" in out
    assert "status       PERMISSION_DENIED" in out
    assert "reason       NO_MATCHING_MAPPING" in out
    # who each mapping admits, in the words of `mappings explain --blast-radius`
    assert "admits repository 892634011 on refs/heads/main in environment production" in out
    assert "admits people in group sre-leads with a verified email" in out
    # a person in the mapped group is a Kubernetes user of her own; one outside is refused
    assert "mapping      sre-ops" in out
    assert ("user/groups  oidc:alice@example.com [kubegate:sre, oidc:sre-leads, "
            "oidc:engineers]") in out
    assert "reason       ROLE_NOT_ALLOWED" in out
    assert "without approval   deny APPROVAL_REQUIRED" in out
    # the audit report's view of this run's sessions: the break-glass one names its request
    report = out.split("kubegate audit report --kubegate-log", 1)[1].split("\naudit log ")[0]
    rows = [line.split()[0] for line in report.splitlines()[1:] if line.startswith("    ")
            and not line.strip().startswith("(")]
    assert rows == ["web-production-deploy", "sre-ops", "break-glass-admin"]
    assert "approved by alice@example.com; revoked early" in report
    assert "as oidc:alice@example.com; session-revoked early" in report  # at the gateway
    assert "with approval      allow: user oidc:bob@example.com [kubegate:break-glass]" in out
    assert "demo result: ok" in out


def test_the_demo_prints_the_audit_lines_and_a_verified_chain(
        demo: subprocess.CompletedProcess[str]) -> None:
    lines = [line.strip() for line in demo.stdout.splitlines() if line.startswith("  {")]
    records = [json.loads(line) for line in lines]
    assert [r["decision"] for r in records] == [
        "allow", "deny", "allow", "deny",            # two CI jobs, two engineers
        "deny", "access", "access", "allow", "access", "access", "deny",
        "access"]                                    # alice revokes her session (gateway)
    # break-glass: refused, asked, approved, granted (naming the request and its approver),
    # first use, revoked, refused again
    assert records[2]["grant"]["user"] == "oidc:alice@example.com"
    assert 'groups contains "sre-leads"' in records[3]["detail"] and "bob" not in lines[3]
    assert records[4]["reason"] == "APPROVAL_REQUIRED"
    assert [r["access"]["event"] for r in records if r["decision"] == "access"] == [
        "created", "approved", "activated", "revoked", "session-revoked"]
    assert records[10]["reason"] == "APPROVAL_REQUIRED"
    assert records[7]["access_request"] == records[5]["access"]["request"]
    assert records[7]["approvers"] == ["alice@example.com"]
    assert records[11]["access"]["event"] == "session-revoked"
    assert records[11]["session_id"] == records[2]["session_id"]
    assert "audit chain: ok, 12 lines verified" in demo.stdout


def gateway_scene(out: str) -> list[str]:
    scene = out.split("] kubegate gateway: ", 1)[1].split("\n[", 1)[0]
    return [line.strip() for line in scene.splitlines()[1:]]


def test_the_demo_shows_alice_through_the_gateway_until_her_session_is_revoked(
        demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    session = re.findall(r"session id   (\S+)", out)[1]  # alice's, from her exchange
    server = re.search(r"cluster      demo (https://127\.0\.0\.1:\d+), namespace ops", out)
    assert server is not None
    lines = gateway_scene(out)
    assert lines[0].startswith("gateway      https://127.0.0.1:")
    assert lines[1] == (f"upstream     {server[1]}: no cluster here, so a stand-in for "
                        "kube-apiserver that echoes who it was asked to act as")
    # relayed as her, with her groups and session, under the gateway's own token
    assert lines[2] == (
        "GET /api/v1/namespaces/ops/pods with her credential -> 200: the API server was asked "
        "to act as oidc:alice@example.com [kubegate:sre, oidc:sre-leads, oidc:engineers], "
        f"session {session}, and shown the gateway's own token, never hers")
    assert lines[3] == ("the same plus Impersonate-User: system:admin -> 403 "
                        "IMPERSONATION_REFUSED (expected 403 IMPERSONATION_REFUSED), and "
                        "nothing went upstream")
    assert lines[4].startswith("her credential with kubegate:cluster-admins added to its "
                               "groups -> 401 BAD_SIGNATURE")
    cut = re.fullmatch(rf"kubegate sessions revoke {session} \(as alice\) -> revoked: her "
                       r"open watch was cut (\d+\.\d+) s later", lines[5])
    assert cut is not None and float(cut[1]) <= 1.0, lines[5]
    assert lines[6].startswith("her credential again -> 403 SESSION_ENDED")
    # the gateway's own request log, compactly, and its verified chain
    assert [line.split()[:4] for line in lines[8:13]] == [
        ["list", "/api/v1/namespaces/ops/pods", "200", "OK"],
        ["list", "/api/v1/namespaces/ops/pods", "403", "IMPERSONATION_REFUSED"],
        ["list", "/api/v1/namespaces/ops/pods", "401", "BAD_SIGNATURE"],
        ["watch", "/api/v1/namespaces/ops/pods?watch=1", "200", "OK"],
        ["list", "/api/v1/namespaces/ops/pods", "403", "SESSION_ENDED"]]
    assert [line.split("session ")[1] for line in lines[8:13]] == [
        session, session, "-", f"{session} (cut: revoked)", "-"], lines
    assert lines[13] == "gateway audit chain: ok, 5 lines verified"
    assert "the gateway relayed alice as herself until her session was revoked" in out


def test_the_demo_never_prints_a_whole_token(demo: subprocess.CompletedProcess[str]) -> None:
    assert JWT.search(demo.stdout) is None
    assert JWT.search(demo.stderr) is None
    assert re.search(r"credential   eyJ[A-Za-z0-9_-]{9}\.\.\. ", demo.stdout)


def test_a_kept_state_dir_holds_the_audit_log_and_a_second_run_extends_it(
        tmp_path: Path) -> None:
    for _ in range(2):
        result = run_demo("--state-dir", str(tmp_path / "state"))
        assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain: ok, 24 lines verified" in result.stdout
    assert len((tmp_path / "state" / "audit.log").read_text().splitlines()) == 24
    assert "after the revoke   deny APPROVAL_REQUIRED" in result.stdout
    assert JWT.search((tmp_path / "state" / "audit.log").read_text()) is None
    # the gateway's request log too: this run's five lines shown, the whole chain verified
    gateway_log = (tmp_path / "state" / "gateway-audit.log").read_text()
    records = [json.loads(line) for line in gateway_log.splitlines()]
    assert [r["decision"] for r in records] == ["gateway"] * 10
    assert "gateway audit chain: ok, 10 lines verified" in result.stdout
    assert len([line for line in gateway_scene(result.stdout) if "session " in line
                and line.split()[0] in ("list", "watch")]) == 5
    assert JWT.search(gateway_log) is None
