"""Wiring: build a running exchanger from a Config, and stop it again.

Everything with a thread or a socket is started here and stopped in reverse order:
the gRPC server (exchange, health, reflection), the plaintext health-only listener, the
Prometheus endpoint, the self-issued discovery server, the mapping sources (folder watcher,
TrustMapping watcher), the key refresher and the session reaper.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from exchanger.audit.log import AuditLog
from exchanger.audit.record import AuditRecord
from exchanger.backends.base import CredentialBackend
from exchanger.backends.discovery import DiscoveryServer
from exchanger.backends.reaper import SessionReaper
from exchanger.backends.selfissued import (
    SelfIssuedBackend,
    SelfIssuedSigner,
    load_or_create_signing_key,
)
from exchanger.backends.tokenrequest import TokenRequestBackend
from exchanger.config import ClusterConfig, Config, TLSFiles
from exchanger.exchange import Exchanger
from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.localtls import ensure_local_tls
from exchanger.mapping_sources import build_mapping_sources
from exchanger.mappings.store import ReloadResult
from exchanger.metrics import ExchangerMetrics
from exchanger.ratelimit import IdentityRateLimiter
from exchanger.service import ExchangeServicer
from exchanger.v1 import exchange_pb2, exchange_pb2_grpc
from exchanger.verify.fetch import HttpsKeyFetcher
from exchanger.verify.issuers import IssuerConfig, KubernetesCluster
from exchanger.verify.keys import BackgroundRefresher, KeyCache
from exchanger.verify.verifier import Verifier
from kubegate.addresses import HostPort, parse_address, parse_host_port
from kubegate.credential import ClusterInfo

log = logging.getLogger(__name__)

SERVICE_NAME = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
MAX_RECEIVE_BYTES = 64 * 1024  # a subject token is a few KiB; nothing legitimate is larger
WORKERS = 16


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class RunningExchanger:
    """A started exchanger. `port` is the gRPC port (0 for a Unix socket)."""

    config: Config
    port: int
    metrics: ExchangerMetrics
    grpc_server: grpc.Server
    health: health.HealthServicer
    ca_file: Path | None
    signer: SelfIssuedSigner | None = None
    discovery_port: int = 0
    metrics_port: int = 0
    health_port: int = 0  # the plaintext health-only server (healthListen), 0 when off
    _stoppables: list[Stoppable] = field(default_factory=list)
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace).wait(grace + 1)
        for part in reversed(self._stoppables):
            part.stop()
        for close in reversed(self._closers):
            close()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def _clients(config: Config) -> dict[str, KubernetesClient]:
    return {
        cluster.name: KubernetesClient(
            server=cluster.server, ca_file=cluster.ca_file,
            credentials=ClusterCredentials(
                kubeconfig=cluster.kubeconfig, context=cluster.context,
                token_file=cluster.token_file, client_cert_file=cluster.client_cert_file,
                client_key_file=cluster.client_key_file),
            read_timeout=cluster.request_timeout,
        )
        for cluster in config.clusters
        if cluster.backend == "tokenRequest" and cluster.ca_file is not None
    }


def _cluster_access(cluster: ClusterConfig) -> ClusterInfo:
    ca = cluster.ca_file.read_bytes() if cluster.ca_file and cluster.ca_file.exists() else b""
    return ClusterInfo(name=cluster.name, server=cluster.server,
                         certificate_authority_data=ca, namespace="")


class _Reviewer:
    """TokenReviewer over each cluster's client."""

    def __init__(self, clients: dict[str, KubernetesClient]) -> None:
        self._clients = clients

    def review(self, issuer: IssuerConfig, token: str) -> bool:
        source = issuer.key_source
        assert isinstance(source, KubernetesCluster)
        return self._clients[source.cluster].review_token(token, issuer.audiences)


def _ensure_tls(files: TLSFiles, host: str) -> None:
    if files.generated_ca_file is not None:
        ensure_local_tls(files.generated_ca_file, files.cert_file, files.key_file,
                         (host, "localhost", "127.0.0.1"))


def _host_port(listen: str) -> tuple[str, int]:
    address = parse_host_port(listen)  # the config loader checked it
    return address.bind_host, address.port


def _cluster_issuer_names(config: Config, cluster: str) -> frozenset[str]:
    return frozenset(
        i.name for i in config.issuers
        if isinstance(i.key_source, KubernetesCluster) and i.key_source.cluster == cluster
    )


def _build_backends(config: Config, clients: dict[str, KubernetesClient],
                   clock: Callable[[], float],
                   run: RunningExchanger) -> dict[str, CredentialBackend]:
    backends: dict[str, CredentialBackend] = {}
    for cluster in config.clusters:
        access = _cluster_access(cluster)
        if cluster.backend == "selfIssued" and config.self_issued is not None:
            if run.signer is None:
                key = load_or_create_signing_key(config.state_dir / "signing-key.pem")
                run.signer = SelfIssuedSigner(
                    key=key, issuer_url=config.self_issued.issuer_url,
                    audience=config.self_issued.audience, clock=clock)
            backends[cluster.name] = SelfIssuedBackend(run.signer, access)
        elif cluster.name in clients:
            backends[cluster.name] = TokenRequestBackend(
                api=clients[cluster.name], cluster=access, clock=clock,
                cluster_issuers=_cluster_issuer_names(config, cluster.name),
                default_audiences=cluster.audiences)
    return backends


def start_exchanger(config: Config, clock: Callable[[], float] = time.time) -> RunningExchanger:
    """Start everything config describes; raises ConfigError for bad mappings at start."""
    metrics = ExchangerMetrics()
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.mappings.mkdir(parents=True, exist_ok=True)
    clients = _clients(config)
    health_servicer = health.HealthServicer()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="exchange"),
        options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                 ("grpc.so_reuseport", 0)],
    )
    run = RunningExchanger(config=config, port=0, metrics=metrics, grpc_server=server,
                           health=health_servicer, ca_file=None)
    run._closers.extend(client.close for client in clients.values())
    try:
        _start_parts(config, clients, clock, run)
    except BaseException:
        run.stop(grace=0)
        raise
    return run


def _start_parts(config: Config, clients: dict[str, KubernetesClient],
                 clock: Callable[[], float], run: RunningExchanger) -> None:
    metrics = run.metrics

    def on_reload(result: ReloadResult) -> None:
        metrics.mapping_reloads.labels(result="ok" if result.ok else "error").inc()
        metrics.mappings_loaded.set(result.mapping_count)

    sources = build_mapping_sources(config, on_reload)
    store, watcher = sources.store, sources
    metrics.mappings_loaded.set(len(store.current))
    lookup = _cluster_lookup(config)
    keys = KeyCache(HttpsKeyFetcher(cluster_lookup=lookup), clock, on_fetch=metrics.on_key_fetch)
    reviewer = _Reviewer(clients) if any(i.token_review for i in config.issuers) else None
    verifier = Verifier(config.issuers, keys, clock, reviewer)
    audit_log = AuditLog(config.audit_log)
    run._closers.append(audit_log.close)
    audit = _MeteredAudit(audit_log, metrics)
    backends = _build_backends(config, clients, clock, run)
    exchanger = Exchanger(verifier=verifier, mappings=store, backends=backends, audit=audit,
                          clock=clock, observer=metrics,
                          limiter=IdentityRateLimiter(config.rate_limit, clock))
    for part in _background_parts(config, clients, store, keys, watcher, clock):
        part.start()
        run._stoppables.append(part)
    _start_discovery(config, run)
    _start_grpc(config, exchanger, run)
    sources.gate_readiness(run.health, SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING,
                           health_pb2.HealthCheckResponse.NOT_SERVING)
    _start_health(config, run)
    if config.metrics_listen:
        host, port = _host_port(config.metrics_listen)
        http_server, thread = start_http_server(port, host, registry=metrics.registry)
        run.metrics_port = int(http_server.server_address[1])
        run._closers.extend([http_server.server_close, thread.join, http_server.shutdown])


class _MeteredAudit:
    """The audit log, exporting the chain head's sequence number after every line."""

    def __init__(self, log: AuditLog, metrics: ExchangerMetrics) -> None:
        self._log, self._metrics = log, metrics
        metrics.audit_seq.set(log.head.seq)

    def append(self, record: AuditRecord) -> None:
        self._log.append(record)
        self._metrics.audit_seq.set(self._log.head.seq)


def _background_parts(config: Config, clients: dict[str, KubernetesClient], store: Any,
                      keys: KeyCache, watcher: Any, clock: Callable[[], float]) -> list[Any]:
    parts: list[Any] = [watcher]
    if config.issuers:
        parts.append(BackgroundRefresher(keys, config.issuers))
    for name, client in clients.items():
        def namespaces(cluster: str = name) -> set[str]:
            return {m.grant.namespace for m in store.current.mappings
                    if m.grant.cluster == cluster and m.grant.service_account}
        parts.append(SessionReaper(api=client, namespaces=namespaces, clock=clock))
    return parts


def _cluster_lookup(config: Config) -> Callable[[str], tuple[Path | None, str | None]]:
    def lookup(name: str) -> tuple[Path | None, str | None]:
        cluster = config.cluster(name)
        token = cluster.token_file.read_text().strip() if cluster.token_file else None
        return cluster.ca_file, token

    return lookup


def _start_discovery(config: Config, run: RunningExchanger) -> None:
    if run.signer is None or config.self_issued is None:
        return
    host, port = _host_port(config.self_issued.listen)
    _ensure_tls(config.self_issued.tls, host)
    discovery = DiscoveryServer(signer=run.signer, host=host, port=port,
                                cert_file=config.self_issued.tls.cert_file,
                                key_file=config.self_issued.tls.key_file)
    discovery.start()
    run.discovery_port = discovery.port
    run._stoppables.append(discovery)


def _start_grpc(config: Config, exchanger: Exchanger, run: RunningExchanger) -> None:
    server = run.grpc_server
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(ExchangeServicer(exchanger), server)
    health_pb2_grpc.add_HealthServicer_to_server(run.health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if config.tls is not None:
        address = parse_address(config.listen)
        host = address.bind_host if isinstance(address, HostPort) else "127.0.0.1"
        _ensure_tls(config.tls, host)
        credentials = grpc.ssl_server_credentials(
            [(config.tls.key_file.read_bytes(), config.tls.cert_file.read_bytes())],
            root_certificates=(config.tls.client_ca_file.read_bytes()
                               if config.tls.client_ca_file else None),
            require_client_auth=config.tls.client_ca_file is not None)
        run.port = server.add_secure_port(config.listen, credentials)
        run.ca_file = config.tls.generated_ca_file
    else:
        run.port = server.add_insecure_port(config.listen)
    server.start()
    for name in ("", SERVICE_NAME):
        run.health.set(name, health_pb2.HealthCheckResponse.SERVING)


def _start_health(config: Config, run: RunningExchanger) -> None:
    """healthListen: plaintext gRPC with grpc.health.v1 only, for Kubernetes gRPC probes
    (which speak no TLS); it shares the main server's health statuses."""
    if not config.health_listen:
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"),
                         options=[("grpc.max_receive_message_length", 4096),
                                  ("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(run.health, server)
    run.health_port = server.add_insecure_port(config.health_listen)
    server.start()
    run._closers.append(lambda: server.stop(None).wait(2))
