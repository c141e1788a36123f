"""The current set of trust mappings, and reloading it while the exchanger serves.

Rules of this module:
- the current MappingSet is immutable and replaced by swapping one reference, so a match
  in flight keeps the set it started with and never sees half a reload;
- the first load has no good set to fall back on: its ConfigError propagates (startup fails);
- a later bad load keeps the last good set, logs a warning with every problem, and returns
  them in the ReloadResult; nothing is ever partly applied;
- a RecursionError or MemoryError while loading is a bad load like any other (a ConfigError
  with one problem), never a traceback in the watcher thread; the loader's bounds
  (`kubegate.yamlread`) keep it from happening, this is the backstop;
- the watcher polls a fingerprint of the folder's mapping files (names and contents), so it
  reloads on any edit, addition, removal or ConfigMap symlink swap, and not on a mere touch;
  a failure inside its thread is logged and the thread carries on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from exchanger.identity import Identity
from exchanger.mappings.load import load_folder, mapping_files
from exchanger.mappings.model import MappingSet, TrustMapping
from kubegate.errors import ConfigError
from kubegate.workers import BackgroundWorker, periodic

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReloadResult:
    """The outcome of one reload: `ok` with no problems (the new set is in effect), or the
    problems and the last good set kept. `mapping_count` is the size of the set in effect."""

    ok: bool
    problems: tuple[str, ...] = ()
    mapping_count: int

    def __post_init__(self) -> None:
        if self.ok == bool(self.problems):
            raise ValueError("a reload is ok exactly when it has no problems")


class Reloadable(Protocol):
    """What a watcher needs from a store."""

    def reload(self) -> ReloadResult: ...


class MappingStore:
    """Holds the current MappingSet; `loader` builds a new one or raises ConfigError."""

    def __init__(self, loader: Callable[[], MappingSet]) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._current = self._load()

    @property
    def current(self) -> MappingSet:
        return self._current

    def match(self, identity: Identity, role: str | None = None) -> TrustMapping:
        """MappingSet.match on the set in effect now."""
        return self._current.match(identity, role)

    def reload(self) -> ReloadResult:
        """Load again; swap in the new set, or keep the last good one and say why."""
        with self._lock:
            try:
                fresh = self._load()
            except ConfigError as error:
                kept = len(self._current)
                logger.warning("trust mappings not reloaded, keeping the last good set of %d: "
                               "%s", kept, "; ".join(error.problems))
                return ReloadResult(ok=False, problems=tuple(error.problems), mapping_count=kept)
            self._current = fresh
        logger.info("trust mappings reloaded: %d in effect", len(fresh))
        return ReloadResult(ok=True, mapping_count=len(fresh))

    def _load(self) -> MappingSet:
        try:
            return self._loader()
        except (RecursionError, MemoryError) as error:
            raise ConfigError([f"trust mappings not loaded: {type(error).__name__} (a "
                               "document too deep or too large)"]) from None


def fingerprint_folder(folder: Path) -> str:
    """A digest of the folder's mapping files (names and contents); an unreadable folder or
    file has a digest of its error, so becoming readable again also counts as a change."""
    digest = hashlib.sha256()
    try:
        for path in mapping_files(folder):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError as error:
        digest.update(f"unreadable: {error}".encode())
    return digest.hexdigest()


class FolderWatcher:
    """A daemon thread that reloads `store` when the folder's mapping files change.

    `baseline` is the fingerprint the store's current set was loaded from; take it with
    `fingerprint_folder` before the first load so a change in between is not missed (see
    `store_for_folder`). Without it, the folder's state at `start()` is the baseline."""

    def __init__(self, store: Reloadable, folder: str | Path, *, interval: float = 2.0,
                 on_reload: Callable[[ReloadResult], None] | None = None,
                 baseline: str | None = None) -> None:
        if interval <= 0:
            raise ValueError("the polling interval must be positive")
        self._store, self._folder, self._interval = store, Path(folder), interval
        self._on_reload = on_reload
        self._seen = baseline
        self._worker = BackgroundWorker("kubegate-mappings-watcher", periodic(
            self.poll, interval=interval, log=logger, what="trust mapping watcher: poll"))

    def poll(self) -> ReloadResult | None:
        """Check once: reload if the folder changed since the last check; None if not."""
        current = fingerprint_folder(self._folder)
        if current == self._seen:
            return None
        self._seen = current
        result = self._store.reload()
        if self._on_reload is not None:
            self._on_reload(result)
        return result

    def start(self) -> None:
        if self._seen is None:
            self._seen = fingerprint_folder(self._folder)
        self._worker.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop polling and wait for the thread (a poll in progress finishes first)."""
        self._worker.stop(timeout)

    @property
    def running(self) -> bool:
        return self._worker.running

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def store_for_folder(folder: str | Path, *, known_issuers: set[str] | None = None,
                     known_clusters: set[str] | None = None, interval: float = 2.0,
                     on_reload: Callable[[ReloadResult], None] | None = None,
                     ) -> tuple[MappingStore, FolderWatcher]:
    """A store loaded from `folder` (ConfigError if it is bad) and a watcher for it, not yet
    started; the watcher's baseline is taken before the load, so no change is missed."""
    baseline = fingerprint_folder(Path(folder))
    store = MappingStore(lambda: load_folder(folder, known_issuers, known_clusters))
    watcher = FolderWatcher(store, folder, interval=interval, on_reload=on_reload,
                            baseline=baseline)
    return store, watcher
