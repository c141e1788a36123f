"""The one grammar for values that people write: durations, rates, booleans. Every reader
(config files, mapping files, TrustMapping resources, flags, environment variables) parses
through here, so a value means the same everywhere and is refused with the same words.

    parse_duration("1h30m") == 5400      parse_duration("500ms") == 0.5
    parse_duration(90) == 90             # a YAML integer is seconds
    parse_rate("600/m") == 10.0          parse_bool("yes") is True

Rules of this module:
- a duration is Go's: one or more `<number><unit>` with units h, m, s, ms (`90s`, `15m`,
  `1h30m`, `1.5h`, `500ms`), or `0`; a bare number is taken only as an integer in YAML or JSON
  (seconds), never as a string: a flag `--lifetime 90` is ambiguous and refused;
- no negative durations or rates; booleans are never numbers and numbers never booleans;
- errors are ValueError with a message that says what was expected and what was given
  (cut to a short prefix: a value may be huge or hostile), never anything else.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Final

DURATION_EXAMPLES: Final = "90s, 15m, 1h30m or 500ms"
RATE_EXAMPLES: Final = "10/s, 600/m or 36000/h"
_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", re.ASCII)
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)", re.ASCII)
_UNIT_MS: Final = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_MAX_TEXT: Final = 64  # characters of a duration or rate: far more than any real one
_RATE: Final = re.compile(r"(\d+(?:\.\d+)?)(?:/(s|m|h))?", re.ASCII)
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})
_SHOWN: Final = 40  # characters of a refused value shown back
_REPR: Final = reprlib.Repr()  # repr with bounded depth, items and string lengths
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, _SHOWN, _SHOWN


def shown(value: object) -> str:
    """A value for an error message: its repr, cut to a short prefix. Only a prefix of the
    value is ever looked at, so a huge string or a deep list costs no more than a short one."""
    text = repr(value[: _SHOWN + 1]) if isinstance(value, str) else _REPR.repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "...'"


def _exact_ms(value: object) -> tuple[int, int]:
    """The duration in milliseconds as an exact (numerator, denominator), or ValueError.
    Integer arithmetic only: no float rounding, and no `fractions`/`decimal` import cost
    for the sidecar and the credential plugin."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value * 1000, 1
    if isinstance(value, str) and len(value) <= _MAX_TEXT and (
            value == "0" or _DURATION.fullmatch(value)):
        parts = _DURATION_PART.findall(value)
        digits = max((len(amount.partition(".")[2]) for amount, _ in parts), default=0)
        total = 0
        for amount, unit in parts:
            whole, _, decimals = amount.partition(".")
            total += int(whole + decimals) * 10 ** (digits - len(decimals)) * _UNIT_MS[unit]
        return total, 10 ** digits
    raise ValueError(f"expected a duration such as {DURATION_EXAMPLES}, got {shown(value)}")


def parse_duration(value: object) -> float:
    """Seconds in a duration (`90s`, `15m`, `1h30m`, `500ms`, or an integer of seconds)."""
    numerator, denominator = _exact_ms(value)
    return numerator / (denominator * 1000)


def parse_whole_seconds(value: object) -> int:
    """Seconds in a duration that must be whole (a lifetime, a leeway)."""
    numerator, denominator = _exact_ms(value)
    seconds, rest = divmod(numerator, denominator * 1000)
    if rest:
        raise ValueError(f"{shown(value)} is not a whole number of seconds")
    return seconds


def parse_rate(value: object) -> float:
    """Events per second from `10`, `2.5`, `10/s`, `600/m` or `36000/h`."""
    if (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            and math.isfinite(value)):
        return float(value)
    match = (_RATE.fullmatch(value) if isinstance(value, str) and len(value) <= _MAX_TEXT
             else None)
    if match is None:
        raise ValueError(f"expected a rate such as {RATE_EXAMPLES}, got {shown(value)}")
    return float(match.group(1)) * 1000 / _UNIT_MS[match.group(2) or "s"]


def parse_bool(value: object) -> bool:
    """True or false: a YAML boolean, or one of true/false, yes/no, on/off, 1/0 as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {shown(value)}")
