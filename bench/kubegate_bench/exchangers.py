"""Exchanger processes for the benchmarks: a config file written from a dict (the YAML format
of `exchanger.config`), started as `python -m kubegate serve --config FILE`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubegate_bench.procs import Process, free_port, start_exchanger_process

# Benchmarks 1 and 3 call with one identity far above the default 10/s: lift the per-identity
# limit there so that it measures the exchange, not the limiter's refusals.
UNLIMITED = {"perIdentity": {"rate": "1000000/s", "burst": 1000000}}


@dataclass(kw_only=True)
class ExchangerProcess:
    process: Process
    port: int
    state: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.state / "tls" / "server-ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.state / "tls" / "server.crt"

    @property
    def key_file(self) -> Path:
        return self.state / "tls" / "server.key"

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def stop(self) -> None:
        self.process.stop()


def self_issued_cluster() -> tuple[dict[str, Any], dict[str, Any]]:
    """A selfIssued `clusters[]` entry named bench, and the `selfIssued` section it needs."""
    port = free_port()
    return ({"name": "bench", "server": "https://127.0.0.1:6443", "backend": "selfIssued"},
            {"listen": f"127.0.0.1:{port}", "issuerUrl": f"https://127.0.0.1:{port}"})


def write_config(folder: Path, *, issuers: Sequence[dict[str, Any]],
                 clusters: Sequence[dict[str, Any]], mappings: str,
                 **extra: Any) -> Path:
    """stateDir `folder`, mappings in folder/mappings, TLS generated: the config file path."""
    (folder / "mappings").mkdir(parents=True, exist_ok=True)
    (folder / "mappings" / "mappings.yaml").write_text(mappings)
    document = {"listen": "127.0.0.1:0", "stateDir": str(folder), "reloadInterval": "2s",
                "issuers": list(issuers), "clusters": list(clusters), **extra}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def start(name: str, folder: Path, config: Path,
          argv: Sequence[str] | None = None) -> ExchangerProcess:
    process, port = start_exchanger_process(name, config, folder, argv)
    return ExchangerProcess(process=process, port=port, state=folder)
