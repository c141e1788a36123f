"""Which store keeps access requests and sessions, as the config's `access.store` says:
custom resources in a namespace of a configured cluster ("cluster": every replica sees the
same requests), or one SQLite file ("sqlite": the embedded default, shared by the processes
of one machine)."""

from __future__ import annotations

from collections.abc import Callable

import kubernetes.client as k8s

from exchanger.access.kube_store import KubeStores
from exchanger.access.ports import AccessStore, SessionStore
from exchanger.access.settings import AccessConfig
from exchanger.access.sqlite_store import SqliteStores

__all__ = ["open_stores"]


def open_stores(config: AccessConfig, api_client_for: Callable[[str], k8s.ApiClient],
                ) -> tuple[AccessStore, SessionStore]:
    """The access request store and the session store; `api_client_for(cluster name)` is how
    the exchanger reaches a configured cluster (`KubernetesClient.api_client`)."""
    if config.store == "cluster":
        if config.cluster is None:
            raise ValueError("access.store is cluster without a cluster: build_config checks it")
        kube = KubeStores(api_client_for(config.cluster.cluster), config.cluster.namespace)
        return kube.requests, kube.sessions
    if config.sqlite_file is None:
        raise ValueError("access.sqliteFile is unset: build_config fills it")
    sqlite = SqliteStores(config.sqlite_file)
    return sqlite.requests, sqlite.sessions
