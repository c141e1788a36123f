"""The worker's side of `kubegate serve --workers N`: tell the parent what it serves, keep
it told about readiness, and stop when told to or when the parent is gone.

Messages are JSON lines on the worker's standard output (the parent reads them,
`supervisor`): `{"event": "started", "pid", "port", "ca_file", "discovery_port",
"http_public_url", "ready"}` once, then `{"event": "ready", "ready"}` on every change of the
exchange service's readiness. Logs go to standard error as usual; nothing else is written
to standard output.

Rules of this module:
- a worker whose parent is gone (killed with SIGKILL, so it could not stop its workers)
  stops by itself within `POLL_SECONDS`: a worker is never orphaned for long;
- a message holds ports, file paths and booleans only: never a token or a key.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, TextIO

from exchanger.server import RunningExchanger

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def _ready(running: RunningExchanger) -> bool:
    return running.readiness is not None and not running.readiness.unmet


def _send(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, separators=(",", ":")) + "\n")
    out.flush()


def started_message(running: RunningExchanger) -> dict[str, Any]:
    return {"event": "started", "pid": os.getpid(), "port": running.port,
            "ca_file": str(running.ca_file) if running.ca_file else "",
            "discovery_port": running.discovery_port,
            "http_public_url": running.http_public_url, "ready": _ready(running)}


def serve_as_worker(running: RunningExchanger, stopping: threading.Event, out: TextIO,
                    parent_pid: int) -> None:
    """Report to the parent until `stopping` is set or the parent is gone."""
    _send(out, started_message(running))
    ready = _ready(running)
    while not stopping.wait(POLL_SECONDS):
        if os.getppid() != parent_pid:
            log.warning("the parent process %d is gone: this worker stops", parent_pid)
            return
        now = _ready(running)
        if now != ready:
            ready = now
            try:
                _send(out, {"event": "ready", "ready": ready})
            except OSError:  # the parent closed its end: it is going away
                return
