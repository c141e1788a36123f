"""Benchmark 15's measuring tape: the Go programs it runs (tools/build-loadgen.sh's loadgen
and goexchange, Dex), one load-generator run, and what /proc says about a server's whole
process tree (CPU time and RSS summed over the server and every descendant, so a server that
forks workers is charged for all of them).

Rules of this module:
- a binary is found through its environment variable (LOADGEN_DIR, DEX) or the per-machine
  cache, else built by its tools/ script; a missing one is an error naming the script, never a
  silent skip (the benchmark reports the error; a missed target is not one);
- server CPU of a load is measured over the load generator's whole life, and divided by every
  call it made (warm-up included): both counts cover the same calls;
- the load generator's report is parsed, never echoed: a server's error text could hold a token.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubegate_bench.procs import RssSampler, cpu_seconds, rss_mib

REPO = Path(__file__).resolve().parents[2]
_TOOLS = REPO / "tools"


def _versions() -> dict[str, str]:
    pairs = {}
    for line in (_TOOLS / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubegate" / "tools"


def _build(script: str) -> Path:
    """Run tools/<script> (it builds once per machine, then answers from its cache)."""
    done = subprocess.run([str(_TOOLS / script)], capture_output=True, text=True,  # noqa: S603
                          timeout=1800, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"tools/{script} failed (needs Go >= 1.26 and the Go module proxy):\n"
                           f"{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def loadgen_dir() -> Path:
    """The folder holding `loadgen` and `goexchange` (LOADGEN_DIR, else built)."""
    ready = os.environ.get("LOADGEN_DIR")
    return Path(ready) if ready else _build("build-loadgen.sh")


def dex_binary() -> Path:
    """Dex (DEX, else the cache, else tools/build-dex.sh)."""
    ready = os.environ.get("DEX")
    if ready:
        return Path(ready)
    cached = _cache() / f"dex-{_versions()['DEX_VERSION']}" / "dex"
    return cached if os.access(cached, os.X_OK) else _build("build-dex.sh")


def dex_version() -> str:
    return _versions()["DEX_VERSION"]


def tree_pids(root: int) -> list[int]:
    """root and all its descendants now (from /proc/<pid>/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of root and its living descendants, plus what reaped children used
    (cutime + cstime of the root, fields 16 and 17 of stat(5))."""
    total = 0.0
    for pid in tree_pids(root):
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    fields = Path(f"/proc/{root}/stat").read_text().rpartition(")")[2].split()
    return total + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def pss_mib(pid: int) -> float:
    """A process's proportional set size (smaps_rollup): its private pages, plus each shared
    page divided among the processes that map it."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def tree_pss_mib(root: int) -> float:
    """The memory root's process tree uses, each page counted once (the sum of the PSS of
    every process in it; summing RSS instead counts a page shared by N workers N times)."""
    total = 0.0
    for pid in tree_pids(root):
        try:
            total += pss_mib(pid)
        except (OSError, RuntimeError):
            continue
    return total


def tree_rss_mib(root: int) -> float:
    total = 0.0
    for pid in tree_pids(root):
        try:
            total += rss_mib(pid)
        except (OSError, RuntimeError):
            continue
    return total


@dataclass(kw_only=True)
class LoadResult:
    """One loadgen run against one server, with the server tree's CPU over the same calls."""

    target: str
    concurrency: int
    report: dict[str, Any]
    server_cpu_seconds: float
    peak_rss_mib: float  # the tree's RSS summed over its processes, at its peak
    peak_pss_mib: float  # the tree's PSS summed (each page once), at its peak

    @property
    def throughput(self) -> float:
        return float(self.report["throughput"])

    @property
    def calls(self) -> int:
        return int(self.report["tokens_taken"])  # every call made, the check call included

    @property
    def server_cpu_us(self) -> float:
        return self.server_cpu_seconds / self.calls * 1e6

    @property
    def client_cpu_us(self) -> float:
        return float(self.report["client_cpu_us_per_request"])

    @property
    def errors(self) -> int:
        return sum(int(n) for n in self.report["errors"].values())


def run_load(*, loadgen: Path, target: str, server_pid: int, args: Sequence[str],
             concurrency: int, seconds: float, warmup: float, offset: int) -> LoadResult:
    """One closed-loop load; `offset` is where in the token file this load starts."""
    argv = [str(loadgen), *args, "-concurrency", str(concurrency), "-duration", f"{seconds}s",
            "-warmup", f"{warmup}s", "-offset", str(offset)]
    cpu_before = tree_cpu_seconds(server_pid)
    with (RssSampler(pid=server_pid, interval=0.2, measure=tree_rss_mib) as rss,
          RssSampler(pid=server_pid, interval=0.2, measure=tree_pss_mib) as pss):
        done = subprocess.run(argv, capture_output=True, text=True,  # noqa: S603
                              timeout=seconds + warmup + 120, check=False)
    cpu = tree_cpu_seconds(server_pid) - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"loadgen against {target} (c{concurrency}) exited "
                           f"{done.returncode}: {done.stderr.strip()[-500:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return LoadResult(target=target, concurrency=concurrency, report=report,
                      server_cpu_seconds=cpu, peak_rss_mib=rss.peak,
                      peak_pss_mib=pss.peak)
