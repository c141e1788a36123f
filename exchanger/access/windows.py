"""When a trust mapping may be used at all (`spec.windows`): one-off intervals and recurring
weekly windows in a time zone's wall-clock time.

```yaml
windows:
- {start: "2026-12-05T22:00:00Z", end: "2026-12-06T04:00:00Z"}         # one-off, RFC 3339
- {days: [Sat], from: "22:00", to: "04:00", timeZone: Europe/Berlin}  # recurring
```

Rules of this module:
- times are unix seconds; a window is the half-open interval [start, end);
- a recurring window opens on each listed day at `from` and closes at `to` the same day, or
  the next day when `to` <= `from` (it crosses midnight; `to` == `from` is 24 hours); both
  are wall-clock times of `timeZone` (IANA, via zoneinfo), so across a DST change an
  occurrence lasts an hour more or less (Saturday 22:00-04:00 Europe/Berlin lasts 5 or 7
  hours on the change weekends);
- a wall-clock time becomes the first instant at which the zone's clock reads that time or
  later: a time in a gap (spring forward) moves forward to the end of the gap (02:30 in
  Berlin's gap is 03:00 CEST), an ambiguous time (fall back) is its first occurrence
  (fold=0); an occurrence that becomes empty this way (02:00-03:00 on the spring-forward
  day) does not open;
- windows that overlap or touch are one: `open_at` returns the whole merged interval, so a
  credential capped at its end never outlives the window. Merging looks at most
  `HORIZON` seconds either side of the instant;
- this module imports nothing of `exchanger.mappings` (a mapping holds windows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["DAYS", "HORIZON", "OneOffWindow", "RecurringWindow", "Window", "WindowSet",
           "first_instant", "format_utc"]

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
"""Day names as written in `days`, in `datetime.weekday()` order."""
HORIZON: Final = 8 * 24 * 3600
_DAY: Final = dt.timedelta(days=1)


def format_utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wall(seconds: int, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, zone).replace(tzinfo=None)


def first_instant(wall: dt.datetime, zone: ZoneInfo) -> int:
    """The first unix second at which the clock of `zone` reads `wall` (naive) or later."""
    early = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    if _wall(early, zone) == wall:
        return early  # exists; fold=0 is the first of two readings
    late = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    low, high = sorted((early, late))  # in a gap: the change lies between the two offsets
    while low < high:
        middle = (low + high) // 2
        if _wall(middle, zone) >= wall:
            high = middle
        else:
            low = middle + 1
    return high


@dataclass(frozen=True, kw_only=True)
class OneOffWindow:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("a window's end must be after its start")

    def occurrences(self, low: int, high: int) -> Iterator[tuple[int, int]]:
        del low, high  # one interval, wherever it is
        yield self.start, self.end

    def describe(self) -> str:
        return f"{format_utc(self.start)} to {format_utc(self.end)}"


@dataclass(frozen=True, kw_only=True)
class RecurringWindow:
    days: tuple[int, ...]  # datetime.weekday() numbers: 0 = Monday
    start: dt.time  # `from`
    end: dt.time  # `to`; <= start crosses midnight
    zone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.days or not all(0 <= day <= 6 for day in self.days):
            raise ValueError("days must name at least one day")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must not repeat")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("from and to are wall-clock times without an offset")
        ZoneInfo(self.zone)  # ZoneInfoNotFoundError (a KeyError) or ValueError

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def occurrences(self, low: int, high: int) -> Iterator[tuple[int, int]]:
        """Every non-empty occurrence that overlaps [low, high], in order."""
        zone = ZoneInfo(self.zone)
        day = _wall(low, zone).date() - _DAY  # an occurrence may have begun the day before
        last = _wall(high, zone).date()
        while day <= last:
            if day.weekday() in self.days:
                start = first_instant(dt.datetime.combine(day, self.start), zone)
                end_day = day + _DAY if self.crosses_midnight else day
                end = first_instant(dt.datetime.combine(end_day, self.end), zone)
                if start < end and end >= low and start <= high:
                    yield start, end
            day += _DAY

    def describe(self) -> str:
        days = ",".join(DAYS[day] for day in sorted(self.days))
        return (f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.zone}"
                + (" (to the next day)" if self.crosses_midnight else ""))


Window = OneOffWindow | RecurringWindow


@dataclass(frozen=True, kw_only=True)
class WindowSet:
    """The windows of one mapping; empty means always open."""

    windows: tuple[Window, ...] = ()

    def open_at(self, now: float) -> tuple[int, int] | None:
        """(start, end) of the merged window containing `now`, or None when closed."""
        t = int(now // 1)
        for start, end in self._merged(t - HORIZON, t + HORIZON):
            if start <= t < end:
                return start, end
        return None

    def next_open(self, now: float) -> tuple[int, int] | None:
        """The window open at `now`, else the next one to open (None: none ever will)."""
        t = int(now // 1)
        for start, end in self._merged(t - HORIZON, t + 2 * HORIZON):
            if end > t:
                return start, end
        return None

    def _merged(self, low: int, high: int) -> list[tuple[int, int]]:
        intervals = sorted(i for w in self.windows for i in w.occurrences(low, high))
        merged: list[tuple[int, int]] = []
        for start, end in intervals:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged
