"""`kubegate serve` with tracing configured wrongly stops at start with one message naming the
variable (exit 2, like any bad configuration), before it listens anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_an_unknown_traces_exporter_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "plaintext": True,
                                      "stateDir": str(tmp_path / "state")}))
    environ = {**os.environ, "OTEL_TRACES_EXPORTER": "zipkin"}
    done = subprocess.run([sys.executable, "-m", "kubegate", "serve", "--config", str(config),
                           "--log-format", "json"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert ("OTEL_TRACES_EXPORTER: kubegate exports to otlp or console (or none), not zipkin"
            in done.stderr)
