"""The checkpoint half of `kubegate audit`: `verify --checkpoints` and `key`. Loaded only when
one of them runs (it needs the Kubernetes client and YAML).

Exit statuses are `audit`'s: 0 proven, 1 not proven (a chain that breaks, a checkpoint the
file does not extend, a checkpoint whose signature does not verify, none to check against),
2 called wrongly or something could not be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exchanger.audit.checkpoint import CheckpointReport, Published, check_log
from exchanger.audit.note import NoteError, NoteSigner, NoteVerifier, parse_verifier_key
from exchanger.audit.published import Note, notes_in_config_map, notes_in_path, select
from exchanger.audit.settings import DEFAULT_KEY_NAME
from exchanger.audit.signing import load_key
from kubegate.commands.auditexits import EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE
from kubegate.errors import ConfigError, KubegateError, UsageError


def verify_against_checkpoints(args: argparse.Namespace) -> int:
    try:
        path, verifiers, notes = _inputs(args)
        published = select(notes, verifiers, args.origin)
    except UsageError as error:
        return _refuse("verify", str(error))
    except NoteError as error:
        print(f"{args.files[0]}: {error}")
        return EXIT_TAMPERED
    except KubegateError as error:  # the cluster could not be read
        return _refuse("verify", error.detail or error.public_message)
    except OSError as error:
        return _refuse("verify", f"{error.filename}: cannot read: {error.strerror}")
    try:
        with path.open("rb") as lines:
            report = check_log(lines, published)
    except OSError as error:
        return _refuse("verify", f"{path}: cannot read: {error.strerror}")
    print(_describe(path, report, published))
    return EXIT_OK if report.ok else EXIT_TAMPERED


def _inputs(args: argparse.Namespace) -> tuple[Path, list[NoteVerifier], list[Note]]:
    if len(args.files) != 1:
        raise UsageError("--checkpoints checks one FILE: the log its checkpoints are of")
    if not args.key:
        raise UsageError("checkpoints need --key VERIFIER_KEY (`kubegate audit key` prints it)")
    try:
        verifiers = [parse_verifier_key(text) for text in args.key]
    except NoteError as error:
        raise UsageError(f"--key: {error}") from None
    notes = [note for where in args.checkpoints for note in notes_in_path(where)]
    if args.from_configmap:
        notes += _from_cluster(args.from_configmap, args.kubeconfig, args.context)
    return Path(args.files[0]), verifiers, notes


def _from_cluster(reference: str, kubeconfig: Path | None, context: str | None) -> list[Note]:
    import kubernetes.config

    from exchanger.kube.client import ClusterCredentials, KubernetesClient

    namespace, _, name = reference.partition("/")
    if not namespace or not name or "/" in name:
        raise UsageError(f"--from-configmap: expected NAMESPACE/NAME, got {reference[:80]!r}")
    config_file = kubeconfig or Path(kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION).expanduser()
    try:
        client = KubernetesClient(server="", ca_file=None, credentials=ClusterCredentials(
            kubeconfig=config_file, context=context))
    except (kubernetes.config.ConfigException, OSError, ValueError) as error:
        raise UsageError(f"--kubeconfig {config_file}: {type(error).__name__}: "
                         f"{str(error)[:200]}") from None
    try:
        data = client.read_config_map(namespace, name)
    finally:
        client.close()
    where = f"configmap {namespace}/{name}"
    if data is None:
        raise NoteError(f"{where} does not exist on the cluster: nothing to prove the file "
                        "against")
    return notes_in_config_map(data, where)


def _describe(path: Path, report: CheckpointReport, published: list[Published]) -> str:
    lines = []
    chain = report.chain
    if not chain.ok:
        lines.append(f"{path}: line {chain.first_bad_line}: {chain.problem}")
    if report.problem:
        lines.append(f"{path}: {report.problem}")
    if report.ok:
        latest = max(item.checkpoint.size for item in published)
        noun = "checkpoint" if len(published) == 1 else "checkpoints"
        lines.append(f"{path}: ok, {chain.lines_checked} lines; extends {len(published)} "
                     f"signed {noun} of {published[0].checkpoint.origin} (the latest at line "
                     f"{latest})")
    return "\n".join(lines)


def print_verifier_key(args: argparse.Namespace) -> int:
    if args.config is not None:
        path, name = _key_from_config(args.config)
        if args.file is not None or args.name is not None:
            raise UsageError("give --config, or --file and --name, not both")
    elif args.file is not None:
        path, name = args.file, args.name or DEFAULT_KEY_NAME
    else:
        raise UsageError("give --config FILE (audit.checkpoints) or --file KEY")
    try:
        signer = NoteSigner(name, load_key(path, create=args.create))
    except NoteError as error:
        raise UsageError(f"--name: {error}") from None
    print(signer.verifier)
    return EXIT_OK


def _key_from_config(config_file: Path) -> tuple[Path, str]:
    from exchanger.config import load_config

    try:
        config = load_config(config_file)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if config.checkpoints is None:
        raise UsageError(f"{config_file}: no audit.checkpoints: checkpoints are off")
    return config.checkpoints.key_file, config.checkpoints.key_name


def _refuse(action: str, message: str) -> int:
    print(f"kubegate audit {action}: {message}", file=sys.stderr)
    return EXIT_UNREADABLE
