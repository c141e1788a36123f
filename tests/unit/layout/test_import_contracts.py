"""The layers written as import-linter contracts in pyproject.toml: they hold for this tree,
and a deliberate bad import in a copy of the tree breaks them (so the check in the test
command can fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("kubegate", "exchanger", "sidecar")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, not the installed tree
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=environment,
                          capture_output=True, text=True, timeout=120, check=False)


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(REPO / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(REPO / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def add_import(module: Path, line: str) -> None:
    with module.open("a") as file:
        file.write(f"\n{line}  # noqa: E402\n")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    return lint_imports(copy_tree(tmp_path_factory.mktemp("clean")))


def test_the_tree_keeps_every_contract(clean: subprocess.CompletedProcess[str]) -> None:
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 broken" in clean.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("exchanger/config.py", "import sidecar.keeper",
     "the exchanger never imports the sidecar or the commands"),
    ("sidecar/keeper.py", "from exchanger import server",
     "the sidecar never imports the exchanger or the commands"),
    ("kubegate/errors.py", "import kubegate.commands.exchange",
     "the shared package imports neither side nor the commands"),
    ("kubegate/socketapi.py", "import grpc",
     "kubectl's credential plugin stays light"),
    ("kubegate/http/headers.py", "import socket", "the HTTP engine is sans-IO"),
])
def test_a_bad_import_breaks_its_contract(
        tmp_path: Path, module: str, line: str, contract: str,
        clean: subprocess.CompletedProcess[str]) -> None:
    tree = copy_tree(tmp_path)
    add_import(tree / module, line)
    result = lint_imports(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
