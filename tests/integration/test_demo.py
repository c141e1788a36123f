"""`kubegate demo` on a machine with no cluster and no network: it finishes well within a
minute, shows for CI jobs and for people one allowed and one denied exchange each, with a
verified audit chain, and never prints a whole token."""

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
    assert "with approval      allow: user oidc:bob@example.com [kubegate:break-glass]" in out
    assert "demo result: ok" in out


def test_the_demo_prints_the_audit_lines_and_a_verified_chain(
        demo: subprocess.CompletedProcess[str]) -> None:
    lines = [line.strip() for line in demo.stdout.splitlines() if line.startswith("  {")]
    records = [json.loads(line) for line in lines]
    assert [r["decision"] for r in records] == [
        "allow", "deny", "allow", "deny",            # two CI jobs, two engineers
        "deny", "access", "access", "allow", "access", "access", "deny"]
    # break-glass: refused, asked, approved, granted (naming the request and its approver),
    # first use, revoked, refused again
    assert records[2]["grant"]["user"] == "oidc:alice@example.com"
    assert 'groups contains "sre-leads"' in records[3]["detail"] and "bob" not in lines[3]
    assert records[4]["reason"] == "APPROVAL_REQUIRED"
    assert [r["access"]["event"] for r in records if r["decision"] == "access"] == [
        "created", "approved", "activated", "revoked"]
    assert records[10]["reason"] == "APPROVAL_REQUIRED"
    assert records[7]["access_request"] == records[5]["access"]["request"]
    assert records[7]["approvers"] == ["alice@example.com"]
    assert "audit chain: ok, 11 lines verified" in demo.stdout


def test_the_demo_never_prints_a_whole_token(demo: subprocess.CompletedProcess[str]) -> None:
    assert JWT.search(demo.stdout) is None
    assert JWT.search(demo.stderr) is None
    assert re.search(r"credential   eyJ[A-Za-z0-9_-]{9}\.\.\. ", demo.stdout)


def test_a_kept_state_dir_holds_the_audit_log_and_a_second_run_extends_it(
        tmp_path: Path) -> None:
    for _ in range(2):
        result = run_demo("--state-dir", str(tmp_path / "state"))
        assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain: ok, 22 lines verified" in result.stdout
    assert len((tmp_path / "state" / "audit.log").read_text().splitlines()) == 22
    assert "after the revoke   deny APPROVAL_REQUIRED" in result.stdout
    assert JWT.search((tmp_path / "state" / "audit.log").read_text()) is None
