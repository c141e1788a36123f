"""Reading configuration: typed fields out of decoded YAML (config files, mapping files,
TrustMapping resources) and out of flags-or-environment, every problem collected with where
it is, values parsed by the one grammar (`kubegate.grammar`).

    report = Report("config.yaml")
    read = Fields(report)
    top = read.section(document, "", {"listen", "reloadInterval"})
    interval = read.duration(top, "reloadInterval", "", default=2.0)
    if report.problems: raise ConfigError(report.problems)

Rules of this module:
- a reader never raises for bad input: it reports `<where>: <field>: <what>` and returns a
  default, so a caller goes on and finds every other problem;
- type names in messages are JSON's (string, integer, number, boolean, null, object, list);
- a refused value is shown cut short (`grammar.shown`): it may be huge or hostile;
- `FlagsOrEnv` is the one reader of `KUBEGATE_*` environment variables behind flags: a flag
  given on the command line wins over its variable.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kubegate import grammar
from kubegate.addresses import parse_address

T = TypeVar("T")


def json_type(value: object) -> str:
    """The JSON type name of a decoded value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "object"
    return "list" if isinstance(value, list | tuple) else type(value).__name__


def join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


class Report:
    """Problems of one document, each prefixed with where it is."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(f"{self.where}: {field}: {message}" if field
                             else f"{self.where}: {message}")


# -- functions over one object ----------------------------------------------------------------


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


def check_fields(obj: dict[str, Any], allowed: frozenset[str] | set[str], field: str,
                 report: Report) -> None:
    for key in sorted(obj, key=str):
        if key not in allowed:
            report.add(join(field, grammar.shown(key).strip("'")), "unknown field")


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
    seen: set[str] = set()  # not `raw[:position]`: a long list would cost its square
    for position, value in enumerate(raw):
        if not isinstance(value, str) or not value:
            report.add(f"{where}[{position}]", f"expected a non-empty string, got "
                       f"{json_type(value)}")
        elif value in seen:
            report.add(f"{where}[{position}]", f"duplicate {grammar.shown(value)}")
        else:
            seen.add(value)
    return tuple(value for value in raw if isinstance(value, str) and value)


def check_known(value: str | None, known: frozenset[str] | None, what: str, field: str,
                report: Report) -> None:
    if value is not None and known is not None and value not in known:
        listed = ", ".join(sorted(known)) or "none"
        report.add(field, f"unknown {what} {grammar.shown(value)} (configured: {listed})")


def parsed_at(obj: dict[str, Any], key: str, field: str, report: Report,
              parse: Callable[[object], T], default: T) -> T:
    """`parse(obj[key])` (a `grammar` function), the default when absent or refused."""
    if key not in obj:
        return default
    try:
        return parse(obj[key])
    except ValueError as error:
        report.add(join(field, key), str(error))
        return default


# -- a reader of config sections --------------------------------------------------------------


class Fields:
    """Typed, optional-by-default fields of config sections, reporting to one Report."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def problem(self, field: str, message: str) -> None:
        self.report.add(field, message)

    def section(self, data: object, where: str, known: set[str]) -> dict[str, Any]:
        """An optional object with only known fields (None is an empty section)."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.report.add(where, f"expected an object, got {json_type(data)}")
            return {}
        check_fields(data, known, where, self.report)
        return data

    def string(self, data: dict[str, Any], key: str, where: str, default: str = "",
               required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.report.add(join(where, key), "required")
            return default
        if not isinstance(value, str):
            self.report.add(join(where, key), f"expected a string, got {json_type(value)}")
            return default
        return value

    def strings(self, data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
        return strings_at(data, key, where, self.report)

    def path(self, data: dict[str, Any], key: str, where: str, base: Path,
             default: Path | None = None, required: bool = False) -> Path | None:
        text = self.string(data, key, where, required=required)
        if not text:
            return default
        return (base / Path(text).expanduser()).resolve()

    def address(self, data: dict[str, Any], key: str, where: str, default: str = "", *,
                unix: bool = True) -> str:
        """An address (`HOST:PORT`, or `unix:/path` with unix), checked; "" stays ""."""
        text = self.string(data, key, where, default)
        if text:
            try:
                parse_address(text, unix=unix)
            except ValueError as error:
                self.report.add(join(where, key), str(error))
        return text

    def duration(self, data: dict[str, Any], key: str, where: str, default: float) -> float:
        return parsed_at(data, key, where, self.report, grammar.parse_duration, default)

    def seconds(self, data: dict[str, Any], key: str, where: str, default: int) -> int:
        return parsed_at(data, key, where, self.report, grammar.parse_whole_seconds, default)

    def rate(self, data: dict[str, Any], key: str, where: str, default: float) -> float:
        return parsed_at(data, key, where, self.report, grammar.parse_rate, default)

    def flag(self, data: dict[str, Any], key: str, where: str, default: bool = False) -> bool:
        if key in data and not isinstance(data[key], bool):
            self.report.add(join(where, key), f"expected true or false, got "
                            f"{json_type(data[key])}")
            return default
        return bool(data.get(key, default))


# -- flags over environment variables ---------------------------------------------------------


def env_name(flag: str) -> str:
    """`KUBEGATE_<FLAG>`: the variable behind a flag (`--token-file`: KUBEGATE_TOKEN_FILE)."""
    return "KUBEGATE_" + flag.upper().replace("-", "_")


class FlagsOrEnv:
    """Each flag's value from the command line, else from `KUBEGATE_<FLAG>`, problems
    collected. `flag` names are without dashes: `token-file`."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], *,
                 env: bool = True) -> None:
        self.args, self.environ, self.env = args, environ, env
        self.problems: list[str] = []

    def where(self, flag: str) -> str:
        return f"--{flag} ({env_name(flag)})" if self.env else f"--{flag}"

    def problem(self, flag: str | None, message: str) -> None:
        self.problems.append(f"{self.where(flag)}: {message}" if flag else message)

    def given(self, flag: str) -> bool:
        return self.raw(flag) is not None

    def raw(self, flag: str) -> str | None:
        value = getattr(self.args, flag.replace("-", "_"), None)
        if value is not None and value is not False:
            return str(value)
        return self.environ.get(env_name(flag)) if self.env else None

    def text(self, flag: str, default: str = "") -> str:
        value = self.raw(flag)
        return default if value is None else value.strip()

    def switch(self, flag: str) -> bool:
        value = self.raw(flag)
        if value is None or value.strip() == "":
            return False
        try:
            return grammar.parse_bool(value)
        except ValueError as error:
            self.problem(flag, str(error))
            return False

    def parsed(self, flag: str, parse: Callable[[object], T], default: T) -> T:
        value = self.raw(flag)
        if value is None:
            return default
        try:
            return parse(value.strip())
        except ValueError as error:
            self.problem(flag, str(error))
            return default

    def duration(self, flag: str, default: float, *, minimum: float = 0.0) -> float:
        seconds = self.parsed(flag, grammar.parse_duration, default)
        if seconds < minimum:
            self.problem(flag, f"must be at least {minimum:g}s")
            return default
        return seconds
