"""The issuers' public keys in memory: fetched through a `KeyFetcher` port, cached per
(issuer name, kid), refreshed on an unknown kid and in the background.

Invariants:
- keys of different issuers never mix: each issuer has its own slot, even when two issuers
  publish the same kid;
- an unknown kid causes at most one fetch per issuer per `cooldown` seconds, and concurrent
  callers share it: a per-issuer lock admits one fetcher, and callers that waited behind a
  fetch use its result instead of fetching again (single flight);
- a failed fetch never discards keys: the last good set keeps serving until a fetch succeeds;
  a fetched document with no usable key counts as a failed fetch;
- with no keys ever loaded and a failed fetch, callers get UnavailableError KEYS_UNAVAILABLE
  (the dependency is down), not InvalidTokenError (the token may be fine); its public message
  names the issuer, never the failure;
- `health(name)` is a snapshot of one issuer's keys (serving or not, last success, last
  error) for readiness, metrics and `kubegate status`; it reads, never fetches;
- `StaticKeys` issuers are parsed from configuration, without the fetcher;
- nothing here raises out of the background thread, and no token is ever seen here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from exchanger.verify import reasons
from exchanger.verify.issuers import IssuerConfig, StaticKeys
from exchanger.verify.jwks import KeySet, VerificationKey, parse_jwks
from kubegate.errors import UnavailableError
from kubegate.workers import BackgroundWorker, periodic

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_SECONDS = 60.0
DEFAULT_REFRESH_INTERVAL_SECONDS = 300.0
# Results reported to `on_fetch` and returned by `refresh`.
FETCH_OK = "ok"
FETCH_FAILED = "error"
FETCH_INVALID = "invalid"

# What `KeyHealth.state` says.
STATE_PENDING = "pending"  # never fetched yet
STATE_OK = "ok"  # the last fetch succeeded
STATE_STALE = "stale"  # the last fetch failed; the last good keys keep serving
STATE_FAILING = "failing"  # the last fetch failed and there are no keys: exchanges fail

Clock = Callable[[], float]
FetchObserver = Callable[[str, str], None]


class KeyFetcher(Protocol):
    """Fetches an issuer's JWKS document; raises UnavailableError when it cannot."""

    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]: ...


@dataclass(frozen=True, kw_only=True)
class KeyHealth:
    """One issuer's keys as of now. Times are the cache's clock (seconds since the epoch in
    the exchanger); `last_error` is the last failure's detail (URLs, statuses, never a
    credential), empty once a fetch succeeds."""

    issuer: str
    serving: bool  # some keys are loaded: this issuer's tokens can be verified
    key_count: int
    last_result: str | None  # FETCH_OK, FETCH_FAILED, FETCH_INVALID; None: never fetched
    last_attempt: float | None
    last_success: float | None
    last_error: str

    @property
    def state(self) -> str:
        """STATE_PENDING, STATE_OK, STATE_STALE or STATE_FAILING."""
        if self.last_result is None:
            return STATE_PENDING
        if self.last_result == FETCH_OK:
            return STATE_OK
        return STATE_STALE if self.serving else STATE_FAILING


@dataclass(kw_only=True)
class _IssuerSlot:
    """One issuer's mutable state. `lock` is held for the whole of a fetch."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: KeySet | None = None
    attempted_at: float | None = None
    succeeded_at: float | None = None
    last_result: str | None = None
    generation: int = 0
    fetches: int = 0
    last_error: str = "never fetched"


class KeyCache:
    """Thread-safe key store shared by every verification of the process."""

    def __init__(
        self,
        fetcher: KeyFetcher,
        clock: Clock,
        *,
        cooldown: float = DEFAULT_COOLDOWN_SECONDS,
        on_fetch: FetchObserver | None = None,
    ) -> None:
        if cooldown < 0:
            raise ValueError("cooldown must not be negative")
        self._fetcher = fetcher
        self._clock = clock
        self._cooldown = cooldown
        self._on_fetch = on_fetch
        self._slots: dict[str, _IssuerSlot] = {}
        self._slots_lock = threading.Lock()

    def get_key(self, issuer: IssuerConfig, kid: str | None, algorithm: str) -> VerificationKey:
        """The issuer's key for a token's `kid` and `alg`, fetching at most once per cooldown."""
        slot = self._slot(issuer.name)
        key = _find(slot, kid, algorithm)
        if key is None:
            self._refresh_on_miss(issuer, slot)
            key = _find(slot, kid, algorithm)
        if key is not None:
            return key
        if slot.keys is None:
            raise reasons.keys_unavailable(
                issuer.name, f"no keys for issuer {issuer.name} yet; last fetch: {slot.last_error}")
        which = "no kid" if kid is None else "its kid"
        raise reasons.rejected(
            reasons.UNKNOWN_KEY, f"issuer {issuer.name} has no {algorithm} key for {which}"
        )

    def refresh(self, issuer: IssuerConfig) -> str:
        """Fetch now, ignoring the cooldown (waits for a fetch in flight); returns the result."""
        slot = self._slot(issuer.name)
        with slot.lock:
            return self._load(issuer, slot)

    def refresh_all(self, issuers: Iterable[IssuerConfig]) -> dict[str, str]:
        """Refresh every issuer; never raises. Returns each issuer's result."""
        return {issuer.name: self.refresh(issuer) for issuer in issuers}

    def fetch_count(self, issuer_name: str) -> int:
        """How many times keys were loaded (or tried) for this issuer."""
        return self._slot(issuer_name).fetches

    def key_set(self, issuer_name: str) -> KeySet | None:
        """The keys currently serving for this issuer, if any were ever loaded."""
        return self._slot(issuer_name).keys

    def health(self, issuer_name: str) -> KeyHealth:
        """A snapshot of this issuer's keys; never fetches, never blocks on a fetch."""
        slot = self._slot(issuer_name)
        keys, result = slot.keys, slot.last_result
        return KeyHealth(
            issuer=issuer_name, serving=keys is not None,
            key_count=len(keys.keys) if keys is not None else 0, last_result=result,
            last_attempt=slot.attempted_at, last_success=slot.succeeded_at,
            last_error="" if result in (None, FETCH_OK) else slot.last_error)

    def _slot(self, issuer_name: str) -> _IssuerSlot:
        with self._slots_lock:
            return self._slots.setdefault(issuer_name, _IssuerSlot())

    def _refresh_on_miss(self, issuer: IssuerConfig, slot: _IssuerSlot) -> None:
        seen = slot.generation
        with slot.lock:
            if slot.generation != seen:
                return  # a fetch finished while we waited: its result is ours
            if slot.attempted_at is not None and self._clock() - slot.attempted_at < self._cooldown:
                return
            self._load(issuer, slot)

    def _load(self, issuer: IssuerConfig, slot: _IssuerSlot) -> str:
        """Fetch and parse; the caller holds `slot.lock`."""
        slot.attempted_at = self._clock()
        slot.fetches += 1
        keys, result, problem = self._fetch_keys(issuer)
        if keys is not None:
            slot.keys, slot.succeeded_at = keys, slot.attempted_at
        else:
            slot.last_error = problem
        slot.last_result = result
        slot.generation += 1
        self._report(issuer, slot, result)
        return result

    def _fetch_keys(self, issuer: IssuerConfig) -> tuple[KeySet | None, str, str]:
        """(keys or None, result, problem): every failure is a result, never an exception."""
        try:
            document = self._document(issuer)
        except UnavailableError as error:
            return None, FETCH_FAILED, error.detail or error.reason
        except Exception as error:  # an adapter bug must not take the last good keys away
            return None, FETCH_FAILED, f"unexpected {type(error).__name__} from the fetcher"
        try:
            return parse_jwks(document, issuer.algorithms), FETCH_OK, ""
        except ValueError as error:
            return None, FETCH_INVALID, f"unusable JWKS: {error}"

    def _document(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        if isinstance(issuer.key_source, StaticKeys):
            return issuer.key_source.jwks
        return self._fetcher.fetch_jwks(issuer)

    def _report(self, issuer: IssuerConfig, slot: _IssuerSlot, result: str) -> None:
        if result != FETCH_OK:
            serving = "keeping last good keys" if slot.keys else "no keys to serve"
            log.warning("keys of issuer %s not refreshed (%s): %s", issuer.name, serving,
                        slot.last_error)
        elif slot.keys is not None and slot.keys.skipped:
            log.info("issuer %s: %d JWKS entries skipped", issuer.name, slot.keys.skipped)
        if self._on_fetch is not None:
            try:
                self._on_fetch(issuer.name, result)
            except Exception:
                log.exception("on_fetch callback failed for issuer %s", issuer.name)


def _find(slot: _IssuerSlot, kid: str | None, algorithm: str) -> VerificationKey | None:
    keys = slot.keys
    return keys.find(kid, algorithm) if keys is not None else None


class BackgroundRefresher:
    """A daemon thread that refreshes every issuer's keys each `interval` seconds."""

    def __init__(
        self,
        cache: KeyCache,
        issuers: Iterable[IssuerConfig],
        *,
        interval: float = DEFAULT_REFRESH_INTERVAL_SECONDS,
        refresh_at_start: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._cache = cache
        self._issuers = tuple(issuers)
        self._interval = interval
        self._worker = BackgroundWorker("jwks-refresher", periodic(
            lambda: self._cache.refresh_all(self._issuers), interval=interval, log=log,
            what="background key refresh", at_start=refresh_at_start))

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop and wait for it (a fetch in flight finishes first)."""
        self._worker.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the refresh thread is alive (for readiness checks)."""
        return self._worker.running

    def __enter__(self) -> BackgroundRefresher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
