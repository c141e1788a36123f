"""actionlint for the tests: the binary `tools/build-actionlint.sh` builds from the pinned Go
module (`ACTIONLINT_VERSION` in tools/versions.env) into the per-machine cache, or a ready one
named by `ACTIONLINT`. Without it a test skips saying how to get it, and fails under CI=true
(the same rule as the control plane's binaries)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.controlplane import versions
from tests.support.fixtures_kube import under_ci

HOW_TO_GET_ACTIONLINT = (
    "actionlint is missing: run tools/build-actionlint.sh (needs Go >= 1.26 and the Go module "
    "proxy; it builds github.com/rhysd/actionlint at the version pinned in tools/versions.env), "
    "or set ACTIONLINT to an actionlint binary"
)


def cached_actionlint() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    version = versions()["ACTIONLINT_VERSION"]
    return base / "kubegate" / "tools" / f"actionlint-{version}" / "actionlint"


def find_actionlint() -> Path | None:
    ready = os.environ.get("ACTIONLINT")
    binary = Path(ready) if ready else cached_actionlint()
    return binary if os.access(binary, os.X_OK) else None


def require_actionlint() -> Path:
    binary = find_actionlint()
    if binary is None:
        if under_ci():
            pytest.fail(f"CI=true and {HOW_TO_GET_ACTIONLINT}", pytrace=False)
        pytest.skip(HOW_TO_GET_ACTIONLINT)
    return binary


def run_actionlint(binary: Path, files: Sequence[Path], *, cwd: Path,
                   ) -> subprocess.CompletedProcess[str]:
    """actionlint on files, without its optional shellcheck and pyflakes passes: those run
    only where the tools happen to be installed, and a lint must say the same everywhere."""
    return subprocess.run(
        [str(binary), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, files)],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
