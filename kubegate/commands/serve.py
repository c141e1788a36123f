"""`kubegate serve [--config FILE]`: run the exchanger until SIGTERM or SIGINT.

With no config it runs the embedded default (loopback only, TLS from a generated local CA,
self-issued mode, state and mappings under the state folder) and prints where it listens
and what it trusts. A start that fails prints one message and exits non-zero: 2 for bad
configuration, 1 for anything else kubegate refuses (an audit log whose tail does not verify,
an audit log it cannot open) or the system refuses.

Traces are exported when configured (`--otlp-endpoint`, or the standard `OTEL_*` variables:
`exchanger.tracing.read_tracing_settings`); this command is the edge that hands it
`os.environ`. Without them OpenTelemetry is never imported. Logs go to stderr as text or, with
`--log-format json`, as JSON lines (`kubegate.logformat`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from exchanger import tracing
from exchanger.config import Config, load_config
from kubegate.addresses import HostPort, parse_address
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
    traces: tracing.Tracing | None = None
    try:
        config = load_config(args.config)
        settings = tracing.read_tracing_settings(os.environ, args.otlp_endpoint)
        traces = tracing.start_tracing(settings) if settings is not None else None
        from exchanger.server import start_exchanger

        running = start_exchanger(config)
    except ConfigError as error:
        _stop(traces)
        print(f"kubegate serve: {error}", file=sys.stderr)
        return 2
    except KubegateError as error:  # e.g. an audit log it will not extend: one message
        _stop(traces)
        print(f"kubegate serve: cannot start: {error.detail or error.public_message}",
              file=sys.stderr)
        return 1
    except OSError as error:
        _stop(traces)
        print(f"kubegate serve: cannot start: {error}", file=sys.stderr)
        return 1
    print(describe(config, running.port, running.ca_file, running.discovery_port,
                   running.checkpoint_verifier_key, running.http_public_url), flush=True)
    if settings is not None:
        print(f"  traces:    {settings.describe()}", flush=True)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.wait(0.5):  # a timed wait lets the main thread run signal handlers
        pass
    running.stop()
    _stop(traces)
    return 0


def _stop(traces: tracing.Tracing | None) -> None:
    """Export the spans still queued (the batch processor's) and stop tracing."""
    if traces is not None:
        traces.stop()
