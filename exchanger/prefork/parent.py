"""The pre-fork parent of `kubegate serve --workers N`: it prepares what the workers share,
reserves their ports, starts them (`supervisor`), serves /metrics and the health-only
listener for all of them, and stops them.

Rules of this module:
- the parent binds no listener that takes connections: for the gRPC and token endpoint
  addresses it binds (never listens on) a SO_REUSEPORT socket, which fixes a port 0 once and
  keeps the port reserved while workers come and go; the workers listen on it and the
  kernel spreads connections among them. A port already in use is refused first (a plain
  bind), so a second kubegate never joins the first one's workers by accident;
- before any worker starts, the shared files are created once (`server.prepare_shared_files`,
  and the access store's SQLite file: switching it to WAL is not safe to race) and every
  audit file that exists (each worker's, and the configured one) is opened and closed: a
  log that does not verify fails the start with the single-process message and status,
  once, before any worker runs;
- /metrics (`metricsListen`) serves every worker's values from PROMETHEUS_MULTIPROC_DIR, a
  fresh folder of this parent (removed at exit), plus `kubegate_workers{state}` and
  `kubegate_worker_restarts_total`; a dead worker's live gauges are dropped;
- the health-only listener (`healthListen`) says "" SERVING while a worker runs, and the
  exchange, access and session services SERVING while at least one worker's exchange
  service is (per-issuer names are each worker's own, on the shared gRPC port);
- SIGTERM or SIGINT stops the workers (they drain for `STOP_GRACE` seconds) and returns 0.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from exchanger.access.sqlite_store import SqliteStores
from exchanger.audit.log import AuditLog
from exchanger.audit.workerfiles import worker_log
from exchanger.config import Config
from exchanger.prefork.role import check_workers
from exchanger.prefork.supervisor import Supervisor
from exchanger.statefiles import prepare_shared_files
from exchanger.v1 import access_pb2, exchange_pb2
from kubegate.addresses import HostPort, parse_address, parse_host_port

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0  # seconds for every worker to start (a loaded machine is slow)
STOP_GRACE = 10.0
WATCH_SECONDS = 0.1

# What a worker serves, for the parent's health answers (the descriptors, not the servicer
# modules: the parent imports no gRPC servicer and no Kubernetes client, to stay small).
SERVED = (exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name,
          access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
          access_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name)


def prepare(config: Config, count: int) -> None:
    """Check and create what the workers share (ConfigError, KubegateError, OSError)."""
    check_workers(config, count)
    prepare_shared_files(config)
    if config.access.store == "sqlite" and config.access.sqlite_file is not None:
        SqliteStores(config.access.sqlite_file).close()  # schema and WAL mode, made once
    paths = [config.audit_log, *(worker_log(config.audit_log, i) for i in range(count))]
    for path in paths:
        if path.exists():  # a worker creates its file; an existing one must verify first
            AuditLog(path).close()


def reserve(listen: str) -> tuple[str, socket.socket | None]:
    """The address workers bind for `listen` (its port chosen if 0) and the socket that
    keeps it; a "" or Unix socket address is passed on as it is."""
    if not listen:
        return listen, None
    address = parse_address(listen)
    if not isinstance(address, HostPort):
        return listen, None
    host = address.bind_host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # no SO_REUSEPORT: a port in
        probe.bind((host, address.port))  # use (another kubegate's) is refused, not joined
        port = int(probe.getsockname()[1])
    holder = socket.socket(family, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((host, port))
    except OSError:
        holder.close()
        raise
    return str(HostPort(host=host, port=port)), holder


@dataclass
class ParentServers:
    """What the parent serves itself, and what it holds."""

    metrics_dir: Path
    holders: list[socket.socket] = field(default_factory=list)
    metrics_port: int = 0
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        for holder in self.holders:
            holder.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


class WorkerGauges:
    """The parent's own metrics and health, refreshed from the supervisor."""

    def __init__(self, registry: CollectorRegistry, health_servicer: health.HealthServicer
                 ) -> None:
        self._health = health_servicer
        self.workers = Gauge("kubegate_workers", "Worker processes by state (running: "
                             "started; ready: its exchange service is SERVING).", ["state"],
                             registry=registry)
        self.restarts = Counter("kubegate_worker_restarts_total", "Worker processes started "
                                "again after one ended.", registry=registry)
        self._restarts_seen = 0

    def update(self, supervisor: Supervisor) -> None:
        running, ready = supervisor.counts()
        self.workers.labels(state="running").set(running)
        self.workers.labels(state="ready").set(ready)
        self.restarts.inc(supervisor.restarts - self._restarts_seen)
        self._restarts_seen = supervisor.restarts
        serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                                health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health.set("", serving if running else not_serving)
        for service in SERVED:
            self._health.set(service, serving if ready else not_serving)


def start_servers(config: Config, health_servicer: health.HealthServicer
                  ) -> tuple[ParentServers, WorkerGauges]:
    """The metrics folder, /metrics and the health-only listener of the parent."""
    servers = ParentServers(metrics_dir=Path(tempfile.mkdtemp(prefix="kubegate-metrics-")))
    try:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(servers.metrics_dir))  # type: ignore[no-untyped-call]
        gauges = WorkerGauges(registry, health_servicer)
        if config.metrics_listen:
            address = parse_host_port(config.metrics_listen)
            http_server, thread = start_http_server(address.port, address.bind_host,
                                                    registry=registry)
            servers.metrics_port = int(http_server.server_address[1])
            servers._closers.extend([http_server.server_close, thread.join,
                                     http_server.shutdown])
        if config.health_listen:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                                 options=[("grpc.max_receive_message_length", 4096),
                                          ("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            server.add_insecure_port(config.health_listen)
            server.start()
            servers._closers.append(lambda: server.stop(None).wait(2))
    except BaseException:
        servers.close()
        raise
    return servers, gauges


def run_workers(supervisor: Supervisor, gauges: WorkerGauges,
                stopping: threading.Event) -> None:
    """Watch the workers until `stopping` (the caller stops them)."""
    gauges.update(supervisor)
    while not stopping.wait(WATCH_SECONDS):
        supervisor.watch()
        gauges.update(supervisor)


def make_supervisor(command: Callable[[int], Sequence[str]], count: int,
                    environ: Mapping[str, str], metrics_dir: Path) -> Supervisor:
    """The supervisor of `count` workers, their metrics in `metrics_dir`."""
    env = {**environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    return Supervisor(command, count, env,
                      on_exit=lambda pid: _forget(pid, metrics_dir))


def _forget(pid: int, metrics_dir: Path) -> None:
    """Drop an ended worker's live gauges (its counters stay in the sums)."""
    mark_process_dead(pid, str(metrics_dir))  # type: ignore[no-untyped-call]
