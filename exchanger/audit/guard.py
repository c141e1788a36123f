"""The audit log as the exchanger uses it: an `AuditSink` that knows whether the log takes lines.

An append that fails starts an outage: `on_writable(False)` (the server reports the exchange
service NOT_SERVING), and every denial refused during it is counted (`on_unrecorded`), since
its line could not be written. The outage ends with the first line the log takes again, which
is always the `UNRECORDED_DENIALS` note (the count, and the time of the first and the last
failed line); then `on_writable(True)`. `probe()` tries to write that note; a worker calls it
at an interval, so a replica that nobody calls (a Service sends it nothing while it is not
ready) still finds out.

Rules of this module:
- no line is written to test the log: the only thing `probe()` writes is the note, a true
  record of the outage, and only during one;
- while the log takes lines, an append is the log's own (no lock here, so group commit works);
  during an outage appends go one at a time, and the note always comes before the next record;
- an allow whose line fails is not counted here: the exchange refuses it and its denial line,
  which then fails too, is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from exchanger.audit.chain import ChainHead
from exchanger.audit.log import AuditWriteError
from exchanger.audit.record import AuditRecord, unrecorded_denials_record

log = logging.getLogger(__name__)


class _Log(Protocol):
    """What the guard needs of an `AuditLog`."""

    @property
    def head(self) -> ChainHead: ...

    def append(self, record: AuditRecord) -> None: ...


@dataclass
class Outage:
    """Since when the log has failed, until its last failure, and the denials it missed."""

    since: datetime
    until: datetime
    denials: int = 0


class GuardedAudit:
    """An `AuditSink` over `audit_log` that reports its writability and counts what it missed.

    `on_writable(bool)` is called when an outage starts and when it ends; `on_unrecorded()`
    for each denial refused unrecorded; `on_head(seq)` after each line written."""

    def __init__(self, audit_log: _Log, *, clock: Callable[[], float],
                 on_writable: Callable[[bool], None],
                 on_unrecorded: Callable[[], None] = lambda: None,
                 on_head: Callable[[int], None] = lambda seq: None) -> None:
        self._log, self._clock = audit_log, clock
        self._on_writable, self._on_unrecorded, self._on_head = (
            on_writable, on_unrecorded, on_head)
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        on_head(audit_log.head.seq)

    @property
    def outage(self) -> Outage | None:
        """The outage in progress, None while the log takes lines."""
        return self._outage

    def append(self, record: AuditRecord) -> None:
        if self._outage is None:
            try:
                self._log.append(record)
            except AuditWriteError:
                with self._lock:
                    self._failed(record)
                raise
            self._on_head(self._log.head.seq)
            return
        with self._lock:
            try:
                self._end_outage()
                self._log.append(record)
            except AuditWriteError:
                self._failed(record)
                raise
        self._on_head(self._log.head.seq)

    def probe(self) -> bool:
        """During an outage, try to end it (write the note); whether the log takes lines."""
        if self._outage is None:
            return True
        with self._lock:
            try:
                self._end_outage()
            except AuditWriteError as error:
                log.debug("audit log still unwritable: %s", error.detail)
                return False
        self._on_head(self._log.head.seq)
        return True

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _failed(self, record: AuditRecord) -> None:
        """Under the lock: a line was not written."""
        now = self._now()
        if self._outage is None:
            self._outage = Outage(since=now, until=now)
            log.error("audit log unwritable: the exchange service reports NOT_SERVING and "
                      "refuses every exchange until a line is written again")
            self._on_writable(False)
        self._outage.until = now
        if record.decision == "deny":
            self._outage.denials += 1
            self._on_unrecorded()

    def _end_outage(self) -> None:
        """Under the lock: write the outage's note (AuditWriteError if it still fails)."""
        outage = self._outage
        if outage is None:
            return
        self._log.append(unrecorded_denials_record(
            now=self._now(), count=outage.denials, since=outage.since, until=outage.until))
        self._outage = None
        log.warning("audit log writable again: %d denials were refused unrecorded from %s to "
                    "%s (recorded in a note); the exchange service reports SERVING",
                    outage.denials, outage.since, outage.until)
        self._on_writable(True)
