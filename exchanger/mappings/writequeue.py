"""The two parts of a controller's write path that are not about TrustMappings: a work queue
that holds each name once, and a token bucket that paces the writes (client-go's workqueue and
its rate limiter are the model).

Rules of this module:
- a name waiting in the queue is there once: adding it again keeps its place, so a burst of
  events about one object costs one write, made from the newest cached copy;
- names come out in the order they were first added;
- the bucket is pure apart from a lock: the clock is injected and nothing here sleeps; a
  caller asks how long to wait, waits on its own stop event, then takes a token;
- a clock that goes backwards refills nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WriteLimit:
    """At most `rate` writes per second on average, up to `burst` at once."""

    rate: float = 50.0
    burst: int = 100

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a write limit needs a positive rate and a burst of at least 1")


class WorkQueue:
    """Names to work on, each at most once, first added first out."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._names: dict[str, None] = {}  # insertion-ordered: the queue
        self._woken = False

    def __len__(self) -> int:
        return len(self._names)

    def add(self, name: str) -> None:
        self.add_all((name,))

    def add_all(self, names: Iterable[str]) -> None:
        with self._ready:
            for name in names:
                self._names.setdefault(name, None)
            self._ready.notify_all()

    def discard(self, name: str) -> None:
        with self._ready:
            self._names.pop(name, None)

    def get(self, timeout: float) -> str | None:
        """The first name, waiting up to `timeout` seconds for one (None: none, or woken)."""
        with self._ready:
            if not self._names and not self._woken:
                self._ready.wait(timeout)
            self._woken = False
            if not self._names:
                return None
            name = next(iter(self._names))
            del self._names[name]
            return name

    def wake(self) -> None:
        """Make a waiting get() return now (to stop its thread)."""
        with self._ready:
            self._woken = True
            self._ready.notify_all()


class TokenBucket:
    """`limit.burst` tokens at most, refilled at `limit.rate` per second."""

    def __init__(self, limit: WriteLimit, clock: Callable[[], float]) -> None:
        self._limit, self._clock = limit, clock
        self._lock = threading.Lock()
        self._tokens = float(limit.burst)
        self._at = clock()

    def wait_seconds(self) -> float:
        """How long until a token is there (0: take it now)."""
        with self._lock:
            self._refill()
            return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._limit.rate

    def take(self) -> None:
        with self._lock:
            self._refill()
            self._tokens -= 1

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._at)
        self._at = max(self._at, now)
        self._tokens = min(float(self._limit.burst), self._tokens + elapsed * self._limit.rate)
