"""`kubegate sidecar`'s flags. Each also reads `KUBEGATE_<FLAG>` (upper case, `-` as `_`)
when it is not given; `sidecar.config.load_config` resolves and validates them."""

from __future__ import annotations

import argparse

from sidecar.plugin import DEFAULT_SOCKET_PATH


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--server", metavar="HOST:PORT", help="the exchanger's gRPC address")
    add("--ca-file", metavar="PATH", help="CA certificates to trust for the exchanger")
    add("--plaintext", action="store_true", default=None, help="no TLS (loopback only)")
    add("--role", metavar="NAME", help="the trust mapping to use")
    add("--lifetime", metavar="DURATION", help="requested credential lifetime, e.g. 15m")
    add("--audience", action="append", metavar="A",
        help="audience of the issued credential (repeatable; env: comma-separated "
        "KUBEGATE_AUDIENCES)")
    add("--token-file", metavar="PATH", help="subject token file, re-read at every exchange")
    add("--token-env", metavar="VAR", help="environment variable holding the subject token")
    add("--github-actions", action="store_true", default=None,
        help="fetch a fresh GitHub Actions ID token for every exchange")
    add("--github-audience", metavar="A", help="audience of the GitHub ID token (kubegate)")
    add("--socket", metavar="PATH",
        help=f"Unix socket of the local API (default {DEFAULT_SOCKET_PATH})")
    add("--socket-group", metavar="GROUP",
        help="make the socket 0660 and owned by GROUP (default: 0600, this user only)")
    add("--allowed-uids", metavar="UID,...", help="serve only these peer uids (SO_PEERCRED)")
    add("--proxy-listen", metavar="ADDR",
        help="also proxy the Kubernetes API on 127.0.0.1:PORT or unix:/path")
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
