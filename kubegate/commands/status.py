"""`kubegate status [--config FILE] [--output text|json]`: what an exchanger with this config
sees from where the command runs: each issuer's keys, each cluster's API server, and how many
trust mappings its sources would load or reject.

    kubegate status --config /etc/kubegate/config.yaml
    kubectl -n kubegate exec deploy/kubegate-exchanger -- \
        kubegate status --config /etc/kubegate/config.yaml     # the exchanger's own view

Rules of this module:
- it checks through the exchanger's own code paths (the same key fetcher and Kubernetes
  clients, the same mapping loader and judge), so what it says is what a replica would meet;
- read-only: keys are fetched, `/version` is read, a SelfSubjectReview is asked and
  TrustMappings are listed; no status is written, nothing is issued;
- nothing it prints holds a credential: errors are the exchanger's own details (URLs,
  statuses, files, fields);
- exit 0 when every issuer has keys, every cluster kubegate holds credentials for answers and
  no mapping is rejected; 1 otherwise; 2 for a config it cannot read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exchanger.config import ClusterConfig, Config, load_config
from exchanger.kube.client import KubernetesClient
from exchanger.mappings.load import duplicate_names, mapping_files, read_documents
from exchanger.mappings.model import TrustMapping
from exchanger.mappings.validate import parse_mapping
from exchanger.server import cluster_clients, key_fetcher
from exchanger.verify.issuers import IssuerConfig, JWKSUrl, KubernetesCluster, StaticKeys
from exchanger.verify.keys import STATE_OK, KeyCache
from kubegate.errors import ConfigError, KubegateError

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
PROG = "kubegate status"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="the exchanger's config (default: the embedded default)")
    parser.add_argument("--output", choices=("text", "json"), default="text",
                        help="a table per part (default), or one JSON document")


@dataclass(frozen=True, kw_only=True)
class IssuerStatus:
    name: str
    source: str  # where its keys come from
    state: str  # ok | failing | stale | pending (keys.py STATE_*)
    keys: int
    last_success: float | None
    error: str


@dataclass(frozen=True, kw_only=True)
class ClusterStatus:
    name: str
    server: str
    backend: str
    reachable: bool | None  # None: kubegate holds no credentials for it (selfIssued)
    version: str = ""
    user: str = ""
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class MappingStatus:
    source: str
    loaded: int  # in effect once the exchanger (re)loads this source
    rejected: int  # documents or resources refused
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    config: str
    issuers: list[IssuerStatus]
    clusters: list[ClusterStatus]
    mappings: list[MappingStatus]

    @property
    def healthy(self) -> bool:
        return (all(i.state == STATE_OK for i in self.issuers)
                and all(c.reachable is not False for c in self.clusters)
                and not any(m.rejected for m in self.mappings))


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, environ={}) if args.config else load_config(None)
    except ConfigError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    report = gather(config)
    print(json.dumps(asdict(report), indent=2) if args.output == "json" else render(report))
    return EXIT_OK if report.healthy else EXIT_PROBLEMS


def gather(config: Config) -> StatusReport:
    """Every check at once (in threads: a slow issuer does not hold up the others)."""
    clients = cluster_clients(config)
    try:
        keys = KeyCache(key_fetcher(clients), time.time)
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="status") as pool:
            issuers = pool.map(lambda issuer: issuer_status(keys, issuer), config.issuers)
            clusters = pool.map(lambda cluster: cluster_status(cluster, clients.get(cluster.name)),
                                config.clusters)
            return StatusReport(config=config.source, issuers=list(issuers),
                                clusters=list(clusters), mappings=mapping_statuses(config))
    finally:
        for client in clients.values():
            client.close()


def issuer_status(keys: KeyCache, issuer: IssuerConfig) -> IssuerStatus:
    keys.refresh(issuer)
    health = keys.health(issuer.name)
    return IssuerStatus(name=issuer.name, source=describe_source(issuer), state=health.state,
                        keys=health.key_count, last_success=health.last_success,
                        error=health.last_error)


def describe_source(issuer: IssuerConfig) -> str:
    source = issuer.key_source
    if isinstance(source, KubernetesCluster):
        return f"cluster {source.cluster}"
    if isinstance(source, JWKSUrl):
        return f"jwksUrl {source.url}"
    return "static" if isinstance(source, StaticKeys) else "discovery"


def cluster_status(cluster: ClusterConfig, client: KubernetesClient | None) -> ClusterStatus:
    status = ClusterStatus(name=cluster.name, server=cluster.server, backend=cluster.backend,
                           reachable=None)
    if client is None:
        return status
    try:
        identity = client.identify()
    except KubegateError as error:
        return _replace(status, reachable=False, error=error.detail or error.reason)
    return _replace(status, reachable=True, version=identity.version, user=identity.user)


def _replace(status: ClusterStatus, **changes: Any) -> ClusterStatus:
    return ClusterStatus(**{**asdict(status), **changes})


# -- mappings ---------------------------------------------------------------------------------


def mapping_statuses(config: Config) -> list[MappingStatus]:
    found: list[MappingStatus] = []
    file_sources: dict[str, str] = {}
    if config.mapping_files:
        files, mappings = folder_status(config)
        found.append(files)
        file_sources = {m.name: m.source for m in mappings} if not files.rejected else {}
    if config.mapping_cluster is not None:
        found.append(resources_status(config, file_sources))
    return found


def folder_status(config: Config) -> tuple[MappingStatus, list[TrustMapping]]:
    """The folder as the loader takes it: all of it, or (with any problem) none of it."""
    source = f"files {config.mappings}"
    if not config.mappings.is_dir():
        return MappingStatus(source=source, loaded=0, rejected=0), []
    issuers, clusters = _names(config)
    problems: list[str] = []
    mappings: list[TrustMapping] = []
    rejected = 0
    for path in mapping_files(config.mappings):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path.name}: cannot read: {error}")
            rejected += 1
            continue
        documents, yaml_problems = read_documents(text, path.name)
        for label, document in documents:
            mapping, found = parse_mapping(document, source=f"{path.name}: {label}",
                                           issuers=issuers, clusters=clusters)
            problems += found
            if mapping is None:
                rejected += 1
            else:
                mappings.append(mapping)
        problems += yaml_problems
        rejected += len(yaml_problems)
    duplicates = duplicate_names(mappings)
    problems += duplicates
    rejected += len(duplicates)
    loaded = 0 if problems else len(mappings)
    return MappingStatus(source=source, loaded=loaded, rejected=rejected,
                         problems=problems), mappings


def resources_status(config: Config, file_sources: dict[str, str]) -> MappingStatus:
    """The TrustMapping resources, judged as the exchanger judges them (no status written)."""
    from exchanger.mapping_sources import list_cluster_mappings

    assert config.mapping_cluster is not None
    source = (f"TrustMappings in {config.mapping_cluster.cluster}/"
              f"{config.mapping_cluster.namespace}")
    try:
        accepted, problems = list_cluster_mappings(config, file_sources)
    except KubegateError as error:
        return MappingStatus(source=source, loaded=0, rejected=0,
                             problems=[f"cannot list: {error.detail or error.reason}"])
    return MappingStatus(source=source, loaded=len(accepted), rejected=len(problems),
                         problems=problems)


def _names(config: Config) -> tuple[frozenset[str], frozenset[str]]:
    return (frozenset(i.name for i in config.issuers),
            frozenset(c.name for c in config.clusters))


# -- rendering --------------------------------------------------------------------------------


def render(report: StatusReport) -> str:
    now = time.time()
    issuers = [[i.name, i.state, i.source, str(i.keys), _ago(i.last_success, now),
                i.error or "-"] for i in report.issuers]
    clusters = [[c.name, _reachability(c.reachable), c.server, c.version or "-",
                 c.user or c.error or "-"] for c in report.clusters]
    mappings = [[m.source, str(m.loaded), str(m.rejected)] for m in report.mappings]
    problems = [f"  {problem}" for m in report.mappings for problem in m.problems]
    return "\n".join([
        f"config: {report.config}", "",
        *_table(["ISSUER", "KEYS", "SOURCE", "COUNT", "LAST SUCCESS", "ERROR"], issuers), "",
        *_table(["CLUSTER", "API SERVER", "SERVER", "VERSION", "AUTHENTICATED AS / ERROR"],
                clusters), "",
        *_table(["MAPPINGS", "LOADED", "REJECTED"], mappings), *problems,
    ])


def _reachability(reachable: bool | None) -> str:
    return {True: "reachable", False: "unreachable", None: "not-checked"}[reachable]


def _ago(when: float | None, now: float) -> str:
    return "never" if when is None else f"{max(0, round(now - when))}s ago"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return [f"{header[0]}: none configured"]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in [header, *rows]]
