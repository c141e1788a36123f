"""Wiring: where the exchanger's trust mappings come from (`mappingSources` in the config).

- files only (the default): the mappings folder, reloaded on change, exactly as before;
- TrustMapping resources (`mappingSources.cluster`), with or without files: a folder store
  and a cluster watcher feed one merged store. A reload of the folder judges the resources
  again (a new file name can now conflict with a resource), then rebuilds the merged set;
  a change of the accepted resources rebuilds it too.

Invariants: the merged set never holds two mappings of one name (a resource named like a
file mapping is left out even before its Invalid status is written); a bad folder keeps its
last good set without holding back changes of the resources.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from exchanger.config import ClusterConfig, Config
from exchanger.mappings.cluster import ClusterMappings
from exchanger.mappings.load import load_folder
from exchanger.mappings.model import MappingSet, TrustMapping
from exchanger.mappings.store import (
    FolderWatcher,
    MappingStore,
    ReloadResult,
    fingerprint_folder,
    store_for_folder,
)
from exchanger.mappings.verdict import judge, resource_source

log = logging.getLogger(__name__)

FIRST_SYNC_SECONDS: Final = 5.0
"""How long start() waits for the first list of resources (then it carries on, not ready)."""


class HealthSetter(Protocol):
    def set(self, service: str, status: Any) -> None: ...


class _Part(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class MappingSources:
    """The store the exchanger matches against, and the watchers that keep it current."""

    store: MappingStore
    parts: list[_Part] = field(default_factory=list)
    cluster: ClusterMappings | None = None

    def start(self) -> None:
        for part in self.parts:
            part.start()
        if self.cluster is not None and not self.cluster.wait_synced(FIRST_SYNC_SECONDS):
            log.warning("TrustMappings not listed yet: the exchange service reports "
                        "NOT_SERVING until they are")

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()

    def gate_readiness(self, health: HealthSetter, service: str, serving: Any,
                       not_serving: Any) -> None:
        """Report `service` NOT_SERVING until the resources have been listed once."""
        if self.cluster is None or self.cluster.synced:
            return
        health.set(service, not_serving)
        self.cluster.when_synced(lambda: health.set(service, serving))


def build_mapping_sources(config: Config,
                          on_reload: Callable[[ReloadResult], None]) -> MappingSources:
    """The configured sources, loaded (ConfigError for a bad folder) but not started."""
    issuers = {i.name for i in config.issuers}
    clusters = {c.name for c in config.clusters}
    if config.mapping_cluster is None:
        store, watcher = store_for_folder(
            config.mappings, known_issuers=issuers, known_clusters=clusters,
            interval=config.reload_interval, on_reload=on_reload)
        return MappingSources(store=store, parts=[watcher])
    files: MappingStore | None = None
    baseline = ""
    if config.mapping_files:
        baseline = fingerprint_folder(config.mappings)
        files = MappingStore(lambda: load_folder(config.mappings, issuers, clusters))
    cluster = ClusterMappings(
        _trust_mapping_client(config.cluster(config.mapping_cluster.cluster),
                              config.mapping_cluster.namespace),
        known_issuers=issuers, known_clusters=clusters,
        file_sources=lambda: _sources_of(files))
    merged = MappingStore(lambda: merge(files, cluster))
    cluster.on_change = lambda: on_reload(merged.reload())
    sources = MappingSources(store=merged, parts=[_ClusterPart(cluster)], cluster=cluster)
    if files is not None:
        cascade = _FilesThenMerged(files, cluster, merged, on_reload)
        sources.parts.insert(0, FolderWatcher(cascade, config.mappings,
                                              interval=config.reload_interval,
                                              baseline=baseline))
    return sources


def merge(files: MappingStore | None, cluster: ClusterMappings) -> MappingSet:
    """File mappings, then the accepted resources whose names no file uses."""
    from_files = files.current.mappings if files is not None else ()
    names = {mapping.name for mapping in from_files}
    from_cluster = tuple(m for m in cluster.accepted() if m.name not in names)
    return MappingSet(mappings=from_files + from_cluster)


def _sources_of(files: MappingStore | None) -> Mapping[str, str]:
    if files is None:
        return {}
    return {mapping.name: mapping.source for mapping in files.current.mappings}


class _FilesThenMerged:
    """What the folder watcher reloads: the files, the resources' verdicts, the merged set."""

    def __init__(self, files: MappingStore, cluster: ClusterMappings, merged: MappingStore,
                 on_reload: Callable[[ReloadResult], None]) -> None:
        self._files, self._cluster, self._merged = files, cluster, merged
        self._on_reload = on_reload

    def reload(self) -> ReloadResult:
        result = self._files.reload()
        self._cluster.reconcile(notify=False)
        merged = self._merged.reload()
        report = ReloadResult(ok=result.ok, problems=result.problems,
                              mapping_count=merged.mapping_count)
        self._on_reload(report)
        return report


class _ClusterPart:
    """The cluster watcher as a start/stop part that also closes its client."""

    def __init__(self, cluster: ClusterMappings) -> None:
        self._cluster = cluster

    def start(self) -> None:
        self._cluster.start()

    def stop(self) -> None:
        self._cluster.stop()
        self._cluster.close()


def list_cluster_mappings(config: Config, file_sources: Mapping[str, str],
                          ) -> tuple[list[TrustMapping], list[str]]:
    """The config's TrustMapping resources as a replica would judge them, listed once (no
    status written): the accepted mappings, and a problem for each refused one. Raises
    KubegateError when the resources cannot be listed."""
    assert config.mapping_cluster is not None
    namespace = config.mapping_cluster.namespace
    client = _trust_mapping_client(config.cluster(config.mapping_cluster.cluster), namespace)
    try:
        objects, _ = client.list()
    finally:
        client.close()
    issuers = frozenset(i.name for i in config.issuers)
    clusters = frozenset(c.name for c in config.clusters)
    accepted: list[TrustMapping] = []
    problems: list[str] = []
    for obj in objects:
        verdict = judge(obj, namespace=namespace, file_sources=file_sources, issuers=issuers,
                        clusters=clusters)
        if verdict.mapping is not None:
            accepted.append(verdict.mapping)
        else:
            name = str((obj.get("metadata") or {}).get("name", ""))
            problems.append(f"{resource_source(namespace, name)}: {verdict.message}")
    return accepted, problems


def _trust_mapping_client(cluster: ClusterConfig, namespace: str) -> Any:
    from exchanger.kube.client import ClusterCredentials
    from exchanger.kube.trustmappings import TrustMappingClient

    if cluster.ca_file is None:
        raise ValueError(f"cluster {cluster.name!r} has no caFile")
    return TrustMappingClient(
        server=cluster.server, ca_file=cluster.ca_file, namespace=namespace,
        credentials=ClusterCredentials(
            kubeconfig=cluster.kubeconfig, context=cluster.context,
            token_file=cluster.token_file, client_cert_file=cluster.client_cert_file,
            client_key_file=cluster.client_key_file))
