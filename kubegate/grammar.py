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
from fractions import Fraction
from typing import Final

DURATION_EXAMPLES: Final = "90s, 15m, 1h30m or 500ms"
RATE_EXAMPLES: Final = "10/s, 600/m or 36000/h"
_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", re.ASCII)
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)", re.ASCII)
_UNIT_SECONDS: Final = {"h": Fraction(3600), "m": Fraction(60), "s": Fraction(1),
                        "ms": Fraction(1, 1000)}
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


def duration_fraction(value: object) -> Fraction:
    """The exact seconds in a duration, or ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Fraction(value)
    if isinstance(value, str) and (value == "0" or _DURATION.fullmatch(value)):
        return sum((Fraction(amount) * _UNIT_SECONDS[unit]
                    for amount, unit in _DURATION_PART.findall(value)), Fraction(0))
    raise ValueError(f"expected a duration such as {DURATION_EXAMPLES}, got {shown(value)}")


def parse_duration(value: object) -> float:
    """Seconds in a duration (`90s`, `15m`, `1h30m`, `500ms`, or an integer of seconds)."""
    return float(duration_fraction(value))


def parse_whole_seconds(value: object) -> int:
    """Seconds in a duration that must be whole (a lifetime, a leeway)."""
    seconds = duration_fraction(value)
    if seconds.denominator != 1:
        raise ValueError(f"{shown(value)} is not a whole number of seconds")
    return int(seconds)


def parse_rate(value: object) -> float:
    """Events per second from `10`, `2.5`, `10/s`, `600/m` or `36000/h`."""
    if (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            and math.isfinite(value)):
        return float(value)
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a rate such as {RATE_EXAMPLES}, got {shown(value)}")
    per = _UNIT_SECONDS[match.group(2) or "s"]
    return float(Fraction(match.group(1)) / per)


def parse_bool(value: object) -> bool:
    """True or false: a YAML boolean, or one of true/false, yes/no, on/off, 1/0 as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {shown(value)}")
