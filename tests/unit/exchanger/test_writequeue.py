"""The status writer's queue and pacing: a name waits once however often it is added, names
come out in the order first added, and the bucket allows a burst then the rate."""

from __future__ import annotations

import threading

import pytest

from exchanger.mappings.writequeue import TokenBucket, WorkQueue, WriteLimit


def test_a_name_added_again_while_waiting_keeps_its_place_and_comes_out_once() -> None:
    work = WorkQueue()
    work.add_all(["a", "b", "c"])
    work.add("a")
    work.add("b")
    assert len(work) == 3
    assert [work.get(0), work.get(0), work.get(0), work.get(0)] == ["a", "b", "c", None]


def test_a_discarded_name_never_comes_out() -> None:
    work = WorkQueue()
    work.add_all(["a", "b"])
    work.discard("a")
    assert work.get(0) == "b"


def test_wake_releases_a_waiting_get_at_once() -> None:
    work = WorkQueue()
    got: list[str | None] = []
    thread = threading.Thread(target=lambda: got.append(work.get(30)))
    thread.start()
    work.wake()
    thread.join(5)
    assert got == [None]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(WriteLimit(rate=10, burst=3), clock)
    for _ in range(3):
        assert bucket.wait_seconds() == 0
        bucket.take()
    assert bucket.wait_seconds() == pytest.approx(0.1)
    clock.now += 0.11
    assert bucket.wait_seconds() == 0
    clock.now += 60  # idle: never more than the burst
    for _ in range(3):
        bucket.take()
    assert bucket.wait_seconds() > 0


def test_a_clock_going_backwards_refills_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(WriteLimit(rate=10, burst=1), clock)
    bucket.take()
    clock.now -= 50
    assert bucket.wait_seconds() == pytest.approx(0.1)


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0)])
def test_a_limit_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        WriteLimit(rate=rate, burst=burst)
