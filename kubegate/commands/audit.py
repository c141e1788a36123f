"""`kubegate audit verify FILE...`: check the hash chain of audit logs.

Prints `FILE: ok, N lines` or `FILE: line K: problem` for each file. Exit status: 0 when every
file verifies, 1 when one does not, 2 when one cannot be read (checked files are still
reported). A valid file proves no line was edited, moved, inserted or deleted before its end;
compare its last line with the anchored head to detect deleted trailing lines.
"""

from __future__ import annotations

import argparse
import sys

from exchanger.audit.chain import ChainReport, verify_chain

EXIT_OK, EXIT_TAMPERED, EXIT_UNREADABLE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify", help="check that audit logs are intact hash chains",
        description="Check that each audit log is an intact hash chain.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE", help="an audit log file")
    verify.set_defaults(audit_handler=_run_verify)


def _verify_file(path: str) -> ChainReport:
    with open(path, "rb") as lines:
        return verify_chain(lines)


def _describe(path: str, report: ChainReport) -> str:
    if report.ok:
        noun = "line" if report.lines_checked == 1 else "lines"
        return f"{path}: ok, {report.lines_checked} {noun}"
    return f"{path}: line {report.first_bad_line}: {report.problem}"


def _check(path: str) -> int:
    """Report on one file; its exit status."""
    try:
        report = _verify_file(path)
    except OSError as error:
        print(f"kubegate audit verify: {path}: cannot read: {error.strerror}", file=sys.stderr)
        return EXIT_UNREADABLE
    print(_describe(path, report))
    return EXIT_OK if report.ok else EXIT_TAMPERED


def _run_verify(args: argparse.Namespace) -> int:
    return max(_check(path) for path in args.files)


def run(args: argparse.Namespace) -> int:
    return int(args.audit_handler(args))
