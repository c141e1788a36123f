"""A scan result as SARIF 2.1.0, for GitHub code scanning and other SARIF viewers.

Rules of this module:
- pure: a ScanResult in, a JSON-ready dict out; it validates against the OASIS SARIF 2.1.0
  schema (tests/data/sarif-schema-2.1.0.json);
- every rule of the catalogue is in `tool.driver.rules`, with `properties.security-severity`
  a number written as a string (what GitHub reads to show a severity);
- a result's locations are logical (kind/namespace/name of its objects); a mapping finding
  also has a physical location, the mapping file;
- what the scan could not see is an error notification of the invocation, and
  `executionSuccessful` is false then: a partial scan is never a clean SARIF run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

from exchanger.scan.model import Finding, ObjectRef, ScanResult
from exchanger.scan.rules import RULES, Rule

SCHEMA: Final = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                 "sarif-schema-2.1.0.json")
FINGERPRINT: Final = "kubegateFinding/v1"


def build_sarif(result: ScanResult, *, version: str) -> dict[str, Any]:
    rule_ids = list(RULES)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kubegate", "version": version,
                "rules": [_rule(rule) for rule in RULES.values()],
            }},
            "invocations": [{
                "executionSuccessful": result.complete,
                "toolExecutionNotifications": [
                    {"level": "error", "message": {"text": f"could not see: {missing}"}}
                    for missing in result.could_not_see],
            }],
            "results": [_result(f, rule_ids.index(f.rule)) for f in result.findings],
        }],
    }


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id, "name": rule.name,
        "shortDescription": {"text": rule.what},
        "fullDescription": {"text": rule.what},
        "help": {"text": f"Fix: {rule.fix}", "markdown": f"**Fix:** {rule.fix}"},
        "defaultConfiguration": {"level": rule.severity.sarif_level},
        "properties": {"security-severity": rule.severity.security_severity,
                       "tags": ["security", "kubernetes", "rbac"]},
    }


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    logical = [_logical(o) for o in dict.fromkeys(finding.objects)]  # SARIF: unique items
    location: dict[str, Any] = {"logicalLocations": logical}
    if finding.file:
        location["physicalLocation"] = {"artifactLocation": {"uri": _uri(finding.file)}}
    digest = hashlib.sha256("\0".join(finding.key).encode()).hexdigest()
    return {
        "ruleId": finding.rule, "ruleIndex": rule_index,
        "level": finding.severity.sarif_level,
        "message": {"text": f"{finding.message}. Fix: {finding.fix}"},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT: digest},
        "properties": {"security-severity": finding.severity.security_severity,
                       "severity": finding.severity.value, "subject": finding.subject},
    }


def _logical(ref: ObjectRef) -> dict[str, Any]:
    return {"name": ref.name, "fullyQualifiedName": str(ref), "kind": "resource",
            "properties": ref.as_dict()}


def _uri(file: str) -> str:
    path = Path(file)
    return path.as_uri() if path.is_absolute() else path.as_posix()
