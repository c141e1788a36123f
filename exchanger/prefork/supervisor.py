"""The parent's side of `kubegate serve --workers N`: start N worker processes, watch them,
restart the ones that die, and stop them all.

Workers are fork+exec'd (`subprocess`: a new interpreter, never a fork of a process that
runs gRPC threads) and speak to the parent in JSON lines on their standard output
(`exchanger.prefork.worker`): `started` once their listeners are up (with the ports and files
the parent prints), then `ready` whenever their exchange service's readiness changes.

Rules of this module:
- start is all or nothing: every worker must say `started` before `start` returns; one that
  exits first fails the start (`WorkerStartError`, with its exit status) and the others are
  stopped; its own message is already on the shared standard error;
- a worker that dies later is logged (index, pid, exit status) and started again after a
  back-off (`backoff`: 0.5 s doubling to 30 s; a worker that ran 30 s starts from 0.5 s
  again), its slot keeps its index (worker 0 keeps the once-per-replica parts);
- `on_exit(pid)` is called for every worker that ended (the metrics of dead processes);
- stop sends SIGTERM to every worker, waits `grace` seconds for them to drain, then kills
  what is left and reaps everything: no worker outlives `stop`.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubegate.errors import UnavailableError

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5  # seconds before the first restart of a worker
BACKOFF_MAX = 30.0
STABLE_SECONDS = 30.0  # a worker that ran this long restarts from BACKOFF_FIRST again

Command = Callable[[int], Sequence[str]]


def backoff(failures: int) -> float:
    """Seconds to wait before starting a worker that failed `failures` times in a row."""
    if failures < 1:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_FIRST * float(2 ** min(failures - 1, 16)))


class WorkerStartError(UnavailableError):
    """A worker ended before it started serving (its own message is on standard error)."""

    def __init__(self, index: int, status: int) -> None:
        self.index, self.status = index, status
        super().__init__("WORKER_START_FAILED",
                         f"worker {index} ended at start with status {status}")


@dataclass
class _Slot:
    """One worker index and the process that currently holds it."""

    index: int
    process: subprocess.Popen[str] | None = None
    since: float = 0.0  # monotonic start time of the process
    info: dict[str, Any] = field(default_factory=dict)  # its `started` message
    ready: bool = False
    started: threading.Event = field(default_factory=threading.Event)
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """N workers, each started by `command(index)` with `env`."""

    def __init__(self, command: Command, count: int, env: Mapping[str, str], *,
                 on_exit: Callable[[int], None] = lambda pid: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._command, self._env, self._on_exit, self._clock = command, dict(env), on_exit, clock
        self._slots = [_Slot(index) for index in range(count)]
        self._lock = threading.Lock()
        self._stopping = False
        self.restarts = 0

    def start(self, timeout: float) -> dict[str, Any]:
        """Start every worker and wait until each has started; worker 0's `started`
        message. Raises WorkerStartError (others stopped) or TimeoutError."""
        for slot in self._slots:
            self._spawn(slot)
        deadline = self._clock() + timeout
        while waiting := [slot for slot in self._slots if not slot.started.is_set()]:
            for slot in waiting:
                status = slot.process.poll() if slot.process else None
                if status is not None:
                    self.stop(grace=5.0)
                    raise WorkerStartError(slot.index, status)
            if self._clock() > deadline:
                self.stop(grace=5.0)
                raise TimeoutError(f"worker {waiting[0].index} did not start in {timeout:g}s")
            waiting[0].started.wait(0.05)
        return dict(self._slots[0].info)

    def watch(self) -> None:
        """One round: notice ended workers, start the ones whose back-off is over."""
        now = self._clock()
        for slot in self._slots:
            with self._lock:
                if self._stopping:
                    return
                process = slot.process
                if process is not None and process.poll() is not None:
                    self._ended(slot, process, now)
                elif slot.restart_at is not None and now >= slot.restart_at:
                    self.restarts += 1
                    self._spawn(slot)

    def _ended(self, slot: _Slot, process: subprocess.Popen[str], now: float) -> None:
        lived = now - slot.since
        slot.failures = 1 if lived >= STABLE_SECONDS else slot.failures + 1
        delay = backoff(slot.failures)
        log.warning("worker %d (pid %d) ended with status %s after %.1fs; starting it again "
                    "in %.1fs", slot.index, process.pid, process.returncode, lived, delay)
        slot.process, slot.ready, slot.restart_at = None, False, now + delay
        slot.started.clear()
        self._on_exit(process.pid)

    def _spawn(self, slot: _Slot) -> None:
        slot.restart_at, slot.info, slot.ready = None, {}, False
        slot.started.clear()
        process = subprocess.Popen(list(self._command(slot.index)), env=self._env,
                                   stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        slot.process, slot.since = process, self._clock()
        threading.Thread(target=self._read, args=(slot, process), daemon=True,
                         name=f"worker-{slot.index}-reader").start()
        log.info("worker %d started as pid %d", slot.index, process.pid)

    def _read(self, slot: _Slot, process: subprocess.Popen[str]) -> None:
        """The worker's messages, until it closes its standard output."""
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("worker %d: not a message: %.80r", slot.index, line)
                    continue
                with self._lock:
                    if slot.process is not process:
                        return
                    if message.get("event") == "started":
                        slot.info = message
                        slot.started.set()
                    slot.ready = bool(message.get("ready", slot.ready))

    def pids(self) -> list[int]:
        """The pids of the worker processes now running, by index."""
        with self._lock:
            return [s.process.pid for s in self._slots if s.process is not None]

    def counts(self) -> tuple[int, int]:
        """(workers started, workers whose exchange service is ready)."""
        with self._lock:
            started = [s for s in self._slots if s.process is not None and s.started.is_set()]
            return len(started), sum(1 for s in started if s.ready)

    def stop(self, grace: float) -> None:
        """SIGTERM every worker, wait `grace` seconds, kill the rest; all are reaped."""
        with self._lock:
            self._stopping = True
            processes = [s.process for s in self._slots if s.process is not None]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = self._clock() + grace
        for process in processes:
            try:
                process.wait(max(0.0, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in %gs: killed", process.pid, grace)
                process.kill()
                process.wait()
            self._on_exit(process.pid)
