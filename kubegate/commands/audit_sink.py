"""`kubegate audit sink`: receive the API server's audit webhook backend, join every event with
kubegate's sessions as it arrives, append the joined records to a file, export bypass counts.

    kubegate audit sink --listen 0.0.0.0:8447 --tls-cert sink.crt --tls-key sink.key \\
        --client-ca apiserver-client-ca.crt --out /var/log/kubegate/joined.jsonl \\
        --kubegate-log /var/log/kubegate/audit.log [--allow-user PATTERN]... \\
        [--exchanger-user NAME]... [--metrics-listen 127.0.0.1:9091]

    kubegate audit sink --print-webhook-config --url https://sink:8447/audit \\
        --ca-file sink-ca.crt [--client-cert apiserver.crt --client-key apiserver.key]

The second form prints the kubeconfig to pass the API server as `--audit-webhook-config-file`
(paths as the API server sees them). The sink runs until SIGTERM or SIGINT. Exit status: 0
after a clean stop or a printed config, 2 when called wrongly or it cannot start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

from kubegate.addresses import parse_host_port
from kubegate.commands.auditexits import EXIT_OK, EXIT_UNREADABLE
from kubegate.errors import KubegateError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["add_arguments", "run", "webhook_kubeconfig"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--listen", metavar="HOST:PORT", help="where to serve POST /audit (and GET /metrics)")
    add("--tls-cert", type=Path, metavar="FILE", help="the sink's serving certificate (PEM)")
    add("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    add("--client-ca", type=Path, metavar="FILE",
        help="demand a client certificate signed by this CA (the API server's, from its "
        "webhook kubeconfig); without it anyone who reaches the port can write events")
    add("--out", type=Path, metavar="FILE",
        help="append the joined records here (JSON lines, 0600, fsynced before each 200)")
    add("--kubegate-log", action="append", default=[], type=Path, metavar="FILE",
        help="a live kubegate audit log (each replica's); repeatable")
    add("--allow-user", action="append", default=[], metavar="PATTERN",
        help="a system identity whose actions are no bypass (glob on the user name, or "
        "group:GLOB); repeatable, added to the control plane's own")
    add("--exchanger-user", action="append", default=[], metavar="NAME",
        help="the exchanger's own user name on the cluster; repeatable")
    add("--metrics-listen", metavar="HOST:PORT",
        help="also serve GET /metrics here, plaintext, without client certificates")
    add("--print-webhook-config", action="store_true",
        help="print the API server's --audit-webhook-config-file kubeconfig and exit")
    add("--url", help="with --print-webhook-config: the sink's URL (https://HOST:PORT/audit)")
    add("--ca-file", help="with --print-webhook-config: the CA of the sink's certificate")
    add("--client-cert", help="with --print-webhook-config: the API server's client "
        "certificate (for --client-ca)")
    add("--client-key", help="with --print-webhook-config: its key")


def webhook_kubeconfig(*, url: str, ca_file: str, client_cert: str = "",
                       client_key: str = "") -> dict[str, Any]:
    """The kubeconfig that points the API server's audit webhook backend at the sink."""
    user = {"client-certificate": client_cert, "client-key": client_key} if client_cert else {}
    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kubegate-audit-sink",
                      "cluster": {"server": url, "certificate-authority": ca_file}}],
        "users": [{"name": "kube-apiserver", "user": user}],
        "contexts": [{"name": "kubegate-audit-sink",
                      "context": {"cluster": "kubegate-audit-sink", "user": "kube-apiserver"}}],
        "current-context": "kubegate-audit-sink",
    }


def run(args: argparse.Namespace) -> int:
    try:
        if args.print_webhook_config:
            return _print_webhook_config(args)
        return _serve(args)
    except KubegateError as error:
        return _refuse(error.detail or error.public_message)


def _print_webhook_config(args: argparse.Namespace) -> int:
    if not args.url or not args.url.startswith("https://"):
        return _refuse("--print-webhook-config needs --url https://HOST:PORT/audit")
    if not args.ca_file:
        return _refuse("--print-webhook-config needs --ca-file (the sink's CA)")
    if bool(args.client_cert) != bool(args.client_key):
        return _refuse("--client-cert and --client-key go together")
    document = webhook_kubeconfig(url=args.url, ca_file=args.ca_file,
                                  client_cert=args.client_cert or "",
                                  client_key=args.client_key or "")
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    missing = [flag for flag, value in (("--listen", args.listen), ("--out", args.out),
                                        ("--kubegate-log", args.kubegate_log)) if not value]
    if missing:
        return _refuse(f"{', '.join(missing)} needed (or --print-webhook-config)")
    if (args.tls_cert is None) != (args.tls_key is None) or args.tls_cert is None:
        return _refuse("--tls-cert and --tls-key are needed (the API server sends HTTPS)")
    from exchanger.auditreport.bypass import Allowlist, AllowlistError
    from exchanger.auditreport.sink import AuditSink

    try:
        allowlist = Allowlist(args.allow_user)
    except AllowlistError as error:
        return _refuse(f"--allow-user: {error}")
    sink = AuditSink(args.out, kubegate_logs=args.kubegate_log, listen=args.listen,
                     tls=(args.tls_cert, args.tls_key), client_ca=args.client_ca,
                     allowlist=allowlist, exchanger_users=args.exchanger_user)
    try:
        stop_metrics = _start_metrics(args.metrics_listen, sink.metrics.registry) \
            if args.metrics_listen else (lambda: None)
    except (ValueError, OSError) as error:
        sink.stop()
        return _refuse(f"--metrics-listen: {error}")
    sink.start()
    _describe(args, sink.port)
    _wait_for_signal()
    sink.stop()
    stop_metrics()
    return EXIT_OK


def _describe(args: argparse.Namespace, port: int) -> None:
    clients = f"client certificates from {args.client_ca}" if args.client_ca else (
        "ANY client (no --client-ca: anyone who reaches the port can write events)")
    print(f"kubegate audit sink: https://{args.listen} (port {port}) POST /audit, "
          f"GET /metrics; {clients}; writing {args.out}", flush=True)


def _start_metrics(listen: str, registry: CollectorRegistry) -> Callable[[], None]:
    from prometheus_client import start_http_server

    address = parse_host_port(listen)
    server, thread = start_http_server(address.port, address.bind_host,
                                       registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def _wait_for_signal() -> None:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.wait(0.5):  # a timed wait lets the main thread run signal handlers
        pass


def _refuse(message: str) -> int:
    print(f"kubegate audit sink: {message}", file=sys.stderr)
    return EXIT_UNREADABLE
