"""pytest fixtures that run a real exchanger (gRPC on loopback, TLS from a generated CA)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchanger.config import Config, build_config
from exchanger.server import RunningExchanger, start_exchanger
from kubegate.client.rpc import ExchangeClient
from tests.support.controlplane import ControlPlane, free_port
from tests.support.controlplane import cluster_entry as cluster_entry  # its old home


@dataclass
class TestExchanger:
    """A running exchanger with what a test needs to talk to it and read its audit log."""

    __test__ = False

    running: RunningExchanger
    config: Config

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, **options: Any) -> ExchangeClient:
        return ExchangeClient(self.target, ca_file=self.running.ca_file, **options)

    def audit_lines(self) -> list[dict[str, Any]]:
        text = self.config.audit_log.read_text() if self.config.audit_log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def decisions(self) -> list[dict[str, Any]]:
        return [line for line in self.audit_lines() if "decision" in line]


def write_mappings(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mappings.yaml").write_text(text)


StartExchanger = Callable[..., TestExchanger]


@pytest.fixture
def start_test_exchanger(tmp_path: Path) -> Iterator[StartExchanger]:
    """A factory: start_test_exchanger(issuers=[...], clusters=[...], mappings=YAML, ...).

    `listen` (one of the extra fields) defaults to a free port; give a fixed one to restart an
    exchanger on the same address (`start_exchanger(test_exchanger.config)`)."""
    started: list[RunningExchanger] = []

    def start(*, issuers: list[dict[str, Any]], clusters: list[dict[str, Any]],
              mappings: str, self_issued: dict[str, Any] | None = None,
              clock: Callable[[], float] = time.time, **extra: Any) -> TestExchanger:
        """extra: more top-level config fields (e.g. metricsListen)."""
        state = tmp_path / f"exchanger-{len(started)}"
        write_mappings(state / "mappings", mappings)
        document: dict[str, Any] = {
            "listen": "127.0.0.1:0", "stateDir": str(state), "reloadInterval": "1s",
            "issuers": issuers, "clusters": clusters,
        }
        if self_issued is not None:
            document["selfIssued"] = self_issued
        document.update(extra)
        config = build_config(document, base=state, environ={}, source="test")
        running = start_exchanger(config, clock=clock)
        started.append(running)
        return TestExchanger(running=running, config=config)

    yield start
    for running in started:
        running.stop(grace=0)


def self_issued_entry() -> dict[str, Any]:
    port = free_port()
    return {"listen": f"127.0.0.1:{port}", "issuerUrl": f"https://127.0.0.1:{port}"}


SELF_ISSUED_AUTHENTICATION = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: {url}
    audiences: [kubernetes]
    certificateAuthority: {ca}
  claimValidationRules:
  - expression: "has(claims.jti)"
    message: "kubegate tokens carry a jti"
  claimMappings:
    username: {{claim: sub, prefix: ""}}
    groups: {{claim: groups, prefix: ""}}
  userValidationRules:
  - expression: "!user.username.startsWith('system:')"
    message: "kubegate users may not use the system: prefix"
"""


def trust_self_issued(plane: ControlPlane, exchanger: TestExchanger) -> None:
    """Make the API server trust the exchanger's self-issued tokens (structured
    AuthenticationConfiguration: username from `sub`, groups from `groups`, a `jti` required,
    no `system:` user); the API server reloads it within seconds."""
    self_issued = exchanger.config.self_issued
    assert self_issued is not None and self_issued.tls.generated_ca_file is not None
    plane.set_authentication_config(SELF_ISSUED_AUTHENTICATION.format(
        url=self_issued.issuer_url,
        ca=json.dumps(self_issued.tls.generated_ca_file.read_text())))
