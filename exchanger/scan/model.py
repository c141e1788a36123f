"""The values a scan produces: severities, objects, findings, and what it could not see.

Rules of this module:
- values only, frozen and keyword-only; no I/O;
- severities are ordered (low < medium < high); `--fail-on` compares with that order, and
  `none` is no threshold at all;
- a finding's identity (`key`) is its rule, subject and target: the same path found through
  two bindings is one finding naming both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final


class Severity(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def sarif_level(self) -> str:
        """SARIF's `level`: error, warning or note."""
        return _SARIF_LEVEL[self]

    @property
    def security_severity(self) -> str:
        """GitHub code scanning's `security-severity`, a number as a string (>= 7.0 is high,
        >= 4.0 medium, else low)."""
        return _SECURITY_SEVERITY[self]


_RANK: Final = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}
_SARIF_LEVEL: Final = {Severity.LOW: "note", Severity.MEDIUM: "warning",
                       Severity.HIGH: "error"}
_SECURITY_SEVERITY: Final = {Severity.LOW: "3.0", Severity.MEDIUM: "5.5", Severity.HIGH: "8.0"}

FAIL_ON_CHOICES: Final = ("high", "medium", "low", "none")


def fails(severities: list[Severity], fail_on: str) -> bool:
    """Whether any severity is at or above `fail_on` (one of FAIL_ON_CHOICES)."""
    if fail_on == "none":
        return False
    threshold = Severity(fail_on).rank
    return any(severity.rank >= threshold for severity in severities)


@dataclass(frozen=True, kw_only=True, order=True)
class ObjectRef:
    """A Kubernetes object (or a TrustMapping) a finding names; namespace "" when cluster-wide."""

    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One thing to fix. `objects[0]` is the object the finding is about (where a reader
    looks first); `subject` is who holds the privilege ("" when none does); `file` is the
    mapping file for mapping findings."""

    rule: str
    severity: Severity
    objects: tuple[ObjectRef, ...]
    message: str
    fix: str
    subject: str = ""
    target: str = ""
    file: str = ""

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("a finding names at least one object")
        object.__setattr__(self, "objects", tuple(dict.fromkeys(self.objects)))  # no repeats

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.rule, self.subject, self.target, str(self.objects[0]))

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "severity": self.severity.value,
                "object": self.objects[0].as_dict(),
                "objects": [o.as_dict() for o in self.objects], "subject": self.subject,
                "message": self.message, "fix": self.fix,
                **({"file": self.file} if self.file else {})}


@dataclass(frozen=True, kw_only=True)
class CouldNotSee:
    """A resource the scan's credentials could not list (or a question they could not ask),
    and the API's reason."""

    resource: str
    namespace: str = ""
    reason: str

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.resource}{where}: {self.reason}"

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "namespace": self.namespace, "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class ScanResult:
    findings: tuple[Finding, ...] = ()
    could_not_see: tuple[CouldNotSee, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.could_not_see


def merge_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """One finding per key (the objects of duplicates joined), sorted most severe first,
    then by rule and object."""
    merged: dict[tuple[str, str, str, str], Finding] = {}
    for finding in findings:
        seen = merged.get(finding.key)
        if seen is None:
            merged[finding.key] = finding
            continue
        extra = tuple(o for o in finding.objects if o not in seen.objects)
        merged[finding.key] = Finding(
            rule=seen.rule, severity=max(seen.severity, finding.severity, key=_rank),
            objects=seen.objects + extra, message=seen.message, fix=seen.fix,
            subject=seen.subject, target=seen.target, file=seen.file)
    return tuple(sorted(merged.values(), key=lambda f: (-f.severity.rank, f.rule,
                                                        str(f.objects[0]), f.subject)))


def _rank(severity: Severity) -> int:
    return severity.rank
