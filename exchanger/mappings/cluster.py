"""Trust mappings from TrustMapping resources in one namespace of a cluster.

An informer thread lists and watches the resources, validates each with the same code as a
mapping file (`validate.parse_mapping`) and offers the accepted ones as mappings; a writer
thread writes each one's `Accepted` condition through the status subresource. client-go's
informer and work queue are the model.

Rules of this module:
- stateless: everything comes from the API server, and every (re)connection lists again, so
  a restarted or an additional replica converges on the same answer;
- an event costs O(1): it judges only the object it names, updates the cache and the
  accepted set for that name, and queues that name; a spec change or a deletion is in the
  accepted set before, and whatever happens to, any status write; `on_change` (the matcher's
  rebuild) runs on a publisher thread that coalesces a burst of changes into one rebuild;
- the accepted set is ready (`synced`) as soon as the first list is judged, never after the
  statuses are written;
- the cache keeps objects without `metadata.managedFields` (memory: 10,000 resources);
- the writer takes names from a queue that holds each once (a burst of events about one
  object is one check), paces writes with a token bucket, and writes only when the
  `Accepted` condition the newest cached copy shows differs from the verdict (status,
  reason, message, observedGeneration; lastTransitionTime moves only when status flips);
- a write carries the resourceVersion it was computed from; a 409 Conflict reads the object
  again and retries a bounded number of times; the server's answer becomes the cached copy,
  so our own write's watch event is recognised (same resourceVersion) and writes nothing:
  at most one write per resource and verdict, none when idle; replicas agree instead of
  fighting;
- each resource is judged by `verdict.judge` (files win over resources of the same name);
  only accepted resources are in effect; a refused one changes nothing else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from exchanger.mappings.model import TrustMapping
from exchanger.mappings.verdict import Verdict, judge, object_name, status_change
from exchanger.mappings.writequeue import TokenBucket, WorkQueue, WriteLimit
from kubegate.errors import Code, KubegateError, PreconditionError
from kubegate.workers import BackgroundWorker, run_once

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 2.0
MAX_RETRY_SECONDS: Final = 30.0
MAX_CONFLICTS: Final = 3
"""How often one status write is made again from a fresh read after a 409 Conflict."""
STATUS_WRITE_LIMIT: Final = WriteLimit(rate=50.0, burst=100)
"""Status writes per second and at once, per exchanger (client-go's default is 10/100)."""


class WatchExpired(KubegateError):
    """The resourceVersion a watch started from is gone (410 Gone): list again."""

    code = Code.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__("WATCH_EXPIRED", message)


class TrustMappingApi(Protocol):
    """What the informer and the writer need from the cluster
    (`exchanger.kube.trustmappings`)."""

    namespace: str

    def list(self) -> tuple[list[dict[str, Any]], str]: ...

    def watch(self, resource_version: str) -> Iterable[tuple[str, dict[str, Any]]]:
        """Events until the server ends the watch; raises WatchExpired or KubegateError."""
        ...

    def stop_watch(self) -> None: ...

    def get(self, name: str) -> dict[str, Any]: ...

    def patch_status(self, name: str, status: dict[str, Any],
                     resource_version: str) -> dict[str, Any]:
        """Write `status` if the object is still at `resource_version` (else a
        PreconditionError CONFLICT; gone: OBJECT_NOT_FOUND); the object as written."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class _Entry:
    """One resource as last seen (event, list, or our own write's answer) and its verdict."""

    obj: dict[str, Any]
    verdict: Verdict


class ClusterMappings:
    """The accepted TrustMapping resources of one namespace, kept current by an informer
    thread, and their statuses written by a writer thread; see the module docstring.
    `on_change` runs (outside any lock) whenever the accepted set changes; `file_sources`
    gives the file mappings' names and sources now."""

    def __init__(self, api: TrustMappingApi, *, known_issuers: set[str] | None = None,
                 known_clusters: set[str] | None = None,
                 file_sources: Callable[[], Mapping[str, str]] = dict,
                 on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 retry_seconds: float = RETRY_SECONDS,
                 write_limit: WriteLimit = STATUS_WRITE_LIMIT,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._api, self._clock, self._retry = api, clock, retry_seconds
        self._issuers = None if known_issuers is None else frozenset(known_issuers)
        self._clusters = None if known_clusters is None else frozenset(known_clusters)
        self._file_sources = file_sources
        self.on_change = on_change
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._by_name: dict[str, TrustMapping] = {}
        self._accepted: tuple[TrustMapping, ...] | None = ()
        self._queue = WorkQueue()
        self._bucket = TokenBucket(write_limit, monotonic)
        self.writes = 0
        """Status writes sent (conflicts included): what the write path costs the server."""
        self._synced = threading.Event()
        self._on_synced: list[Callable[[], None]] = []
        self._state = SourceState(phase="listing", listed=False)
        self.on_state: Callable[[SourceState], None] | None = None
        """Runs (in the informer thread) whenever the phase or the last error changes."""
        self._informer = BackgroundWorker("kubegate-trustmappings", self._run,
                                          on_stop=self._api.stop_watch)
        self._writer = BackgroundWorker("kubegate-trustmapping-status", self._write_loop,
                                        on_stop=self._queue.wake)
        self._dirty = threading.Event()
        self._publisher = BackgroundWorker("kubegate-trustmapping-publish", self._publish_loop,
                                           on_stop=self._dirty.set)

    # -- what the exchanger reads -------------------------------------------------------

    def accepted(self) -> tuple[TrustMapping, ...]:
        """The accepted mappings by name; rebuilt only after a change."""
        with self._lock:
            if self._accepted is None:
                self._accepted = tuple(self._by_name[name] for name in sorted(self._by_name))
            return self._accepted

    @property
    def synced(self) -> bool:
        """Whether the resources have been listed at least once."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def when_synced(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the first list is in the accepted set (now, if it is)."""
        with self._lock:
            if not self._synced.is_set():
                self._on_synced.append(callback)
                return
        callback()

    @property
    def pending_writes(self) -> int:
        """Resources waiting for the writer to check (and maybe write) their status."""
        return len(self._queue)

    # -- what the informer feeds in -----------------------------------------------------

    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """A fresh list: exactly these resources exist. The accepted set changes at once;
        every resource is queued for the writer, which skips those already right."""
        files = dict(self._file_sources())
        entries = {object_name(slim): _Entry(obj=slim, verdict=self._judge(slim, files))
                   for slim in map(_slim, objects)}
        with self._lock:
            self._entries = entries
            changed = self._set_accepted({name: entry.verdict.mapping
                                          for name, entry in entries.items()
                                          if entry.verdict.mapping is not None})
        self._queue.add_all(sorted(entries))
        if changed and self.on_change is not None:
            self.on_change()
        with self._lock:
            callbacks, self._on_synced = self._on_synced, []
            self._synced.set()
        for callback in callbacks:
            callback()

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED; others are ignored): only the object
        it names is judged, and only its name is queued for the writer."""
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        name, obj = object_name(obj), _slim(obj)
        if kind == "DELETED":
            with self._lock:
                self._entries.pop(name, None)
                changed = self._by_name.pop(name, None) is not None
                self._accepted = None if changed else self._accepted
            self._queue.discard(name)
        else:
            with self._lock:
                cached = self._entries.get(name)
            if cached is not None and _version(cached.obj) == _version(obj) != "":
                return  # what we hold already (our own write's answer coming back)
            entry = _Entry(obj=obj, verdict=self._judge(obj, dict(self._file_sources())))
            with self._lock:
                self._entries[name] = entry
                changed = self._put_accepted(name, entry.verdict.mapping)
            self._queue.add(name)
        if changed:
            self._changed()

    def reconcile(self, *, notify: bool = True) -> None:
        """Judge every resource again (the file mappings changed), queue them all for the
        writer, and run `on_change` when the accepted set changed (unless `notify` is
        False)."""
        files = dict(self._file_sources())
        with self._lock:
            entries = dict(self._entries)
        judged = {name: _Entry(obj=entry.obj, verdict=self._judge(entry.obj, files))
                  for name, entry in entries.items()}
        with self._lock:
            for name, entry in judged.items():
                if name in self._entries:  # not deleted meanwhile
                    self._entries[name] = entry
            changed = self._set_accepted({name: entry.verdict.mapping
                                          for name, entry in self._entries.items()
                                          if entry.verdict.mapping is not None})
        self._queue.add_all(sorted(judged))
        if changed and notify:
            self._changed()

    def _changed(self) -> None:
        """Run `on_change`: through the publisher thread when it runs (a burst of events
        costs one rebuild per rebuild's time, not one per event), else at once."""
        if self._publisher.running:
            self._dirty.set()
        elif self.on_change is not None:
            self.on_change()

    def _publish_loop(self, stopping: threading.Event) -> None:
        while True:
            self._dirty.wait()
            if stopping.is_set():
                return
            self._dirty.clear()
            if self.on_change is not None:
                run_once(self.on_change, log=log, what="TrustMappings: publishing a change")

    def _judge(self, obj: Mapping[str, Any], files: Mapping[str, str]) -> Verdict:
        return judge(obj, namespace=self._api.namespace, file_sources=files,
                     issuers=self._issuers, clusters=self._clusters)

    def _set_accepted(self, by_name: dict[str, TrustMapping]) -> bool:
        """Under the lock: replace the accepted mappings; whether they changed."""
        changed = by_name != self._by_name
        if changed:
            self._by_name, self._accepted = by_name, None
        return changed

    def _put_accepted(self, name: str, mapping: TrustMapping | None) -> bool:
        """Under the lock: one resource's mapping in or out; whether that changed anything."""
        if self._by_name.get(name) == mapping:
            return False
        if mapping is None:
            del self._by_name[name]
        else:
            self._by_name[name] = mapping
        self._accepted = None
        return True

    # -- the status writer --------------------------------------------------------------

    def write_pending(self) -> int:
        """Check each queued resource once now, unpaced (tests and tools; the writer thread
        does this at its rate); the number of writes sent."""
        before = self.writes
        for _ in range(len(self._queue)):
            name = self._queue.get(0)
            if name is None:
                break
            self._write_or_requeue(name)
        return self.writes - before

    def _write_loop(self, stopping: threading.Event) -> None:
        failures = 0
        while not stopping.is_set():
            wait = self._bucket.wait_seconds()
            if wait > 0:
                stopping.wait(wait)
                continue
            name = self._queue.get(1.0)
            if name is None:
                continue
            if self._write_or_requeue(name):
                failures = 0
            else:
                failures += 1
                stopping.wait(min(self._retry * 2 ** (failures - 1), MAX_RETRY_SECONDS))

    def _write_or_requeue(self, name: str) -> bool:
        """Write one status if needed; on failure log it, queue the name again at the back,
        and return False."""
        try:
            self._write_status(name)
        except KubegateError as error:
            log.warning("TrustMapping %s/%s: status not written: %s", self._api.namespace,
                        name, error.detail or error.reason)
            self._queue.add(name)
            return False
        return True

    def _write_status(self, name: str) -> None:
        """Bring one resource's status to its verdict, from the newest copy we hold; on a
        conflict, from a fresh read, a bounded number of times."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            return  # deleted meanwhile
        obj, verdict = entry.obj, entry.verdict
        for attempt in range(1 + MAX_CONFLICTS):
            change = status_change(obj, verdict, self._clock())
            if change is None:
                return
            self._bucket.take()
            self.writes += 1
            try:
                answer = self._api.patch_status(name, change, _version(obj))
            except PreconditionError as error:
                if error.reason == "OBJECT_NOT_FOUND":
                    return  # deleted: its DELETED event is on its way
                if error.reason != "CONFLICT" or attempt == MAX_CONFLICTS:
                    raise
                obj = _slim(self._api.get(name))
                verdict = self._judge(obj, dict(self._file_sources()))
                continue
            self._remember(name, sent_from=_version(obj), answer=answer)
            return

    def _remember(self, name: str, *, sent_from: str, answer: dict[str, Any]) -> None:
        """Keep the server's answer as the cached copy, unless a newer event got there first
        (the write was made from an older copy than the cache holds now)."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and _version(entry.obj) == sent_from:
                self._entries[name] = _Entry(obj=_slim(answer), verdict=entry.verdict)

    # -- the threads ---------------------------------------------------------------------

    def start(self) -> None:
        self._publisher.start()
        self._writer.start()
        self._informer.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._informer.stop(timeout)
        self._publisher.stop(timeout)
        self._writer.stop(timeout)

    def close(self) -> None:
        """Release the API client (after stop)."""
        self._api.close()

    def state(self) -> SourceState:
        """Where the informer stands: listing, watching, or failing (with the last error);
        `listed` once a first list was judged (the last good set is served while failing)."""
        return self._state

    def _set_state(self, phase: str, error: str | None = None) -> None:
        state = self._state
        new = SourceState(
            phase=phase, listed=self._synced.is_set(),
            last_error=state.last_error if error is None else error,
            last_error_at=state.last_error_at if error is None else self._clock())
        if (new.phase, new.listed, new.last_error) == (state.phase, state.listed,
                                                       state.last_error):
            return
        self._state = new
        if self.on_state is not None:
            self.on_state(new)

    def _run(self, stopping: threading.Event) -> None:
        failures = 0
        while not stopping.is_set():
            try:
                self._list_and_watch(stopping)
                failures = 0
            except WatchExpired:
                log.info("TrustMappings in %s: watch expired; listing again",
                         self._api.namespace)
                self._set_state("listing")
            except Exception as error:  # the watcher must outlive any failure
                if stopping.is_set():
                    return
                failures += 1
                _log_failure(self._api.namespace, error)
                self._set_state("failing", _error_text(error))
                stopping.wait(min(self._retry * 2 ** (failures - 1), MAX_RETRY_SECONDS))

    def _list_and_watch(self, stopping: threading.Event) -> None:
        objects, version = self._api.list()
        self.replace(objects)
        del objects  # the cache holds slimmed copies; the list must not live on
        self._set_state("watching")
        for kind, obj in self._api.watch(version):
            if stopping.is_set():
                return
            self.apply(kind, obj)


@dataclass(frozen=True, kw_only=True)
class SourceState:
    """The TrustMapping source's health, for readiness, metrics and logs."""

    phase: str  # "listing" | "watching" | "failing"
    listed: bool  # a first list was judged: mappings are being served
    last_error: str = ""
    last_error_at: float | None = None


def _error_text(error: Exception) -> str:
    if isinstance(error, KubegateError):
        return " ".join((error.detail or error.reason).split())[:200]
    return type(error).__name__


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without `metadata.managedFields`, which nothing here reads and which is
    often most of its size (client-go informers drop it with a transform, too)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    kept = {key: value for key, value in metadata.items() if key != "managedFields"}
    return {**obj, "metadata": kept}


def _version(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    version = metadata.get("resourceVersion", "") if isinstance(metadata, dict) else ""
    return version if isinstance(version, str) else ""


def _log_failure(namespace: str, error: Exception) -> None:
    if isinstance(error, KubegateError):
        log.warning("TrustMappings in %s: %s; listing again shortly", namespace,
                    error.detail or error.reason)
    else:
        log.exception("TrustMappings in %s: unexpected failure; listing again shortly",
                      namespace)
