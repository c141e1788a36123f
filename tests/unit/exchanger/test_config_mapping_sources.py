"""`mappingSources` and `healthListen` in the exchanger's config: files by default, a
cluster source naming a configured tokenRequest cluster, every problem reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchanger.config import ClusterMappingsConfig, Config, build_config
from kubegate.errors import ConfigError

CLUSTERS = [
    {"name": "prod", "server": "https://10.0.0.1:6443", "caFile": "ca.crt",
     "credentials": {"tokenFile": "token"}},
    {"name": "dev", "server": "https://10.0.0.2:6443", "backend": "selfIssued"},
]


def config(**top: Any) -> Config:
    document = {"listen": "127.0.0.1:0", "clusters": CLUSTERS,
                "selfIssued": {"listen": "127.0.0.1:8444"}, **top}
    return build_config(document, base=Path("/etc/kubegate"), environ={}, source="c.yaml")


def test_by_default_mappings_come_from_files_only_and_no_health_listener() -> None:
    loaded = config()
    assert (loaded.mapping_files, loaded.mapping_cluster, loaded.health_listen) == (
        True, None, "")


def test_a_cluster_source_defaults_to_the_kubegate_namespace() -> None:
    loaded = config(mappingSources={"files": False, "cluster": {"name": "prod"}},
                    healthListen="0.0.0.0:8081")
    assert loaded.mapping_files is False
    assert loaded.mapping_cluster == ClusterMappingsConfig(cluster="prod", namespace="kubegate")
    assert loaded.health_listen == "0.0.0.0:8081"


@pytest.mark.parametrize(("sources", "problem"), [
    ({"cluster": {"name": "nope"}}, "mappingSources.cluster.name: 'nope' is not a configured "
     "tokenRequest cluster"),
    ({"cluster": {"name": "dev"}}, "mappingSources.cluster.name: 'dev' is not a configured "
     "tokenRequest cluster"),
    ({"files": False}, "mappingSources: files: false needs a cluster source"),
    ({"files": "yes"}, "mappingSources.files: expected true or false"),
    ({"cluster": {"name": "prod", "watch": True}}, "mappingSources.cluster.watch: unknown field"),
])
def test_bad_sources_are_reported_with_their_field(sources: dict[str, Any],
                                                   problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(mappingSources=sources)
    assert f"c.yaml: {problem}" in raised.value.problems[0]
