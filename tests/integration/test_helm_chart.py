"""deploy/helm/kubegate against deploy/base and the real API server.

- The chart lints clean (also `--strict`), and its CRDs are deploy/base's files byte for byte.
- With default values and `--namespace kubegate` it renders deploy/base object for object:
  the same kinds, namespaces and names, and each object equal to the base's once what
  legitimately differs is set aside (Helm's labels and annotations, kustomize's hash suffix on
  the config ConfigMap, the config's comments): so the RBAC rules, the pod and container
  securityContexts, probes, resources, the PDB and the admission policy are the base's.
- Values render as documented (cert-manager, TLS Secret, replicas, resources, image, mapping
  sources, the audit log's volume, checkpoints, another namespace), and every config the
  chart writes is one `kubegate serve --config` loads (`exchanger.config.load_config`).
- Rendered into a fresh namespace and applied server-side to a real kube-apiserver, its
  service account may do exactly what the base's may (`kubectl auth can-i`), and the
  documented `helm install` works in a namespace that already holds the TLS Secret. No pod
  ever runs: the control plane has no nodes.
- The gateway is off by default; `gateway.enabled=true` adds deploy/base/gateway object for
  object (its config is the exchanger's plus `gateway:`, and loads), its values render as
  documented, and applied to the real API server its service account may do exactly what the
  base gateway's may.
"""

from __future__ import annotations

import copy
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exchanger.config import load_config
from kubegate import __version__
from kubegate.cli import SUBCOMMANDS
from tests.support.controlplane import ControlPlane, find_binaries
from tests.support.fixtures_kube import require_binaries
from tests.support.helm import Helm, require_helm
from tests.support.kube import Cluster, Kubectl

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
CHART = ROOT / "deploy" / "helm" / "kubegate"
Document = dict[str, Any]
Key = tuple[str, str, str]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binary=require_helm(), folder=tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def base() -> list[Document]:
    """deploy/base as kubectl renders it (`kubectl kustomize`, the pinned kubectl)."""
    kubectl = (find_binaries() or require_binaries()) / "kubectl"
    rendered = subprocess.run(  # noqa: S603 - the pinned kubectl on the repository's base
        [str(kubectl), "kustomize", str(BASE)], capture_output=True, text=True, timeout=60,
        check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


@pytest.fixture(scope="module")
def chart(helm: Helm) -> list[Document]:
    return helm.template(CHART)


GENERATED = ("kubegate-config", "kubegate-gateway-config")  # the base's configMapGenerators


def unhashed(name: str) -> str:
    """A generated ConfigMap's name without the content hash kustomize appends."""
    return next((generated for generated in GENERATED
                 if re.fullmatch(rf"{generated}-[a-z0-9]{{10}}", name)), name)


def key(document: Document) -> Key:
    metadata = document["metadata"]
    name = metadata["name"]
    if document["kind"] == "ConfigMap":
        name = unhashed(name)
    return document["kind"], metadata.get("namespace", ""), name


def by_key(documents: list[Document]) -> dict[Key, Document]:
    return {key(document): document for document in documents}


def comparable(document: Document) -> Document:
    """The object without what a chart and a kustomize base legitimately differ in."""
    copied = copy.deepcopy(document)
    copied["metadata"] = {k: v for k, v in copied["metadata"].items()
                          if k not in ("labels", "annotations")}
    copied["metadata"]["name"] = key(document)[2]
    if copied["kind"] == "Deployment":
        template = copied["spec"]["template"]
        template["metadata"] = {}
        for volume in template["spec"]["volumes"]:
            if volume["name"] == "config":
                volume["configMap"]["name"] = unhashed(volume["configMap"]["name"])
    if key(copied)[::2] in (("ConfigMap", name) for name in GENERATED):
        copied["data"] = {"config.yaml": yaml.safe_load(copied["data"]["config.yaml"])}
    return copied


def find(documents: list[Document], kind: str, name: str | None = None) -> Document:
    found = [d for d in documents
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the rendering"
    return found[0]


def kinds(documents: list[Document]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in documents}


def pod_spec(documents: list[Document]) -> Document:
    spec: Document = find(documents, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(documents: list[Document]) -> Document:
    (only,) = pod_spec(documents)["containers"]
    return dict(only)


def config_of(documents: list[Document]) -> Document:
    data: Document = yaml.safe_load(
        find(documents, "ConfigMap", "kubegate-config")["data"]["config.yaml"])
    return data


# -- the chart itself -------------------------------------------------------------------------


def test_the_chart_lints_clean_also_strictly(helm: Helm) -> None:
    for args in ([], ["--strict"], ["--strict", "--namespace", "kubegate"]):
        result = helm.run("lint", str(CHART), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout + result.stderr
    rendered = helm.run("lint", str(CHART), "--strict", "--namespace", "kubegate")
    assert "[WARNING]" not in rendered.stdout and "Fail" not in rendered.stderr, rendered


def test_it_runs_the_image_of_this_version_through_its_entry_point(
        chart: list[Document]) -> None:
    """What tests/unit/layout/test_packaging.py checks of deploy/'s plain manifests."""
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == __version__
    assert container(chart)["image"] == f"ghcr.io/kubegate/kubegate:{__version__}"
    assert "command" not in container(chart)
    assert container(chart)["args"][0] in SUBCOMMANDS


@pytest.mark.parametrize("name", ["crd-trustmapping.yaml", "crd-accessrequest.yaml",
                                  "crd-kubegatesession.yaml"])
def test_its_crds_are_the_base_files_byte_for_byte(name: str) -> None:
    assert sorted(path.name for path in (CHART / "crds").iterdir()) == sorted(
        path.name for path in BASE.glob("crd-*.yaml"))
    copied = CHART / "crds" / name
    assert copied.read_bytes() == (BASE / name).read_bytes(), (
        f"deploy/helm/kubegate/crds/{name} drifted from deploy/base: run scripts/gen-crd")


# -- default values: deploy/base --------------------------------------------------------------


def test_default_values_render_the_base_objects(base: list[Document],
                                                chart: list[Document]) -> None:
    assert sorted(by_key(chart)) == sorted(by_key(base))
    assert len(chart) == len(base)


def test_default_values_render_each_object_as_the_base_does(base: list[Document],
                                                            chart: list[Document]) -> None:
    rendered = by_key(chart)
    differing = [k for k, document in by_key(base).items()
                 if k in rendered and comparable(document) != comparable(rendered[k])]
    assert differing == [], "\n".join(
        f"{k}:\n base:  {comparable(by_key(base)[k])}\n chart: {comparable(rendered[k])}"
        for k in differing)


def test_every_object_keeps_the_base_labels(base: list[Document],
                                            chart: list[Document]) -> None:
    rendered = by_key(chart)
    for k, document in by_key(base).items():
        if document["kind"] == "CustomResourceDefinition":
            continue  # the chart's crds/ file is the base file, before kustomize's part-of
        labels = rendered[k]["metadata"]["labels"]
        assert document["metadata"]["labels"].items() <= labels.items(), k


def test_the_rbac_rules_are_the_base_rules(base: list[Document],
                                           chart: list[Document]) -> None:
    def rules(documents: list[Document]) -> dict[Key, Any]:
        return {key(d): d["rules"] for d in documents if d["kind"] in ("Role", "ClusterRole")}

    def bindings(documents: list[Document]) -> dict[Key, Any]:
        return {key(d): (d["roleRef"], d["subjects"]) for d in documents
                if d["kind"] in ("RoleBinding", "ClusterRoleBinding")}

    assert rules(chart) == rules(base)
    assert bindings(chart) == bindings(base)


def test_the_pod_and_container_security_contexts_are_the_base_ones(
        base: list[Document], chart: list[Document]) -> None:
    assert pod_spec(chart)["securityContext"] == pod_spec(base)["securityContext"]
    assert container(chart)["securityContext"] == container(base)["securityContext"]
    assert container(chart)["resources"] == container(base)["resources"]
    namespace = find(chart, "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_default_values_write_the_base_config(base: list[Document],
                                              chart: list[Document]) -> None:
    assert config_of(chart) == yaml.safe_load((BASE / "config.yaml").read_text())


# -- gateway.enabled: deploy/base/gateway ----------------------------------------------------

GATEWAY = BASE / "gateway"
GATEWAY_ON: dict[str, Any] = {"gateway": {"enabled": True}}


@pytest.fixture(scope="module")
def gateway_base() -> list[Document]:
    """deploy/base/gateway as kubectl renders it."""
    kubectl = (find_binaries() or require_binaries()) / "kubectl"
    rendered = subprocess.run(  # noqa: S603 - the pinned kubectl on the repository's base
        [str(kubectl), "kustomize", str(GATEWAY)], capture_output=True, text=True, timeout=60,
        check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def test_the_gateway_is_off_by_default_and_on_adds_the_base_gateway_objects(
        helm: Helm, base: list[Document], gateway_base: list[Document],
        chart: list[Document]) -> None:
    assert not any(d["metadata"]["name"].startswith("kubegate-gateway") for d in chart)
    enabled = by_key(helm.template(CHART, values=GATEWAY_ON))
    assert sorted(enabled) == sorted({**by_key(base), **by_key(gateway_base)})
    differing = [k for k, document in by_key(gateway_base).items()
                 if comparable(document) != comparable(enabled[k])]
    assert differing == [], "\n".join(
        f"{k}:\n base:  {comparable(by_key(gateway_base)[k])}\n chart: {comparable(enabled[k])}"
        for k in differing)
    for k, document in by_key(gateway_base).items():
        assert document["metadata"]["labels"].items() <= enabled[k]["metadata"][
            "labels"].items(), k


def gateway_config(documents: list[Document]) -> Document:
    data: Document = yaml.safe_load(
        find(documents, "ConfigMap", "kubegate-gateway-config")["data"]["config.yaml"])
    return data


def test_the_gateway_config_is_the_exchangers_plus_its_section_and_loads(
        helm: Helm, tmp_path: Path) -> None:
    for values in ({}, VARIATIONS["mappings elsewhere"], VARIATIONS["extra config"]):
        for namespace in ("kubegate", "platform"):
            documents = helm.template(CHART, namespace=namespace,
                                      values={**values, **GATEWAY_ON})
            both = gateway_config(documents)
            assert {k: v for k, v in both.items() if k != "gateway"} == config_of(documents)
            path = tmp_path / f"gateway-{uuid.uuid4().hex[:6]}.yaml"
            path.write_text(yaml.safe_dump(both))
            loaded = load_config(path, environ={"HOME": str(tmp_path)}).gateway
            assert loaded is not None
            assert (loaded.cluster, loaded.listen, loaded.max_connections) == (
                "in-cluster", "0.0.0.0:8443", 1000)
            assert loaded.recordings == Path("/var/lib/kubegate/recordings")


def test_gateway_values_render_as_documented(helm: Helm) -> None:
    documents = helm.template(CHART, namespace="platform", values={"gateway": {
        "enabled": True, "replicas": 3, "maxConnections": 250, "tls": {"secretName": "gw-tls"},
        "recordings": {"persistentVolumeClaim": "recordings"}, "metricsPort": 9191}})
    deployment = find(documents, "Deployment", "kubegate-gateway")
    assert deployment["spec"]["replicas"] == 3
    assert gateway_config(documents)["gateway"]["maxConnections"] == 250
    assert gateway_config(documents)["gateway"]["metricsListen"] == "0.0.0.0:9191"
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"] == {"secretName": "gw-tls"}
    assert volumes["recordings"]["persistentVolumeClaim"] == {"claimName": "recordings"}
    (gateway,) = spec["containers"]
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    assert mounts["recordings"] == {"name": "recordings", "subPathExpr": "$(POD_NAME)",
                                    "mountPath": "/var/lib/kubegate/recordings"}
    assert gateway["args"] == ["gateway", "--config", "/etc/kubegate/config.yaml"]
    assert gateway["args"][0] in SUBCOMMANDS
    assert {"name": "metrics", "containerPort": 9191} in gateway["ports"]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    cluster_scoped = {(d["kind"], d["metadata"]["name"]) for d in documents
                      if "namespace" not in d["metadata"]
                      and d["metadata"]["name"].startswith("kubegate-platform-gateway")}
    assert cluster_scoped == {("ClusterRole", "kubegate-platform-gateway-impersonate"),
                              ("ClusterRoleBinding", "kubegate-platform-gateway-impersonate"),
                              ("ClusterRoleBinding", "kubegate-platform-gateway-tokenreview")}
    tokenreview = find(documents, "ClusterRoleBinding", "kubegate-platform-gateway-tokenreview")
    assert tokenreview["roleRef"]["name"] == "kubegate-platform-exchanger-tokenreview"
    assert tokenreview["subjects"] == [{"kind": "ServiceAccount", "name": "kubegate-gateway",
                                        "namespace": "platform"}]


# -- values -----------------------------------------------------------------------------------


def loads(documents: list[Document], folder: Path) -> None:
    """The rendered config is one `kubegate serve --config` accepts."""
    path = folder / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(find(documents, "ConfigMap", "kubegate-config")["data"]["config.yaml"])
    load_config(path, environ={"HOME": str(folder)})


VARIATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "cert-manager": {"tls": {"certManager": {"issuerRef": {"name": "ca", "kind": "Issuer"}}}},
    "mapping files": {"mappingSources": {"files": True, "cluster": None}, "mappingFiles": {
        "web.yaml": yaml.safe_load((ROOT / "deploy/examples/trustmapping.yaml").read_text())}},
    "mappings elsewhere": {"mappingSources": {"cluster": {"name": "in-cluster",
                                                          "namespace": "mappings"}}},
    "audit log on a claim": {"auditLog": {"persistentVolumeClaim": "kubegate-audit"}},
    "no checkpoints": {"audit": {"checkpoints": {"enabled": False}}},
    "checkpoint witness": {"audit": {"checkpoints": {
        "keyName": "example.com/kubegate", "witness": {"url": "https://witness.example/k"}}}},
    "extra config": {"config": {"rateLimit": {"perIdentity": {"rate": "5/s", "burst": 20}},
                                "reloadInterval": "5s"}},
}


@pytest.mark.parametrize("values", VARIATIONS.values(), ids=VARIATIONS.keys())
def test_every_config_the_chart_writes_loads_in_kubegate_serve(
        helm: Helm, values: dict[str, Any], tmp_path: Path) -> None:
    loads(helm.template(CHART, values=values), tmp_path)
    loads(helm.template(CHART, namespace="platform", values=values), tmp_path)


def test_a_cert_manager_issuer_renders_a_certificate_for_the_service(helm: Helm) -> None:
    assert "Certificate" not in {kind for kind, _ in kinds(helm.template(CHART))}
    documents = helm.template(CHART, namespace="platform", values={"tls": {
        "secretName": "exchanger-tls", "certManager": {
            "issuerRef": {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
            "duration": "720h", "renewBefore": "240h"}}})
    certificate = find(documents, "Certificate", "kubegate")
    assert certificate["apiVersion"] == "cert-manager.io/v1"
    assert certificate["metadata"]["namespace"] == "platform"
    assert certificate["spec"] == {
        "secretName": "exchanger-tls",
        "issuerRef": {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "dnsNames": ["kubegate.platform.svc", "kubegate.platform.svc.cluster.local"],
        "duration": "720h", "renewBefore": "240h"}
    tls = next(v for v in pod_spec(documents)["volumes"] if v["name"] == "tls")
    assert tls["secret"] == {"secretName": "exchanger-tls"}


def test_an_existing_tls_secret_replicas_resources_and_image(helm: Helm) -> None:
    resources = {"requests": {"cpu": "50m", "memory": "96Mi"},
                 "limits": {"cpu": "1", "memory": "192Mi"}}
    documents = helm.template(CHART, values={
        "tls": {"secretName": "my-tls"}, "replicas": 3, "resources": resources,
        "image": {"repository": "registry.example/kubegate", "digest": "sha256:" + "a" * 64,
                  "pullPolicy": "Always"},
        "podDisruptionBudget": {"minAvailable": 2}})
    assert find(documents, "Deployment")["spec"]["replicas"] == 3
    assert find(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert container(documents)["resources"] == resources
    assert container(documents)["image"] == "registry.example/kubegate@sha256:" + "a" * 64
    assert container(documents)["imagePullPolicy"] == "Always"
    tls = next(v for v in pod_spec(documents)["volumes"] if v["name"] == "tls")
    assert tls["secret"] == {"secretName": "my-tls"}
    assert container(helm.template(CHART, values={"image": {"tag": "0.2.0"}}))["image"] == (
        "ghcr.io/kubegate/kubegate:0.2.0")


def test_a_cluster_mapping_source_elsewhere_moves_the_trustmapping_role(helm: Helm) -> None:
    documents = helm.template(CHART, values=VARIATIONS["mappings elsewhere"])
    assert config_of(documents)["mappingSources"] == {
        "files": False, "cluster": {"name": "in-cluster", "namespace": "mappings"}}
    for kind in ("Role", "RoleBinding"):
        role = find(documents, kind, "kubegate-exchanger-trustmappings")
        assert role["metadata"]["namespace"] == "mappings"
    binding = find(documents, "RoleBinding", "kubegate-exchanger-trustmappings")
    assert binding["subjects"][0]["namespace"] == "kubegate"
    # access requests and sessions stay in the release namespace, where the access Role is
    assert config_of(documents)["access"] == {
        "cluster": {"name": "in-cluster", "namespace": "kubegate"}}
    assert find(documents, "Role", "kubegate-exchanger-access")["metadata"]["namespace"] == (
        "kubegate")


def test_mapping_files_come_from_a_configmap_and_need_no_trustmapping_role(helm: Helm) -> None:
    documents = helm.template(CHART, values=VARIATIONS["mapping files"])
    assert config_of(documents)["mappingSources"] == {"files": True}
    assert config_of(documents)["mappings"] == "/etc/kubegate/mappings"
    files = find(documents, "ConfigMap", "kubegate-mappings")["data"]
    assert yaml.safe_load(files["web.yaml"]) == VARIATIONS["mapping files"]["mappingFiles"][
        "web.yaml"]
    assert ("Role", "kubegate-exchanger-trustmappings") not in kinds(documents)
    mounts = {m["name"]: m for m in container(documents)["volumeMounts"]}
    assert mounts["mappings"] == {"name": "mappings", "mountPath": "/etc/kubegate/mappings",
                                  "readOnly": True}


def test_the_audit_log_goes_to_one_folder_per_pod_on_a_claim(helm: Helm) -> None:
    documents = helm.template(CHART, values=VARIATIONS["audit log on a claim"])
    assert config_of(documents)["auditLog"] == "/var/log/kubegate/audit.log"
    volumes = {v["name"]: v for v in pod_spec(documents)["volumes"]}
    assert volumes["audit-log"]["persistentVolumeClaim"] == {"claimName": "kubegate-audit"}
    mounts = {m["name"]: m for m in container(documents)["volumeMounts"]}
    assert mounts["audit-log"]["subPathExpr"] == "$(POD_NAME)"
    assert container(documents)["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


def test_without_checkpoints_there_is_no_checkpoint_configmap_role_or_key(helm: Helm) -> None:
    documents = helm.template(CHART, values=VARIATIONS["no checkpoints"])
    assert "audit" not in config_of(documents)
    present = kinds(documents)
    assert ("ConfigMap", "kubegate-audit-checkpoints") not in present
    assert ("Role", "kubegate-exchanger-audit-checkpoints") not in present
    assert "audit-key" not in {v["name"] for v in pod_spec(documents)["volumes"]}


def test_another_namespace_gets_collision_safe_cluster_scoped_names(helm: Helm) -> None:
    documents = helm.template(CHART, namespace="platform")
    cluster_scoped = {(d["kind"], d["metadata"]["name"]) for d in documents
                      if "namespace" not in d["metadata"] and d["kind"] != "Namespace"}
    assert cluster_scoped == {
        ("CustomResourceDefinition", "trustmappings.kubegate.io"),
        ("CustomResourceDefinition", "accessrequests.kubegate.io"),
        ("CustomResourceDefinition", "kubegatesessions.kubegate.io"),
        ("ClusterRole", "kubegate-platform-exchanger-tokenreview"),
        ("ClusterRoleBinding", "kubegate-platform-exchanger-tokenreview"),
        ("ValidatingAdmissionPolicy", "kubegate-platform-exchanger-session-secrets-only"),
        ("ValidatingAdmissionPolicyBinding", "kubegate-platform-exchanger-session-secrets-only"),
    }
    policy = find(documents, "ValidatingAdmissionPolicy")
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        'request.userInfo.username == "system:serviceaccount:platform:kubegate-exchanger"')
    assert {d["metadata"].get("namespace") for d in documents
            if d["kind"] not in ("Namespace", "CustomResourceDefinition")} - {None} == {
        "platform"}


def test_it_refuses_to_take_over_the_default_namespace_or_config_it_sets(helm: Helm) -> None:
    default = helm.template_text(CHART, namespace="default")
    assert default.returncode != 0
    assert "namespace.create would take over namespace default" in default.stderr
    assert helm.template(CHART, namespace="default", values={"namespace": {"create": False}})
    clash = helm.template_text(CHART, values={"config": {"listen": "0.0.0.0:9443"}})
    assert clash.returncode != 0
    assert "config.listen is set by the chart" in clash.stderr


# -- on the real API server -------------------------------------------------------------------


def admin(plane: ControlPlane) -> Kubectl:
    return Kubectl(binary=plane.kubectl_path, kubeconfig=plane.admin_kubeconfig_path)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def applied(helm: Helm, control_plane: ControlPlane, cluster: Cluster) -> Iterator[str]:
    """The chart rendered for a fresh namespace and applied server-side (the CRD is the
    base's, so applying it again changes nothing); its namespace."""
    namespace = f"helm-{uuid.uuid4().hex[:8]}"
    rendered = helm.template_text(CHART, namespace=namespace)
    assert rendered.returncode == 0, rendered.stderr
    kubectl = admin(control_plane)
    applying = subprocess.run(  # noqa: S603 - the pinned kubectl, the admin kubeconfig
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "apply", "--server-side",
         "-f", "-"], input=rendered.stdout, capture_output=True, text=True, timeout=120,
        check=False)
    assert applying.returncode == 0, applying.stderr
    ok(kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                   "crd/trustmappings.kubegate.io"))
    yield namespace


_RULE = re.compile(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def rules_of(kubectl: Kubectl, user: str, namespace: str) -> set[tuple[str, str, str]]:
    """(resource, resource names, verbs) from `kubectl auth can-i --list --as user`."""
    listing = ok(kubectl.run("auth", "can-i", "--list", "-n", namespace, f"--as={user}"))
    return {(m.group(1), m.group(3), m.group(4))
            for line in listing.splitlines()[1:] if (m := _RULE.match(line))}


def can_i(kubectl: Kubectl, user: str, *request: str) -> bool:
    result = kubectl.run("auth", "can-i", *request, f"--as={user}")
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_the_rendered_chart_applies_and_makes_the_hardened_deployment(
        applied: str, control_plane: ControlPlane) -> None:
    kubectl = admin(control_plane)
    deployment = yaml.safe_load(ok(kubectl.run("get", "deployment", "kubegate-exchanger", "-n",
                                               applied, "-o", "yaml")))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    labels = yaml.safe_load(ok(kubectl.run("get", "namespace", applied, "-o", "yaml")))[
        "metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind, name in (("service", "kubegate"), ("poddisruptionbudget", "kubegate-exchanger"),
                       ("configmap", "kubegate-config"),
                       ("configmap", "kubegate-audit-checkpoints")):
        ok(kubectl.run("get", kind, name, "-n", applied))
    ok(kubectl.run("get", "validatingadmissionpolicy",
                   f"kubegate-{applied}-exchanger-session-secrets-only"))


def test_its_service_account_may_do_what_the_bases_may_and_nothing_more(
        applied: str, control_plane: ControlPlane) -> None:
    kubectl = admin(control_plane)
    ok(kubectl.run("apply", "--server-side", "-k", str(BASE)))  # as test_deploy.py does
    me = f"system:serviceaccount:{applied}:kubegate-exchanger"
    fresh = f"system:serviceaccount:{applied}:nobody"
    tokenreviews = ("tokenreviews.authentication.k8s.io", "", "create")
    access = "get list watch create update patch delete"
    own = {tokenreviews, ("trustmappings.kubegate.io", "", "get list watch"),
           ("trustmappings.kubegate.io/status", "", "patch"),
           ("configmaps", "kubegate-audit-checkpoints", "get patch"),
           ("accessrequests.kubegate.io", "", access),
           ("kubegatesessions.kubegate.io", "", access)}
    baseline = rules_of(kubectl, fresh, applied)
    assert rules_of(kubectl, me, applied) - baseline == own
    assert rules_of(kubectl, me, "default") - rules_of(kubectl, fresh, "default") == {
        tokenreviews}
    base_user = "system:serviceaccount:kubegate:kubegate-exchanger"
    base_baseline = rules_of(kubectl, "system:serviceaccount:kubegate:nobody", "kubegate")
    assert rules_of(kubectl, base_user, "kubegate") - base_baseline == own


def test_its_service_account_cannot_read_secrets_or_other_namespaces(
        applied: str, control_plane: ControlPlane) -> None:
    kubectl, me = admin(control_plane), f"system:serviceaccount:{applied}:kubegate-exchanger"
    assert can_i(kubectl, me, "watch", "trustmappings.kubegate.io", "-n", applied)
    assert can_i(kubectl, me, "patch", "configmaps/kubegate-audit-checkpoints", "-n", applied)
    refused = [
        ("list", "secrets", "--all-namespaces"), ("get", "secrets", "-n", applied),
        ("create", "secrets", "-n", applied), ("get", "secrets", "-n", "kubegate"),
        ("list", "trustmappings.kubegate.io", "--all-namespaces"),
        ("list", "trustmappings.kubegate.io", "-n", "kubegate"),
        ("update", "trustmappings.kubegate.io", "-n", applied),
        ("get", "configmaps/kubegate-config", "-n", applied),
        ("create", "configmaps", "-n", applied),
        ("patch", "configmaps/kubegate-audit-checkpoints", "-n", "kubegate"),
        ("create", "serviceaccounts/kubegate-exchanger", "--subresource=token", "-n", applied),
        ("create", "rolebindings", "-n", applied), ("*", "*"),
        ("list", "accessrequests.kubegate.io", "--all-namespaces"),
        ("get", "kubegatesessions.kubegate.io", "-n", "kubegate"),
    ]
    assert [request for request in refused if can_i(kubectl, me, *request)] == []


def test_the_gateways_service_account_may_do_what_the_base_gateways_may(
        helm: Helm, control_plane: ControlPlane) -> None:
    namespace = f"helm-gw-{uuid.uuid4().hex[:8]}"
    rendered = helm.template_text(CHART, namespace=namespace, values=GATEWAY_ON)
    assert rendered.returncode == 0, rendered.stderr
    kubectl = admin(control_plane)
    applying = subprocess.run(  # noqa: S603 - the pinned kubectl, the admin kubeconfig
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "apply", "--server-side",
         "-f", "-"], input=rendered.stdout, capture_output=True, text=True, timeout=120,
        check=False)
    assert applying.returncode == 0, applying.stderr
    ok(kubectl.run("apply", "--server-side", "-k", str(BASE)))
    ok(kubectl.run("apply", "--server-side", "-k", str(GATEWAY)))
    me = f"system:serviceaccount:{namespace}:kubegate-gateway"
    base_user = "system:serviceaccount:kubegate:kubegate-gateway"
    for where, base_where in ((namespace, "kubegate"), ("default", "default")):
        mine = rules_of(kubectl, me, where) - rules_of(
            kubectl, f"system:serviceaccount:{namespace}:nobody", where)
        bases = rules_of(kubectl, base_user, base_where) - rules_of(
            kubectl, "system:serviceaccount:kubegate:nobody", base_where)
        assert mine == bases, where
        assert ("users", "", "impersonate") in mine
    assert not can_i(kubectl, me, "impersonate", "serviceaccounts", "-n", namespace)
    assert not can_i(kubectl, me, "get", "secrets", "-n", namespace)


def test_the_documented_helm_install_takes_over_a_namespace_holding_the_tls_secret(
        helm: Helm, applied: str, control_plane: ControlPlane, cluster: Cluster) -> None:
    """README "Install with Helm": the namespace and its Secrets first, then `helm install
    --take-ownership` (the chart's Namespace object adopts it)."""
    namespace = f"helm-{uuid.uuid4().hex[:8]}"
    kubectl = admin(control_plane)
    ok(kubectl.run("create", "namespace", namespace))
    ok(kubectl.run("create", "secret", "generic", "kubegate-tls", "-n", namespace,
                   "--from-literal=tls.crt=x", "--from-literal=tls.key=y"))
    installer = Helm(binary=helm.binary, folder=helm.folder,
                     kubeconfig=control_plane.admin_kubeconfig_path)
    ok(installer.run("install", "kubegate", str(CHART), "--namespace", namespace,
                     "--take-ownership"))
    labels = yaml.safe_load(ok(kubectl.run("get", "namespace", namespace, "-o", "yaml")))[
        "metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    ok(kubectl.run("get", "secret", "kubegate-tls", "-n", namespace))
    ok(kubectl.run("get", "deployment", "kubegate-exchanger", "-n", namespace))


# -- the README -------------------------------------------------------------------------------


def value_paths(values: object, prefix: str = "") -> set[str]:
    """Every value's dotted path: a mapping's keys, down to the first empty mapping, list or
    scalar."""
    if not isinstance(values, dict) or not values:
        return {prefix}
    return set().union(*(value_paths(v, f"{prefix}.{k}" if prefix else k)
                         for k, v in values.items()))


def test_the_readme_documents_every_value() -> None:
    """Each value (or a value holding it, such as `resources`) has a row in the table of
    README's "Install with Helm"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Install with Helm", 1)[1].split("\n### ", 1)[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, re.MULTILINE)}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = sorted(path for path in value_paths(values)
                     if not any(path == row or path.startswith(f"{row}.") for row in rows))
    assert missing == [], f"README's Install with Helm table misses {missing}"
    known = {".".join(path.split(".")[:n]) for path in value_paths(values)
             for n in range(1, path.count(".") + 2)}
    assert rows - known == set(), "the table names values values.yaml does not have"
