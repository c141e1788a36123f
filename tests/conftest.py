"""Test-suite wiring: fixture plugins, and the `integration` mark for tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.controlplane import find_binaries

pytest_plugins = [
    "tests.support.fixtures_kube",
    "tests.support.fixtures_oidc",
    "tests.support.fixtures_exchanger",
    "tests.support.dex",
    "tests.support.leakcheck",
]

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def pytest_report_header() -> list[str]:
    from tests.support.dex import find_dex  # a plugin module: imported once pytest rewrites it

    found, dex = find_binaries(), find_dex()
    missing = "not found (tests that need it skip here, and fail under CI=true)"
    return [f"control plane: {found or missing}", f"dex: {dex or missing}"]
