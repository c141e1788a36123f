"""The real-cluster setting of benchmarks 3 and 5: etcd and kube-apiserver (the test control
plane), namespace `web` with service account `deployer` (pods: get, list, watch), a pod
running as it, and one exchanger process with the tokenRequest backend that trusts both the
cluster's own service-account tokens and GitHub-shaped tokens.

Mappings: `pod-deploy` (a token of `deployer` in `web`: bound to the caller's pod, one
TokenRequest) and `github-deploy` (a GitHub deploy job: bound to a per-session Secret, so a
Secret is created and then a TokenRequest made).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kubernetes.client as k8s

from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.kube.port import ObjectRef
from kubegate_bench import exchangers
from kubegate_bench.cluster import Cluster, admin_api_client
from kubegate_bench.controlplane import (
    HOW_TO_GET_BINARIES,
    ControlPlane,
    cluster_entry,
    find_binaries,
)
from kubegate_bench.procs import free_port
from kubegate_bench.tokens import AUDIENCE, BenchIssuer, github_mapping

POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
GRANT = "{cluster: test, namespace: %s, serviceAccount: deployer, maxLifetime: 15m}"


class ControlPlaneMissing(RuntimeError):
    pass


@dataclass(kw_only=True)
class KubeEnv:
    plane: ControlPlane
    cluster: Cluster
    namespace: str
    pod: ObjectRef
    pod_token: str  # the pod's own service-account token (audience kubegate)
    github: BenchIssuer
    exchanger: exchangers.ExchangerProcess
    https_url: str  # the exchanger's RFC 8693 token endpoint (`httpListen`)

    def kube_client(self) -> KubernetesClient:
        """The exchanger's own Kubernetes client class, with the exchanger's credentials."""
        return KubernetesClient(
            server=self.plane.url, ca_file=self.plane.ca_path,
            credentials=ClusterCredentials(client_cert_file=self.plane.admin_cert_path,
                                           client_key_file=self.plane.admin_key_path))

    def stop(self) -> None:
        self.exchanger.stop()
        self.cluster.api.close()  # type: ignore[no-untyped-call]
        self.plane.stop()


def start(work: Path) -> KubeEnv:
    bin_dir = find_binaries()
    if bin_dir is None:
        raise ControlPlaneMissing(HOW_TO_GET_BINARIES)
    folder = work / "control-plane"
    folder.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(bin_dir, folder)
    plane.start()
    try:
        return _set_up(plane, work)
    except BaseException:
        plane.stop()
        raise


def _set_up(plane: ControlPlane, work: Path) -> KubeEnv:
    cluster = Cluster(plane=plane, api=admin_api_client(plane))
    cluster.rbac.create_cluster_role_binding({  # type: ignore[arg-type]  # anonymous discovery
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubegate-bench-oidc-discovery-anonymous"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:service-account-issuer-discovery"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "system:unauthenticated"}]})
    web = cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    pod: k8s.V1Pod = cluster.create_pipeline_pod(web, "build-1", "deployer")
    pod_token = cluster.request_token(web, "deployer", audiences=[AUDIENCE], seconds=3600,
                                      bound_to=pod).token
    assert pod.metadata is not None and pod.metadata.name and pod.metadata.uid and pod_token
    github = BenchIssuer()
    mappings = f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: pod-deploy}}
spec:
  issuer: cluster
  claims:
  - {{claim: [kubernetes.io, namespace], equals: {web}}}
  - {{claim: [kubernetes.io, serviceaccount, name], equals: deployer}}
  grant: {GRANT % web}
---
{github_mapping("github-deploy", GRANT % web)}"""
    state = work / "kube-exchanger"
    http_port = free_port()
    config = exchangers.write_config(
        state, mappings=mappings, rateLimit=exchangers.UNLIMITED,
        httpListen=f"127.0.0.1:{http_port}",
        issuers=[{"name": "cluster", "url": plane.issuer, "audiences": [AUDIENCE],
                  "algorithms": ["ES256"], "keys": {"kubernetes": {"cluster": "test"}}},
                 github.issuer_entry()],
        clusters=[cluster_entry(plane)])
    exchanger = exchangers.start("kube-exchanger", state, config)
    return KubeEnv(plane=plane, cluster=cluster, namespace=web,
                   pod=ObjectRef(kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid,
                                 namespace=web),
                   pod_token=pod_token, github=github, exchanger=exchanger,
                   https_url=f"https://127.0.0.1:{http_port}")
