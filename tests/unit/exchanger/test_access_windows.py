"""Mapping windows: one-off and recurring, wall-clock time across DST, and `open_at` against a
brute-force minute-by-minute reading of the zone's clock."""

from __future__ import annotations

import bisect
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanger.access.windows import (
    DAYS,
    OneOffWindow,
    RecurringWindow,
    WindowSet,
    first_instant,
)

UTC = dt.UTC
HOUR = 3600


def at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def weekly(days: str, start: str, end: str, zone: str) -> WindowSet:
    return WindowSet(windows=(RecurringWindow(
        days=tuple(DAYS.index(day) for day in days.split(",")),
        start=dt.time.fromisoformat(start), end=dt.time.fromisoformat(end), zone=zone),))


def test_a_one_off_window_is_half_open() -> None:
    windows = WindowSet(windows=(OneOffWindow(start=at("2026-12-05T22:00:00Z"),
                                              end=at("2026-12-06T04:00:00Z")),))
    span = (at("2026-12-05T22:00:00Z"), at("2026-12-06T04:00:00Z"))
    assert windows.open_at(span[0] - 1) is None
    assert windows.open_at(span[0]) == span
    assert windows.open_at(span[1] - 1) == span
    assert windows.open_at(span[1]) is None
    assert windows.next_open(span[0] - 100) == span
    assert windows.next_open(span[1]) is None


def test_no_windows_means_never_open_through_open_at_but_the_gate_treats_it_as_always() -> None:
    assert WindowSet().open_at(0) is None  # the gate skips an empty set: always usable


def test_a_recurring_window_crosses_midnight_in_its_zone() -> None:
    windows = weekly("Sat", "22:00", "04:00", "Europe/Berlin")
    saturday = at("2026-11-28T21:00:00Z")  # 22:00 CET
    assert windows.open_at(saturday) == (saturday, saturday + 6 * HOUR)
    assert windows.open_at(saturday + 6 * HOUR - 60) == (saturday, saturday + 6 * HOUR)
    assert windows.open_at(saturday + 6 * HOUR) is None
    assert windows.open_at(saturday - 60) is None
    # Sunday 22:00 is not a Saturday
    assert windows.open_at(saturday + 24 * HOUR) is None
    assert windows.next_open(saturday + 7 * HOUR) == (saturday + 7 * 24 * HOUR,
                                                      saturday + 7 * 24 * HOUR + 6 * HOUR)


def test_a_window_to_equal_from_lasts_a_day_and_adjacent_days_merge() -> None:
    windows = weekly("Mon,Tue", "09:00", "09:00", "UTC")
    monday = at("2026-11-30T09:00:00Z")
    assert windows.open_at(monday + HOUR) == (monday, monday + 48 * HOUR)


@pytest.mark.parametrize(("zone", "start", "hours"), [
    # the night the clocks go forward: 22:00 to 04:00 is 5 hours
    ("Europe/Berlin", "2026-03-28T21:00:00Z", 5),
    # the night they go back: 7 hours
    ("Europe/Berlin", "2026-10-24T20:00:00Z", 7),
    ("America/New_York", "2026-03-08T03:00:00Z", 5),  # Sat 22:00 EST; DST starts Sun 02:00
    ("America/New_York", "2026-11-01T02:00:00Z", 7),  # Sat 22:00 EDT; DST ends Sun 02:00
])
def test_a_recurring_window_follows_the_wall_clock_across_dst(zone: str, start: str,
                                                              hours: int) -> None:
    windows = weekly("Sat", "22:00", "04:00", zone)
    opened = at(start)
    assert windows.open_at(opened + 60) == (opened, opened + hours * HOUR)


def test_a_start_in_the_spring_gap_moves_to_the_end_of_the_gap() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29 02:30 does not exist in Berlin: the clock jumps from 02:00 CET to 03:00 CEST
    assert first_instant(dt.datetime(2026, 3, 29, 2, 30), berlin) == at("2026-03-29T01:00:00Z")
    windows = weekly("Sun", "02:30", "05:00", "Europe/Berlin")
    assert windows.open_at(at("2026-03-29T01:00:00Z")) == (at("2026-03-29T01:00:00Z"),
                                                          at("2026-03-29T03:00:00Z"))


def test_an_occurrence_inside_the_gap_does_not_open() -> None:
    windows = weekly("Sun", "02:00", "03:00", "Europe/Berlin")
    assert windows.open_at(at("2026-03-29T01:00:00Z")) is None
    assert windows.open_at(at("2026-03-22T01:30:00Z")) is not None  # a week before: 02:30 CET


def test_an_ambiguous_time_is_its_first_occurrence() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-10-25 02:30 happens twice; fold=0 is 02:30 CEST = 00:30 UTC
    assert first_instant(dt.datetime(2026, 10, 25, 2, 30), berlin) == at("2026-10-25T00:30:00Z")
    windows = weekly("Sun", "01:00", "02:30", "Europe/Berlin")
    assert windows.open_at(at("2026-10-25T00:00:00Z")) == (at("2026-10-24T23:00:00Z"),
                                                          at("2026-10-25T00:30:00Z"))
    assert windows.open_at(at("2026-10-25T01:15:00Z")) is None  # the second 02:15


def test_windows_that_overlap_are_one() -> None:
    windows = WindowSet(windows=(
        OneOffWindow(start=at("2026-12-05T20:00:00Z"), end=at("2026-12-05T22:30:00Z")),
        *weekly("Sat", "22:00", "04:00", "UTC").windows))
    assert windows.open_at(at("2026-12-05T21:00:00Z")) == (at("2026-12-05T20:00:00Z"),
                                                          at("2026-12-06T04:00:00Z"))


# -- the property: open_at agrees with reading the clock minute by minute ------------------

CHANGES = [(zone, at(instant)) for zone, instant in (
    ("Europe/Berlin", "2026-03-29T01:00:00Z"), ("Europe/Berlin", "2026-10-25T01:00:00Z"),
    ("America/New_York", "2026-03-08T07:00:00Z"), ("America/New_York", "2026-11-01T06:00:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"),  # half-hour DST
    ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
    ("UTC", "2027-06-01T00:00:00Z"),
)]
clock_times = st.builds(dt.time, st.sampled_from([0, 1, 2, 3, 4, 12, 22, 23]),
                        st.sampled_from([0, 15, 30, 59]))
offsets = st.one_of(
    st.integers(-4 * 60, 4 * 60),  # the hours around a change, where the rules bite
    st.integers(-3 * 24 * 60, 3 * 24 * 60),
    st.integers(-2 * 365 * 24 * 60, 2 * 365 * 24 * 60),  # anywhere
)
weekdays = st.one_of(st.just({5, 6}), st.just({6}), st.sets(st.integers(0, 6), min_size=1))


def brute_force(window: RecurringWindow, t: int) -> tuple[int, int] | None:
    """Read the zone's clock every minute from t - 3 days to t + 3 days; an occurrence opens
    at the first minute the clock reads its start or later (and so closes); occurrences that
    overlap or touch (a window ending where the next day's begins, as around a DST change)
    are one window, as `WindowSet` documents."""
    zone = ZoneInfo(window.zone)
    minutes = list(range(t - 3 * 24 * HOUR, t + 3 * 24 * HOUR, 60))
    highest: list[dt.datetime] = []
    for minute in minutes:
        reading = dt.datetime.fromtimestamp(minute, zone).replace(tzinfo=None)
        highest.append(max(reading, highest[-1]) if highest else reading)

    def first(wall: dt.datetime) -> int:
        return minutes[bisect.bisect_left(highest, wall)]

    today = dt.datetime.fromtimestamp(t, zone).date()
    occurrences = []
    for offset in range(-2, 2):
        day = today + dt.timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        end_day = day + dt.timedelta(days=1) if window.end <= window.start else day
        start = first(dt.datetime.combine(day, window.start))
        end = first(dt.datetime.combine(end_day, window.end))
        if start < end:
            occurrences.append((start, end))
    merged: list[tuple[int, int]] = []  # occurrences that overlap or touch are one window
    for start, end in sorted(occurrences):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return next(((start, end) for start, end in merged if start <= t < end), None)


@settings(max_examples=300, deadline=None)
@given(change=st.sampled_from(CHANGES), offset=offsets, days=weekdays, start=clock_times,
       end=clock_times)
def test_open_at_agrees_with_a_minute_by_minute_reading_of_the_clock(
        change: tuple[str, int], offset: int, days: set[int], start: dt.time,
        end: dt.time) -> None:
    zone, t = change[0], (change[1] // 60 + offset) * 60
    if start == end:
        end = dt.time((end.hour + 1) % 24, end.minute)  # 24-hour windows chain: tested above
    window = RecurringWindow(days=tuple(sorted(days)), start=start, end=end, zone=zone)
    assert WindowSet(windows=(window,)).open_at(t) == brute_force(window, t)
