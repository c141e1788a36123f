"""The `audit` section of the exchanger's configuration: signed checkpoints of the chain head.

    audit:
      checkpoints:
        key: <stateDir>/audit-checkpoint-key.pem   # Ed25519, PEM; created only at the default
        keyName: kubegate.io/audit     # the signed note's key name (no spaces, no '+')
        origin: <keyName>/<host name>  # which log; one per audit file
        interval: 5m                   # and once more at shutdown
        configMap: {cluster: NAME, namespace: kubegate, name: kubegate-audit-checkpoints}
        witness: {url: https://..., caFile: PATH}

Rules of this module:
- read through `kubegate.configread.Fields` like every other section (`exchanger.config` is
  the one loader that calls it): every problem reported with its field, none raised;
- checkpoints are off unless `audit.checkpoints` is given, and then need a place off this
  host: a ConfigMap on a configured tokenRequest cluster (the only one when not named), an
  HTTPS witness, or both;
- the default origin is the key name and the host name (a pod's name), so each replica's
  audit file is its own log.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from kubegate.configread import Fields


@dataclass(frozen=True, kw_only=True)
class CheckpointConfigMap:
    """Checkpoints kept in ConfigMap `namespace/name` of the configured cluster `cluster`."""

    cluster: str
    namespace: str = "kubegate"
    name: str = "kubegate-audit-checkpoints"


@dataclass(frozen=True, kw_only=True)
class CheckpointWitness:
    url: str
    ca_file: Path | None = None


@dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """audit.checkpoints: the signing key (created when `create_key`, i.e. at the default
    place), the note's key name, the log's origin, the interval, and where to publish."""

    key_file: Path
    create_key: bool
    key_name: str
    origin: str
    interval: float
    config_map: CheckpointConfigMap | None = None
    witness: CheckpointWitness | None = None


DEFAULT_KEY_NAME = "kubegate.io/audit"
DEFAULT_CHECKPOINT_INTERVAL = 300.0
_CHECKPOINTS = {"key", "keyName", "origin", "interval", "configMap", "witness"}


def read_checkpoints(read: Fields, data: object, base: Path, state_dir: Path,
                     clusters: tuple[str, ...]) -> CheckpointConfig | None:
    """The `audit` section of a config file (`clusters`: the tokenRequest clusters)."""
    audit = read.section(data, "audit", {"checkpoints"})
    if "checkpoints" not in audit:
        return None
    where = "audit.checkpoints"
    section = read.section(audit["checkpoints"], where, _CHECKPOINTS)
    key = read.path(section, "key", where, base)
    key_name = read.string(section, "keyName", where, DEFAULT_KEY_NAME)
    origin = read.string(section, "origin", where, f"{key_name}/{socket.gethostname()}")
    for field, value in (("keyName", key_name), ("origin", origin)):
        if not value or any(c.isspace() or c == "+" for c in value):
            read.problem(where, f"{field}: must be non-empty, without spaces or '+'")
    interval = read.duration(section, "interval", where, DEFAULT_CHECKPOINT_INTERVAL)
    if interval < 1:
        read.problem(where, "interval: must be at least 1s")
    config_map = _checkpoint_config_map(read, section.get("configMap"), clusters)
    witness = _checkpoint_witness(read, section.get("witness"), base)
    if config_map is None and witness is None:
        read.problem(where, "needs configMap or witness: where checkpoints are published, "
                            "off this host")
    return CheckpointConfig(
        key_file=key or state_dir / "audit-checkpoint-key.pem", create_key=key is None,
        key_name=key_name, origin=origin, interval=max(interval, 1.0),
        config_map=config_map, witness=witness)


def _checkpoint_config_map(read: Fields, data: object,
                           clusters: tuple[str, ...]) -> CheckpointConfigMap | None:
    if data is None:
        return None
    where = "audit.checkpoints.configMap"
    section = read.section(data, where, {"cluster", "namespace", "name"})
    candidates = list(clusters)
    cluster = read.string(section, "cluster", where, candidates[0] if len(candidates) == 1
                          else "", required=len(candidates) != 1)
    if cluster and cluster not in candidates:
        read.problem(where, f"cluster: {cluster!r} is not a configured tokenRequest cluster "
                            "(kubegate writes the ConfigMap with its credentials)")
    namespace = read.string(section, "namespace", where, CheckpointConfigMap.namespace)
    name = read.string(section, "name", where, CheckpointConfigMap.name)
    if not namespace or not name:
        read.problem(where, "namespace and name must not be empty")
    return CheckpointConfigMap(cluster=cluster, namespace=namespace, name=name)


def _checkpoint_witness(read: Fields, data: object, base: Path) -> CheckpointWitness | None:
    if data is None:
        return None
    where = "audit.checkpoints.witness"
    section = read.section(data, where, {"url", "caFile"})
    url = read.string(section, "url", where, required=True)
    if url and not url.startswith("https://"):
        read.problem(where, "url: must be an https URL")
    return CheckpointWitness(url=url, ca_file=read.path(section, "caFile", where, base))
