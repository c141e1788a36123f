"""`kubegate mappings validate|explain|diff`: check trust mappings before they go live, see
why a token would (not) be granted, and who a mapping (or a change of mappings) lets do
what. Nothing is issued; nothing is contacted but, for `explain --config` naming a cluster
mapping source, that cluster's API server (one list of its TrustMapping resources, as
`kubegate status` does), and for `--blast-radius` and `diff` the API server of
`--kubeconfig` (SelfSubjectRulesReviews, impersonating each granted identity).

    kubegate mappings validate [--config FILE] [--strict] PATH...
    kubegate mappings explain (--token FILE | --claims FILE) [--role NAME]
                              [--mappings PATH] [--config FILE] [--issuer NAME]
    kubegate mappings explain --blast-radius [--token FILE | --claims FILE] [...]
                              [--kubeconfig F] [--context C] [--cluster NAME]
                              [--format text|markdown|json]
    kubegate mappings diff OLD NEW [--kubeconfig F] [--context C] [--config FILE]
                              [--cluster NAME] [--format text|markdown|json] [--fail-on-gain]

validate prints one line per finding, `FILE: document N (name): LEVEL: message`, errors
being what the exchanger would refuse (the same loader) and conditions that can never match
their claim's known type (`exchanger/mappings/claimtypes.py`: the exchanger loads such a
mapping, which matches nothing, but validate refuses it), and warnings the lints
(`exchanger/mappings/lint.py`); exit 1 on any error (and, with --strict, any warning), else
0. With --config, issuer and cluster names are checked and the issuers' audiences linted.

Both take what `kubectl get trustmappings -o yaml` prints (a List, with status and server
metadata), and judge each document on its own: explain names the invalid ones it leaves out
and explains with the rest. explain exits 0 when the exchanger would grant, 1 when it would
deny, 2 on usage errors. explain --blast-radius shows, for each mapping (with a token or
claims, the one it would get), who it admits in words and what they may do on the cluster;
diff shows what each mapping's identities gain or lose from OLD to NEW (each a file or
folder); both exit 2 when the API server cannot answer, and diff exits 1 with
--fail-on-gain when anything is gained (`exchanger/blast/`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchanger.blast.diff import Radius, diff_radii, radii, radius_of
from exchanger.blast.render import FORMATS, render_changes, render_radii
from exchanger.blast.rights import RightsFinder
from exchanger.config import Config, load_config
from exchanger.mapping_sources import list_cluster_mappings
from exchanger.mappings.access_lints import access_errors, backend_of
from exchanger.mappings.explain import explain, identity_for, render
from exchanger.mappings.lint import check_types, lint_issuers, lint_mapping
from exchanger.mappings.load import (
    duplicate_names,
    each_valid,
    mapping_files,
    read_documents,
    read_text,
)
from exchanger.mappings.model import MappingSet, TrustMapping
from exchanger.mappings.validate import parse_mapping, where_of
from exchanger.verify.compact import parse_compact
from exchanger.verify.issuers import IssuerConfig
from kubegate import yamlread
from kubegate.errors import ConfigError, KubegateError, UsageError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
PROG = "kubegate mappings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", help="check mapping files: schema, names, and lints for risky trust",
        description="Check TrustMapping files (or folders of them) as the exchanger would, "
        "and warn about risky trust. One line per finding; exit 1 on errors.")
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                          help="a mapping file or a folder of *.yaml/*.yml files")
    validate.add_argument("--config", type=Path, metavar="FILE",
                          help="the exchanger's config: check issuer and cluster names, "
                          "lint audiences")
    validate.add_argument("--strict", action="store_true", help="warnings fail too")
    validate.set_defaults(action_handler=run_validate)
    explain_parser = actions.add_parser(
        "explain", help="dry run: which mapping a token or claim set would get, and why",
        description="Show, for each candidate mapping, every condition with pass or fail "
        "and the claim value seen, and what would be granted. Signatures are not verified; "
        "nothing is issued.")
    source = explain_parser.add_mutually_exclusive_group()
    source.add_argument("--token", metavar="FILE",
                        help="a subject token (JWT) file, - for standard input")
    source.add_argument("--claims", metavar="FILE",
                        help="a JSON or YAML claim set, - for standard input")
    explain_parser.add_argument("--role", metavar="NAME", default="",
                                help="the mapping the caller would ask for")
    explain_parser.add_argument("--mappings", type=Path, metavar="PATH",
                                help="a mapping file or folder (default: the config's)")
    explain_parser.add_argument("--config", type=Path, metavar="FILE",
                                help="the exchanger's config (issuers are found by iss)")
    explain_parser.add_argument("--issuer", metavar="NAME",
                                help="the configured issuer name (default: found by iss)")
    explain_parser.add_argument("--blast-radius", action="store_true",
                                help="who each mapping admits, in words, and what they may "
                                "do on the cluster (asks the API server of --kubeconfig)")
    _add_cluster_arguments(explain_parser)
    explain_parser.set_defaults(action_handler=run_explain)
    diff = actions.add_parser(
        "diff", help="who gains or loses which rights on the cluster from OLD to NEW",
        description="Compare two sets of trust mappings (files or folders): one line per "
        "right an identity gains or loses, as the API server answers it for the granted "
        "service account or user and groups. Nothing is issued.")
    diff.add_argument("old", type=Path, metavar="OLD", help="the mappings before")
    diff.add_argument("new", type=Path, metavar="NEW", help="the mappings after")
    diff.add_argument("--config", type=Path, metavar="FILE",
                      help="the exchanger's config: check issuer and cluster names")
    diff.add_argument("--fail-on-gain", action="store_true",
                      help="exit 1 when anything is gained (a CI gate)")
    _add_cluster_arguments(diff)
    diff.set_defaults(action_handler=run_diff)


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, metavar="FILE",
                        help="reaches the API server whose RBAC decides (default: "
                        "$KUBECONFIG or ~/.kube/config); its identity must be allowed to "
                        "impersonate users, groups and service accounts and to create "
                        "selfsubjectrulesreviews")
    parser.add_argument("--context", metavar="NAME", help="a context of --kubeconfig")
    parser.add_argument("--cluster", metavar="NAME",
                        help="only mappings that grant on this cluster (default: every "
                        "mapping, whatever its cluster, asked of the one API server)")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text (one line per right), markdown (a pull-request comment) "
                        "or json")


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.action_handler(args))
    except UsageError as error:
        print(f"{PROG} {args.action}: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:
        print(f"{PROG} {args.action}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KubegateError as error:  # the API server of --blast-radius and diff
        print(f"{PROG} {args.action}: {error.reason}: {error.detail or error.public_message}",
              file=sys.stderr)
        return EXIT_USAGE


def _config(path: Path | None) -> Config | None:
    if path is None:
        return None
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    return load_config(path, environ={})


# -- validate ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Finding:
    where: str
    level: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.level}: {self.message}"


def run_validate(args: argparse.Namespace) -> int:
    config = _config(args.config)
    findings, count = validate_paths(args.paths, config)
    if config is not None:
        findings += [Finding(where=f"{args.config}: issuer {issuer.name}", level="warning",
                             message=message) for issuer, message in lint_issuers(config.issuers)]
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.level == "error")
    warnings = len(findings) - errors
    print(f"{PROG} validate: {count} mapping document(s), {errors} error(s), "
          f"{warnings} warning(s)", file=sys.stderr)
    failed = errors > 0 or (args.strict and warnings > 0)
    return EXIT_FINDINGS if failed else EXIT_OK


def validate_paths(paths: Iterable[Path], config: Config | None) -> tuple[list[Finding], int]:
    """Every finding in the files under `paths`, and how many documents were read."""
    issuers = {i.name: i for i in config.issuers} if config is not None else {}
    known_issuers = frozenset(issuers) if config is not None else None
    known_clusters = (frozenset(c.name for c in config.clusters) if config is not None
                      else None)
    backends = {c.name: c.backend for c in config.clusters} if config is not None else None
    findings: list[Finding] = []
    mappings: list[TrustMapping] = []
    count = 0
    for path in _files(paths, findings):
        try:
            text = read_text(path)
        except (OSError, UnicodeDecodeError) as error:
            findings.append(Finding(where=str(path), level="error",
                                    message=f"cannot read: {getattr(error, 'strerror', error)}"))
            continue
        documents, problems = read_documents(text, str(path))
        for label, document in documents:
            count += 1
            source = f"{path}: {label}"
            where = where_of(document, source)
            mapping, found = parse_mapping(document, source=source, issuers=known_issuers,
                                           clusters=known_clusters)
            findings += [Finding(where=where, level="error",
                                 message=problem.removeprefix(f"{where}: "))
                         for problem in found]
            if mapping is not None:
                mappings.append(mapping)
                findings += _mapping_findings(mapping, where, issuers.get(mapping.issuer),
                                              backend_of(mapping, backends))
        findings += [_split(problem) for problem in problems]  # YAML: ends the file
    for problem in duplicate_names(mappings):
        findings.append(_split(problem))
    return findings, count


def _mapping_findings(mapping: TrustMapping, where: str, issuer: IssuerConfig | None,
                      backend: str | None = None) -> list[Finding]:
    """The findings of a mapping the exchanger accepts: errors for conditions that can never
    match their claim's known type and for approvals or windows a self-issued token would
    outlive (`backend`: its cluster's, when known), warnings for risky trust."""
    return [*(Finding(where=where, level="error", message=message)
              for message in [*check_types(mapping, issuer), *access_errors(mapping, backend)]),
            *(Finding(where=where, level="warning", message=message)
              for message in lint_mapping(mapping, issuer))]


def _files(paths: Iterable[Path], findings: list[Finding]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += mapping_files(path)
        elif path.is_file():
            files.append(path)
        else:
            findings.append(Finding(where=str(path), level="error", message="no such file"))
    return files


def _split(problem: str) -> Finding:
    """A loader problem `WHERE: rest` as a finding; WHERE ends at `)` or `document N`."""
    head, marker, rest = problem.partition("): ")
    if marker:
        return Finding(where=head + ")", level="error", message=rest)
    prefix, _, rest = problem.partition(": document ")
    number, _, message = rest.partition(": ")
    return Finding(where=f"{prefix}: document {number}", level="error", message=message)


# -- explain -------------------------------------------------------------------------------


def run_explain(args: argparse.Namespace) -> int:
    if args.token is None and args.claims is None:
        if args.blast_radius:
            return run_blast_radius(args)
        raise UsageError("give --token FILE or --claims FILE (or --blast-radius)")
    config = _config(args.config)
    header, claims = _claims_of(args)
    issuer_name, issuer_line = _issuer(args, config, claims)
    mappings, problems = _mappings(args, config)
    identity = identity_for(issuer_name, claims)
    lines = [*header, issuer_line, *_notes(config, issuer_name, claims),
             f"role: {args.role or 'none (exactly one mapping must match)'}",
             *(f"invalid, left out: {' '.join(problem.split())}" for problem in problems), ""]
    explanation = explain(mappings, identity, args.role or None, now=time.time())
    print("\n".join(lines + render(explanation)))
    if args.blast_radius and explanation.granted is not None:
        print()
        print(_radii(args, [explanation.granted]), end="")
    return EXIT_OK if explanation.granted is not None else EXIT_FINDINGS


def _read(name: str, flag: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return read_text(Path(name))
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{flag} {name}: cannot read: "
                         f"{getattr(error, 'strerror', None) or 'not UTF-8 text'}") from None


def _claims_of(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    if args.token is not None:
        try:
            parsed = parse_compact(_read(args.token, "--token").strip())
        except KubegateError as error:
            raise UsageError(f"--token {args.token}: not a JWT kubegate accepts: "
                             f"{error.detail or error.reason}") from None
        return ([f"token: {parsed.algorithm}, kid {parsed.key_id or '-'}; signature NOT "
                 "verified (explain shows matching only)"], dict(parsed.payload))
    text = _read(args.claims, "--claims")
    try:
        claims = yamlread.single_document(text, unique_keys=False)
    except yamlread.YamlError as error:
        raise UsageError(f"--claims {args.claims}: not JSON or YAML: {error}") from None
    if not isinstance(claims, dict):
        raise UsageError(f"--claims {args.claims}: expected an object of claims")
    return ["claims: from a file (no token, nothing verified)"], json.loads(
        json.dumps(claims, default=str))


def _issuer(args: argparse.Namespace, config: Config | None,
            claims: dict[str, Any]) -> tuple[str, str]:
    iss = claims.get("iss")
    if args.issuer:
        return args.issuer, f"issuer: {args.issuer} (given with --issuer; iss {iss!r})"
    if config is None:
        raise UsageError("cannot tell the issuer: give --config (issuers are found by the "
                         "token's iss) or --issuer NAME")
    for issuer in config.issuers:
        if issuer.url == iss:
            return issuer.name, f"issuer: {issuer.name} (found by iss {iss!r})"
    configured = ", ".join(f"{i.name}={i.url}" for i in config.issuers) or "none"
    raise UsageError(f"iss {iss!r} is not a configured issuer ({configured}): the exchanger "
                     "would refuse the token before matching")


def _notes(config: Config | None, issuer_name: str, claims: dict[str, Any]) -> list[str]:
    notes = []
    issuer = next((i for i in config.issuers if i.name == issuer_name), None) if config else None
    audiences = claims.get("aud")
    listed = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if issuer is not None:
        ok = any(a in issuer.audiences for a in listed)
        notes.append(f"audience: {listed} " + (f"includes one of {issuer.name}'s" if ok else
                     f"has none of {issuer.name}'s {list(issuer.audiences)}: a real exchange "
                     "would be refused"))
    expires = claims.get("exp")
    if isinstance(expires, int) and expires <= time.time():
        notes.append("expiry: the token has expired: a real exchange would be refused")
    return notes


def _mappings(args: argparse.Namespace,
              config: Config | None) -> tuple[MappingSet, list[str]]:
    """The mappings to explain against and the problems of those left out: --mappings, else
    the config's sources (its folder when files are on, its TrustMapping resources when it
    names a cluster, files winning as in the exchanger). One invalid document never hides
    the others."""
    if args.mappings is not None:
        mappings, problems = _from_path(args.mappings, config, "--mappings")
        return MappingSet(mappings=tuple(mappings)), problems
    if config is None:
        raise UsageError("give --mappings PATH (or --config, to use its mapping sources)")
    mappings, problems = [], []
    if config.mapping_files and (config.mappings.exists() or config.mapping_cluster is None):
        mappings, problems = _from_path(config.mappings, config, "mappings folder")
    if config.mapping_cluster is not None:
        files = {m.name: m.source for m in mappings}
        try:
            resources, refused = list_cluster_mappings(config, files)
        except KubegateError as error:
            raise UsageError(f"cannot list the TrustMappings of cluster "
                             f"{config.mapping_cluster.cluster!r}: "
                             f"{error.detail or error.reason}") from None
        mappings, problems = mappings + resources, problems + refused
    return MappingSet(mappings=tuple(mappings)), problems


def _from_path(path: Path, config: Config | None,
               flag: str) -> tuple[list[TrustMapping], list[str]]:
    issuers = {i.name for i in config.issuers} if config is not None else None
    clusters = {c.name for c in config.clusters} if config is not None else None
    if path.is_dir():
        files = mapping_files(path)
    elif path.is_file():
        files = [path]
    else:
        raise UsageError(f"{flag} {path}: no such file or folder")
    texts = [(str(file) if file == path else file.name, _read(str(file), flag))
             for file in files]
    return each_valid(texts, issuers, clusters)


# -- blast radius and diff -----------------------------------------------------------------


def run_blast_radius(args: argparse.Namespace) -> int:
    """Every mapping's radius (--mappings, else the config's sources)."""
    mappings, problems = _mappings(args, _config(args.config))
    for problem in problems:
        print(f"invalid, left out: {' '.join(problem.split())}", file=sys.stderr)
    print(_radii(args, mappings.mappings), end="")
    return EXIT_OK


def run_diff(args: argparse.Namespace) -> int:
    config = _config(args.config)
    old = _whole_set(args.old, config, "OLD")
    new = _whole_set(args.new, config, "NEW")
    with _finder(args) as finder:
        changes = diff_radii(_measured(old, args, finder), _measured(new, args, finder))
    print(render_changes(changes, args.format), end="")
    gained = any(change.gains for change in changes)
    return EXIT_FINDINGS if args.fail_on_gain and gained else EXIT_OK


def _whole_set(path: Path, config: Config | None, flag: str) -> list[TrustMapping]:
    """Every mapping of OLD or NEW; an invalid one is a usage error, since leaving it out
    would read as a removed mapping."""
    mappings, problems = _from_path(path, config, flag)
    if problems:
        raise UsageError(f"{flag} {path} holds invalid mappings (see `kubegate mappings "
                         f"validate`): {'; '.join(problems)}")
    return mappings


def _radii(args: argparse.Namespace, mappings: Iterable[TrustMapping]) -> str:
    with _finder(args) as finder:
        return render_radii(_measured(mappings, args, finder), args.format)


def _measured(mappings: Iterable[TrustMapping], args: argparse.Namespace,
              finder: RightsFinder) -> list[Radius]:
    chosen = [m for m in mappings if args.cluster is None or m.grant.cluster == args.cluster]
    return radii(chosen, lambda mapping: radius_of(mapping, finder))


@contextmanager
def _finder(args: argparse.Namespace) -> Iterator[RightsFinder]:
    """A RightsFinder over the API server of --kubeconfig (--context)."""
    import kubernetes.config

    from exchanger.blast.kube import ImpersonatingReviewer

    path = args.kubeconfig or Path(kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION).expanduser()
    reviewer = ImpersonatingReviewer.from_kubeconfig(path, args.context)
    try:
        yield RightsFinder(reviewer=reviewer)
    finally:
        reviewer.close()
