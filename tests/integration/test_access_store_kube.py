"""AccessRequest and KubegateSession custom resources keep the store contract
(tests/support/access_contract.py, the same functions the SQLite store passes) on a real
kube-apiserver: the CRDs of deploy/base applied with the admin client and Established, each
test in a fresh namespace. Also: the resources look as documented (labels, printer columns),
a stale write is the API server's 409, and a watch from an expired resourceVersion lists
again."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from exchanger.access.kube_store import KubeStores, label_value
from exchanger.access.model import State
from exchanger.access.ports import ConflictError
from exchanger.access.settings import AccessConfig, StoreLocation
from exchanger.access.stores import open_stores
from tests.support.access_contract import (
    ALICE,
    BOB,
    CAROL,
    CONTRACT,
    Contract,
    approve,
    new_request,
    new_session,
)
from tests.support.controlplane import ControlPlane
from tests.support.kube import Cluster, Kubectl, admin_api_client

ROOT = Path(__file__).resolve().parents[2]
CRDS = [ROOT / "deploy" / "base" / name
        for name in ("crd-accessrequest.yaml", "crd-kubegatesession.yaml")]


def admin(plane: ControlPlane) -> Kubectl:
    return Kubectl(binary=plane.kubectl_path, kubeconfig=plane.admin_kubeconfig_path)


@pytest.fixture(scope="module")
def crds(control_plane: ControlPlane, cluster: Cluster) -> Kubectl:
    kubectl = admin(control_plane)
    for path in CRDS:
        applied = kubectl.run("apply", "--server-side", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
    waited = kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                         "crd/accessrequests.kubegate.io", "crd/kubegatesessions.kubegate.io")
    assert waited.returncode == 0, waited.stderr
    return kubectl


@pytest.fixture
def stores(crds: Kubectl, cluster: Cluster) -> KubeStores:
    return KubeStores(cluster.api, cluster.create_namespace("access"))


@pytest.mark.parametrize("contract", CONTRACT, ids=[c.__name__ for c in CONTRACT])
def test_the_custom_resource_store_keeps_the_contract(contract: Contract,
                                                      stores: KubeStores) -> None:
    contract(stores.requests, stores.sessions)


def test_resources_carry_the_documented_labels_and_columns(stores: KubeStores,
                                                           crds: Kubectl) -> None:
    request = stores.requests.create(new_request(requester=CAROL, mapping="break-glass"))
    session = stores.sessions.create(new_session(access_request=request.id, cluster="prod"))
    found = json.loads(crds.run("get", "ar", request.id, "-n", stores.namespace, "-o",
                                "json").stdout)
    assert found["spec"] == request.to_dict()
    labels = found["metadata"]["labels"]
    assert labels["kubegate.io/mapping"] == "break-glass"
    assert labels["kubegate.io/state"] == "pending"
    assert len(labels["kubegate.io/requester"]) == 40  # a sha256 prefix, not the `sub`
    table = crds.run("get", "ar", "-n", stores.namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "STATE", "MAPPING", "REQUESTER", "AGE"]
    assert table.split("\n")[1].split()[:4] == [request.id, "pending", "break-glass", "Carol"]
    table = crds.run("get", "kgs", "-n", stores.namespace).stdout
    assert table.split("\n")[0].split() == [
        "NAME", "CLUSTER", "NAMESPACE", "ACTIVE", "CALLER", "AGE"]
    assert table.split("\n")[1].split()[:5] == [
        session.id, "prod", "web", "true", "alice@example.com"]
    assert label_value("a name/with spaces").startswith("h-")


def test_a_stale_write_is_refused_by_the_api_server(stores: KubeStores,
                                                    cluster: Cluster) -> None:
    """Two replicas (two clients) approving from the same read: one wins, and the other's
    retry from a fresh read keeps both approvals."""
    request = stores.requests.create(new_request())
    api = admin_api_client(cluster.plane)  # another replica's client
    try:
        other = KubeStores(api, stores.namespace)
        stale = other.requests.get(request.id)
        assert stale is not None
        stores.requests.replace(approve(request, BOB, "bob"))
        with pytest.raises(ConflictError):
            other.requests.replace(approve(stale, ALICE, "alice"))
        fresh = other.requests.get(request.id)
        assert fresh is not None
        done = other.requests.replace(approve(fresh, ALICE, "alice"))
    finally:
        api.close()
    assert [a.comment for a in done.approvals] == ["bob", "alice"]
    assert done.state is State.APPROVED


def test_a_watch_from_an_expired_version_lists_again(stores: KubeStores) -> None:
    """A resourceVersion the API server no longer keeps (410 Gone): each request once."""
    created = [stores.requests.create(new_request()) for _ in range(2)]
    stop, seen = threading.Event(), []
    for kind, value in stores.requests.watch("1", stop):
        seen.append((kind, value.id))
        if len(seen) == 2:
            stop.set()
    assert sorted(seen) == sorted(("modified", request.id) for request in created)


def test_open_stores_takes_the_configured_cluster_and_namespace(stores: KubeStores,
                                                                cluster: Cluster) -> None:
    asked = []

    def api_client_for(name: str) -> object:
        asked.append(name)
        return cluster.api

    config = AccessConfig(store="cluster", cluster=StoreLocation(cluster="in-cluster",
                                                                 namespace=stores.namespace))
    requests, sessions = open_stores(config, api_client_for)  # type: ignore[arg-type]
    request = stores.requests.create(new_request())
    assert requests.get(request.id) == request
    assert sessions.list() == []
    assert asked == ["in-cluster"]
    session = sessions.create(new_session())
    ended = sessions.replace(dataclasses.replace(session, ended_at=1))
    assert stores.sessions.list(active_only=True) == []
    assert stores.sessions.list() == [ended]
