"""bench/ runs from a fresh clone with kubegate and its `bench` extra only (README
"Benchmarks"): no module of it imports the tests, and every library it imports is one that
installing `.[bench]` brings. The smoke test (tests/integration/test_bench_smoke.py) proves the
same by running `bench/run` in an environment of its own; this finds the culprit by name."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[3]
BENCH = REPO / "bench" / "kubegate_bench"
OURS = {"kubegate", "exchanger", "sidecar", "kubegate_bench"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def bench_imports() -> dict[str, set[str]]:
    return {str(path.relative_to(REPO)): imported_roots(path)
            for path in sorted(BENCH.rglob("*.py"))}


def installed_with(extra: str) -> set[str]:
    """The distributions `pip install .[extra]` brings: the declared ones and what they need
    (with the extras they were asked with), as installed here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [Requirement(line) for line in
               project["dependencies"] + project["optional-dependencies"][extra]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = normalise(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:  # declared but not installed here
            requires = []
        for line in requires:
            needed = Requirement(line)
            if needed.marker is None or any(
                    needed.marker.evaluate({"extra": wanted})
                    for wanted in requirement.extras or {""}):
                pending.append(needed)
    return seen


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_no_bench_module_imports_the_tests_or_pytest() -> None:
    offenders = {path: sorted(roots & {"tests", "pytest", "hypothesis"})
                 for path, roots in bench_imports().items()
                 if roots & {"tests", "pytest", "hypothesis"}}
    assert not offenders, offenders


def test_every_library_bench_imports_comes_with_the_bench_extra() -> None:
    allowed = installed_with("bench")
    distributions = importlib.metadata.packages_distributions()
    missing: dict[str, set[str]] = {}
    for path, roots in bench_imports().items():
        for root in roots - OURS - set(sys.stdlib_module_names) - {"__future__"}:
            names = {normalise(name) for name in distributions.get(root, [root])}
            if not names & allowed:
                missing.setdefault(path, set()).add(root)
    assert not missing, missing


def test_the_check_sees_an_import_of_the_tests(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from tests.support.controlplane import ControlPlane\nimport numpy\n")
    assert imported_roots(module) == {"tests", "numpy"}
