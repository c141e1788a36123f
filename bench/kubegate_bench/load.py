"""Driving a closed-loop load against one gRPC server with `loadgen` processes, and what the
server spent meanwhile (CPU from /proc/<pid>/stat, RSS sampled)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubegate_bench.common import percentile
from kubegate_bench.procs import PYTHON, RssSampler, cpu_seconds

CLIENT_PROCESSES = 2  # on two cores: one per core; a single client for concurrency 1


@dataclass(kw_only=True)
class LoadResult:
    concurrency: int
    seconds: float
    count: int
    latencies_ms: list[float]
    errors: dict[str, int]
    server_cpu_seconds: float
    server_rss_mib: list[float] = field(default_factory=list)
    taken: int = 0  # requests taken from the file, over all processes

    @property
    def throughput(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_per_call_us(self) -> float:
        return self.server_cpu_seconds / self.count * 1e6 if self.count else float("nan")

    def p(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)


@dataclass(frozen=True, kw_only=True)
class Target:
    address: str
    ca_file: Path
    method: str
    server_pid: int


def run_load(target: Target, requests_file: Path, concurrency: int, *, warmup: float,
             seconds: float, work: Path, label: str, offset: int = 0) -> LoadResult:
    """Closed-loop load at `concurrency`; requests are taken in file order from `offset`
    (`LoadResult.taken` says how far the load got, to continue from there next time)."""
    processes = 1 if concurrency < CLIENT_PROCESSES else CLIENT_PROCESSES
    clients: list[subprocess.Popen[str]] = []
    try:
        for index in range(processes):
            spec = work / f"load-{label}-{concurrency}-{index}.json"
            spec.write_text(json.dumps({
                "target": target.address, "ca_file": str(target.ca_file),
                "method": target.method, "requests_file": str(requests_file),
                "offset": offset, "index": index, "step": processes,
                "threads": concurrency // processes}))
            clients.append(subprocess.Popen(
                [PYTHON, "-m", "kubegate_bench.loadgen", str(spec)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True))
        for client in clients:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError(f"load generator for {label} failed to start")
        start = time.time() + 0.2
        go = json.dumps({"start": start, "warmup": warmup, "duration": seconds}) + "\n"
        for client in clients:
            assert client.stdin is not None
            client.stdin.write(go)
            client.stdin.flush()
        with RssSampler(pid=target.server_pid) as rss:
            _sleep_until(start + warmup)
            cpu_before = cpu_seconds(target.server_pid)
            _sleep_until(start + warmup + seconds)
            cpu_after = cpu_seconds(target.server_pid)
        outputs = [json.loads(client.communicate(timeout=120)[0]) for client in clients]
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    latencies = [value for output in outputs for value in output["latencies_ms"]]
    errors: dict[str, int] = {}
    for output in outputs:
        for code, count in output["errors"].items():
            errors[code] = errors.get(code, 0) + count
    return LoadResult(concurrency=concurrency, seconds=seconds, count=len(latencies),
                      latencies_ms=latencies, errors=errors,
                      server_cpu_seconds=cpu_after - cpu_before, server_rss_mib=rss.samples,
                      taken=processes * max(output["taken"] for output in outputs))


def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)
