"""When the sidecar refreshes its credential, how long it may serve it, and how long it waits
after a failure. Pure: times and random draws come in as arguments; nothing here sleeps.

Rules of this module:
- a credential is refreshed at `fraction` of its lifetime, spread by ±`jitter` (a share of
  that point) so that many sidecars started together do not call the exchanger together;
  the refresh point is never later than the end of the serve window;
- a credential may be served while more than `min_remaining` seconds of it are left: a caller
  never receives a token that expires on its way to the API server;
- transient failures wait `backoff_initial * 2**n`, capped at `backoff_max`, with "equal
  jitter" (between half and all of that): never a busy loop, never in lockstep;
- a denial (or any answer that is not transient) waits `denial_backoff`: minutes, not
  seconds, since the same token gets the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RefreshPolicy:
    fraction: float = 0.5
    jitter: float = 0.1
    min_remaining: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    denial_backoff: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError("fraction must be between 0 and 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be at least 0 and below 1")
        if self.min_remaining < 0:
            raise ValueError("min_remaining must not be negative")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError("backoff_initial must be positive and at most backoff_max")
        if self.denial_backoff <= 0:
            raise ValueError("denial_backoff must be positive")


def refresh_at(*, issued_at: float, expires_at: float, policy: RefreshPolicy,
               random: float) -> float:
    """When to refresh a credential received at issued_at. random is a draw from [0, 1)."""
    lifetime = max(expires_at - issued_at, 0.0)
    spread = 1 + policy.jitter * (2 * random - 1)
    planned = issued_at + lifetime * policy.fraction * spread
    return max(issued_at, min(planned, serve_until(expires_at, policy)))


def serve_until(expires_at: float, policy: RefreshPolicy) -> float:
    """The last moment a credential expiring at expires_at may be handed out."""
    return expires_at - policy.min_remaining


def may_serve(*, expires_at: float, now: float, policy: RefreshPolicy) -> bool:
    return now < serve_until(expires_at, policy)


def backoff_delay(failures: int, *, policy: RefreshPolicy, random: float) -> float:
    """The wait after the failures-th consecutive transient failure (1 for the first)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    ceiling = min(policy.backoff_max, policy.backoff_initial * 2.0 ** min(failures - 1, 32))
    return ceiling * (0.5 + 0.5 * random)
