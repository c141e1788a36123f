"""The sidecar's refresh schedule, serve window and backoff: pure functions of time and a
random draw."""

from __future__ import annotations

import pytest

from sidecar.refresh import RefreshPolicy, backoff_delay, may_serve, refresh_at, serve_until

POLICY = RefreshPolicy()  # fraction 0.5, jitter 0.1, min_remaining 30, backoff 1..60, denial 300


def test_refresh_is_at_half_the_lifetime_when_the_draw_is_in_the_middle() -> None:
    assert refresh_at(issued_at=1000, expires_at=1600, policy=POLICY, random=0.5) == 1300


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 1270.0), (0.25, 1285.0), (0.75, 1315.0)])
def test_jitter_spreads_the_refresh_point_by_ten_percent_of_it(
    draw: float, expected: float,
) -> None:
    assert refresh_at(issued_at=1000, expires_at=1600, policy=POLICY,
                      random=draw) == pytest.approx(expected)


def test_refresh_stays_inside_the_jitter_band_for_any_draw() -> None:
    points = [refresh_at(issued_at=0, expires_at=600, policy=POLICY, random=i / 100)
              for i in range(100)]
    assert min(points) >= 270 and max(points) < 330
    assert len(set(points)) == 100


def test_refresh_fraction_is_configurable() -> None:
    policy = RefreshPolicy(fraction=0.1, jitter=0.0)
    assert refresh_at(issued_at=0, expires_at=600, policy=policy, random=0.9) == 60


def test_refresh_is_never_later_than_the_end_of_the_serve_window() -> None:
    policy = RefreshPolicy(fraction=0.9, jitter=0.0, min_remaining=30)
    assert refresh_at(issued_at=0, expires_at=100, policy=policy, random=0.5) == 70


def test_a_credential_shorter_than_min_remaining_is_refreshed_at_once() -> None:
    assert refresh_at(issued_at=0, expires_at=20, policy=POLICY, random=0.5) == 0


def test_a_credential_is_served_until_min_remaining_before_expiry() -> None:
    assert serve_until(1000, POLICY) == 970
    assert may_serve(expires_at=1000, now=969.9, policy=POLICY)
    assert not may_serve(expires_at=1000, now=970, policy=POLICY)
    assert not may_serve(expires_at=1000, now=1001, policy=POLICY)


def test_backoff_doubles_up_to_the_cap_with_the_largest_draw() -> None:
    delays = [backoff_delay(n, policy=POLICY, random=1.0) for n in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_backoff_jitter_keeps_at_least_half_of_the_step() -> None:
    assert backoff_delay(3, policy=POLICY, random=0.0) == 2.0
    assert backoff_delay(3, policy=POLICY, random=0.5) == 3.0


def test_backoff_for_huge_failure_counts_stays_at_the_cap() -> None:
    assert backoff_delay(10_000, policy=POLICY, random=1.0) == 60


def test_backoff_counts_failures_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0, policy=POLICY, random=0.5)


@pytest.mark.parametrize("fields", [
    {"fraction": 0.0}, {"fraction": 1.0}, {"jitter": 1.0}, {"jitter": -0.1},
    {"min_remaining": -1}, {"backoff_initial": 0}, {"backoff_initial": 90, "backoff_max": 60},
    {"denial_backoff": 0},
])
def test_nonsense_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RefreshPolicy(**fields)
