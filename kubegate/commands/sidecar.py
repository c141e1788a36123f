"""`kubegate sidecar`: keep a credential fresh and serve it on a Unix socket (and, with
`--proxy-listen`, proxy the Kubernetes API with it); or, with `--once`, exchange once and
write a kubeconfig. Each flag also reads `KUBEGATE_<FLAG>` (upper case, `-` as `_`) when it
is not given; `sidecar.config.load_config` resolves and validates them.

Rules of this command:
- it is an edge: `run` hands `os.environ` to the config loader once; nothing below reads it;
- a bad configuration is one line on stderr and exit status 2, never a traceback;
- the sidecar itself (`sidecar.main`) is imported only when this command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from kubegate.commands.clientflags import add_exchange_flags
from kubegate.errors import ConfigError
from kubegate.logformat import configure_logging
from kubegate.socketapi import DEFAULT_SOCKET_PATH

EXIT_USAGE = 2
PROG = "kubegate sidecar"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_exchange_flags(parser, sources_required=False)
    add = parser.add_argument
    add("--socket", metavar="PATH",
        help=f"Unix socket of the local API (default {DEFAULT_SOCKET_PATH})")
    add("--socket-group", metavar="GROUP",
        help="make the socket 0660 and owned by GROUP (default: 0600, this user only)")
    add("--allowed-uids", metavar="UID,...", help="serve only these peer uids (SO_PEERCRED)")
    add("--proxy-listen", metavar="ADDR",
        help="also proxy the Kubernetes API on 127.0.0.1:PORT or unix:/path")
    add("--proxy-allowed-hosts", metavar="NAME,...",
        help="Host names the proxy answers besides localhost and loopback addresses")
    add("--proxy-max-connections", metavar="N",
        help="connections the proxy holds at once; more are answered 503 (256)")
    add("--proxy-head-timeout", metavar="DURATION",
        help="time a proxy client has to send a whole request head (10s)")
    add("--metrics-listen", metavar="HOST:PORT", help="serve /metrics over TCP here too")
    add("--refresh-fraction", metavar="F", help="refresh at this share of the lifetime (0.5)")
    add("--refresh-jitter", metavar="F", help="spread the refresh point by ±F of it (0.1)")
    add("--min-remaining", metavar="DURATION",
        help="stop serving a credential this long before it expires (30s)")
    add("--exchange-timeout", metavar="DURATION",
        help="timeout of one exchange while a credential is cached (3s)")
    add("--backoff-max", metavar="DURATION", help="longest wait between retries (60s)")
    add("--denial-backoff", metavar="DURATION",
        help="wait after a denial before trying the same token again (5m)")
    add("--plugin-command", metavar="CMD",
        help="how the job runs kubegate, in served kubeconfigs (default: kubegate)")
    add("--once", action="store_true", default=None,
        help="exchange once, write --kubeconfig and exit (init containers)")
    add("--kubeconfig", metavar="PATH", help="with --once: the kubeconfig to write (0600)")
    add("--log-level", metavar="LEVEL", help="DEBUG, INFO (default), WARNING or ERROR")
    add("--log-format", metavar="FORMAT", help="stderr lines as text (default) or json")


def run(args: argparse.Namespace) -> int:
    from sidecar import main
    from sidecar.config import load_config

    try:
        config = load_config(args, os.environ)
    except ConfigError as error:
        print(f"{PROG}: bad configuration: {' '.join('; '.join(error.problems).split())}",
              file=sys.stderr)
        return EXIT_USAGE
    configure_logging(level=config.log_level, log_format=config.log_format)
    return main.run_once(config) if config.once else main.serve(config)
