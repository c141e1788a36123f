r"""One claim condition of a trust mapping, and its pure evaluation against verified claims.

Rules of this module:
- types are strict: a value equals another only if both have the same JSON type and value, so
  the string "74" never equals the number 74, `true` never equals "true" nor 1, and 1 never
  equals 1.0 (Python's True == 1 and 1 == 1.0 are deliberately not used);
- `glob` and `regex` accept string claims only; any other type, and a missing claim, fail;
- `contains` accepts list claims only (such as an ID token's `groups`): it holds when one
  element equals the expected scalar, with the same type-strict rule as `equals` (a list is a
  JSON array: a Python list, or the tuple a verified identity holds it as); a string,
  an object or a missing claim fails (a string is not searched for a substring);
- a glob's `*` and `?` never match `/` or `:`, so a wildcard stays inside one segment of a
  subject such as `repo:ORG/REPO:ref:...`; `**` is refused; everything else is literal;
- a regex must match the whole value (`re.fullmatch`), so prefix and suffix injection fail;
- patterns mean what they mean under `re.ASCII`: `\d`, `\w`, `\s`, `\b` and case-insensitive
  matching mean ASCII only, so `release-\d+` is not met by Arabic-Indic digits nor `(?i)kube`
  by a Kelvin sign (look-alike branch or repository names); literal non-ASCII characters still
  match;
- globs and regexes are matched by RE2 (`patterns`), in time linear in the claim value; no
  claim value is ever matched with Python's backtracking `re`;
- a claim path walks nested objects only: it never indexes into a list, and a path through a
  non-object is a failed condition, never an error;
- patterns are compiled once, when the condition is built; an invalid one is a ValueError.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from exchanger.mappings.patterns import MAX_PATTERN_LENGTH as MAX_PATTERN_LENGTH
from exchanger.mappings.patterns import LinearPattern, compile_glob, compile_regex
from kubegate import configread

Scalar = str | int | float | bool
"""A value a condition can expect: a JSON string, number or boolean (never null)."""

ValueKey = tuple[str, Scalar]
"""A hashable, type-strict key for a scalar: ("int", 1) and ("bool", True) differ."""

_PLAIN_MAPPINGS: Final = (dict, MappingProxyType)  # what claims are; skips a slow ABC check
_LISTS: Final = (list, tuple)  # a verified identity's claims hold lists as tuples (`freeze`)
_SCALARS: Final = "a string, a finite number or a boolean (not null, a list or an object)"


class Operator(enum.StrEnum):
    """How a condition compares a claim; the value is the field name in a document."""

    EQUALS = "equals"
    GLOB = "glob"
    REGEX = "regex"
    ONE_OF = "oneOf"
    CONTAINS = "contains"


class Missing(enum.Enum):
    """The type of MISSING: a claim path that does not resolve to a value."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING


def value_key(value: object) -> ValueKey | None:
    """The type-strict key of a scalar, named by JSON type, or None for null, objects, lists,
    non-finite numbers and anything else."""
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int):
        return ("integer", value)
    if isinstance(value, float):
        return ("number", value) if math.isfinite(value) else None
    if isinstance(value, str):
        return ("string", value)
    return None


def lookup_claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> object:
    """The value at `path` in nested objects, or MISSING; lists are never indexed."""
    value: object = claims
    for name in path:
        parent = _as_object(value)
        if parent is None or name not in parent:
            return MISSING
        value = parent[name]
    return value


def _as_object(value: object) -> Mapping[str, Any] | None:
    """`value` if it is a JSON object; the type test first skips a slow ABC check."""
    if type(value) in _PLAIN_MAPPINGS or isinstance(value, Mapping):
        return cast(Mapping[str, Any], value)
    return None


def _compile(operator: Operator, source: object) -> LinearPattern:
    if not isinstance(source, str) or not source:
        raise ValueError(f"{operator.value} needs a non-empty string")
    return compile_glob(source) if operator is Operator.GLOB else compile_regex(source)


def _keys_of(operator: Operator, expected: object) -> frozenset[ValueKey]:
    if operator is Operator.ONE_OF and (not isinstance(expected, tuple) or not expected):
        raise ValueError("oneOf needs a non-empty list of values")
    values = expected if isinstance(expected, tuple) else (expected,)
    keys = {value_key(value) for value in values}
    if None in keys or (operator is not Operator.ONE_OF and isinstance(expected, tuple)):
        raise ValueError(f"{operator.value} needs {_SCALARS}")
    return frozenset(key for key in keys if key is not None)


@dataclass(frozen=True, kw_only=True)
class Condition:
    """`path` names a claim (one name, or a path into nested objects); `expected` is a scalar
    for equals and contains, a tuple of scalars for oneOf, and the pattern's source for glob
    and regex."""

    path: tuple[str, ...]
    operator: Operator
    expected: Scalar | tuple[Scalar, ...]
    pattern: LinearPattern | None = field(init=False, repr=False, compare=False)
    keys: frozenset[ValueKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple) or not self.path or not all(
                isinstance(name, str) and name for name in self.path):
            raise ValueError("a claim path needs a tuple of one or more non-empty names")
        object.__setattr__(self, "operator", Operator(self.operator))
        textual = self.operator in (Operator.GLOB, Operator.REGEX)
        pattern = _compile(self.operator, self.expected) if textual else None
        keys = frozenset() if textual else _keys_of(self.operator, self.expected)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "keys", keys)

    def holds(self, claims: Mapping[str, Any]) -> bool:
        """Whether the claim at `path` is present and accepted (evaluate, without the value)."""
        seen = lookup_claim(claims, self.path)
        return seen is not MISSING and self.accepts(seen)

    def accepts(self, value: object) -> bool:
        """Whether a present claim value satisfies this condition."""
        if self.pattern is not None:
            return type(value) is str and self.pattern.fullmatch(value)
        if self.operator is Operator.CONTAINS:
            return isinstance(value, _LISTS) and any(value_key(item) in self.keys
                                                     for item in value)
        return value_key(value) in self.keys


@dataclass(frozen=True, kw_only=True)
class ConditionResult:
    """The outcome of one condition: whether it passed, and the value seen (or MISSING)."""

    passed: bool
    seen: object


def evaluate(condition: Condition, claims: Mapping[str, Any]) -> ConditionResult:
    """Evaluate one condition against a verified token's claims."""
    seen = lookup_claim(claims, condition.path)
    passed = seen is not MISSING and condition.accepts(seen)
    return ConditionResult(passed=passed, seen=seen)


def claim_label(path: tuple[str, ...]) -> str:
    """How a path is written in a document: `sub`, or `[kubernetes.io, namespace]`."""
    return path[0] if len(path) == 1 else "[" + ", ".join(path) + "]"


def describe(condition: Condition, limit: int = 80) -> str:
    """A short description for audit details: claim name, operator, expected (JSON)."""
    expected = json.dumps(condition.expected, ensure_ascii=False)
    if len(expected) > limit:
        expected = expected[: limit - 3] + "..."
    return f"{claim_label(condition.path)} {condition.operator.value} {expected}"


def describe_failure(condition: Condition, result: ConditionResult) -> str:
    """Why a condition failed, naming the claim's JSON type but never its value."""
    seen_type = json_type(result.seen)
    if result.seen is MISSING:
        return "claim missing"
    if condition.pattern is not None and seen_type != "string":
        return f"claim is {seen_type}, not string"
    if condition.operator is Operator.CONTAINS:
        return ("no element matched" if seen_type == "list"
                else f"claim is {seen_type}, expected list")
    expected_types = sorted({kind for kind, _ in condition.keys})
    if condition.pattern is None and seen_type not in expected_types:
        return f"claim is {seen_type}, expected {' or '.join(expected_types)}"
    return "value did not match"


def json_type(value: object) -> str:
    """The JSON type name of a claim value: string, integer, number, boolean, null, object,
    list (or `missing`)."""
    return "missing" if value is MISSING else configread.json_type(value)
