"""The table printed at the end of a run, and the JSON written beside it."""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from kubegate_bench.common import Outcome, Row

_OPS = {"ratio<=": "ratio <= ", "ratio>=": "ratio >= ", "value<=": "<= ", "value==": "== "}


def _number(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if value else "0"
    return f"{text} {unit}".strip()


def target_text(row: Row) -> str:
    if row.check == "info" or row.target is None:
        return "-"
    unit = "" if row.check.startswith("ratio") else f" {row.unit}"
    return f"{_OPS[row.check]}{row.target:g}{unit}".replace("ratio ", "")


def met_text(row: Row) -> str:
    return {True: "met", False: "MISSED", None: "info"}[row.met]


def table(outcomes: Mapping[str, Outcome]) -> str:
    """A Markdown table: one line per row, an error line per broken benchmark."""
    header = ("| # | measurement | value | baseline (same run) | baseline value | ratio "
              "| target | result |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for key in sorted(outcomes):
        outcome = outcomes[key]
        if outcome.error:
            first = outcome.error.strip().splitlines()[-1][:150]
            lines.append(f"| {key} | {outcome.title} | - | - | - | - | - | ERROR: {first} |")
        for row in outcome.rows:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
            name = row.name + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {row.bench} | {name} | {_number(row.value, row.unit)} | "
                f"{row.baseline or '-'} | {_number(row.baseline_value, row.unit)} | {ratio} | "
                f"{target_text(row)} | {met_text(row)} |")
    return "\n".join(lines)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    import os

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "grpcio": _version("grpcio"), "pyjwt": _version("PyJWT"),
            "cryptography": _version("cryptography"),
            "load_average": list(os.getloadavg())}


def write_json(path: Path, mode: str, outcomes: Mapping[str, Outcome],
               seconds: float) -> None:
    document = {"mode": mode, "seconds": round(seconds, 1), "machine": machine(),
                "benchmarks": {key: outcomes[key].to_dict() for key in sorted(outcomes)}}
    path.write_text(json.dumps(_clean(document), indent=1, allow_nan=False) + "\n")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, tuples lists, keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
