"""`kubegate gateway --config FILE`: run the identity-aware gateway until SIGTERM or SIGINT.

It reads the same config file as `kubegate serve` (issuers, mappings, clusters, access store)
and its `gateway:` section (`exchanger.gateway.settings`). Once it listens it prints one line
per fact, the first `kubegate gateway: listening on https://HOST:PORT` (what readiness
waits for), then the CA file clients trust when the certificate was generated, and
`metrics: http://HOST:PORT/metrics` with `gateway.metricsListen`. A start that
fails prints one message and exits non-zero: 2 for bad configuration, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from kubegate.commands.serve import wait_for_signal
from kubegate.errors import ConfigError, KubegateError
from kubegate.logformat import LOG_FORMATS, configure_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True,
                        help="config file (the exchanger's, with a gateway: section)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                        help="stderr lines as text (default) or JSON lines")


def run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level, log_format=args.log_format)
    from exchanger.config import load_config
    from exchanger.gateway.proxy_start import start_gateway

    try:
        config = load_config(args.config)
        if config.gateway is None:
            raise ConfigError(["gateway: the config has no gateway section"])
        running = start_gateway(config)
    except ConfigError as error:
        print(f"kubegate gateway: {error}", file=sys.stderr)
        return 2
    except (KubegateError, OSError, ValueError) as error:
        detail = (error.detail or error.public_message) if isinstance(error, KubegateError) \
            else str(error)
        print(f"kubegate gateway: cannot start: {detail}", file=sys.stderr)
        return 1
    settings = running.settings
    print(f"kubegate gateway: listening on {running.url}", flush=True)
    if running.ca_file is not None:
        print(f"  TLS CA:     {running.ca_file} (generated; kubectl's certificate-authority)",
              flush=True)
    print(f"  fronts:     cluster {settings.cluster} "
          f"{config.cluster(settings.cluster).server}", flush=True)
    print(f"  requests:   {settings.audit_log} (hash-chained; kubegate audit verify)",
          flush=True)
    print(f"  recordings: {settings.recordings}", flush=True)
    if running.metrics_url:
        print(f"  metrics:    {running.metrics_url} (and /healthz)", flush=True)
    wait_for_signal(threading.Event())
    running.stop()
    return 0
