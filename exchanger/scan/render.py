"""A scan result as a table (for people) or JSON (for tools).

Rules of this module:
- pure: a ScanResult in, text out;
- the table never reads as clean when the scan could not see something: every `could not
  see` line comes first, and the summary says INCOMPLETE;
- JSON is `{"findings": [...], "could_not_see": [...], "complete": bool}`.
"""

from __future__ import annotations

import json
from typing import Final

from exchanger.scan.model import ScanResult, Severity

HEADERS: Final = ("SEVERITY", "ID", "OBJECT", "MESSAGE")


def summary(result: ScanResult) -> str:
    """One line: the counts per severity, and whether the scan saw everything."""
    counts = {s: sum(1 for f in result.findings if f.severity is s) for s in Severity}
    line = (f"{len(result.findings)} finding(s): {counts[Severity.HIGH]} high, "
            f"{counts[Severity.MEDIUM]} medium, {counts[Severity.LOW]} low")
    if not result.complete:
        return (f"INCOMPLETE: could not see {len(result.could_not_see)} thing(s), so this is "
                f"not a clean result; {line}")
    return line


def table(result: ScanResult) -> str:
    rows = [(f.severity.value, f.rule, str(f.objects[0]), f.message) for f in result.findings]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(HEADERS[:3])]
    lines = [f"could not see: {missing}" for missing in result.could_not_see]
    for row in [HEADERS, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                           strict=False))
                     + "  " + row[3])
    lines.append(summary(result))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def as_json(result: ScanResult) -> str:
    return json.dumps({
        "findings": [f.as_dict() for f in result.findings],
        "could_not_see": [c.as_dict() for c in result.could_not_see],
        "complete": result.complete,
    }, indent=2) + "\n"
