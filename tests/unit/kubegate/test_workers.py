"""The one background-worker helper: it runs its body in a named daemon thread, stops
promptly, survives failures of periodic work, and can be started again."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from kubegate.errors import UnavailableError
from kubegate.workers import BackgroundWorker, periodic

log = logging.getLogger("test.workers")


def test_a_periodic_worker_runs_on_time_and_stops_promptly() -> None:
    calls: list[float] = []
    worker = BackgroundWorker("test-periodic", periodic(
        lambda: calls.append(time.monotonic()), interval=0.01, log=log, what="count",
        at_start=True))
    with worker:
        assert any(t.name == "test-periodic" and t.daemon for t in threading.enumerate())
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(calls) >= 3 and not worker.running
    started = time.monotonic()
    worker.stop()  # idempotent
    assert time.monotonic() - started < 1
    assert not any(t.name == "test-periodic" for t in threading.enumerate())


def test_periodic_work_survives_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    failures = iter([UnavailableError("KEYS_UNAVAILABLE", "jwks down"), RuntimeError("bug")])
    done = threading.Event()

    def work() -> None:
        error = next(failures, None)
        if error is None:
            done.set()
            return
        raise error

    with caplog.at_level(logging.WARNING, "test.workers"), BackgroundWorker(
            "test-failing", periodic(work, interval=0.01, log=log, what="refresh")):
        assert done.wait(5)
    assert "refresh failed: jwks down" in caplog.text
    assert "refresh failed" in caplog.text and "RuntimeError: bug" in caplog.text


def test_on_stop_interrupts_a_blocking_body_and_the_worker_restarts() -> None:
    release = threading.Event()
    runs: list[int] = []

    def body(stopping: threading.Event) -> None:
        runs.append(1)
        release.wait()  # a blocking call that only on_stop can end

    worker = BackgroundWorker("test-blocking", body, on_stop=release.set)
    worker.start()
    with pytest.raises(RuntimeError, match="already running"):
        worker.start()
    worker.stop(timeout=5)
    assert not worker.running
    release.clear()
    worker.start()
    worker.stop(timeout=5)
    assert len(runs) == 2


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        periodic(lambda: None, interval=0, log=log, what="x")
