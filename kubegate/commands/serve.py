"""`kubegate serve [--config FILE]`: run the exchanger until SIGTERM or SIGINT.

With no config it runs the embedded default (loopback only, TLS from a generated local CA,
self-issued mode, state and mappings under the state folder) and prints where it listens
and what it trusts. A start that fails prints one message and exits non-zero: 2 for bad
configuration, 1 for anything else kubegate refuses (an audit log whose tail does not verify,
an audit log it cannot open) or the system refuses.

Traces are exported when configured (`--otlp-endpoint`, or the standard `OTEL_*` variables:
`exchanger.tracing.read_tracing_settings`); this command is the edge that hands it
`os.environ`. Without them OpenTelemetry is never imported. Logs go to stderr as text or, with
`--log-format json`, as JSON lines (`kubegate.logformat`).

`--workers N` (or the config's `workers: N`; default: the CPUs this process may use, 1 when
the config has `audit.checkpoints` or a Unix socket `listen`) runs N exchanger processes on
one port under a parent (`exchanger.prefork`); `--workers 1` is the single process, exactly
as before. The hidden `--worker-*` flags are how the parent starts a worker (`kubegate serve
--worker-index I --workers N ...`); a start failure prints the same message either way."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from exchanger import tracing
from exchanger.config import MAX_WORKERS, Config, load_config
from kubegate.addresses import HostPort, parse_address, parse_host_port
from kubegate.errors import ConfigError, KubegateError
from kubegate.logformat import LOG_FORMATS, configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default: embedded default)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                        help="stderr lines as text (default) or JSON lines")
    parser.add_argument("--otlp-endpoint", metavar="URL", default="",
                        help="export traces by OTLP/HTTP to URL (a base URL: /v1/traces is "
                        "added); default: the OTEL_EXPORTER_OTLP_* variables, if set")
    parser.add_argument("--workers", type=_worker_count, metavar="N",
                        help="exchanger processes on the one port (default: the config's "
                        "`workers`, else the CPUs this process may use; 1 with audit "
                        "checkpoints or a Unix socket)")
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-listen", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker-http-listen", default="", help=argparse.SUPPRESS)


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number from 1 to {MAX_WORKERS}")
    return count


def describe(config: Config, port: int, ca_file: Path | None, discovery_port: int,
             checkpoint_key: str = "", token_endpoint: str = "") -> str:
    address = parse_address(config.listen)
    where = (str(HostPort(host=address.host, port=port)) if isinstance(address, HostPort)
             else str(address))
    lines = [
        f"kubegate exchanger ({config.source})",
        f"  gRPC:      {where}" + (" (plaintext)" if config.plaintext else " (TLS)"),
    ]
    if token_endpoint:
        lines.append(f"  OAuth:     {token_endpoint}/oauth2/token (RFC 8693 token exchange; "
                     "metadata at /.well-known/oauth-authorization-server)")
    if ca_file is not None:
        lines.append(f"  TLS CA:    {ca_file} (generated; clients pass --ca-file)")
    if config.self_issued is not None and discovery_port:
        lines.append(f"  issuer:    {config.self_issued.issuer_url} (self-issued discovery "
                     f"and JWKS on port {discovery_port})")
    if config.mapping_files:
        lines.append(f"  mappings:  {config.mappings}")
    if config.mapping_cluster is not None:
        lines.append(f"  mappings:  TrustMappings in namespace {config.mapping_cluster.namespace}"
                     f" of cluster {config.mapping_cluster.cluster}")
    if config.health_listen:
        lines.append(f"  health:    {config.health_listen} (plaintext, grpc.health.v1 only)")
    lines.append(f"  audit log: {config.audit_log}")
    if config.checkpoints is not None and checkpoint_key:
        lines.append(f"  checkpoints: {config.checkpoints.origin}, every "
                     f"{config.checkpoints.interval:g}s and at shutdown; verifier key:")
        lines.append(f"    {checkpoint_key}")
    if config.issuers:
        lines.append("  trusts:")
        lines += [f"    {i.name}: {i.url} (audiences {', '.join(i.audiences)})"
                  for i in config.issuers]
    else:
        lines.append("  trusts:    no issuers yet: add `issuers:` to a config file")
    for cluster in config.clusters:
        lines.append(f"  cluster:   {cluster.name} {cluster.server} ({cluster.backend})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level, log_format=args.log_format)
    if args.worker_index is not None:
        return _run_worker(args)
    traces: tracing.Tracing | None = None
    try:
        config = load_config(args.config)
        settings = tracing.read_tracing_settings(os.environ, args.otlp_endpoint)
        workers = args.workers or config.workers or _default_workers(config)
        if workers > 1:
            return _run_parent(args, config, settings, workers)
        traces = tracing.start_tracing(settings) if settings is not None else None
        from exchanger.server import start_exchanger

        running = start_exchanger(config)
    except (KubegateError, OSError) as error:
        _stop(traces)
        return refuse(error)
    print(describe(config, running.port, running.ca_file, running.discovery_port,
                   running.checkpoint_verifier_key, running.http_public_url), flush=True)
    if settings is not None:
        print(f"  traces:    {settings.describe()}", flush=True)
    wait_for_signal(threading.Event())
    running.stop()
    _stop(traces)
    return 0


def refuse(error: KubegateError | OSError) -> int:
    """Print why serve cannot start, once; its exit status (2: configuration, else 1)."""
    if isinstance(error, ConfigError):
        print(f"kubegate serve: {error}", file=sys.stderr)
        return 2
    if isinstance(error, KubegateError):  # e.g. an audit log it will not extend: one message
        print(f"kubegate serve: cannot start: {error.detail or error.public_message}",
              file=sys.stderr)
        return 1
    print(f"kubegate serve: cannot start: {error}", file=sys.stderr)
    return 1


def _on_signals(stopping: threading.Event) -> None:
    """SIGTERM and SIGINT set `stopping` (the main thread must wait with a timeout)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def wait_for_signal(stopping: threading.Event) -> None:
    """Return once SIGTERM or SIGINT arrived."""
    _on_signals(stopping)
    while not stopping.wait(0.5):  # a timed wait lets the main thread run signal handlers
        pass


def _default_workers(config: Config) -> int:
    from exchanger.prefork.role import default_workers

    if config.checkpoints is not None or not isinstance(parse_address(config.listen),
                                                        HostPort):
        return 1
    return default_workers()


def _run_worker(args: argparse.Namespace) -> int:
    """One worker, started by the parent: serve, report to the parent, stop on SIGTERM."""
    from exchanger.prefork.role import WorkerRole, worker_config
    from exchanger.prefork.worker import serve_as_worker
    from exchanger.server import start_exchanger

    parent = os.getppid()
    traces: tracing.Tracing | None = None
    try:
        role = WorkerRole(index=args.worker_index, count=args.workers or 2)
        loaded = load_config(args.config)
        config = worker_config(loaded, role, listen=args.worker_listen or loaded.listen,
                               http_listen=args.worker_http_listen or loaded.http_listen)
        settings = tracing.read_tracing_settings(os.environ, args.otlp_endpoint)
        traces = tracing.start_tracing(settings) if settings is not None else None
        running = start_exchanger(config, role=role)
    except (KubegateError, OSError) as error:
        _stop(traces)
        return refuse(error)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (a terminal's ^C)
    serve_as_worker(running, stopping, sys.stdout, parent)
    running.stop()
    _stop(traces)
    return 0


def _worker_command(args: argparse.Namespace, count: int, listen: str,
                    http_listen: str) -> Callable[[int], list[str]]:
    """How the parent starts worker `index`: this command, with the parent's own flags."""
    base = [sys.executable, "-m", "kubegate", "serve", "--workers", str(count),
            "--log-level", args.log_level, "--log-format", args.log_format,
            "--worker-listen", listen, "--worker-http-listen", http_listen]
    base += ["--config", str(args.config)] if args.config else []
    base += ["--otlp-endpoint", args.otlp_endpoint] if args.otlp_endpoint else []
    return lambda index: [*base, "--worker-index", str(index)]


def _run_parent(args: argparse.Namespace, config: Config,
                settings: tracing.TracingSettings | None, count: int) -> int:
    """The pre-fork parent (`exchanger.prefork.parent`): start, print, wait, stop."""
    from grpc_health.v1 import health

    from exchanger.prefork import parent
    from exchanger.prefork.supervisor import WorkerStartError

    parent.prepare(config, count)
    listen, holder = parent.reserve(config.listen)
    http_listen, http_holder = parent.reserve(config.http_listen)
    servers, gauges = parent.start_servers(config, health.HealthServicer())
    servers.holders += [h for h in (holder, http_holder) if h is not None]
    supervisor = parent.make_supervisor(_worker_command(args, count, listen, http_listen),
                                        count, os.environ, servers.metrics_dir)
    stopping = threading.Event()
    _on_signals(stopping)
    try:
        try:
            first = supervisor.start(parent.START_TIMEOUT)
        except WorkerStartError as error:
            return error.status if error.status > 0 else 1
        port = int(first.get("port", 0))
        audit = config.audit_log
        shown = dataclasses.replace(config, audit_log=audit.with_name(
            f"{audit.stem}.w{{0..{count - 1}}}{audit.suffix}"))  # one chain per worker
        print(describe(shown, port, Path(first["ca_file"]) if first.get("ca_file") else None,
                       int(first.get("discovery_port", 0)), "",
                       str(first.get("http_public_url", ""))), flush=True)
        if settings is not None:
            print(f"  traces:    {settings.describe()}", flush=True)
        if servers.metrics_port:
            print(f"  metrics:   {parse_host_port(config.metrics_listen).host}:"
                  f"{servers.metrics_port}/metrics (every worker)", flush=True)
        print(f"  workers:   {count} (pids {', '.join(map(str, supervisor.pids()))})",
              flush=True)
        parent.run_workers(supervisor, gauges, stopping)
    finally:
        supervisor.stop(grace=parent.STOP_GRACE)
        servers.close()
    return 0


def _stop(traces: tracing.Tracing | None) -> None:
    """Export the spans still queued (the batch processor's) and stop tracing."""
    if traces is not None:
        traces.stop()
