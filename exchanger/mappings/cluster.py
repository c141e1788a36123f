"""Trust mappings from TrustMapping resources in one namespace of a cluster.

A watcher lists and watches the resources, validates each with the same code as a mapping
file (`validate.parse_mapping`), writes each one's `Accepted` condition through the status
subresource, and offers the accepted ones as mappings.

Rules of this module:
- stateless: everything comes from the API server, and every (re)connection lists again, so
  a restarted or an additional replica converges on the same answer;
- a status is written only when the `Accepted` condition the object shows differs from the
  verdict (status, reason, message, observedGeneration); the write is idempotent, so
  replicas agree instead of fighting, and our own write's watch event writes nothing;
- a resource whose name a mapping file already uses is refused (Invalid, naming the file):
  files win, so a resource can never shadow or replace a file mapping;
- only accepted resources are in effect; a refused one changes nothing else;
- `status` is not part of the document: it is removed before validation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from exchanger.mappings.model import TrustMapping
from exchanger.mappings.validate import parse_mapping, where_of
from kubegate.errors import Code, KubegateError
from kubegate.grammar import shown
from kubegate.kubeconfig import rfc3339
from kubegate.workers import BackgroundWorker

log = logging.getLogger(__name__)

ACCEPTED: Final = "Accepted"
REASON_ACCEPTED: Final = "Accepted"
REASON_INVALID: Final = "Invalid"
MAX_MESSAGE: Final = 4000
RETRY_SECONDS: Final = 2.0
MAX_RETRY_SECONDS: Final = 30.0


class WatchExpired(KubegateError):
    """The resourceVersion a watch started from is gone (410 Gone): list again."""

    code = Code.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__("WATCH_EXPIRED", message)


class TrustMappingApi(Protocol):
    """What the watcher needs from the cluster (`exchanger.kube.trustmappings`)."""

    namespace: str

    def list(self) -> tuple[list[dict[str, Any]], str]: ...

    def watch(self, resource_version: str) -> Iterable[tuple[str, dict[str, Any]]]:
        """Events until the server ends the watch; raises WatchExpired or KubegateError."""
        ...

    def stop_watch(self) -> None: ...

    def patch_status(self, name: str, status: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One resource's outcome: its mapping when accepted, else the problems as a message."""

    mapping: TrustMapping | None
    message: str

    @property
    def accepted(self) -> bool:
        return self.mapping is not None


def resource_source(namespace: str, name: str) -> str:
    """How a resource is named in problems and in `TrustMapping.source`."""
    return f"TrustMapping {namespace}/{name}"


def judge(obj: Mapping[str, Any], *, namespace: str, file_sources: Mapping[str, str],
          issuers: frozenset[str] | None, clusters: frozenset[str] | None) -> Verdict:
    """Validate one resource as the loader validates one document of a file."""
    source = resource_source(namespace, _name(obj))
    document = {key: value for key, value in obj.items() if key != "status"}
    mapping, problems = parse_mapping(document, source=source, issuers=issuers,
                                      clusters=clusters)
    if mapping is not None and mapping.name in file_sources:
        return Verdict(mapping=None, message=f"metadata.name: {mapping.name!r} is already "
                       f"a file mapping ({file_sources[mapping.name]}); files win")
    if mapping is None:
        prefix = f"{where_of(document, source)}: "
        message = "; ".join(problem.removeprefix(prefix).removeprefix(f"{source}: ")
                            for problem in problems)
        return Verdict(mapping=None, message=_truncate(message or "invalid"))
    return Verdict(mapping=mapping, message="in effect")


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def accepted_condition(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == ACCEPTED),
                None)


def status_change(obj: Mapping[str, Any], verdict: Verdict, now: float) -> dict[str, Any] | None:
    """The status to write so the object shows `verdict`, or None when it already does.
    lastTransitionTime moves only when the condition's status flips."""
    desired: dict[str, Any] = {
        "type": ACCEPTED,
        "status": "True" if verdict.accepted else "False",
        "reason": REASON_ACCEPTED if verdict.accepted else REASON_INVALID,
        "message": verdict.message,
        "observedGeneration": int(obj.get("metadata", {}).get("generation") or 0),
    }
    current = accepted_condition(obj)
    if current is not None and all(current.get(key) == value for key, value in desired.items()):
        return None
    same_status = current is not None and current.get("status") == desired["status"]
    previous_time = current.get("lastTransitionTime") if current is not None else None
    desired["lastTransitionTime"] = previous_time if same_status and previous_time \
        else rfc3339(now)
    others = [c for c in (obj.get("status") or {}).get("conditions") or []
              if isinstance(c, dict) and c.get("type") != ACCEPTED]
    return {"conditions": [*others, desired]}


class ClusterMappings:
    """The accepted TrustMapping resources of one namespace, kept current by a watcher
    thread; see the module docstring. `on_change` runs (outside any lock) whenever the
    accepted set changes; `file_sources` gives the file mappings' names and sources now."""

    def __init__(self, api: TrustMappingApi, *, known_issuers: set[str] | None = None,
                 known_clusters: set[str] | None = None,
                 file_sources: Callable[[], Mapping[str, str]] = dict,
                 on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self._api, self._clock, self._retry = api, clock, retry_seconds
        self._issuers = None if known_issuers is None else frozenset(known_issuers)
        self._clusters = None if known_clusters is None else frozenset(known_clusters)
        self._file_sources = file_sources
        self.on_change = on_change
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self._accepted: tuple[TrustMapping, ...] = ()
        self._synced = threading.Event()
        self._on_synced: list[Callable[[], None]] = []
        self._worker = BackgroundWorker("kubegate-trustmappings", self._run,
                                        on_stop=self._api.stop_watch)

    # -- what the exchanger reads -------------------------------------------------------

    def accepted(self) -> tuple[TrustMapping, ...]:
        return self._accepted

    @property
    def synced(self) -> bool:
        """Whether the resources have been listed at least once."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def when_synced(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the first list has been applied (now, if it has)."""
        with self._lock:
            if not self._synced.is_set():
                self._on_synced.append(callback)
                return
        callback()

    # -- what the watcher feeds in ------------------------------------------------------

    def replace(self, objects: Iterable[dict[str, Any]]) -> None:
        """A fresh list: exactly these resources exist."""
        with self._lock:
            self._objects = {_name(obj): obj for obj in objects}
        self.reconcile()
        with self._lock:
            callbacks, self._on_synced = self._on_synced, []
            self._synced.set()
        for callback in callbacks:
            callback()

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED; others are ignored)."""
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(_name(obj), None)
            else:
                self._objects[_name(obj)] = obj
        self.reconcile()

    def reconcile(self, *, notify: bool = True) -> None:
        """Judge every resource again, write the statuses that changed, and run
        `on_change` when the accepted set changed (unless `notify` is False)."""
        with self._lock:
            files = dict(self._file_sources())
            verdicts = {name: judge(obj, namespace=self._api.namespace, file_sources=files,
                                    issuers=self._issuers, clusters=self._clusters)
                        for name, obj in sorted(self._objects.items())}
            accepted = tuple(v.mapping for v in verdicts.values() if v.mapping is not None)
            changed, self._accepted = accepted != self._accepted, accepted
            now = self._clock()
            patches = {name: patch for name, obj in self._objects.items()
                       if (patch := status_change(obj, verdicts[name], now)) is not None}
        for name, status in sorted(patches.items()):
            self._write_status(name, status)
        if changed and notify and self.on_change is not None:
            self.on_change()

    def _write_status(self, name: str, status: dict[str, Any]) -> None:
        try:
            self._api.patch_status(name, status)
        except KubegateError as error:  # the next event or list tries again
            log.warning("TrustMapping %s/%s: status not written: %s", self._api.namespace,
                        name, error.detail or error.reason)

    # -- the watcher thread -------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._worker.stop(timeout)

    def close(self) -> None:
        """Release the API client (after stop)."""
        self._api.close()

    def _run(self, stopping: threading.Event) -> None:
        failures = 0
        while not stopping.is_set():
            try:
                self._list_and_watch(stopping)
                failures = 0
            except WatchExpired:
                log.info("TrustMappings in %s: watch expired; listing again",
                         self._api.namespace)
            except Exception as error:  # the watcher must outlive any failure
                if stopping.is_set():
                    return
                failures += 1
                _log_failure(self._api.namespace, error)
                stopping.wait(min(self._retry * 2 ** (failures - 1), MAX_RETRY_SECONDS))

    def _list_and_watch(self, stopping: threading.Event) -> None:
        objects, version = self._api.list()
        self.replace(objects)
        for kind, obj in self._api.watch(version):
            if stopping.is_set():
                return
            self.apply(kind, obj)


def _name(obj: Mapping[str, Any]) -> str:
    """metadata.name as the API server guarantees it (a DNS-1123 subdomain); a cut repr of
    anything else, so a hand-made object can still be named in a message."""
    metadata = obj.get("metadata")
    name = metadata.get("name", "") if isinstance(metadata, dict) else ""
    return name if isinstance(name, str) and len(name) <= 253 else shown(name)


def _log_failure(namespace: str, error: Exception) -> None:
    if isinstance(error, KubegateError):
        log.warning("TrustMappings in %s: %s; listing again shortly", namespace,
                    error.detail or error.reason)
    else:
        log.exception("TrustMappings in %s: unexpected failure; listing again shortly",
                      namespace)
