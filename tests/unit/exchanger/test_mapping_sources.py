"""Files and TrustMapping resources merged into one store: a resource named like a file mapping
is refused and left out, a folder reload judges the resources again, and the exchange service
reports NOT_SERVING until the resources have been listed once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from exchanger import mapping_sources
from exchanger.config import build_config
from exchanger.mapping_sources import build_mapping_sources
from exchanger.mappings.store import FolderWatcher, ReloadResult
from exchanger.mappings.verdict import accepted_condition
from tests.unit.exchanger.test_mappings_cluster import FakeApi, resource

FILE = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: github
  claims: [{{claim: repository_id, equals: "1"}}]
  grant: {{cluster: prod, namespace: web, serviceAccount: deployer}}
"""


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    fake = FakeApi([resource("web"), resource("api")])
    monkeypatch.setattr(mapping_sources, "_trust_mapping_client", lambda cluster, ns: fake)
    return fake


def config(folder: Path, **sources: Any) -> Any:
    return build_config({
        "listen": "127.0.0.1:0", "mappings": str(folder),
        "mappingSources": {"cluster": {"name": "prod"}, **sources},
        "issuers": [{"name": "github", "url": "https://token.actions.githubusercontent.com",
                     "audiences": ["kubegate"]}],
        "clusters": [{"name": "prod", "server": "https://10.0.0.1:6443", "caFile": "ca.crt",
                      "credentials": {"tokenFile": "token"}}],
    }, base=folder, environ={}, source="test")


def replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_files_win_over_resources_and_a_folder_reload_judges_them_again(
        tmp_path: Path, api: FakeApi) -> None:
    replace(tmp_path / "team.yaml", FILE.format(name="web"))
    reloads: list[ReloadResult] = []
    sources = build_mapping_sources(config(tmp_path), reloads.append)
    assert sources.cluster is not None
    sources.cluster.replace(api.list()[0])
    sources.cluster.write_pending()
    names = {m.name: m.source for m in sources.store.current.mappings}
    assert names == {"web": "team.yaml: document 1", "api": "TrustMapping kubegate/api"}
    refused = accepted_condition(api.objects["web"])
    assert refused is not None and refused["status"] == "False"
    assert "already a file mapping (team.yaml: document 1)" in refused["message"]

    replace(tmp_path / "team.yaml", FILE.format(name="web") + "---\n" + FILE.format(name="api"))
    watcher = sources.parts[0]
    assert isinstance(watcher, FolderWatcher)
    result = watcher.poll()
    assert result is not None and result.ok and result.mapping_count == 2
    assert {m.source for m in sources.store.current.mappings} == {"team.yaml: document 1",
                                                                  "team.yaml: document 2"}
    sources.cluster.write_pending()
    condition = accepted_condition(api.objects["api"])
    assert condition is not None and condition["status"] == "False"
    assert reloads[-1] == result


def test_without_files_only_accepted_resources_are_in_effect(tmp_path: Path,
                                                             api: FakeApi) -> None:
    api.objects["api"] = resource("api", issuer="gitlab")
    sources = build_mapping_sources(config(tmp_path, files=False), lambda result: None)
    assert sources.cluster is not None and sources.parts[0] is not None
    assert len(sources.parts) == 1  # no folder watcher
    sources.cluster.replace(api.list()[0])
    assert [m.name for m in sources.store.current.mappings] == ["web"]


class Health:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []

    def set(self, service: str, status: Any) -> None:
        self.statuses.append((service, status))


def test_the_exchange_service_is_not_serving_until_the_first_list(tmp_path: Path,
                                                                   api: FakeApi) -> None:
    sources = build_mapping_sources(config(tmp_path, files=False), lambda result: None)
    health = Health()
    sources.gate_readiness(health, "svc", "SERVING", "NOT_SERVING")
    assert health.statuses == [("svc", "NOT_SERVING")]
    assert sources.cluster is not None
    sources.cluster.replace(api.list()[0])
    assert health.statuses == [("svc", "NOT_SERVING"), ("svc", "SERVING")]
