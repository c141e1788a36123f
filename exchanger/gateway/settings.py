"""The config's `gateway:` section: what `kubegate gateway` serves and which cluster it fronts.
`kubegate gateway --config F` reads the same file as `kubegate serve` (issuers, mappings,
clusters, access store); this section adds the gateway's own settings.

```yaml
gateway:
  listen: 0.0.0.0:8443            # HTTPS for kubectl (default 127.0.0.1:8447)
  tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key}   # required off loopback; absent on
                                  # loopback: a local CA + certificate under <stateDir>/tls
  cluster: prod                   # required: the `clusters:` entry it fronts; that entry's
                                  # server, caFile and credentials are the gateway's own (its
                                  # service account with narrowly scoped impersonate rights)
  recordings: /var/lib/kubegate/recordings   # asciicast files, per session
                                  # (default <stateDir>/recordings)
  audit: {path: /var/lib/kubegate/gateway-audit.log}   # hash-chained request records
                                  # (default <stateDir>/gateway-audit.log; never the
                                  # exchanger's auditLog: one chain has one writer)
  maxConnections: 1000            # open client connections at most (1..100000)
  selfIssuedKey: /etc/kubegate/signing-key.pub   # PEM public key the exchanger signs
                                  # self-issued credentials with (a private key file is
                                  # accepted too); default <stateDir>/signing-key.pem
  metricsListen: 0.0.0.0:9090     # plain HTTP: Prometheus /metrics and GET /healthz (200
                                  # while the gateway listens); "" (the default) disables
```

Rules of this module: like every config reader (`kubegate.configread`), nothing raises for bad
input: each problem goes to the `Fields` reader with its field (`gateway.<key>`), unknown
keys are refused, and a default is returned so the caller reports every problem at once.
It imports nothing of `exchanger.config` (which imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kubegate.addresses import is_local_address
from kubegate.configread import Fields
from kubegate.grammar import shown

__all__ = ["DEFAULT_LISTEN", "DEFAULT_MAX_CONNECTIONS", "GatewaySettings", "GatewayTLS",
           "read_gateway"]

DEFAULT_LISTEN: Final = "127.0.0.1:8447"
DEFAULT_MAX_CONNECTIONS: Final = 1000
MAX_CONNECTIONS_LIMIT: Final = 100_000
_SECTION: Final = {"listen", "tls", "cluster", "recordings", "audit", "maxConnections",
                   "selfIssuedKey", "metricsListen"}
WHERE: Final = "gateway"


@dataclass(frozen=True, kw_only=True)
class GatewayTLS:
    """The gateway's serving certificate; `generated_ca_file` is set when kubegate makes a
    local CA and certificate (loopback only; `exchanger.localtls.ensure_local_tls`)."""

    cert_file: Path
    key_file: Path
    generated_ca_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    listen: str
    tls: GatewayTLS
    cluster: str  # a configured cluster with credentials: the gateway's own
    recordings: Path
    audit_log: Path
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    self_issued_key: Path | None = None  # public half of the exchanger's signing key
    metrics_listen: str = ""  # HOST:PORT of /metrics and /healthz, "" for none


def read_gateway(read: Fields, data: object, *, base: Path, state_dir: Path,
                 clusters: Mapping[str, bool], exchanger_audit_log: Path | None,
                 ) -> GatewaySettings | None:
    """The `gateway` section, or None when absent. `clusters`: each configured cluster's name
    and whether the config gives credentials for it."""
    if data is None:
        return None
    section = read.section(data, WHERE, _SECTION)
    if not isinstance(data, dict):
        return None
    listen = read.address(section, "listen", WHERE, DEFAULT_LISTEN, unix=False)
    cluster = read.string(section, "cluster", WHERE, required=True)
    if cluster and cluster not in clusters:
        listed = ", ".join(sorted(clusters)) or "none"
        read.problem(WHERE, f"cluster: {cluster!r} is not a configured cluster "
                     f"(configured: {listed})")
    elif cluster and not clusters[cluster]:
        read.problem(WHERE, f"cluster: {cluster!r} has no credentials: the gateway calls its "
                     "API server as itself (clusters[].credentials: tokenFile, clientCertFile "
                     "and clientKeyFile, or kubeconfig)")
    audit_log = _audit(read, section.get("audit"), base, state_dir)
    if exchanger_audit_log is not None and audit_log == exchanger_audit_log:
        read.problem(WHERE, f"audit.path: {audit_log} is the exchanger's auditLog; the "
                     "gateway needs a log of its own (one hash chain has one writer)")
    return GatewaySettings(
        listen=listen, tls=_tls(read, section.get("tls"), base, state_dir, listen),
        cluster=cluster,
        recordings=read.path(section, "recordings", WHERE, base, state_dir / "recordings")
        or state_dir / "recordings",
        audit_log=audit_log,
        max_connections=_max_connections(read, section),
        self_issued_key=read.path(section, "selfIssuedKey", WHERE, base),
        metrics_listen=read.address(section, "metricsListen", WHERE, "", unix=False),
    )


def _tls(read: Fields, data: object, base: Path, state_dir: Path, listen: str) -> GatewayTLS:
    where = f"{WHERE}.tls"
    generated = GatewayTLS(cert_file=state_dir / "tls" / "gateway.crt",
                           key_file=state_dir / "tls" / "gateway.key",
                           generated_ca_file=state_dir / "tls" / "gateway-ca.crt")
    if data is None:
        if not is_local_address(listen):
            read.problem(WHERE, f"tls: required when listening on {listen} (a generated "
                         "certificate is only for loopback)")
        return generated
    section = read.section(data, where, {"certFile", "keyFile"})
    cert = read.path(section, "certFile", where, base, required=True)
    key = read.path(section, "keyFile", where, base, required=True)
    if cert is None or key is None:
        return generated
    return GatewayTLS(cert_file=cert, key_file=key)


def _audit(read: Fields, data: object, base: Path, state_dir: Path) -> Path:
    default = state_dir / "gateway-audit.log"
    section = read.section(data, f"{WHERE}.audit", {"path"})
    return read.path(section, "path", f"{WHERE}.audit", base, default) or default


def _max_connections(read: Fields, section: Mapping[str, object]) -> int:
    value = section.get("maxConnections", DEFAULT_MAX_CONNECTIONS)
    if type(value) is not int or not 1 <= value <= MAX_CONNECTIONS_LIMIT:
        read.problem(WHERE, f"maxConnections: expected a whole number within "
                     f"1..{MAX_CONNECTIONS_LIMIT}, got {shown(value)}")
        return DEFAULT_MAX_CONNECTIONS
    return value
