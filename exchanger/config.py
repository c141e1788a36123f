"""The exchanger's configuration: one loader reads the config file (or the embedded default)
and the environment, validates everything, reports every problem at once with its field,
and returns frozen values. Nothing else in kubegate reads `os.environ`.

File format (YAML; every field optional unless marked):

    listen: 127.0.0.1:8443            # host:port, or unix:/path/to/socket
    tls: {certFile: ..., keyFile: ...} # gRPC TLS. Without it, a loopback listener generates a
                                       # local CA and certificate under stateDir/tls
    plaintext: false                   # no TLS at all: only on loopback or a Unix socket
    metricsListen: 127.0.0.1:9090      # Prometheus /metrics; "" disables
    stateDir: ~/.local/state/kubegate  # signing key, generated certificates, audit log
    auditLog: <stateDir>/audit.log
    mappings: <stateDir>/mappings      # folder of TrustMapping YAML documents
    reloadInterval: 2s
    mappingSources:                    # where trust mappings come from (merged)
      files: true                      # the `mappings` folder (default true)
      cluster: {name: prod, namespace: kubegate}  # TrustMapping resources in that namespace
                                       # of a configured tokenRequest cluster (default: none)
    healthListen: 0.0.0.0:8081         # plaintext gRPC serving only grpc.health.v1, for
                                       # Kubernetes gRPC probes (they speak no TLS); "" = off
    workers: 2                         # exchanger processes on the one port (`serve
                                       # --workers`, which wins); default: the CPUs the process
                                       # may use, 1 with audit checkpoints or a Unix socket
    httpListen: 0.0.0.0:8445           # OAuth 2.0 Token Exchange (RFC 8693) over HTTPS, with
                                       # the `tls` files and the rules of `listen`; "" = off
    httpPublicUrl: https://kubegate.example.com:8445   # its RFC 8414 `issuer` (default:
                                       # https://<httpListen>, the bound port when 0)
    issuers:                           # subject-token issuers kubegate trusts
    - name: github                     # required; what mappings refer to
      url: https://token.actions.githubusercontent.com   # required; the exact `iss`
      audiences: [kubegate]            # required
      algorithms: [RS256]
      keys: discovery                  # or {jwksUrl: URL} | {static: JWKS}
                                       # | {kubernetes: {cluster: NAME, tokenReview: true}}
                                       #   (a tokenRequest cluster: the keys are read from its
                                       #   API server's /openid/v1/jwks, not the issuer url)
      caFile: /path/ca.pem
      maxTokenLifetime: 24h
      leeway: 30s
    clusters:                          # target clusters credentials are issued for
    - name: default                    # required
      server: https://10.0.0.1:6443    # required
      caFile: /path/ca.crt             # required for tokenRequest
      backend: tokenRequest            # or selfIssued
      credentials:                     # kubegate's own, for tokenRequest; one of:
        tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token  # re-read each call
        # clientCertFile: ... and clientKeyFile: ...
        # kubeconfig: /path/kubeconfig  (and optionally context: NAME)
      audiences: []                    # default audiences of issued tokens
      requestTimeout: 10s              # read timeout of each Kubernetes API call
    rateLimit:                         # per verified identity (issuer, sub), a token bucket:
      perIdentity: {rate: 10/s, burst: 100}  # refill rate (N, N/s, N/m or N/h) and size
    audit:                             # signed checkpoints of the audit chain's head,
      checkpoints: {...}               # published off this host (see exchanger.audit.settings)
    selfIssued:                        # needed when a cluster uses backend selfIssued
      issuerUrl: https://127.0.0.1:8444   # what the cluster's AuthenticationConfiguration trusts
      listen: 127.0.0.1:8444           # HTTPS discovery + JWKS
      tls: {certFile: ..., keyFile: ...}  # default: generated under stateDir
      audience: kubernetes
    gateway: {cluster: prod, ...}      # `kubegate gateway` (see exchanger.gateway.settings)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from exchanger.access.settings import AccessConfig, StoreLocation, read_access
from exchanger.audit.settings import CheckpointConfig, read_checkpoints
from exchanger.gateway.settings import GatewaySettings, read_gateway
from exchanger.mappings.claimtypes import PROVIDERS
from exchanger.ratelimit import RateLimit
from exchanger.verify.issuers import (
    IssuerConfig,
    JWKSUrl,
    KeySource,
    KubernetesCluster,
    OIDCDiscovery,
    StaticKeys,
)
from kubegate import yamlread
from kubegate.addresses import is_local_address
from kubegate.configread import Fields, Report
from kubegate.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_SELF_ISSUED_LISTEN = "127.0.0.1:8444"
DEFAULT_REQUEST_TIMEOUT = 10


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    generated_ca_file: Path | None = None  # set when kubegate generates a local CA + cert

    @classmethod
    def generated(cls, folder: Path, stem: str) -> TLSFiles:
        return cls(cert_file=folder / f"{stem}.crt", key_file=folder / f"{stem}.key",
                   generated_ca_file=folder / f"{stem}-ca.crt")


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    name: str
    server: str
    ca_file: Path | None
    backend: str  # "tokenRequest" | "selfIssued"
    token_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    audiences: tuple[str, ...] = ()
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds, per Kubernetes API call


@dataclass(frozen=True, kw_only=True)
class SelfIssuedConfig:
    issuer_url: str
    listen: str
    tls: TLSFiles
    audience: str


@dataclass(frozen=True, kw_only=True)
class ClusterMappingsConfig:
    """TrustMapping resources in `namespace` of the configured cluster `cluster`."""

    cluster: str
    namespace: str = "kubegate"


@dataclass(frozen=True, kw_only=True)
class Config:
    listen: str
    tls: TLSFiles | None
    plaintext: bool
    metrics_listen: str
    state_dir: Path
    audit_log: Path
    mappings: Path
    reload_interval: float
    issuers: tuple[IssuerConfig, ...]
    clusters: tuple[ClusterConfig, ...]
    self_issued: SelfIssuedConfig | None
    source: str = field(default="embedded default")
    rate_limit: RateLimit = field(default_factory=RateLimit)  # rateLimit.perIdentity
    mapping_files: bool = True  # mappingSources.files
    mapping_cluster: ClusterMappingsConfig | None = None  # mappingSources.cluster
    health_listen: str = ""
    checkpoints: CheckpointConfig | None = None  # audit.checkpoints
    http_listen: str = ""  # httpListen: the RFC 8693 token endpoint, "" when off
    http_public_url: str = ""  # httpPublicUrl: "" = https://<httpListen> as bound
    access: AccessConfig = field(default_factory=AccessConfig)  # access: requests, sessions
    gateway: GatewaySettings | None = None  # gateway: `kubegate gateway` (None when absent)
    workers: int = 0  # workers: exchanger processes for `serve` (0: its default)

    def cluster(self, name: str) -> ClusterConfig:
        return next(c for c in self.clusters if c.name == name)


def default_state_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"]) / "kubegate"
    return Path(environ.get("HOME") or Path.home()) / ".local/state/kubegate"


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read path (None: the embedded default), validate all of it, return frozen config."""
    environ = os.environ if environ is None else environ
    if path is None:
        return build_config(EMBEDDED_DEFAULT, base=Path.cwd(), environ=environ,
                            source="embedded default")
    try:  # bounded: aliases, nesting and size (kubegate.yamlread)
        data = yamlread.single_document(path.read_text(), unique_keys=False)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from error
    except yamlread.YamlError as error:
        raise ConfigError([f"{path}: {error.described()}"]) from error
    return build_config(data or {}, base=path.parent, environ=environ, source=str(path))


# Loopback only, TLS from a generated local CA, self-issued credentials for a cluster that
# trusts kubegate's discovery URL; mappings and the signing key live in the state folder.
EMBEDDED_DEFAULT: dict[str, Any] = {
    "listen": DEFAULT_LISTEN,
    "selfIssued": {"listen": DEFAULT_SELF_ISSUED_LISTEN},
    "clusters": [{"name": "local", "server": "https://127.0.0.1:6443", "backend": "selfIssued"}],
    "issuers": [],
}

_TOP = {"listen", "tls", "plaintext", "metricsListen", "stateDir", "auditLog", "mappings",
        "reloadInterval", "issuers", "clusters", "selfIssued", "rateLimit", "mappingSources",
        "healthListen", "audit", "httpListen", "httpPublicUrl", "access", "gateway",
        "workers"}


def build_config(data: object, *, base: Path, environ: Mapping[str, str], source: str) -> Config:
    report = Report(source)
    read = Fields(report)
    top = read.section(data, "", _TOP)
    state_dir = read.path(top, "stateDir", "", base, default_state_dir(environ))
    assert state_dir is not None
    listen = read.address(top, "listen", "", DEFAULT_LISTEN)
    tls = _tls(read, top.get("tls"), "tls", base)
    plaintext = read.flag(top, "plaintext", "")
    if tls is None and not plaintext:
        if is_local_address(listen):
            tls = TLSFiles.generated(state_dir / "tls", "server")
        else:
            read.problem("", f"tls: required when listening on {listen}")
    if plaintext and not is_local_address(listen):
        read.problem("", f"plaintext: only allowed on loopback or a Unix socket, not {listen}")
    if plaintext and tls is not None:
        read.problem("", "plaintext: true and tls are mutually exclusive")
    clusters = _clusters(read, top.get("clusters", []), base)
    issuers = _issuers(read, top.get("issuers", []), base,
                       {c.name for c in clusters if c.backend == "tokenRequest"})
    self_issued = _self_issued(read, top.get("selfIssued"), base, state_dir)
    if self_issued is None and any(c.backend == "selfIssued" for c in clusters):
        read.problem("", "selfIssued: required when a cluster uses backend selfIssued")
    mapping_files, mapping_cluster = _mapping_sources(read, top.get("mappingSources"),
                                                      clusters)
    rate_limit = _rate_limit(read, top.get("rateLimit"))
    checkpoints = read_checkpoints(
        read, top.get("audit"), base, state_dir,
        tuple(c.name for c in clusters if c.backend == "tokenRequest"))
    http_listen, http_public_url = _http(read, top, tls, plaintext)
    access = read_access(
        read, top.get("access"), base=base, state_dir=state_dir,
        issuers=frozenset(i.name for i in issuers),
        clusters=frozenset(c.name for c in clusters if c.backend == "tokenRequest"),
        mapping_cluster=StoreLocation(cluster=mapping_cluster.cluster,
                                      namespace=mapping_cluster.namespace)
        if mapping_cluster is not None else None)
    audit_log = read.path(top, "auditLog", "", base, state_dir / "audit.log") or state_dir
    gateway = read_gateway(
        read, top.get("gateway"), base=base, state_dir=state_dir, exchanger_audit_log=audit_log,
        clusters={c.name: bool(c.token_file or c.client_cert_file or c.kubeconfig)
                  for c in clusters})
    workers = _workers(read, top.get("workers"))
    if report.problems:
        raise ConfigError(report.problems)
    return Config(
        listen=listen, tls=tls, plaintext=plaintext,
        metrics_listen=read.address(top, "metricsListen", "", unix=False),
        state_dir=state_dir,
        audit_log=audit_log,
        mappings=read.path(top, "mappings", "", base, state_dir / "mappings") or state_dir,
        reload_interval=read.duration(top, "reloadInterval", "", 2.0),
        issuers=issuers, clusters=clusters, self_issued=self_issued, source=source,
        rate_limit=rate_limit,
        mapping_files=mapping_files, mapping_cluster=mapping_cluster,
        health_listen=read.address(top, "healthListen", "", unix=False),
        checkpoints=checkpoints, http_listen=http_listen, http_public_url=http_public_url,
        access=access, gateway=gateway, workers=workers,
    )


MAX_WORKERS: Final = 256


def _workers(read: Fields, value: object) -> int:
    """`workers`: a whole number from 1 to MAX_WORKERS, or absent (0: serve's default)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        read.problem("workers", f"expected a whole number from 1 to {MAX_WORKERS}, got "
                     f"{value!r}"[:120])
        return 0
    return value


def _http(read: Fields, top: dict[str, Any], tls: TLSFiles | None,
          plaintext: bool) -> tuple[str, str]:
    """httpListen and httpPublicUrl: the token endpoint serves with the `tls` files under the
    rules of `listen` (TLS off loopback, and a generated certificate only on loopback)."""
    listen = read.address(top, "httpListen", "", unix=False)
    url = read.string(top, "httpPublicUrl", "")
    if not listen:
        if url:
            read.problem("", "httpPublicUrl: needs httpListen")
        return "", ""
    local = is_local_address(listen)
    if plaintext and not local:
        read.problem("", f"plaintext: only allowed on loopback, not httpListen {listen}")
    elif not plaintext and not local and (tls is None or tls.generated_ca_file is not None):
        read.problem("", f"tls: required when httpListen is {listen}")
    if url and not _public_url(url, "http" if plaintext else "https"):
        read.problem("", "httpPublicUrl: must be an " + ("http" if plaintext else "https")
                     + " URL of a host and port, without a path, query or fragment")
    return listen, url


def _public_url(url: str, scheme: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises
    except ValueError:
        return False
    return (parts.scheme == scheme and bool(parts.hostname) and parts.path == ""
            and not parts.query and not parts.fragment and not parts.username
            and not url.endswith(("?", "#")))


def _mapping_sources(read: Fields, data: object, clusters: tuple[ClusterConfig, ...],
                     ) -> tuple[bool, ClusterMappingsConfig | None]:
    where = "mappingSources"
    section = read.section(data, where, {"files", "cluster"})
    files = read.flag(section, "files", where) if "files" in section else True
    if section.get("cluster") is None:
        if not files:
            read.problem("", f"{where}: files: false needs a cluster source")
        return files, None
    cwhere = f"{where}.cluster"
    cluster = read.section(section["cluster"], cwhere, {"name", "namespace"})
    name = read.string(cluster, "name", cwhere, required=True)
    namespace = read.string(cluster, "namespace", cwhere, "kubegate")
    known = {c.name: c for c in clusters}
    if name and (name not in known or known[name].backend != "tokenRequest"):
        read.problem("", f"{cwhere}.name: {name!r} is not a configured tokenRequest "
                             "cluster (kubegate reads TrustMappings with its credentials)")
    if not namespace:
        read.problem("", f"{cwhere}.namespace: must not be empty")
    return files, ClusterMappingsConfig(cluster=name, namespace=namespace)


def _rate_limit(read: Fields, data: object) -> RateLimit:
    where = "rateLimit.perIdentity"
    section = read.section(data, "rateLimit", {"perIdentity"})
    limits = read.section(section.get("perIdentity"), where, {"rate", "burst"})
    rate = read.rate(limits, "rate", where, RateLimit().rate)
    try:
        return RateLimit(rate=rate, burst=limits.get("burst", RateLimit().burst))
    except ValueError as error:
        read.problem(where, str(error))
        return RateLimit()


def _tls(read: Fields, data: object, where: str, base: Path) -> TLSFiles | None:
    if data is None:
        return None
    section = read.section(data, where, {"certFile", "keyFile", "clientCAFile"})
    cert = read.path(section, "certFile", where, base, required=True)
    key = read.path(section, "keyFile", where, base, required=True)
    client_ca = read.path(section, "clientCAFile", where, base)
    if cert is None or key is None:
        return None
    return TLSFiles(cert_file=cert, key_file=key, client_ca_file=client_ca)


_ISSUER = {"name", "url", "audiences", "algorithms", "keys", "caFile", "maxTokenLifetime",
           "leeway", "kind"}
ISSUER_KINDS: tuple[str, ...] = PROVIDERS
"""What an issuer's tokens are (optional): which claims `mappings validate` expects of them."""


def _issuers(read: Fields, data: object, base: Path,
             clusters: set[str]) -> tuple[IssuerConfig, ...]:
    if not isinstance(data, list):
        read.problem("", "issuers: expected a list")
        return ()
    issuers: list[IssuerConfig] = []
    for index, item in enumerate(data):
        where = f"issuers[{index}]"
        section = read.section(item, where, _ISSUER)
        keys = _key_source(read, section.get("keys", "discovery"), f"{where}.keys", clusters)
        fields: dict[str, Any] = {
            "name": read.string(section, "name", where, required=True),
            "url": read.string(section, "url", where, required=True),
            "audiences": read.strings(section, "audiences", where),
            "ca_file": read.path(section, "caFile", where, base),
            "max_token_lifetime": read.seconds(section, "maxTokenLifetime", where, 86400),
            "leeway": read.seconds(section, "leeway", where, 30),
        }
        if "algorithms" in section:
            fields["algorithms"] = read.strings(section, "algorithms", where)
        if "kind" in section:
            kind = read.string(section, "kind", where)
            if kind not in ISSUER_KINDS:
                read.problem("", f"{where}.kind: expected one of {', '.join(ISSUER_KINDS)}, "
                             f"got {kind!r}")
            fields["kind"] = kind or None
        if keys is None:
            continue
        try:
            issuers.append(IssuerConfig(key_source=keys, **fields))
        except ValueError as error:
            read.problem("", f"{where}: {error}")
    names = [i.name for i in issuers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        read.problem("", f"issuers: name {name!r} is used more than once")
    return tuple(issuers)


def _key_source(read: Fields, data: object, where: str, clusters: set[str]) -> KeySource | None:
    if data == "discovery":
        return OIDCDiscovery()
    section = read.section(data, where, {"discovery", "jwksUrl", "static", "kubernetes"})
    if len(section) != 1:
        read.problem("",
            f"{where}: expected discovery, or exactly one of jwksUrl, static, kubernetes")
        return None
    try:
        if "jwksUrl" in section:
            return JWKSUrl(url=read.string(section, "jwksUrl", where, required=True))
        if "static" in section:
            return StaticKeys(jwks=section["static"])
        if "kubernetes" in section:
            cluster = read.section(section["kubernetes"], f"{where}.kubernetes",
                                   {"cluster", "tokenReview"})
            name = read.string(cluster, "cluster", f"{where}.kubernetes", required=True)
            if name and name not in clusters:
                read.problem("", f"{where}.kubernetes.cluster: {name!r} is not a configured "
                             "tokenRequest cluster (kubegate reads the keys from that cluster's "
                             "API server with its credentials)")
            return KubernetesCluster(cluster=name or "-",
                                     token_review=read.flag(cluster, "tokenReview", where))
        return OIDCDiscovery()
    except ValueError as error:
        read.problem("", f"{where}: {error}")
        return None


_CLUSTER = {"name", "server", "caFile", "backend", "credentials", "audiences",
            "requestTimeout"}


def _clusters(read: Fields, data: object, base: Path) -> tuple[ClusterConfig, ...]:
    if not isinstance(data, list):
        read.problem("", "clusters: expected a list")
        return ()
    clusters = []
    for index, item in enumerate(data):
        where = f"clusters[{index}]"
        section = read.section(item, where, _CLUSTER)
        backend = read.string(section, "backend", where, "tokenRequest")
        if backend not in ("tokenRequest", "selfIssued"):
            read.problem("", f"{where}.backend: expected tokenRequest or selfIssued")
        creds = read.section(section.get("credentials"), f"{where}.credentials",
                             {"tokenFile", "clientCertFile", "clientKeyFile", "kubeconfig",
                              "context"})
        cwhere = f"{where}.credentials"
        token_file = read.path(creds, "tokenFile", cwhere, base)
        cert = read.path(creds, "clientCertFile", cwhere, base)
        key = read.path(creds, "clientKeyFile", cwhere, base)
        kubeconfig = read.path(creds, "kubeconfig", cwhere, base)
        if backend == "tokenRequest" and not (token_file or (cert and key) or kubeconfig):
            read.problem("", f"{cwhere}: a tokenRequest cluster needs tokenFile, "
                                 "clientCertFile and clientKeyFile, or kubeconfig")
        clusters.append(ClusterConfig(
            name=read.string(section, "name", where, required=True),
            server=read.string(section, "server", where, required=True),
            ca_file=read.path(section, "caFile", where, base,
                              required=backend == "tokenRequest"),
            backend=backend, token_file=token_file, client_cert_file=cert,
            client_key_file=key, kubeconfig=kubeconfig,
            context=read.string(creds, "context", cwhere) or None,
            audiences=read.strings(section, "audiences", where),
            request_timeout=_request_timeout(read, section, where),
        ))
    names = [c.name for c in clusters]
    for name in sorted({n for n in names if names.count(n) > 1}):
        read.problem("", f"clusters: name {name!r} is used more than once")
    return tuple(clusters)


def _request_timeout(read: Fields, section: dict[str, Any], where: str) -> float:
    seconds = read.duration(section, "requestTimeout", where, DEFAULT_REQUEST_TIMEOUT)
    if seconds < 1:
        read.problem("", f"{where}.requestTimeout: must be at least 1s")
        return DEFAULT_REQUEST_TIMEOUT
    return float(seconds)


def _self_issued(read: Fields, data: object, base: Path,
                 state_dir: Path) -> SelfIssuedConfig | None:
    if data is None:
        return None
    where = "selfIssued"
    section = read.section(data, where, {"issuerUrl", "listen", "tls", "audience"})
    listen = read.address(section, "listen", where, DEFAULT_SELF_ISSUED_LISTEN, unix=False)
    if listen.endswith(":0") and "issuerUrl" not in section:
        read.problem("", f"{where}.listen: port 0 needs an explicit issuerUrl (the URL a "
                             "cluster trusts must not change between starts)")
    issuer_url = read.string(section, "issuerUrl", where, f"https://{listen}")
    if not issuer_url.startswith("https://") or issuer_url.endswith("/"):
        read.problem("", f"{where}.issuerUrl: must be an https URL without a trailing slash")
    return SelfIssuedConfig(
        issuer_url=issuer_url, listen=listen,
        tls=_tls(read, section.get("tls"), f"{where}.tls", base)
        or TLSFiles.generated(state_dir / "tls", "discovery"),
        audience=read.string(section, "audience", where, "kubernetes"),
    )
