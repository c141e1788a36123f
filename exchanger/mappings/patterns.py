r"""Glob and regex patterns of trust-mapping conditions, matched by RE2 in time linear in the
claim value, whatever the pattern.

A regex is written in Python's syntax and means what `re.fullmatch(pattern, value, re.ASCII)`
means. The standard library's parser reads the pattern text (never a claim value), and the
parsed pattern is written out again as an RE2 pattern that spells every rule out, so no
default of RE2's decides a match: a class becomes its explicit code point ranges, a letter
matched without case becomes `[aA]`, a group becomes `(?:...)`.

Rules of this module:
- no claim value ever meets a backtracking engine: RE2 matches in time linear in the value,
  so `(a+)+$` against a branch name chosen by whoever pushes costs microseconds, not hours;
- what only a backtracking engine can do is refused when the pattern is compiled, with one
  message naming the construct: backreferences, conditionals, lookahead and lookbehind,
  atomic groups and possessive quantifiers;
- a pattern is bounded: at most MAX_PATTERN_LENGTH characters, groups and repetitions nested
  at most MAX_NESTING deep, counts up to 1000 (RE2's limit; nested counts multiply), an RE2
  program of at most MAX_PROGRAM_SIZE instructions and MAX_MEMORY bytes;
- ASCII: `\d`, `\w`, `\s`, `\b` and case-insensitive matching mean ASCII only (`re.ASCII`),
  so `(?i)k` is not met by a Kelvin sign nor `\d` by an Arabic-Indic digit; literal non-ASCII
  characters still match themselves;
- `$` without `(?m)` is the end of the value (RE2 has no anchor for Python's "or before a
  final newline"): a pattern can only match less than under `re`, never more;
- a value that is not valid Unicode (a lone surrogate, which JSON can carry) matches nothing.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import re2  # type: ignore[import-untyped]

MAX_PATTERN_LENGTH: Final = 1024
"""The longest glob or regex accepted, in characters."""
MAX_NESTING: Final = 32
"""The deepest nesting of groups, alternations and repetitions accepted."""
MAX_PROGRAM_SIZE: Final = 5000
"""The largest compiled RE2 program accepted, in instructions (`a{1000}` is about 1000)."""
MAX_MEMORY: Final = 2 << 20
"""RE2's memory budget per pattern, program and match-time cache together, in bytes."""

_parser: Any = importlib.import_module("re._parser")  # the stdlib's regex parser (no stubs)

_LAST: Final = 0x10FFFF
_DIGIT: Final = ((0x30, 0x39),)
_SPACE: Final = ((0x09, 0x0D), (0x20, 0x20))  # \t \n \v \f \r and space, as re.ASCII says
_WORD: Final = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_NEWLINE: Final = ((0x0A, 0x0A),)
_REFUSED: Final = {
    "GROUPREF": "backreferences (\\1, (?P=name))",
    "GROUPREF_EXISTS": "conditionals ((?(1)...|...))",
    "ASSERT": "lookahead and lookbehind ((?=...), (?<=...))",
    "ASSERT_NOT": "lookahead and lookbehind ((?!...), (?<!...))",
    "ATOMIC_GROUP": "atomic groups ((?>...))",
    "POSSESSIVE_REPEAT": "possessive quantifiers (*+, ++, ?+, {m,n}+)",
}

_NOTHING: Final = r"[^\x{0}-\x{10FFFF}]"  # a class that matches no character
_NON_BOUNDARY_IN_EMPTY: Final = re.fullmatch(r"\B", "") is not None

Ranges = list[tuple[int, int]]


@dataclass(frozen=True, kw_only=True, eq=False, slots=True)
class LinearPattern:
    r"""A compiled glob or regex: `source` as written, `rewritten` for RE2, and its programs
    (`for_empty` is the one for the empty value, which differs where Python's `\B` does)."""

    source: str
    rewritten: str
    compiled: Any = field(repr=False)
    for_empty: Any = field(repr=False)

    def fullmatch(self, value: str) -> bool:
        """Whether the whole of `value` matches (False for a value that is not Unicode)."""
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        program = self.compiled if encoded else self.for_empty
        return program.fullmatch(encoded) is not None


def glob_to_regex(glob: str) -> str:
    """A regex source for a segment-safe glob: `*` is a run, `?` one character, neither
    matching `/` or `:`; every other character is literal."""
    if "**" in glob:
        raise ValueError("'**' is not allowed: a wildcard never crosses '/' or ':'")
    parts = []
    for character in glob:
        if character == "*":
            parts.append("[^/:]*")
        elif character == "?":
            parts.append("[^/:]")
        else:
            parts.append(re.escape(character))
    return "".join(parts)


def compile_regex(source: str) -> LinearPattern:
    """A regex written in Python's syntax, compiled for RE2, or ValueError saying why not."""
    _check_length(source)
    return _compile(source, source)


def compile_glob(source: str) -> LinearPattern:
    """A segment-safe glob (see `glob_to_regex`), compiled for RE2, or ValueError."""
    _check_length(source)
    return _compile(source, glob_to_regex(source))


def _check_length(source: str) -> None:
    if len(source) > MAX_PATTERN_LENGTH:
        raise ValueError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")


def _compile(source: str, regex: str) -> LinearPattern:
    try:
        parsed = _parser.parse(regex, re.ASCII)
        rewritten = _sequence(parsed, parsed.state.flags, 0)
    except re.error as error:
        raise ValueError(f"invalid regex: {error}") from None
    except RecursionError:
        raise ValueError(f"invalid regex: nested deeper than {MAX_NESTING}") from None
    compiled = _re2_compile(rewritten)
    if _NON_BOUNDARY_IN_EMPTY or r"\B" not in rewritten:
        return LinearPattern(source=source, rewritten=rewritten, compiled=compiled,
                             for_empty=compiled)
    # Python's \B never holds in an empty string (before 3.14); RE2's does. Only this
    # writer writes `\B` (a literal backslash is \x{5C}), so it can be replaced by nothing.
    return LinearPattern(source=source, rewritten=rewritten, compiled=compiled,
                         for_empty=_re2_compile(rewritten.replace(r"\B", _NOTHING)))


def _re2_compile(rewritten: str) -> Any:
    try:
        compiled = re2.compile(rewritten, _options())
    except re2.error as error:
        raise ValueError(f"not a regex RE2 can match in linear time: {_re2_reason(error)}"
                         ) from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(f"pattern too big: its RE2 program has {compiled.programsize} "
                         f"instructions, at most {MAX_PROGRAM_SIZE} are allowed (large "
                         "counted repetitions cost one instruction per repetition)")
    return compiled


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.log_errors = False
    options.never_capture = True  # groups are written as (?:...) anyway
    options.case_sensitive = True  # case folding is written out, ASCII only
    return options


def _re2_reason(error: Exception) -> str:
    reason = error.args[0] if error.args else error
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    if "repetition" in text:
        return f"{text} (counts go up to 1000, nested counts multiplied)"
    return "pattern too big" if "too large" in text else text


def _sequence(items: Iterable[tuple[Any, Any]], flags: int, depth: int) -> str:
    """The parser's items written as an explicit RE2 pattern."""
    if depth > MAX_NESTING:
        raise ValueError(f"invalid regex: nested deeper than {MAX_NESTING}")
    return "".join(_item(str(op), value, flags, depth) for op, value in items)


def _item(op: str, value: Any, flags: int, depth: int) -> str:
    if op in _REFUSED:
        raise ValueError(f"{_REFUSED[op]} are not supported: regexes are matched by RE2, "
                         "in linear time")
    if op in ("LITERAL", "NOT_LITERAL"):
        return _class(_cased([(value, value)], flags), negated=op == "NOT_LITERAL")
    if op == "ANY":
        dotall = bool(flags & re.DOTALL)
        return _class([(0, _LAST)] if dotall else list(_NEWLINE), negated=not dotall)
    if op == "IN":
        return _set(value, flags)
    if op == "AT":
        return _anchor(str(value), flags)
    if op == "BRANCH":
        return "(?:" + "|".join(_sequence(branch, flags, depth + 1) for branch in value[1]) + ")"
    if op == "SUBPATTERN":
        _, add, remove, items = value
        return "(?:" + _sequence(items, (flags | add) & ~remove, depth + 1) + ")"
    if op in ("MAX_REPEAT", "MIN_REPEAT"):  # laziness cannot change whether all matches
        low, high, items = value
        return "(?:" + _sequence(items, flags, depth + 1) + ")" + _count(low, high)
    raise ValueError(f"{op.lower()} is not supported")


def _count(low: int, high: int) -> str:
    if high == _parser.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _anchor(at: str, flags: int) -> str:
    multiline = bool(flags & re.MULTILINE)
    return {
        "AT_BEGINNING": "(?m:^)" if multiline else r"\A",
        "AT_BEGINNING_STRING": r"\A",
        "AT_END": "(?m:$)" if multiline else r"\z",
        "AT_END_STRING": r"\z",
        "AT_BOUNDARY": r"\b",
        "AT_NON_BOUNDARY": r"\B",
    }[at]


_CATEGORIES: Final = {
    "CATEGORY_DIGIT": (_DIGIT, False), "CATEGORY_NOT_DIGIT": (_DIGIT, True),
    "CATEGORY_SPACE": (_SPACE, False), "CATEGORY_NOT_SPACE": (_SPACE, True),
    "CATEGORY_WORD": (_WORD, False), "CATEGORY_NOT_WORD": (_WORD, True),
}


def _set(items: Sequence[tuple[Any, Any]], flags: int) -> str:
    """A class `[...]`: its members as ranges, closed under ASCII case when case is ignored."""
    ranges: Ranges = []
    negated = False
    for op, value in items:
        name = str(op)
        if name == "NEGATE":
            negated = True
        elif name == "LITERAL":
            ranges.append((value, value))
        elif name == "RANGE":
            ranges.append((value[0], value[1]))
        elif name == "CATEGORY":
            members, complement = _CATEGORIES[str(value)]
            ranges += _complement(list(members)) if complement else list(members)
        else:
            raise ValueError(f"{name.lower()} in a character class is not supported")
    return _class(_cased(ranges, flags), negated=negated)


def _cased(ranges: Ranges, flags: int) -> Ranges:
    """`ranges` plus the other case of its ASCII letters, when case is ignored (re.ASCII)."""
    if not flags & re.IGNORECASE:
        return ranges
    other = []
    for low, high in ranges:
        for first, last, shift in ((0x41, 0x5A, 0x20), (0x61, 0x7A, -0x20)):
            start, end = max(low, first), min(high, last)
            if start <= end:
                other.append((start + shift, end + shift))
    return ranges + other


def _merged(ranges: Ranges) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: Ranges) -> Ranges:
    gaps, start = [], 0
    for low, high in _merged(ranges):
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    return gaps + [(start, _LAST)] if start <= _LAST else gaps


def _class(ranges: Ranges, *, negated: bool) -> str:
    members = _complement(ranges) if negated else _merged(ranges)
    if not members:
        return _NOTHING
    if members == [(members[0][0], members[0][0])] and chr(members[0][0]).isalnum() and (
            members[0][0] < 0x80):
        return chr(members[0][0])
    return "[" + "".join(_char(low) if low == high else f"{_char(low)}-{_char(high)}"
                         for low, high in members) + "]"


def _char(code: int) -> str:
    return chr(code) if code < 0x80 and chr(code).isalnum() else f"\\x{{{code:X}}}"
