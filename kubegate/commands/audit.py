"""`kubegate audit verify FILE...` and `kubegate audit key`: check audit logs, against their
published checkpoints too, and print the key that verifies those checkpoints.

`verify` prints `FILE: ok, N lines` or `FILE: line K: problem` for each file, and after it
what each note line (a fact about the log, not a decision) records: an outage with its count
of denials refused unrecorded, or a torn last line moved aside at start, whose kept file is
checked beside the log (missing is said; bytes that no longer match the recorded sha256 fail
like a broken chain). Exit status: 0
when every file verifies, 1 when one does not, 2 when one cannot be read or the command was
called wrongly (checked files are still reported). A valid file proves no line was edited,
moved, inserted or deleted before its end. It cannot prove that trailing lines were not
deleted, nor that someone who could write the file did not rewrite it from some line on
with fresh hashes: that is what `--checkpoints` adds. With checkpoints (files, folders,
ConfigMap documents, or `--from-configmap` on a cluster) and `--key`, the file must extend
every signed checkpoint of its log: line <size> must have the checkpoint's hash.

`key` prints the verifier key (`name+id+base64`) of the checkpoint signing key, from a
config file or a key file; `--create` makes the key file (0600) when it does not exist.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exchanger.audit.chain import ChainReport, verify_chain
from exchanger.audit.record import TORN_TAIL_RECOVERED, explain_note
from kubegate.commands.auditexits import EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE
from kubegate.errors import KubegateError, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check that audit logs are intact hash chains",
        description="Check that each audit log is an intact hash chain and, with "
        "--checkpoints and --key, that it extends every published signed checkpoint.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE", help="an audit log file")
    verify.add_argument("--checkpoints", action="append", default=[], type=Path,
                        metavar="PATH", help="a checkpoint note, a folder of them, or a "
                        "ConfigMap document (kubectl get configmap -o yaml); repeatable")
    verify.add_argument("--from-configmap", metavar="NAMESPACE/NAME",
                        help="read checkpoints from this ConfigMap on a cluster")
    verify.add_argument("--kubeconfig", type=Path, help="for --from-configmap")
    verify.add_argument("--context", help="for --from-configmap: a kubeconfig context")
    verify.add_argument("--key", action="append", default=[], metavar="VERIFIER_KEY",
                        help="a verifier key (name+id+base64, from `kubegate audit key`); "
                        "repeat it to keep a rotated key's checkpoints verifiable")
    verify.add_argument("--origin", help="the origin (log) of FILE, when the checkpoints are "
                        "of several logs")
    verify.set_defaults(audit_handler=_run_verify)
    key = actions.add_parser(
        "key", help="print the verifier key of the audit checkpoint signing key",
        description="Print the verifier key of the audit checkpoint signing key, from "
        "--config (audit.checkpoints) or --file and --name.")
    key.add_argument("--config", type=Path, help="the exchanger's config file")
    key.add_argument("--file", type=Path, help="the signing key file (PEM)")
    key.add_argument("--name", help="the key name (default: kubegate.io/audit)")
    key.add_argument("--create", action="store_true",
                     help="create the key file (0600) when it does not exist")
    key.set_defaults(audit_handler=_run_key)


_NOTE_MARK = b'"decision":"note"'


def _verify_file(path: str) -> tuple[ChainReport, list[tuple[int, dict[str, Any]]]]:
    """The file's report, and its note lines (number, object) among those that verified."""
    notes: list[tuple[int, bytes]] = []

    def lines() -> Iterator[bytes]:
        with open(path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if _NOTE_MARK in line:
                    notes.append((number, line))
                yield line

    report = verify_chain(lines())
    return report, [(number, json.loads(line)) for number, line in notes
                    if number <= report.lines_checked]


def _kept_file(log: Path, note: dict[str, Any]) -> tuple[str, bool]:
    """How the torn tail a note names stands beside `log`, and whether it is intact."""
    facts = note.get("note") or {}
    kept = log.with_name(Path(str(facts.get("file", ""))).name)
    try:
        digest = hashlib.sha256(kept.read_bytes()).hexdigest()
    except OSError as error:
        return f"{kept}: not here ({error.strerror}): it may have been moved", True
    if digest != facts.get("sha256"):
        return f"{kept}: its sha256 is {digest}, not the one recorded", False
    return f"{kept}: present, sha256 matches", True


def _explain(path: str, notes: list[tuple[int, dict[str, Any]]]) -> bool:
    """Print what each note records; False when a kept torn tail no longer matches."""
    intact = True
    for number, note in notes:
        print(f"  line {number}: {explain_note(note)}")
        if note.get("reason") == TORN_TAIL_RECOVERED:
            text, ok = _kept_file(Path(path), note)
            print(f"    {text}")
            intact = intact and ok
    return intact


def _describe(path: str, report: ChainReport) -> str:
    if report.ok:
        noun = "line" if report.lines_checked == 1 else "lines"
        return f"{path}: ok, {report.lines_checked} {noun}"
    return f"{path}: line {report.first_bad_line}: {report.problem}"


def _check(path: str) -> int:
    """Report on one file; its exit status."""
    try:
        report, notes = _verify_file(path)
    except OSError as error:
        print(f"kubegate audit verify: {path}: cannot read: {error.strerror}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(_describe(path, report))
    intact = _explain(path, notes)
    return EXIT_OK if report.ok and intact else EXIT_TAMPERED


def _run_verify(args: argparse.Namespace) -> int:
    if args.checkpoints or args.from_configmap:
        from kubegate.commands.audit_checkpoints import verify_against_checkpoints

        return verify_against_checkpoints(args)
    if args.key or args.origin:
        return _usage("verify", "--key and --origin go with --checkpoints or --from-configmap")
    return max(_check(path) for path in args.files)


def _run_key(args: argparse.Namespace) -> int:
    from kubegate.commands.audit_checkpoints import print_verifier_key

    try:
        return print_verifier_key(args)
    except KubegateError as error:
        print(f"kubegate audit key: {error.detail or error.public_message}", file=sys.stderr)
        return EXIT_UNREADABLE if isinstance(error, UsageError) else EXIT_TAMPERED


def _usage(action: str, message: str) -> int:
    print(f"kubegate audit {action}: {message}", file=sys.stderr)
    return EXIT_UNREADABLE


def run(args: argparse.Namespace) -> int:
    return int(args.audit_handler(args))
