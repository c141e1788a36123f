"""The sidecar, started from a loaded `SidecarConfig` (by the `kubegate sidecar` command):
keep a credential fresh and serve it on a Unix socket (and, with `--proxy-listen`, proxy the
Kubernetes API with it); or, with `--once`, exchange once and write a kubeconfig.

Rules of this module:
- a socket that cannot be created is one line and exit 1; never a traceback;
- a missing subject token or an unreachable exchanger at start is not fatal: the sidecar runs,
  is not ready, and logs one line per change of condition;
- SIGTERM and SIGINT stop everything in reverse order of start and remove the socket;
- with the proxy, an API server's 401 to the cached credential (seen in the proxy's session
  records) tells the keeper, which stops serving that credential and refreshes at once;
- `--once` exits 0 after writing the kubeconfig (0600, atomically), else 1 with one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from kubegate import kubeconfig
from kubegate.addresses import parse_host_port
from kubegate.client.once import exchange_once
from kubegate.client.settings import token_source
from kubegate.credential import Credential, rfc3339
from kubegate.errors import ExchangeError, SubjectTokenError, UsageError
from sidecar.api import ApiServer, SocketApi
from sidecar.config import SidecarConfig
from sidecar.exchange_port import exchange_port
from sidecar.keeper import CredentialKeeper
from sidecar.metrics import SidecarMetrics

if TYPE_CHECKING:
    from sidecar.proxy import ApiProxy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "kubegate sidecar"
ONCE_TIMEOUT, ONCE_ATTEMPTS, ONCE_BUDGET = 10.0, 4, 30.0
SIGNAL_CHECK_SECONDS = 0.5

log = logging.getLogger("kubegate.sidecar")
sessions = logging.getLogger("kubegate.session")


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return status


# -- one shot -------------------------------------------------------------------------------


def run_once(config: SidecarConfig) -> int:
    assert config.kubeconfig is not None  # the loader requires it with --once
    try:
        credential = exchange_once(config.exchange, timeout=ONCE_TIMEOUT,
                                   attempts=ONCE_ATTEMPTS, retry_budget=ONCE_BUDGET)
    except SubjectTokenError as error:
        return _fail(f"no subject token: {error}", EXIT_FAILED)
    except ExchangeError as error:
        return _fail(error.describe(), EXIT_FAILED)
    except UsageError as error:
        return _fail(f"cannot exchange: {error}", EXIT_FAILED)
    try:
        kubeconfig.write_kubeconfig(config.kubeconfig, kubeconfig.token_kubeconfig(credential))
    except OSError as error:
        return _fail(f"cannot write {config.kubeconfig}: {error.strerror}", EXIT_FAILED)
    print(f"{PROG}: wrote {config.kubeconfig} (session {credential.session_id}, namespace "
          f"{credential.cluster.namespace or '-'}, expires "
          f"{rfc3339(credential.expires_at)})")
    return EXIT_OK


# -- long-running ---------------------------------------------------------------------------


def serve(config: SidecarConfig) -> int:
    stopping = threading.Event()
    _on_signals(stopping.set)
    with contextlib.ExitStack() as stack:
        try:
            _start(config, stack)
        except OSError as error:
            return _fail(f"cannot start: {error}", EXIT_FAILED)
        log.info("serving credentials on %s (mode 0%o); exchanger %s (%s, %s); subject "
                 "token from %s", config.socket_path, config.socket_mode,
                 config.exchange.target, "RFC 8693 over HTTP" if
                 config.exchange.transport == "https" else "gRPC",
                 "plaintext" if config.exchange.plaintext else "TLS",
                 token_source(config.exchange.token_source).description)
        # a timed wait: Python runs signal handlers in the main thread only, and a signal
        # the kernel hands to another thread would not wake an untimed wait
        while not stopping.wait(SIGNAL_CHECK_SECONDS):
            pass
        log.info("stopping")
    return EXIT_OK


def _start(config: SidecarConfig, stack: contextlib.ExitStack) -> None:
    """Start every part; stack stops them in reverse order."""
    metrics = SidecarMetrics()
    port = exchange_port(config.exchange)
    stack.callback(port.close)
    keeper = CredentialKeeper(token_source(config.exchange.token_source), port,
                              policy=config.policy, on_result=metrics.on_refresh,
                              exchange_timeout=config.exchange_timeout)
    metrics.watch(keeper.state)
    api = SocketApi(keeper, socket_path=config.socket_path,
                    plugin_command=config.plugin_command, clock=time.time,
                    registry=metrics.registry, allowed_uids=config.allowed_uids)
    server = ApiServer(api, config.socket_path, mode=config.socket_mode,
                       group=config.socket_group)
    stack.callback(server.stop)
    server.start()
    keeper.start()
    stack.callback(keeper.stop, timeout=2.0)  # a daemon thread: never hold up the exit
    if config.proxy_listen:
        proxy = _start_proxy(config, keeper.current, metrics, keeper.refused_by_apiserver)
        stack.callback(proxy.stop)
    if config.metrics_listen:
        stack.callback(_start_metrics(config.metrics_listen, metrics))


def _start_proxy(config: SidecarConfig, credentials: Callable[[], Credential | None],
                 metrics: SidecarMetrics, refused: Callable[[str], None]) -> ApiProxy:
    from sidecar.proxy import ApiProxy  # only when asked for

    assert config.proxy_listen is not None
    limits = config.proxy
    proxy = ApiProxy(credentials, config.proxy_listen,
                     recorder=watch_refusals(refused, record_session),
                     registry=metrics.registry, allowed_hosts=limits.allowed_hosts,
                     max_connections=limits.max_connections, head_timeout=limits.head_timeout)
    proxy.start()
    log.info("proxying the Kubernetes API on %s", proxy.address)
    return proxy


def record_session(record: dict[str, Any]) -> None:
    """One proxied request (method, path, status, bytes, duration, session id) as JSON."""
    sessions.info("%s", json.dumps(record, sort_keys=True, default=str))


def watch_refusals(refused: Callable[[str], None],
                   recorder: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """A recorder that also tells refused the session id of each credential the API server
    answered 401 (the proxy's own answers, `refused` set, are never 401s; checked anyway)."""
    def record(record: dict[str, Any]) -> None:
        recorder(record)
        session_id = record.get("session_id")
        if record.get("status") == 401 and session_id and not record.get("refused"):
            refused(str(session_id))

    return record


def _start_metrics(listen: str, metrics: SidecarMetrics) -> Callable[[], None]:
    from prometheus_client import start_http_server

    address = parse_host_port(listen)  # checked when the configuration was loaded
    server, thread = start_http_server(address.port, address.bind_host,
                                       registry=metrics.registry)
    log.info("metrics on http://%s/metrics", listen)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def _on_signals(handler: Callable[[], None]) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
