"""What changes in an exchanger when it is one worker of several (`kubegate serve --workers
N`): a pure function of the config and the worker's place, so it is tested without a process.

Rules of this module:
- the worker's config is the loaded config with: the gRPC and token endpoint addresses the
  parent resolved (a port 0 is chosen once, by the parent, and shared through SO_REUSEPORT);
  its own audit file (`audit.workerfiles`); the per-identity rate limit divided by N (rate
  / N, burst rounded up, at least 1: N workers together allow what one process allowed, when
  the kernel spreads connections evenly; one connection gets 1/N); no `metricsListen` and no
  `healthListen` (the parent serves both, for every worker);
- the parts that must run once per replica run in worker 0 only (`singletons`): the session
  reaper, the access request expirer, the CI job webhook listener and the self-issued
  discovery server. Worker 0 is restarted like any other, so they pause while it restarts;
- audit checkpoints sign one chain, and a Unix socket cannot be shared: with several
  workers both are refused (`ConfigError`);
- the default count is the CPUs the process may use: its affinity, capped by its cgroup's CPU
  quota (a container limited to 2 CPUs on a 64-CPU node runs 2 workers, not 64).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

from exchanger.audit.workerfiles import worker_log
from exchanger.config import Config
from exchanger.ratelimit import RateLimit
from kubegate.addresses import HostPort, parse_address
from kubegate.errors import ConfigError

__all__ = ["WorkerRole", "check_workers", "default_workers", "quota_cpus", "worker_config",
           "worker_rate_limit"]

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: a container's CPU limit


@dataclass(frozen=True, kw_only=True)
class WorkerRole:
    """Worker `index` of `count` (0 <= index < count, count >= 2)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 2 or not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count} is no worker")

    @property
    def singletons(self) -> bool:
        """Whether this worker runs the parts that must run once per replica."""
        return self.index == 0


def default_workers(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The number of CPUs this process may use: the CPUs it may run on, or fewer when its
    cgroup's CPU quota (a container's CPU limit) allows fewer."""
    cpus = max(1, len(os.sched_getaffinity(0)))
    try:
        quota = quota_cpus(cpu_max.read_text())
    except OSError:
        quota = None
    return cpus if quota is None else min(cpus, quota)


def quota_cpus(cpu_max: str) -> int | None:
    """Whole CPUs (rounded up) of a cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD");
    None when there is no quota or the text is not one."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def worker_rate_limit(limit: RateLimit, count: int) -> RateLimit:
    """One worker's share of the per-identity limit."""
    return RateLimit(rate=limit.rate / count, burst=max(1, math.ceil(limit.burst / count)))


def check_workers(config: Config, count: int) -> None:
    """Refuse what several workers cannot share (ConfigError): one checkpointed chain, a
    Unix socket (SO_REUSEPORT is for TCP ports)."""
    if count < 2:
        return
    problems = []
    if config.checkpoints is not None:
        problems.append(f"--workers: audit.checkpoints signs one audit chain; with {count} "
                        f"workers there are {count} chains: run --workers 1")
    if not isinstance(parse_address(config.listen), HostPort):
        problems.append(f"--workers: listen {config.listen} is a Unix socket, which workers "
                        "cannot share: run --workers 1")
    if problems:
        raise ConfigError(problems)


def worker_config(config: Config, role: WorkerRole, *, listen: str,
                  http_listen: str) -> Config:
    """The config worker `role` runs: see the rules of this module."""
    check_workers(config, role.count)
    access = config.access
    if not role.singletons and access.ci_webhooks is not None:
        access = dataclasses.replace(access, ci_webhooks=None)
    return dataclasses.replace(
        config, listen=listen, http_listen=http_listen,
        audit_log=worker_log(config.audit_log, role.index),
        rate_limit=worker_rate_limit(config.rate_limit, role.count),
        metrics_listen="", health_listen="", access=access)
