"""Per-identity rate limiting: one token bucket per verified identity (issuer name, subject).

Pure apart from a lock: the clock is injected and nothing here sleeps or does I/O.

Rules of this module:
- a bucket holds at most `burst` exchanges and refills at `rate` per second; each exchange
  takes one; an identity with an empty bucket gets RateLimitedError (RESOURCE_EXHAUSTED,
  RATE_LIMITED) at once: it never waits, so a flooding caller holds no worker for longer than
  its refusal takes, and other identities have buckets of their own;
- the key is the *verified* identity, so only tokens that passed verification spend a budget
  (an unverified claim can never exhaust someone else's);
- memory is bounded: at most `max_identities` buckets, the least recently used evicted first.
  Evicting a bucket that has refilled is lossless (a new bucket is full too); evicting one that
  has not gives that identity a fresh burst, which takes `max_identities` other identities
  with valid tokens in between;
- a clock that goes backwards refills nothing (elapsed time is never negative).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from exchanger.identity import Identity
from kubegate.errors import RateLimitedError

RATE_LIMITED = "RATE_LIMITED"
DEFAULT_RATE_PER_SECOND = 10.0
DEFAULT_BURST = 100
DEFAULT_MAX_IDENTITIES = 10_000

Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """`rate` exchanges per second on average, up to `burst` at once, per identity."""

    rate: float = DEFAULT_RATE_PER_SECOND
    burst: int = DEFAULT_BURST

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not (
                math.isfinite(self.rate) and self.rate > 0):
            raise ValueError("rate must be a positive number of exchanges per second")
        if type(self.burst) is not int or self.burst < 1:
            raise ValueError("burst must be a whole number of at least 1")


@dataclass(kw_only=True)
class _Bucket:
    tokens: float
    updated: float


class IdentityRateLimiter:
    """Token buckets keyed by (issuer name, subject); thread-safe."""

    def __init__(self, limit: RateLimit, clock: Clock, *,
                 max_identities: int = DEFAULT_MAX_IDENTITIES) -> None:
        if max_identities < 1:
            raise ValueError("max_identities must be at least 1")
        self._limit, self._clock, self._max = limit, clock, max_identities
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, identity: Identity) -> None:
        """Spend one exchange of `identity`'s budget, or raise RateLimitedError."""
        if not self._take((identity.issuer, identity.subject)):
            limit = self._limit
            raise RateLimitedError(
                RATE_LIMITED, f"issuer {identity.issuer}: this subject is over "
                f"{limit.rate:g}/s (burst {limit.burst})")

    def tracked(self) -> int:
        """How many identities have a bucket (for tests and metrics)."""
        with self._lock:
            return len(self._buckets)

    def _take(self, key: tuple[str, str]) -> bool:
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=self._limit.burst, updated=now)
                self._evict()
            else:
                self._buckets.move_to_end(key)
                self._refill(bucket, now)
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self._limit.burst), bucket.tokens + elapsed * self._limit.rate)
        bucket.updated = max(bucket.updated, now)

    def _evict(self) -> None:
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
