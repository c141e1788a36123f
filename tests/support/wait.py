"""Waiting for something that happens asynchronously (caches expiring, files reloading)."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """True as soon as check() is; False when it still is not after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
