"""Wiring: build a running exchanger from a Config, and stop it again.

Everything with a thread or a socket is started here and stopped in reverse order:
the gRPC server (exchange, access and session services, health, reflection), the RFC 8693
token endpoint over HTTPS (`httpListen`, the same `Exchanger`), the plaintext health-only
listener, the Prometheus endpoint, the self-issued discovery server, the mapping sources
(folder watcher, TrustMapping watcher), the key refresher, the session reaper and the parts
of just-in-time access (`exchanger.access.assembly`: the webhook notifier, the request
expirer, the CI job webhook receiver).

Health: "" is SERVING once the server runs. The exchange service is SERVING only while the
server runs, TrustMapping resources (when they are a source) have been listed once, and the
audit log takes lines (`readiness`): the first line that cannot be written turns it
NOT_SERVING, since that replica refuses every exchange; denials refused meanwhile are counted
(`kubegate_audit_unrecorded_denials_total`), a probe tries every `AUDIT_PROBE_SECONDS` to
write the note that records them (`audit.guard`), and the first line written turns it
SERVING again. AccessService and SessionService report the same status as the exchange
service (they write audit lines too). Each issuer has a health name of its own,
`kubegate.issuer/<name>`: SERVING while it has keys to verify with, NOT_SERVING before its
first successful fetch and whenever it has none. An issuer's key outage does not make the
whole replica NOT_SERVING: it is the issuer's outage, every replica would fail the same probe,
and taking them all out of the Service would turn the other issuers' working exchanges, and
the caller's named KEYS_UNAVAILABLE answer, into connection failures. An audit outage is the
replica's own (its disk): another replica may well be writable.

Workers (`role`, `kubegate serve --workers N`, see `exchanger.prefork`): the gRPC server and
the token endpoint share their ports with the other workers (SO_REUSEPORT), and the parts
that must run once per replica (session reaper, request expirer, CI job webhooks, self-issued
discovery) run in worker 0 only; `exchanger.statefiles.prepare_shared_files` is what
the parent creates first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from exchanger.access.assembly import AccessParts, build_access
from exchanger.access.service import ACCESS_SERVICE, SESSION_SERVICE, add_access_services
from exchanger.audit.guard import GuardedAudit
from exchanger.audit.log import AuditLog
from exchanger.audit.note import NoteSigner
from exchanger.audit.publish import Checkpointer, CheckpointWorker, file_head_at
from exchanger.audit.settings import CheckpointConfig
from exchanger.audit.signing import load_key
from exchanger.audit.stores import CheckpointStore, ConfigMapStore, WitnessStore
from exchanger.backends.base import (
    JWT_TOKEN_TYPE,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    CredentialBackend,
)
from exchanger.backends.discovery import DiscoveryServer
from exchanger.backends.reaper import DueSessions, SessionReaper
from exchanger.backends.selfissued import (
    SelfIssuedBackend,
    SelfIssuedSigner,
    load_or_create_signing_key,
)
from exchanger.backends.tokenrequest import TokenRequestBackend
from exchanger.config import ClusterConfig, Config
from exchanger.exchange import Exchanger
from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.mapping_sources import build_mapping_sources
from exchanger.mappings.cluster import ClusterMappings, SourceState
from exchanger.mappings.store import ReloadResult
from exchanger.metrics import ExchangerMetrics
from exchanger.oauth.endpoint import TokenEndpoint
from exchanger.oauth.gate import TokenTypeGate
from exchanger.oauth.server import TokenServer, tls_context
from exchanger.prefork.role import WorkerRole
from exchanger.ratelimit import IdentityRateLimiter
from exchanger.readiness import Readiness
from exchanger.service import ExchangeServicer, add_exchange_service
from exchanger.statefiles import ensure_tls, host_port
from exchanger.v1 import exchange_pb2
from exchanger.verify.fetch import HttpsKeyFetcher, KeyResponse
from exchanger.verify.issuers import IssuerConfig, KubernetesCluster
from exchanger.verify.keys import BackgroundRefresher, KeyCache
from exchanger.verify.verifier import Verifier
from kubegate.addresses import HostPort, parse_address, parse_host_port
from kubegate.credential import ClusterInfo
from kubegate.errors import UnavailableError
from kubegate.workers import BackgroundWorker, periodic

log = logging.getLogger(__name__)

SERVICE_NAME = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
ISSUER_HEALTH_PREFIX = "kubegate.issuer/"
MAPPINGS_HEALTH = "kubegate.mappings/cluster"  # SERVING while the TrustMapping watch is live
MAX_RECEIVE_BYTES = 64 * 1024  # a subject token is a few KiB; nothing legitimate is larger
WORKERS = 16
AUDIT_PROBE_SECONDS = 2.0  # how often an unwritable audit log is tried again


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
    http_port: int = 0  # the RFC 8693 token endpoint (httpListen), 0 when off
    http_public_url: str = ""  # its RFC 8414 issuer
    ci_webhook_port: int = 0  # access.ciWebhooks, 0 when off
    checkpoint_verifier_key: str = ""  # audit.checkpoints: the key that verifies them
    readiness: Readiness | None = None  # the exchange service's conditions, once started
    audit: GuardedAudit | None = None
    role: WorkerRole | None = None  # one worker of several (`exchanger.prefork`), or None
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


def issuer_health_name(issuer: str) -> str:
    """The gRPC health service name that reports one issuer's keys."""
    return ISSUER_HEALTH_PREFIX + issuer


def cluster_clients(config: Config) -> dict[str, KubernetesClient]:
    """A Kubernetes client for each tokenRequest cluster, authenticating as kubegate."""
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


def key_fetcher(clients: dict[str, KubernetesClient]) -> HttpsKeyFetcher:
    """The key fetcher: a cluster key source's keys come from that cluster's client."""

    def cluster_jwks(cluster: str, timeout: float) -> AbstractContextManager[KeyResponse]:
        client = clients.get(cluster)
        if client is None:
            raise UnavailableError("KUBERNETES_UNAVAILABLE",
                                   f"no client for cluster {cluster}")
        return client.open_service_account_jwks(timeout)

    return HttpsKeyFetcher(cluster_jwks=cluster_jwks)


def _cluster_access(cluster: ClusterConfig) -> ClusterInfo:
    ca = cluster.ca_file.read_bytes() if cluster.ca_file and cluster.ca_file.exists() else b""
    return ClusterInfo(name=cluster.name, server=cluster.server,
                         certificate_authority_data=ca, namespace="")


class ClusterReviewer:
    """TokenReviewer over each cluster's client (the exchanger's and the gateway's)."""

    def __init__(self, clients: dict[str, KubernetesClient]) -> None:
        self._clients = clients

    def review(self, issuer: IssuerConfig, token: str) -> bool:
        source = issuer.key_source
        assert isinstance(source, KubernetesCluster)
        return self._clients[source.cluster].review_token(token, issuer.audiences)


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
            backends[cluster.name] = TokenTypeGate(SelfIssuedBackend(run.signer, access),
                                                   JWT_TOKEN_TYPE)
        elif cluster.name in clients:
            backends[cluster.name] = TokenTypeGate(TokenRequestBackend(
                api=clients[cluster.name], cluster=access, clock=clock,
                cluster_issuers=_cluster_issuer_names(config, cluster.name),
                default_audiences=cluster.audiences, observer=run.metrics),
                SERVICE_ACCOUNT_TOKEN_TYPE)  # requested_token_type, on the token endpoint
    return backends


def start_exchanger(config: Config, clock: Callable[[], float] = time.time, *,
                    role: WorkerRole | None = None) -> RunningExchanger:
    """Start everything config describes; raises ConfigError for bad mappings at start.

    `role`: one worker of `kubegate serve --workers N` (`exchanger.prefork`), given the
    config `prefork.role.worker_config` made: its listeners share their ports with the
    other workers (SO_REUSEPORT), and only worker 0 runs the once-per-replica parts."""
    metrics = ExchangerMetrics()
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.mappings.mkdir(parents=True, exist_ok=True)
    clients = cluster_clients(config)
    health_servicer = health.HealthServicer()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="exchange"),
        options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                 ("grpc.so_reuseport", 0 if role is None else 1)],
    )
    run = RunningExchanger(config=config, port=0, metrics=metrics, grpc_server=server,
                           health=health_servicer, ca_file=None, role=role)
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
    if sources.cluster is not None:
        _report_source_state(sources.cluster, run)
    store, watcher = sources.store, sources
    metrics.mappings_loaded.set(len(store.current))
    keys = _key_cache(config, clients, clock, run)
    reviewer = ClusterReviewer(clients) if any(i.token_review for i in config.issuers) else None
    verifier = Verifier(config.issuers, keys, clock, reviewer)
    run.readiness = readiness = Readiness(
        run.health, SERVICE_NAME, serving=health_pb2.HealthCheckResponse.SERVING,
        not_serving=health_pb2.HealthCheckResponse.NOT_SERVING, unmet={"started"},
        also=(ACCESS_SERVICE, SESSION_SERVICE))
    audit_log = AuditLog(config.audit_log, clock=clock)
    run._closers.append(audit_log.close)
    run.audit = audit = _guarded_audit(audit_log, clock, readiness, run)
    if config.checkpoints is not None:
        _start_checkpoints(config.checkpoints, audit_log, clients, run)
    backends = _build_backends(config, clients, clock, run)
    singletons = run.role is None or run.role.singletons
    access = build_access(config, clients, store, verifier, audit, metrics, clock,
                          singletons=singletons)
    run._stoppables.extend(access.stoppables)
    run.ci_webhook_port = access.ci_webhook_port
    exchanger = Exchanger(verifier=verifier, mappings=store, backends=backends, audit=audit,
                          clock=clock, observer=metrics,
                          limiter=IdentityRateLimiter(config.rate_limit, clock),
                          gate=access.gate, sessions=access.sessions)
    for part in _background_parts(config, clients, store, keys, watcher, clock, metrics,
                                  access.revoker if singletons else None):
        part.start()
        run._stoppables.append(part)
    if singletons:
        _start_discovery(config, run)
    sources.gate_readiness(readiness.condition("mappings"), SERVICE_NAME,
                           health_pb2.HealthCheckResponse.SERVING,
                           health_pb2.HealthCheckResponse.NOT_SERVING)
    _start_grpc(config, exchanger, access, run)
    _start_token_endpoint(config, exchanger, clock, run)
    readiness.set("started", True)
    _start_health(config, run)
    if config.metrics_listen:
        host, port = host_port(config.metrics_listen)
        http_server, thread = start_http_server(port, host, registry=metrics.registry)
        run.metrics_port = int(http_server.server_address[1])
        run._closers.extend([http_server.server_close, thread.join, http_server.shutdown])


def _guarded_audit(audit_log: AuditLog, clock: Callable[[], float], readiness: Readiness,
                   run: RunningExchanger) -> GuardedAudit:
    """The audit log behind readiness and metrics, and the probe that ends an outage."""
    metrics = run.metrics

    def on_writable(writable: bool) -> None:
        metrics.audit_writable.set(1 if writable else 0)
        readiness.set("audit", writable)

    audit = GuardedAudit(audit_log, clock=clock, on_writable=on_writable,
                         on_unrecorded=metrics.audit_unrecorded_denials.inc,
                         on_head=metrics.audit_seq.set)
    metrics.audit_writable.set(1)
    probe = BackgroundWorker("audit-probe", periodic(
        audit.probe, interval=AUDIT_PROBE_SECONDS, log=log, what="audit log probe"))
    probe.start()
    run._stoppables.append(probe)
    return audit


def _start_checkpoints(settings: CheckpointConfig, audit_log: AuditLog,
                       clients: dict[str, KubernetesClient], run: RunningExchanger) -> None:
    """Sign the audit head at an interval and at shutdown (stopped before the log closes)."""
    signer = NoteSigner(settings.key_name, load_key(settings.key_file,
                                                   create=settings.create_key))
    stores: list[CheckpointStore] = []
    if settings.config_map is not None:
        target = settings.config_map
        stores.append(ConfigMapStore(clients[target.cluster], cluster=target.cluster,
                                     namespace=target.namespace, name=target.name))
    if settings.witness is not None:
        stores.append(WitnessStore(settings.witness.url, ca_file=settings.witness.ca_file))
    checkpointer = Checkpointer(
        origin=settings.origin, signer=signer, head=lambda: audit_log.head,
        head_at=lambda size: file_head_at(audit_log.path, size), stores=stores,
        observer=run.metrics.on_checkpoint)
    worker = CheckpointWorker(checkpointer, interval=settings.interval)
    worker.start()
    run._stoppables.append(worker)
    run.checkpoint_verifier_key = str(signer.verifier)
    log.info("audit checkpoints of %s, verifier key %s, published every %gs to %s",
             settings.origin, signer.verifier, settings.interval,
             ", ".join(store.name for store in stores))


def _background_parts(config: Config, clients: dict[str, KubernetesClient], store: Any,
                      keys: KeyCache, watcher: Any, clock: Callable[[], float],
                      metrics: ExchangerMetrics, revoker: DueSessions | None = None,
                      ) -> list[Any]:
    """The watcher, the key refresher and, with a session index (`revoker`), the reaper
    that ends due sessions (it reports a run for each tokenRequest cluster)."""
    parts: list[Any] = [watcher]
    if config.issuers:
        parts.append(BackgroundRefresher(keys, config.issuers))
    if revoker is not None:
        parts.append(SessionReaper(revoker=revoker, clock=clock, clusters=clients,
                                   observer=metrics))
    return parts


def _report_source_state(cluster: ClusterMappings, run: RunningExchanger) -> None:
    """The TrustMapping source's phase as its own health name and a metric; a failing watch
    does not take the replica out (it serves the last good set), but a probe can see it."""
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)

    def on_state(state: SourceState) -> None:
        run.metrics.on_mapping_source_state(state.phase)
        run.health.set(MAPPINGS_HEALTH, serving if state.phase == "watching" else not_serving)
        if state.phase == "failing":
            log.warning("TrustMapping source failing: %s", state.last_error)

    on_state(cluster.state())
    cluster.on_state = on_state


def _key_cache(config: Config, clients: dict[str, KubernetesClient],
               clock: Callable[[], float], run: RunningExchanger) -> KeyCache:
    """The issuers' keys; each fetch updates the issuer's key metrics and its health name."""
    serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                            health_pb2.HealthCheckResponse.NOT_SERVING)
    run.metrics.declare_issuers(issuer.name for issuer in config.issuers)
    for issuer in config.issuers:
        run.health.set(issuer_health_name(issuer.name), not_serving)

    def on_fetch(issuer: str, result: str) -> None:
        run.metrics.on_key_fetch(issuer, result)
        health = keys.health(issuer)
        run.metrics.on_key_health(health)
        run.health.set(issuer_health_name(issuer), serving if health.serving else not_serving)

    keys = KeyCache(key_fetcher(clients), clock, on_fetch=on_fetch)
    return keys


def _start_discovery(config: Config, run: RunningExchanger) -> None:
    if run.signer is None or config.self_issued is None:
        return
    host, port = host_port(config.self_issued.listen)
    ensure_tls(config.self_issued.tls, host)
    discovery = DiscoveryServer(signer=run.signer, host=host, port=port,
                                cert_file=config.self_issued.tls.cert_file,
                                key_file=config.self_issued.tls.key_file)
    discovery.start()
    run.discovery_port = discovery.port
    run._stoppables.append(discovery)


def _start_grpc(config: Config, exchanger: Exchanger, access: AccessParts,
                run: RunningExchanger) -> None:
    server = run.grpc_server
    add_exchange_service(ExchangeServicer(exchanger), server)
    access_names = add_access_services(access.access, access.session_service, server)
    health_pb2_grpc.add_HealthServicer_to_server(run.health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, *access_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if config.tls is not None:
        address = parse_address(config.listen)
        host = address.bind_host if isinstance(address, HostPort) else "127.0.0.1"
        ensure_tls(config.tls, host)
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
    run.health.set("", health_pb2.HealthCheckResponse.SERVING)


def _start_token_endpoint(config: Config, exchanger: Exchanger, clock: Callable[[], float],
                          run: RunningExchanger) -> None:
    """httpListen: RFC 8693 token exchange over HTTPS with the gRPC server's TLS files (its
    generated certificate already exists), calling the same Exchanger."""
    if not config.http_listen:
        return
    host, port = host_port(config.http_listen)
    context = (tls_context(config.tls.cert_file, config.tls.key_file,
                           config.tls.client_ca_file) if config.tls is not None else None)
    server = TokenServer(host=host, port=port, context=context,  # bound: its port is known
                         reuse_port=run.role is not None)
    run._stoppables.append(server)
    run.http_port = server.port
    listen = HostPort(host=parse_host_port(config.http_listen).host, port=server.port)
    run.http_public_url = config.http_public_url or f"{server.scheme}://{listen}"
    server.start(TokenEndpoint(exchanger, issuer=run.http_public_url, clock=clock))


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
