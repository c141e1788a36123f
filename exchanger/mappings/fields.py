"""Reading typed fields out of decoded YAML while collecting problems, and durations.

Rules of this module:
- a reader never raises for bad input: it reports `<where>: <field>: <what>` to a Report and
  returns None (or an empty value), so a caller can go on and find every other problem;
- type names in messages are JSON's (string, integer, number, boolean, null, object, list).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Final

from exchanger.mappings.conditions import json_type

_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?[hms])+")
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT_SECONDS: Final = {"h": 3600, "m": 60, "s": 1}


def parse_duration(value: object) -> int:
    """Seconds in a Go-style duration (`15m`, `1h30m`, `90s`, `1.5h`) or integer seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ValueError(f"expected a duration such as 15m or 1h30m, or integer seconds, "
                         f"got {value!r}")
    total = sum(Fraction(amount) * _UNIT_SECONDS[unit]
                for amount, unit in _DURATION_PART.findall(value))
    if total.denominator != 1:
        raise ValueError(f"{value!r} is not a whole number of seconds")
    return int(total)


class Report:
    """Problems of one document, each prefixed with where it is."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(f"{self.where}: {field}: {message}" if field
                             else f"{self.where}: {message}")


def join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def object_at(raw: object, field: str, report: Report) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        report.add(field, f"expected an object, got {json_type(raw)}")
        return None
    return raw


def child(obj: dict[str, Any], key: str, field: str, report: Report) -> dict[str, Any] | None:
    """The required object `obj[key]`, or None after reporting it missing or mistyped."""
    where = join(field, key)
    if key not in obj:
        report.add(where, "required")
        return None
    return object_at(obj[key], where, report)


def check_fields(obj: dict[str, Any], allowed: frozenset[str], field: str,
                  report: Report) -> None:
    for key in obj:
        if key not in allowed:
            report.add(join(field, str(key)), "unknown field")


def string_at(obj: dict[str, Any], key: str, field: str, report: Report, *,
            required: bool) -> str | None:
    where = join(field, key)
    if key not in obj:
        if required:
            report.add(where, "required")
        return None
    value = obj[key]
    if not isinstance(value, str) or not value:
        report.add(where, f"expected a non-empty string, got {json_type(value)}")
        return None
    return value


def strings_at(obj: dict[str, Any], key: str, field: str, report: Report) -> tuple[str, ...]:
    where, raw = join(field, key), obj.get(key, [])
    if not isinstance(raw, list):
        report.add(where, f"expected a list of strings, got {json_type(raw)}")
        return ()
    for position, value in enumerate(raw):
        if not isinstance(value, str) or not value:
            report.add(f"{where}[{position}]", f"expected a non-empty string, got "
                       f"{json_type(value)}")
        elif value in raw[:position]:
            report.add(f"{where}[{position}]", f"duplicate {value!r}")
    return tuple(value for value in raw if isinstance(value, str))


def check_known(value: str | None, known: frozenset[str] | None, what: str, field: str,
           report: Report) -> None:
    if value is not None and known is not None and value not in known:
        listed = ", ".join(sorted(known)) or "none"
        report.add(field, f"unknown {what} {value!r} (configured: {listed})")
