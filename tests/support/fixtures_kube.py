"""pytest fixtures for the real control plane: one etcd + kube-apiserver per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controlplane import HOW_TO_GET_BINARIES, ControlPlane, find_binaries
from tests.support.kube import Cluster, Kubectl, admin_api_client


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binaries() -> Path:
    """The control-plane binaries' folder; without them a test skips here and fails under CI."""
    bin_dir = find_binaries()
    if bin_dir is None:
        if under_ci():
            pytest.fail(f"CI=true and {HOW_TO_GET_BINARIES}", pytrace=False)
        pytest.skip(HOW_TO_GET_BINARIES)
    return bin_dir


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver on loopback; stopped at the end of the session, whatever happens.

    Without binaries the dependent tests skip on a laptop, and fail under CI.
    """
    plane = ControlPlane(require_binaries(), tmp_path_factory.mktemp("control-plane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane) -> Iterator[Cluster]:
    """Admin access to the control plane, with OIDC discovery readable anonymously."""
    api = admin_api_client(control_plane)
    cluster = Cluster(plane=control_plane, api=api)
    cluster.rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubegate-test-oidc-discovery-anonymous"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:service-account-issuer-discovery"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "system:unauthenticated"}],
    })
    try:
        yield cluster
    finally:
        api.close()


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace for one test (namespaces never finish deleting without a controller
    manager, so they are left in place: names are unique)."""
    return cluster.create_namespace()


@pytest.fixture
def kubectl_with_token(control_plane: ControlPlane, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A factory: kubectl_with_token(token) -> Kubectl bound to a kubeconfig holding token."""

    def make(token: str) -> Kubectl:
        return Kubectl.with_token(control_plane, token, tmp_path)

    return make
