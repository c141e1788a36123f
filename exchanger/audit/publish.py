"""The checkpointer: at an interval and at shutdown, sign the audit chain's head and publish it
to every store (`stores`), off the log's host.

Rules of this module:
- a round publishes the head to each store that does not have it yet; an empty log and an
  unchanged head publish nothing. A store that fails is logged and tried again next round;
  the others go on;
- before its first publication to a store, the checkpointer reads the checkpoint the store
  keeps for its origin (if it can) and publishes only a head that extends it: a log restarted
  on a file that was truncated or rewritten must not overwrite the evidence with a signed head
  of the new history (C2SP: a log never signs two inconsistent checkpoints). Such a store is
  refused loudly (`CheckpointConflictError`, logged as an error) every round until an operator
  has looked;
- rounds never overlap (the interval's and the one at shutdown share a lock), and never raise:
  a failure is a log line and an `observer` call, so stopping always goes on to close the log.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from exchanger.audit.chain import ChainHead, verify_chain
from exchanger.audit.checkpoint import Checkpoint, extends, read_unverified, sign_checkpoint
from exchanger.audit.note import NoteError, NoteSigner
from exchanger.audit.stores import CheckpointStore
from kubegate.errors import Code, KubegateError, MessageError
from kubegate.workers import BackgroundWorker, periodic, run_once

log = logging.getLogger(__name__)

Observer = Callable[[str, int], None]  # (result "ok" | "error", published seq)


class CheckpointConflictError(MessageError):
    """A store keeps a checkpoint of this log that the log does not extend."""

    code = Code.DATA_LOSS
    reason_name = "AUDIT_CHECKPOINT_CONFLICT"


def file_head_at(path: Path, size: int) -> ChainHead | None:
    """The head after line `size` of the audit log at `path`, if lines 1 to `size` verify."""
    if size == 0:
        return ChainHead()
    with path.open("rb") as lines:
        report = verify_chain(itertools.islice(lines, size))
    return report.head if report.ok and report.lines_checked == size else None


class Checkpointer:
    """Signs `head()` as a checkpoint of `origin` and publishes it to `stores`."""

    def __init__(self, *, origin: str, signer: NoteSigner, head: Callable[[], ChainHead],
                 head_at: Callable[[int], ChainHead | None], stores: Sequence[CheckpointStore],
                 observer: Observer | None = None) -> None:
        Checkpoint.of(origin, ChainHead())  # checks the origin
        self.origin, self._signer, self._head, self._head_at = origin, signer, head, head_at
        self._stores, self._observer = stores, observer
        self._published: dict[str, ChainHead] = {}
        self._lock = threading.Lock()

    def publish(self) -> None:
        """One round; failures are logged, never raised."""
        with self._lock:
            head = self._head()
            if head.seq == 0:
                return
            note = sign_checkpoint(Checkpoint.of(self.origin, head), self._signer)
            for store in self._stores:
                if self._published.get(store.name) != head:
                    self._publish_to(store, head, note)

    def _publish_to(self, store: CheckpointStore, head: ChainHead, note: str) -> None:
        try:
            if store.name not in self._published:
                self._check_consistent(store, head)
            store.publish(self.origin, note)
        except CheckpointConflictError as error:
            log.error("audit checkpoint not published: %s", error)
        except KubegateError as error:
            log.warning("audit checkpoint not published to %s: %s", store.name,
                        error.detail or error.public_message)
        except OSError as error:  # reading its own log back, to check the store's checkpoint
            log.warning("audit checkpoint not published to %s: cannot read the audit log: %s",
                        store.name, error.strerror)
        else:
            self._published[store.name] = head
            self._observe("ok", head)
            return
        self._observe("error", head)

    def _check_consistent(self, store: CheckpointStore, head: ChainHead) -> None:
        stored = store.latest(self.origin)
        if stored is None:
            return
        try:
            published = read_unverified(stored)
        except NoteError as error:
            raise CheckpointConflictError(
                f"{store.name} keeps something for {self.origin} that is not a checkpoint "
                f"({error}); look at it, remove it, and kubegate publishes again") from None
        if published.origin != self.origin:
            raise CheckpointConflictError(
                f"{store.name} keeps a checkpoint of {published.origin} under the key of "
                f"{self.origin}: give the logs origins that differ in more than punctuation")
        if not extends(head, published, self._head_at(published.size)):
            raise CheckpointConflictError(
                f"the audit log at seq {head.seq} does not extend the checkpoint {store.name} "
                f"keeps ({published}): lines were deleted or rewritten since it was published."
                " Not publishing over it; check the file with `kubegate audit verify FILE "
                "--checkpoints ...`")

    def _observe(self, result: str, head: ChainHead) -> None:
        if self._observer is not None:
            self._observer(result, head.seq)


class CheckpointWorker:
    """Runs the checkpointer at an interval (first at start) and once more when stopped."""

    def __init__(self, checkpointer: Checkpointer, *, interval: float) -> None:
        self._checkpointer = checkpointer
        self._worker = BackgroundWorker("audit-checkpoints", periodic(
            checkpointer.publish, interval=interval, log=log,
            what="publishing audit checkpoints", at_start=True))

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        """Stop the interval, then publish the final head (call it once nothing appends).
        Never raises: stopping must go on to close the log."""
        self._worker.stop()
        run_once(self._checkpointer.publish, log=log, what="publishing the last audit checkpoint")
