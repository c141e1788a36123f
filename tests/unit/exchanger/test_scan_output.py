"""What a scan prints: the table, JSON and SARIF 2.1.0 (validated against the OASIS schema),
--fail-on's thresholds, the exit codes, and README's rule table kept equal to the catalogue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from exchanger.scan.model import (
    CouldNotSee,
    Finding,
    ObjectRef,
    ScanResult,
    Severity,
    fails,
    merge_findings,
)
from exchanger.scan.render import as_json, table
from exchanger.scan.rules import RULES
from exchanger.scan.sarif import build_sarif
from kubegate.cli import main

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "tests/data/sarif-schema-2.1.0.json").read_text())

MINT = Finding(rule="KG002", severity=Severity.HIGH, subject="User mallory",
               objects=(ObjectRef(kind="ServiceAccount", namespace="web", name="deployer"),
                        ObjectRef(kind="RoleBinding", namespace="web", name="mint")),
               message="User mallory can create tokens", fix=RULES["KG002"].fix)
READ = Finding(rule="KG013", severity=Severity.MEDIUM, subject="ServiceAccount web/reader",
               objects=(ObjectRef(kind="TrustMapping", name="reader"),),
               message="mapping reader grants ...", fix=RULES["KG013"].fix,
               file="mappings/reader.yaml")
AUTOMOUNT = Finding(rule="KG011", severity=Severity.LOW,
                    objects=(ObjectRef(kind="ServiceAccount", namespace="web", name="x"),),
                    message="automounts", fix=RULES["KG011"].fix)
UNSEEN = CouldNotSee(resource="clusterroles", reason="403 Forbidden: no")


@pytest.mark.parametrize(("severities", "fail_on", "expected"), [
    ([Severity.HIGH], "high", True),
    ([Severity.MEDIUM], "high", False),
    ([Severity.MEDIUM], "medium", True),
    ([Severity.LOW], "medium", False),
    ([Severity.LOW], "low", True),
    ([Severity.HIGH], "none", False),
    ([], "low", False),
])
def test_fail_on_is_a_threshold_at_or_above(severities: list[Severity], fail_on: str,
                                            expected: bool) -> None:
    assert fails(severities, fail_on) is expected


def test_the_same_path_through_two_bindings_is_one_finding_naming_both() -> None:
    other = Finding(rule="KG002", severity=Severity.HIGH, subject="User mallory",
                    objects=(MINT.objects[0], ObjectRef(kind="ClusterRoleBinding", name="b")),
                    message="again", fix="")
    merged = merge_findings([AUTOMOUNT, MINT, other, READ])
    assert [f.rule for f in merged] == ["KG002", "KG013", "KG011"]  # most severe first
    assert [str(o) for o in merged[0].objects] == [
        "ServiceAccount/web/deployer", "RoleBinding/web/mint", "ClusterRoleBinding/b"]


def test_the_table_lists_severity_id_object_and_message() -> None:
    text = table(ScanResult(findings=(MINT, AUTOMOUNT)))
    lines = text.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["SEVERITY", "ID", "OBJECT", "MESSAGE"]
    assert re.split(r"\s{2,}", lines[1]) == ["high", "KG002", "ServiceAccount/web/deployer",
                                             "User mallory can create tokens"]
    assert lines[-1] == "2 finding(s): 1 high, 0 medium, 1 low"


def test_a_partial_scan_never_reads_as_clean() -> None:
    text = table(ScanResult(could_not_see=(UNSEEN,)))
    assert text.splitlines()[0] == "could not see: clusterroles: 403 Forbidden: no"
    assert text.splitlines()[-1].startswith("INCOMPLETE: could not see 1 thing(s)")
    document = json.loads(as_json(ScanResult(could_not_see=(UNSEEN,))))
    assert document == {"findings": [], "complete": False, "could_not_see": [
        {"resource": "clusterroles", "namespace": "", "reason": "403 Forbidden: no"}]}


def test_json_findings_carry_rule_severity_objects_subject_message_and_fix() -> None:
    document = json.loads(as_json(ScanResult(findings=(READ,))))
    assert document["findings"][0] == {
        "rule": "KG013", "severity": "medium",
        "object": {"kind": "TrustMapping", "namespace": "", "name": "reader"},
        "objects": [{"kind": "TrustMapping", "namespace": "", "name": "reader"}],
        "subject": "ServiceAccount web/reader", "message": "mapping reader grants ...",
        "fix": RULES["KG013"].fix, "file": "mappings/reader.yaml"}


def test_sarif_validates_against_the_sarif_2_1_0_schema_and_carries_severities() -> None:
    document = build_sarif(ScanResult(findings=(MINT, READ, AUTOMOUNT)), version="1.0")
    jsonschema.Draft4Validator(SCHEMA).validate(document)
    assert document["version"] == "2.1.0" and "$schema" in document
    run = document["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "kubegate"
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    for rule in driver["rules"]:
        assert isinstance(rule["properties"]["security-severity"], str)
        assert 0.0 < float(rule["properties"]["security-severity"]) <= 10.0
        assert rule["help"]["text"].startswith("Fix: ")
    levels = [(r["ruleId"], r["level"]) for r in run["results"]]
    assert levels == [("KG002", "error"), ("KG013", "warning"), ("KG011", "note")]
    mint, read = run["results"][0], run["results"][1]
    assert driver["rules"][mint["ruleIndex"]]["id"] == "KG002"
    assert mint["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == \
        "ServiceAccount/web/deployer"
    assert "physicalLocation" not in mint["locations"][0]
    assert read["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == \
        "mappings/reader.yaml"
    assert run["invocations"][0]["executionSuccessful"] is True


def test_a_partial_scan_is_an_unsuccessful_sarif_run_with_its_reasons() -> None:
    document = build_sarif(ScanResult(could_not_see=(UNSEEN,)), version="1.0")
    jsonschema.Draft4Validator(SCHEMA).validate(document)
    invocation = document["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["message"]["text"] == \
        "could not see: clusterroles: 403 Forbidden: no"


def test_the_readme_rule_table_is_the_catalogue() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Scan: standing privilege and paths around the broker")
    section = readme[start:readme.index("\n## ", start + 1)]
    rows = re.findall(r"^\| (KG\d{3}) \| (high|medium|low)", section, re.MULTILINE)
    assert rows == [(rule.id, rule.severity.value) for rule in RULES.values()]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--kubeconfig", str(tmp_path / "missing")]) == 2
    assert "kubegate scan: --kubeconfig" in capsys.readouterr().err
    assert main(["scan", "--mappings", str(tmp_path / "missing"),
                 "--kubeconfig", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit) as exited:
        main(["scan", "--fail-on", "critical"])
    assert exited.value.code == 2


def test_sarif_logical_locations_are_unique_even_when_a_finding_names_an_object_twice() -> None:
    from exchanger.scan.model import Finding, ObjectRef, ScanResult, Severity

    binding = ObjectRef(kind="ClusterRoleBinding", name="admins")
    finding = Finding(rule="KG008", severity=Severity.HIGH, subject="ServiceAccount a/b",
                      message="m", fix="f",
                      objects=(binding, binding, ObjectRef(kind="ClusterRole",
                                                           name="cluster-admin")))
    document = build_sarif(ScanResult(findings=(finding,)), version="1.0")
    (result,) = document["runs"][0]["results"]
    names = [loc["fullyQualifiedName"] for loc in result["locations"][0]["logicalLocations"]]
    assert names == ["ClusterRoleBinding/admins", "ClusterRole/cluster-admin"]
