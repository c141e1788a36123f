"""`kubegate scan`: standing privilege in a cluster and paths around the broker (read-only).

    kubegate scan [--kubeconfig F] [--context C] [--config F] [--mappings PATH]
                  [-o table|json|sarif] [--fail-on high|medium|low|none]

It lists RBAC objects, legacy token Secrets and the service accounts and pods of the
namespaces mappings grant into, and asks the API server a SubjectAccessReview for every
"can" (see `exchanger/scan`). Mappings come from --mappings, else from the config's sources;
the exchanger (never a finding) is whom the config's cluster credentials authenticate as,
else deploy/base's `kubegate/kubegate-exchanger`.

Exit codes: 0 no finding at or above --fail-on (default high) and everything seen; 1 a
finding at or above --fail-on; 2 usage (bad flags, an unreadable kubeconfig, config or
mapping path); 3 the scan could not see something (a list or review was refused): never a
clean result, whatever the findings and --fail-on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from exchanger.config import Config, load_config
from exchanger.mapping_sources import list_cluster_mappings
from exchanger.scan.checks import scan
from exchanger.scan.model import FAIL_ON_CHOICES, ScanResult, fails
from exchanger.scan.render import as_json, summary, table
from exchanger.scan.sarif import build_sarif
from exchanger.scan.subjects import Exchanger
from exchanger.scan.targets import Target, load_targets, target_of
from kubegate import __version__
from kubegate.errors import ConfigError, KubegateError, UsageError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
PROG = "kubegate scan"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE",
                        help="the kubeconfig to scan with (default: $KUBECONFIG, "
                        "~/.kube/config)")
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="the exchanger's config: its mapping sources, and its cluster "
                        "credentials (who the exchanger is)")
    parser.add_argument("--mappings", type=Path, metavar="PATH",
                        help="a mapping file or folder (default: the config's)")
    parser.add_argument("-o", "--output", choices=("table", "json", "sarif"), default="table",
                        help="table (default), json, or SARIF 2.1.0")
    parser.add_argument("--fail-on", choices=FAIL_ON_CHOICES, default="high",
                        help="exit 1 when a finding is at or above this severity "
                        "(default high; none: never)")


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args.config)
        targets = _targets(args.mappings, config)
        api = _api_client(args.kubeconfig, args.context)
    except (UsageError, ConfigError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    from exchanger.scan.cluster import KubeClusterReader
    from exchanger.scan.review import KubeAccessReviewer

    try:
        result = scan(reader=KubeClusterReader(api), reviewer=KubeAccessReviewer(api),
                      targets=targets, exchanger=_exchanger(config))
    finally:
        api.close()
    print(_render(result, args.output), end="")
    if args.output != "table":
        print(f"{PROG}: {summary(result)}", file=sys.stderr)
    if not result.complete:
        return EXIT_INCOMPLETE
    return EXIT_FINDINGS if fails([f.severity for f in result.findings],
                                  args.fail_on) else EXIT_OK


def _render(result: ScanResult, output: str) -> str:
    if output == "json":
        return as_json(result)
    if output == "sarif":
        return json.dumps(build_sarif(result, version=__version__), indent=2) + "\n"
    return table(result)


def _config(path: Path | None) -> Config | None:
    if path is None:
        return None
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    return load_config(path, environ={})


def _targets(path: Path | None, config: Config | None) -> list[Target]:
    """What the mappings grant: --mappings, else the config's folder and TrustMappings.
    Documents the exchanger would refuse are named on stderr and left out."""
    issuers = {i.name for i in config.issuers} if config is not None else None
    clusters = {c.name for c in config.clusters} if config is not None else None
    targets: list[Target] = []
    problems: list[str] = []
    paths = [path] if path is not None else (
        [config.mappings] if config is not None and config.mapping_files
        and config.mappings.exists() else [])
    for source in paths:
        if not source.exists():
            raise UsageError(f"--mappings {source}: no such file or folder")
        try:
            found, left_out = load_targets(source, issuers, clusters)
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{source}: cannot read: {error}") from None
        targets, problems = targets + found, problems + left_out
    if path is None and config is not None and config.mapping_cluster is not None:
        targets, problems = _cluster_targets(config, targets, problems)
    if path is None and config is None:
        print(f"{PROG}: no --mappings or --config: only checks that need no mapping run",
              file=sys.stderr)
    for problem in problems:
        print(f"{PROG}: invalid mapping, left out: {problem}", file=sys.stderr)
    return targets


def _cluster_targets(config: Config, targets: list[Target],
                     problems: list[str]) -> tuple[list[Target], list[str]]:
    try:
        resources, refused = list_cluster_mappings(
            config, {t.mapping: t.file for t in targets})
    except KubegateError as error:
        raise UsageError(f"cannot list the TrustMapping resources: "
                         f"{error.detail or error.reason}") from None
    return targets + [target_of(m, "") for m in resources], problems + refused


def _api_client(kubeconfig: Path | None, context: str | None) -> Any:
    import kubernetes.config
    from kubernetes.config.config_exception import ConfigException

    if kubeconfig is not None and not kubeconfig.is_file():
        raise UsageError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None, context=context,
            persist_config=False)
    except (ConfigException, OSError, ValueError) as error:
        raise UsageError(f"cannot use the kubeconfig: {error}") from None


def _exchanger(config: Config | None) -> Exchanger:
    """Whom the config's cluster credentials authenticate as (asked of each cluster with a
    SelfSubjectReview), else deploy/base's service account."""
    if config is None:
        return Exchanger.deployed()
    from exchanger.kube.client import ClusterCredentials, KubernetesClient

    users: set[str] = set()
    for cluster in config.clusters:
        credentials = ClusterCredentials(
            kubeconfig=cluster.kubeconfig, context=cluster.context,
            token_file=cluster.token_file, client_cert_file=cluster.client_cert_file,
            client_key_file=cluster.client_key_file)
        if credentials == ClusterCredentials():
            continue
        try:
            client = KubernetesClient(server=cluster.server, ca_file=cluster.ca_file,
                                      credentials=credentials)
            try:
                users.add(client.identify().user)
            finally:
                client.close()
        except (KubegateError, OSError) as error:
            print(f"{PROG}: cluster {cluster.name}: cannot tell who the exchanger is "
                  f"({getattr(error, 'detail', '') or error}); assuming deploy/base's "
                  "service account", file=sys.stderr)
    return Exchanger(users=frozenset(users)) if users else Exchanger.deployed()
