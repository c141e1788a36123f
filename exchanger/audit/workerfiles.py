"""The audit files of a pre-forked exchanger (`kubegate serve --workers N`): one hash chain
per worker process, each in a file of its own beside the configured `auditLog`.

Rules of this module:
- worker `i` of `audit.log` writes `audit.w<i>.log` (the index goes before the suffix, so
  tools that match `*.log` still find it); a single process (`--workers 1`) writes
  `audit.log` itself, byte for byte what it always did;
- every worker file is a complete chain of its own, from seq 1: `kubegate audit verify` and
  the audit report are given the configured path and find the worker files beside it
  (`with_worker_logs`), in index order;
- finding is by name only (`<stem>.w<digits><suffix>` in the same folder); nothing is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["worker_log", "worker_logs", "with_worker_logs"]


def worker_log(path: Path, index: int) -> Path:
    """The audit file worker `index` writes when the configured log is `path`."""
    if index < 0:
        raise ValueError("a worker index is never negative")
    return path.with_name(f"{path.stem}.w{index}{path.suffix}")


def worker_logs(path: Path) -> list[Path]:
    """The worker files beside `path` that exist, by worker index."""
    pattern = re.compile(rf"{re.escape(path.stem)}\.w(\d+){re.escape(path.suffix)}")
    try:
        names = [entry.name for entry in path.parent.iterdir()]
    except OSError:
        return []
    found = [(int(match.group(1)), name) for name in names
             if (match := pattern.fullmatch(name))]
    return [path.with_name(name) for _, name in sorted(found)]


def with_worker_logs(paths: Iterable[Path]) -> list[Path]:
    """Each path followed by its worker files; a path that does not exist but has worker
    files is replaced by them (a log only ever written by workers), else kept (so a missing
    file is still reported as missing)."""
    expanded: list[Path] = []
    for path in paths:
        workers = worker_logs(path)
        if path.exists() or not workers:
            expanded.append(path)
        expanded.extend(worker for worker in workers if worker not in expanded)
    return expanded
