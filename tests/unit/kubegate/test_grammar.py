"""The one grammar for durations, rates and booleans: what it accepts, what it refuses, and
that every refusal says what was expected without echoing a huge value."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubegate.grammar import parse_bool, parse_duration, parse_rate, parse_whole_seconds


@pytest.mark.parametrize(("written", "seconds"), [
    ("15m", 900), ("10m", 600), ("1h30m", 5400), ("600s", 600), ("1.5h", 5400),
    ("24h", 86400), ("2h0m30s", 7230), (900, 900), ("0", 0), (0, 0), ("90s", 90),
])
def test_durations_are_go_style_or_integer_seconds(written: object, seconds: int) -> None:
    assert parse_whole_seconds(written) == seconds
    assert parse_duration(written) == seconds


@pytest.mark.parametrize(("written", "seconds"), [
    ("500ms", 0.5), ("1m500ms", 60.5), ("0.25s", 0.25), ("1ms", 0.001),
])
def test_fractional_durations(written: str, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)
    with pytest.raises(ValueError, match="whole number of seconds"):
        parse_whole_seconds(written)


@pytest.mark.parametrize("written", [
    "15", "90", "15min", "1d", "-10m", "+10m", "", " 15m", "15m ", "1h 30m", "1H", "ms", "h",
    ".5s", "1.s", "1e3s", "１５m", "15m\n", "0x10s", True, False, 1.5, -1, None, [], {},
])
def test_malformed_durations_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 90s, 15m, 1h30m or 500ms"):
        parse_duration(written)


def test_a_huge_refused_value_is_cut_in_the_message() -> None:
    with pytest.raises(ValueError) as raised:
        parse_duration("x" * 100_000)
    assert len(str(raised.value)) < 200


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


@given(st.integers(0, 10**6), st.integers(0, 59), st.integers(0, 59))
def test_go_style_composes(hours: int, minutes: int, seconds: int) -> None:
    assert parse_whole_seconds(f"{hours}h{minutes}m{seconds}s") == (
        hours * 3600 + minutes * 60 + seconds)


@pytest.mark.parametrize(("written", "per_second"), [
    ("10/s", 10), ("600/m", 10), ("36000/h", 10), ("2.5", 2.5), (10, 10), (0.5, 0.5),
    ("10", 10),
])
def test_rates(written: object, per_second: float) -> None:
    assert parse_rate(written) == pytest.approx(per_second)


@pytest.mark.parametrize("written", [
    "10/d", "-1", "/s", "10 /s", "ten", True, None, float("inf"), float("nan"), -1,
])
def test_malformed_rates_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match="expected a rate such as 10/s, 600/m or 36000/h"):
        parse_rate(written)


@pytest.mark.parametrize(("written", "value"), [
    (True, True), ("yes", True), ("On", True), ("1", True), (False, False), ("no", False),
    ("off", False), ("0", False), ("false", False),
])
def test_booleans(written: object, value: bool) -> None:
    assert parse_bool(written) is value


@pytest.mark.parametrize("written", [1, 0, "maybe", "", None, "y"])
def test_malformed_booleans_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match="expected true or false"):
        parse_bool(written)


@pytest.mark.parametrize(("written", "seconds"), [
    ("0.1s", 0.1), ("1.001s", 1.001), ("0.5m", 30), ("1h0.5s", 3600.5), ("0.001s", 0.001),
])
def test_decimal_amounts_are_exact(written: str, seconds: float) -> None:
    assert parse_duration(written) == seconds


def test_a_long_duration_or_rate_is_refused_quickly() -> None:
    for value in ("1" * 5000 + "s", "1h" * 1000):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_duration(value)
    with pytest.raises(ValueError, match="expected a rate"):
        parse_rate("9" * 5000)


def test_the_grammar_imports_no_fractions_or_decimal() -> None:
    import subprocess
    import sys

    code = ("import sys, kubegate.grammar; "
            "print(sorted(m for m in ('fractions', 'decimal') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=30)
    assert done.stdout.strip() == "[]"
