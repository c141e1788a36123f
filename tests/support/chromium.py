"""Debian's Chromium, headless, for the tests of pages kubegate writes (the HTML audit report).

`scripts/test` installs it (`apt-get install chromium chromium-driver`, as root) when it is
missing; `CHROMIUM` names another binary. Without it a test skips saying how to get it, and
fails under CI=true (`require_chromium`). Browsers downloaded at run time are not an option:
the test machines cannot fetch them.

`Chromium` runs one headless browser per call with a fresh, empty profile and the flags this
machine needs: no sandbox (root), no GPU, and no background networking, component updates,
sync or QUIC (their connections are refused on a closed network, many at a time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["FLAGS", "Chromium", "find_chromium", "require_chromium"]

HOW_TO_GET_CHROMIUM = (
    "chromium is missing: run scripts/test as root (it installs Debian's chromium and "
    "chromium-driver with apt-get), or `apt-get install -y chromium chromium-driver`, or set "
    "CHROMIUM to a chromium binary"
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def find_chromium() -> Path | None:
    ready = os.environ.get("CHROMIUM")
    found = ready or shutil.which("chromium") or "/usr/bin/chromium"
    binary = Path(found)
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def require_chromium() -> Path:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {HOW_TO_GET_CHROMIUM}", pytrace=False)
        pytest.skip(HOW_TO_GET_CHROMIUM)
    return binary


class Chromium:
    """Headless runs of one binary; each call gets its own empty profile under `folder`."""

    def __init__(self, folder: Path, binary: Path | None = None, *,
                 timeout: float = 90.0) -> None:
        self.folder = folder
        self.binary = binary or require_chromium()
        self.timeout = timeout
        self._runs = 0

    def dump_dom(self, page: Path) -> str:
        """The DOM after the page loaded and rendered, serialized (`--dump-dom`)."""
        return self._run("--dump-dom", page.resolve().as_uri()).stdout

    def screenshot(self, page: Path, png: Path, *, width: int = 1280,
                   height: int = 2000) -> Path:
        """A PNG of the page at width x height (`--screenshot`)."""
        self._run(f"--screenshot={png}", f"--window-size={width},{height}",
                  page.resolve().as_uri())
        return png

    def _run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        self._runs += 1
        profile = self.folder / f"chromium-profile-{self._runs}"
        profile.mkdir(parents=True)
        done = subprocess.run(
            [str(self.binary), *FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True, text=True, timeout=self.timeout, check=False,
            env={**os.environ, "HOME": str(profile)})
        if done.returncode != 0:
            raise AssertionError(f"chromium exited {done.returncode}:\n{done.stderr[-4000:]}")
        return done
