"""`kubegate audit verify FILE...` and `kubegate audit key`: check audit logs, against their
published checkpoints too, and print the key that verifies those checkpoints.

`verify` prints `FILE: ok, N lines` or `FILE: line K: problem` for each file (and for each
worker's file beside it, `audit.w<I>.log`, written by `serve --workers N`), and after it
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

`report` joins kubegate audit logs with Kubernetes audit logs by credential id (see
`kubegate.commands.audit_report`); `sink` receives the API server's audit webhook
(`kubegate.commands.audit_sink`).

`key` prints the verifier key (`name+id+base64`) of the checkpoint signing key, from a
config file or a key file; `--create` makes the key file (0600) when it does not exist.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exchanger.audit.chain import ChainReport, verify_chain
from exchanger.audit.record import TORN_TAIL_RECOVERED, explain_note
from exchanger.audit.workerfiles import with_worker_logs
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
    _add_report(actions)
    _add_sink(actions)


def _add_report(actions: Any) -> None:
    report = actions.add_parser(
        "report", help="join kubegate's audit logs with the cluster's audit log",
        description="Join kubegate audit logs (what was brokered) with Kubernetes audit logs "
        "(what the cluster saw) by credential id: per session who, why and what it did, "
        "privileged and refused actions marked, bypass findings, unreadable lines.")
    report.add_argument("--kubegate-log", action="extend", nargs="+", type=Path,
                        required=True, metavar="FILE", help="kubegate audit logs (every "
                        "replica's; rotated and gzipped files too)")
    report.add_argument("--cluster-log", action="extend", nargs="+", type=Path,
                        required=True, metavar="FILE", help="Kubernetes audit logs "
                        "(audit.k8s.io/v1 JSON lines; rotated sets oldest first)")
    report.add_argument("--since", metavar="TIME", help="RFC 3339, or a duration before "
                        "now (2h, 30m)")
    report.add_argument("--until", metavar="TIME", help="RFC 3339, or a duration before now")
    report.add_argument("--session", default="", metavar="ID", help="one session")
    report.add_argument("--identity", default="", metavar="WHO",
                        help="sessions of this caller (sub, email, or granted user)")
    report.add_argument("--mapping", default="", help="sessions of this mapping")
    report.add_argument("--run", default="", metavar="ID",
                        help="sessions of this CI run (GitHub run_id, GitLab pipeline_id)")
    report.add_argument("--allow-user", action="append", default=[], metavar="PATTERN",
                        help="a system identity whose actions are no bypass finding "
                        "(glob on the user, or group:GLOB); repeatable")
    report.add_argument("--exchanger-user", action="append", default=[], metavar="NAME",
                        help="the exchanger's own Kubernetes user; repeatable")
    report.add_argument("-o", "--output", choices=("text", "json", "html"), default="text")
    report.add_argument("--out", type=Path, metavar="FILE",
                        help="write the report here (default: standard output)")
    report.set_defaults(audit_handler=_run_report)


def _add_sink(actions: Any) -> None:
    if importlib.util.find_spec("kubegate.commands.audit_sink") is None:
        return  # the live sink is not part of this build
    audit_sink = importlib.import_module("kubegate.commands.audit_sink")
    sink = actions.add_parser(
        "sink", help="receive the API server's audit webhook and join it live",
        description="Receive the API server's audit webhook backend (EventList over HTTPS), "
        "join it with kubegate's sessions live, export bypass counts as metrics.")
    audit_sink.add_arguments(sink)
    sink.set_defaults(audit_handler=audit_sink.run)


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
    return max(_check(path) for path in _with_worker_files(args.files))


def _with_worker_files(files: list[str]) -> list[str]:
    """Each file as given, and the per-worker files of `serve --workers N` beside it
    (`audit.w0.log` ... for `audit.log`; one that exists only as worker files is replaced
    by them)."""
    given = {Path(name) for name in files}
    expanded: list[str] = []
    for name in files:
        for path in with_worker_logs([Path(name)]):
            if path == Path(name):
                expanded.append(name)
            elif path not in given and str(path) not in expanded:  # `state/*.log` names them
                expanded.append(str(path))
    return expanded


def _run_key(args: argparse.Namespace) -> int:
    from kubegate.commands.audit_checkpoints import print_verifier_key

    try:
        return print_verifier_key(args)
    except KubegateError as error:
        print(f"kubegate audit key: {error.detail or error.public_message}", file=sys.stderr)
        return EXIT_UNREADABLE if isinstance(error, UsageError) else EXIT_TAMPERED


def _run_report(args: argparse.Namespace) -> int:
    from kubegate.commands.audit_report import run_report

    return run_report(args)


def _usage(action: str, message: str) -> int:
    print(f"kubegate audit {action}: {message}", file=sys.stderr)
    return EXIT_UNREADABLE


def run(args: argparse.Namespace) -> int:
    return int(args.audit_handler(args))
