"""Child processes of a benchmark run, and what /proc says about them (RSS, CPU time).

Children are started with `kubegate_bench.controlplane.start_process`: their own process group
and a parent-death signal, so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubegate_bench.controlplane import Process, free_port, start_process

PYTHON = sys.executable
KUBEGATE = [PYTHON, "-m", "kubegate"]  # the CLI of this checkout
_TICKS = os.sysconf("SC_CLK_TCK")
_GRPC_LINE = re.compile(r"gRPC:\s+\S+:(\d+)")

__all__ = ["KUBEGATE", "PYTHON", "Process", "free_port", "start_process"]


def rss_mib(pid: int) -> float:
    """Resident set size now, MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The highest RSS the process has had, MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def open_sockets(pid: int) -> int:
    """How many sockets the process has open (connections and listeners)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process so far, seconds (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5)


def wait_for_line(process: Process, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
    """The first match of pattern in the process's log; fails when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = process.log_path.read_text(errors="replace") if process.log_path.exists() else ""
        match = pattern.search(text)
        if match:
            return match
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n"
                               f"{process.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{process.name}: no {pattern.pattern!r} after {timeout:.0f}s:\n"
                       f"{process.log_tail()}")


def start_exchanger_process(name: str, config_file: Path, workdir: Path,
                            argv: Sequence[str] | None = None) -> tuple[Process, int]:
    """`python -m kubegate serve --config FILE` (or argv); returns it and its gRPC port."""
    command = list(argv) if argv is not None else [*KUBEGATE, "serve", "--config",
                                                   str(config_file), "--log-level", "WARNING",
                                                   "--workers", "1"]  # one process measured
    process = start_process(name, command, workdir)
    try:
        port = int(wait_for_line(process, _GRPC_LINE).group(1))
    except BaseException:
        process.stop()
        raise
    return process, port


@dataclass(kw_only=True)
class RssSampler:
    """Samples a process's RSS (`measure`: of the process alone, or e.g. of its whole tree)
    on a thread every `interval` seconds while running, and once more at the end; a process
    that has gone ends the sampling."""

    pid: int
    interval: float = 0.1
    measure: Callable[[int], float] = rss_mib
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._sample():
                return

    def _sample(self) -> bool:
        try:
            self.samples.append(self.measure(self.pid))
        except (OSError, RuntimeError):
            return False
        return True

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)
