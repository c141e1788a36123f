"""bench/ must not rot: `bench/run --smoke` runs every benchmark's plumbing with a handful of
iterations (against the real control plane for benchmarks 3 and 5) and must write
results.json and bench.png with every benchmark's entries. It asserts that the outputs were
produced, never that a number was reached: a missed target is a result, not a failure.

It runs `bench/run` the way a user does from a fresh clone: in a virtual environment of its
own (no system site-packages, so nothing of the test environment, pytest included, is
there), which `bench/run` itself fills with kubegate and its `bench` extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures_kube import require_binaries

REPO = Path(__file__).resolve().parents[2]
# benchmark -> how many rows it reports at least (1: throughput and CPU at 3 concurrencies,
# p99; 2: RS256 and ES256, uncached and cached; 3: two paths and one comparison; ...)
ROWS = {"1": 7, "2": 4, "3": 3, "4": 1, "5": 3, "6": 3, "7": 3, "8": 3, "9": 6, "10": 2, "11": 3,
        "12": 2, "13": 5, "14": 3, "15": 10, "17": 4}
ROW_KEYS = {"bench", "name", "value", "unit", "baseline", "baseline_value", "ratio", "check",
            "target", "met", "note"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def control_plane_bin() -> Path:
    return require_binaries()


def fresh_venv(folder: Path) -> Path:
    """A virtual environment with nothing in it but pip, as a newcomer's machine has."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    assert not importable(python, "pytest")
    return python


def importable(python: Path, module: str, cwd: Path | None = None) -> bool:
    found = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                           timeout=60, cwd=cwd, check=False)
    return found.returncode == 0


def test_bench_run_smoke_writes_results_and_plot_for_every_benchmark(
    tmp_path: Path, control_plane_bin: Path,
) -> None:
    out = tmp_path / "out"
    python = fresh_venv(tmp_path / "venv")
    environ = {key: value for key, value in os.environ.items()
               if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    environ |= {"PYTHON": str(python), "KUBEBUILDER_ASSETS": str(control_plane_bin)}
    done = subprocess.run([str(REPO / "bench" / "run"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=environ,
                          check=False)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    # bench/run installed what it needs, and the test extra is not part of it
    assert "installing kubegate with its bench extra" in done.stderr
    assert not importable(python, "pytest")
    assert importable(python, "kubegate_bench", cwd=REPO / "bench")

    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "smoke"
    assert set(results["benchmarks"]) == set(ROWS)
    for key, bench in results["benchmarks"].items():
        assert not bench["error"], f"benchmark {key}: {bench['error']}"
        assert len(bench["rows"]) >= ROWS[key], (key, bench["rows"])
        for row in bench["rows"]:
            assert set(row) >= ROW_KEYS, row
            assert row["bench"] == key
    assert any(row["check"] != "info" for b in results["benchmarks"].values()
               for row in b["rows"])

    png = (out / "bench.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 20_000  # six panels, not an empty canvas

    assert "| # | measurement |" in done.stdout
    for key in ROWS:
        assert f"\n| {key} | " in done.stdout
