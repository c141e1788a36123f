"""The `kubegate` command line: help, version, and usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubegate import __version__
from kubegate.cli import main


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"kubegate {__version__}"


def test_help_lists_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "usage: kubegate" in capsys.readouterr().out


def test_unknown_subcommand_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "usage: kubegate" in error
    assert "no-such-command" in error


def test_console_script_runs_as_a_module() -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "kubegate", "--version"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0
    assert __version__ in result.stdout
