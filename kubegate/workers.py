"""Background workers: one named daemon thread that runs a loop until it is stopped. Every
long-lived loop in kubegate (the mapping folder watcher, the TrustMapping watcher, the key
refresher, the session reaper, the sidecar's credential keeper) is one of these.

    worker = BackgroundWorker("session-reaper", periodic(reap_once, interval=5.0, log=log))
    worker.start()
    ...
    worker.stop()

Rules of this module:
- a loop body receives the worker's `stopping` event and waits on it, never on `time.sleep`,
  so `stop()` returns as soon as the body notices (a call in flight finishes first);
- a periodic body survives every exception of its work: a `KubegateError` is one warning line
  (its detail, never a token), anything else is logged with its traceback; the next round
  runs on time;
- `stop()` is idempotent and never raises; a worker may be started again after it stopped;
- threads are daemons: a worker that does not stop in time never holds up the process exit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kubegate.errors import KubegateError

Body = Callable[[threading.Event], None]


class BackgroundWorker:
    """Runs `body(stopping)` in a daemon thread named `name`. `on_stop` runs when stopping
    starts, before the join (to interrupt a blocking call such as a watch)."""

    def __init__(self, name: str, body: Body, *,
                 on_stop: Callable[[], None] | None = None) -> None:
        self.name = name
        self._body, self._on_stop = body, on_stop
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.stopping.clear()
        self._thread = threading.Thread(target=self._body, args=(self.stopping,),
                                        name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the body to stop and wait up to `timeout` seconds for it."""
        self.stopping.set()
        if self._on_stop is not None:
            try:
                self._on_stop()
            except Exception:  # stopping must not fail
                logging.getLogger(__name__).exception("%s: stopping failed", self.name)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> BackgroundWorker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def periodic(work: Callable[[], object], *, interval: float, log: logging.Logger,
             what: str, at_start: bool = False) -> Body:
    """A body that calls `work()` every `interval` seconds (first at once when `at_start`),
    logging and surviving any failure; `what` names the work in log lines."""
    if interval <= 0:
        raise ValueError("the interval must be positive")

    def body(stopping: threading.Event) -> None:
        if at_start:
            run_once(work, log=log, what=what)
        while not stopping.wait(interval):
            run_once(work, log=log, what=what)

    return body


def run_once(work: Callable[[], object], *, log: logging.Logger, what: str) -> None:
    """Call `work()`; log a failure instead of raising it."""
    try:
        work()
    except KubegateError as error:
        log.warning("%s failed: %s", what, error.detail or error.reason)
    except Exception:  # a background loop must outlive a bug in what it runs
        log.exception("%s failed", what)
