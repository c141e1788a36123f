"""What the benchmarks and the integration tests do to a cluster (it lives in bench/ for the
reason kubegate_bench.controlplane gives): namespaces, service accounts, RBAC, pipeline pods,
bound tokens, and kubectl runs with a given token.

All of it goes through the real kube-apiserver, with the admin client certificate for setup
and the token under test for the checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client as k8s

from kubegate_bench.controlplane import ControlPlane


def admin_api_client(plane: ControlPlane) -> k8s.ApiClient:
    config = k8s.Configuration()
    config.host = plane.url
    config.ssl_ca_cert = str(plane.ca_path)
    config.cert_file = str(plane.admin_cert_path)
    config.key_file = str(plane.admin_key_path)
    return k8s.ApiClient(config)


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """Admin access to the test cluster, with helpers to set up what a test needs."""

    plane: ControlPlane
    api: k8s.ApiClient

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def rbac(self) -> k8s.RbacAuthorizationV1Api:
        return k8s.RbacAuthorizationV1Api(self.api)

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        return name

    def create_service_account(self, namespace: str, name: str) -> k8s.V1ServiceAccount:
        return self.core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
        )

    def create_role(self, namespace: str, name: str, rules: Sequence[dict[str, Any]]) -> None:
        self.rbac.create_namespaced_role(namespace, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": list(rules),
        })

    def bind_role(
        self, namespace: str, role: str, *, service_account: tuple[str, str] | None = None,
        user: str | None = None, group: str | None = None, cluster_role: bool = False,
    ) -> None:
        """Bind a Role (or ClusterRole) in namespace to one subject."""
        if service_account is not None:
            sa_namespace, sa_name = service_account
            subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}
        elif user is not None:
            subject = {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
        elif group is not None:
            subject = {"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"}
        else:
            raise ValueError("bind_role needs one subject")
        self.rbac.create_namespaced_role_binding(namespace, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{role}-{uuid.uuid4().hex[:6]}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole" if cluster_role else "Role", "name": role},
            "subjects": [subject],
        })

    def create_pipeline_pod(self, namespace: str, name: str, service_account: str) -> k8s.V1Pod:
        """A Pod object running as service_account. Nothing schedules it; it only exists."""
        return self.core.create_namespaced_pod(namespace, k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, labels={"app": "pipeline"}),
            spec=k8s.V1PodSpec(
                service_account_name=service_account,
                automount_service_account_token=False,
                containers=[k8s.V1Container(name="job", image="example.invalid/job:1")],
            ),
        ))

    def create_secret(self, namespace: str, name: str) -> k8s.V1Secret:
        return self.core.create_namespaced_secret(
            namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name), type="Opaque")
        )

    def request_token(
        self, namespace: str, service_account: str, *, audiences: Sequence[str] = (),
        seconds: int = 600, bound_to: k8s.V1Pod | k8s.V1Secret | None = None,
    ) -> k8s.V1TokenRequestStatus:
        """TokenRequest, as the kubelet does for a projected volume when bound_to is a pod."""
        bound = None
        if bound_to is not None:
            bound = k8s.V1BoundObjectReference(
                api_version="v1", kind=type(bound_to).__name__.removeprefix("V1"),
                name=bound_to.metadata.name, uid=bound_to.metadata.uid,
            )
        request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(
            audiences=list(audiences) or [self.plane.issuer],
            expiration_seconds=seconds, bound_object_ref=bound,
        ))
        answer = self.core.create_namespaced_service_account_token(
            service_account, namespace, request
        )
        return answer.status

    def token_review(self, token: str, audiences: Sequence[str] = ()) -> k8s.V1TokenReviewStatus:
        review = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(
            token=token, audiences=list(audiences) or None
        ))
        return k8s.AuthenticationV1Api(self.api).create_token_review(review).status


@dataclass(frozen=True, kw_only=True)
class Kubectl:
    """The real kubectl, bound to a kubeconfig that holds one token (written 0600)."""

    binary: Path
    kubeconfig: Path

    @classmethod
    def with_token(cls, plane: ControlPlane, token: str, folder: Path) -> Kubectl:
        path = folder / f"kubeconfig-{uuid.uuid4().hex[:8]}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(plane.kubeconfig(user={"token": token}), handle)
        return cls(binary=plane.kubectl_path, kubeconfig=path)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def can_i(self, verb: str, resource: str, namespace: str) -> bool:
        result = self.run("auth", "can-i", verb, resource, "-n", namespace)
        answer = result.stdout.strip()
        if answer not in ("yes", "no"):
            raise AssertionError(f"kubectl auth can-i said {answer!r}: {result.stderr}")
        return answer == "yes"
