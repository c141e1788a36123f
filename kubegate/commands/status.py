"""`kubegate status [--config FILE] [--output text|json]`: what an exchanger with this config
sees from where the command runs: each issuer's keys, each cluster's API server, how many
trust mappings its sources would load or reject (and whether the resources could be listed),
and whether its audit log would let it start (see `exchanger.audit.resume`): a torn last
line is fine (a start moves it aside), a complete line that does not verify is not.

    kubegate status --config /etc/kubegate/config.yaml
    kubectl -n kubegate exec deploy/kubegate-exchanger -- \
        kubegate status --config /etc/kubegate/config.yaml     # the exchanger's own view

Rules of this module:
- it checks through the exchanger's own code paths (the same key fetcher and Kubernetes
  clients, the same mapping loader and judge), so what it says is what a replica would meet;
- read-only: keys are fetched, `/version` is read, a SelfSubjectReview is asked,
  TrustMappings are listed and the audit log's tail is read; no status is written, nothing
  is issued, the audit log is not opened for writing;
- nothing it prints holds a credential: errors are the exchanger's own details (URLs,
  statuses, files, fields);
- exit 0 when every issuer has keys, every cluster kubegate holds credentials for answers,
  no mapping is rejected, the resources could be listed and the audit log would resume; 1
  otherwise; 2 for a config it cannot read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exchanger.audit.resume import AuditLogCorruptError, resume_head
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
    state: str = "read"  # read (files) | listed | cannot-list (resources)


AUDIT_OK, AUDIT_NEW, AUDIT_TORN = "ok", "new", "torn"
AUDIT_CORRUPT, AUDIT_UNWRITABLE = "corrupt", "unwritable"


@dataclass(frozen=True, kw_only=True)
class AuditStatus:
    file: str
    state: str  # ok | new | torn (moved aside at start) | corrupt | unwritable
    seq: int  # the last complete line's
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    config: str
    issuers: list[IssuerStatus]
    clusters: list[ClusterStatus]
    mappings: list[MappingStatus]
    audit: AuditStatus | None = None

    @property
    def healthy(self) -> bool:
        return (all(i.state == STATE_OK for i in self.issuers)
                and all(c.reachable is not False for c in self.clusters)
                and not any(m.rejected or m.state == "cannot-list" for m in self.mappings)
                and (self.audit is None
                     or self.audit.state not in (AUDIT_CORRUPT, AUDIT_UNWRITABLE)))


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
                                clusters=list(clusters), mappings=mapping_statuses(config),
                                audit=audit_status(Path(config.audit_log)))
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
        return MappingStatus(source=source, loaded=0, rejected=0, state="cannot-list",
                             problems=[f"cannot list: {error.detail or error.reason}"])
    return MappingStatus(source=source, loaded=len(accepted), rejected=len(problems),
                         problems=problems, state="listed")


# -- the audit log ----------------------------------------------------------------------------


def audit_status(path: Path) -> AuditStatus:
    """Whether an exchanger could resume `path`, read as a start reads it (never written)."""
    if not path.exists():
        writable = os.access(path.parent if path.parent.exists() else Path("."), os.W_OK)
        return AuditStatus(file=str(path), state=AUDIT_NEW if writable else AUDIT_UNWRITABLE,
                           seq=0, detail="" if writable else "its folder is not writable")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        return AuditStatus(file=str(path), state=AUDIT_UNWRITABLE, seq=0,
                           detail=f"cannot open: {error.strerror}")
    try:
        resumed = resume_head(fd, path)
    except AuditLogCorruptError as error:
        return AuditStatus(file=str(path), state=AUDIT_CORRUPT, seq=0, detail=str(error))
    except OSError as error:
        return AuditStatus(file=str(path), state=AUDIT_UNWRITABLE, seq=0,
                           detail=f"cannot read: {error.strerror}")
    finally:
        os.close(fd)
    if not os.access(path, os.W_OK):
        return AuditStatus(file=str(path), state=AUDIT_UNWRITABLE, seq=resumed.head.seq,
                           detail="not writable")
    if resumed.torn is not None:
        return AuditStatus(file=str(path), state=AUDIT_TORN, seq=resumed.head.seq,
                           detail=f"an incomplete last line of {len(resumed.torn.data)} bytes "
                           "(a crash mid-write): a start moves it aside and records that")
    return AuditStatus(file=str(path), state=AUDIT_OK, seq=resumed.head.seq)


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
    mappings = [[m.source, m.state, str(m.loaded), str(m.rejected)] for m in report.mappings]
    problems = [f"  {problem}" for m in report.mappings for problem in m.problems]
    audit = ([[report.audit.file, report.audit.state, str(report.audit.seq),
               report.audit.detail or "-"]] if report.audit else [])
    return "\n".join([
        f"config: {report.config}", "",
        *_table(["ISSUER", "KEYS", "SOURCE", "COUNT", "LAST SUCCESS", "ERROR"], issuers), "",
        *_table(["CLUSTER", "API SERVER", "SERVER", "VERSION", "AUTHENTICATED AS / ERROR"],
                clusters), "",
        *_table(["MAPPINGS", "STATE", "LOADED", "REJECTED"], mappings), *problems, "",
        *_table(["AUDIT LOG", "STATE", "SEQ", "DETAIL"], audit),
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
