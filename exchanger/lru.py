"""A bounded, thread-safe LRU map by token digest, for the caches of verified tokens (the
verifier) and of sessions behind a credential (the gateway).

Rules of this module: keys are digests (bytes), never tokens; a size of 0 or less keeps
nothing; every method takes the one lock, so the map is safe to share between threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class DigestLru(Generic[V]):
    """At most `size` entries; `get` makes an entry the most recent, `put` drops the least
    recent beyond the size."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> V | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
            return entry

    def put(self, digest: bytes, entry: V) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)
