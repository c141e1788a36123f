"""Least privilege from observed use, against the real kube-apiserver: a pipeline's kubegate
credential does a few things, the report joins the API server's audit log to kubegate's, and
the Role it suggests is exactly enough: a fresh service account bound to it repeats the same
actions and nothing more, and the diff with the granted service account lists what it never
used."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import yaml

from exchanger.auditreport.cluster_log import iter_events
from exchanger.auditreport.join import build_report
from exchanger.auditreport.kubegate_log import read_sessions
from exchanger.auditreport.leastpriv import (
    LeastPrivilege,
    Rule,
    granted_rights,
    least_privilege_section,
    manifests,
)
from exchanger.auditreport.model import Filters, Problem
from exchanger.blast.kube import ImpersonatingReviewer
from exchanger.blast.rights import RightsFinder
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

AUDIENCE = "kubegate"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
BROAD = [{"apiGroups": [""], "resources": ["pods", "configmaps", "secrets"],
          "verbs": list(VERBS)}]


def start_deployer_exchanger(cluster: Cluster, control_plane: ControlPlane,
                             github_issuer: GitHubActionsIssuer,
                             start: StartExchanger) -> tuple[TestExchanger, str]:
    """A namespace whose `deployer` may do everything to pods, configmaps and secrets, a pod
    and a secret in it, and an exchanger that grants `deployer` to octo-org/web's main."""
    namespace = cluster.create_namespace("leastpriv")
    cluster.create_service_account(namespace, "deployer")
    cluster.create_role(namespace, "broad", BROAD)
    cluster.bind_role(namespace, "broad", service_account=(namespace, "deployer"))
    cluster.create_pipeline_pod(namespace, "web-0", "deployer")
    cluster.create_secret(namespace, "db")
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims:
  - {{claim: repository, equals: octo-org/web}}
  - {{claim: ref, equals: refs/heads/main}}
  grant: {{cluster: test, namespace: {namespace}, serviceAccount: deployer, maxLifetime: 20m}}
"""
    exchanger = start(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "algorithms": ["RS256"], "caFile": str(github_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)], mappings=mappings)
    return exchanger, namespace


def do_the_pipeline_work(kubectl: Kubectl, namespace: str, configmap: str) -> None:
    for args in (("get", "pod", "web-0"), ("get", "pods"),
                 ("create", "configmap", configmap, "--from-literal=a=b")):
        done = kubectl.run(*args, "-n", namespace)
        assert done.returncode == 0, (args, done.stderr)


def test_the_suggested_role_is_exactly_enough_and_the_rest_of_the_grant_is_unused(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    start_test_exchanger: StartExchanger, kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    exchanger, namespace = start_deployer_exchanger(cluster, control_plane, github_issuer,
                                                    start_test_exchanger)
    run = str(uuid.uuid4().int % 10**9)
    subject = github_issuer.mint(repository="octo-org/web", audience=AUDIENCE,
                                 extra_claims={"run_id": run})
    with exchanger.client() as client:
        credential = client.exchange(subject)
    do_the_pipeline_work(kubectl_with_token(credential.token), namespace, "pipeline-output")

    credential_id = f"JTI={credential.token_id}"
    assert poll(lambda: sum(
        e.get("stage") == "ResponseComplete"
        and e.get("user", {}).get("extra", {}).get("authentication.kubernetes.io/credential-id")
        == [credential_id] for e in audit_events(control_plane.audit_log_path)) >= 3, 15)

    problems: list[Problem] = []
    filters = Filters(run=run)
    recorder = LeastPrivilege(filters=filters)
    sessions = read_sessions([exchanger.config.audit_log], problems)
    build_report(sessions, iter_events([control_plane.audit_log_path], problems),
                 filters=filters, observers=[recorder])

    rules = recorder.roles("run")[run]
    assert rules == [
        Rule(namespace=namespace, api_groups=("",), resources=("configmaps",),
             verbs=("create",)),
        Rule(namespace=namespace, api_groups=("",), resources=("pods",), verbs=("list",)),
        Rule(namespace=namespace, api_groups=("",), resources=("pods",), verbs=("get",),
             resource_names=("web-0",)),
    ]

    # the suggested Role, bound to a fresh service account, repeats the work and no more
    (role,) = yaml.safe_load_all(manifests("observed", rules))
    cluster.rbac.create_namespaced_role(namespace, role)
    cluster.create_service_account(namespace, "least")
    cluster.bind_role(namespace, "observed", service_account=(namespace, "least"))
    token = cluster.request_token(namespace, "least").token
    assert token
    least = kubectl_with_token(token)
    assert poll(lambda: least.can_i("create", "configmaps", namespace), 15)
    do_the_pipeline_work(least, namespace, "least-output")
    refused = least.run("get", "secret", "db", "-n", namespace)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    assert least.run("delete", "pod", "web-0", "-n", namespace).returncode != 0

    # the diff with what the granted service account may do today
    reviewer = ImpersonatingReviewer.from_kubeconfig(
        control_plane.admin_kubeconfig_path, None)
    try:
        section = least_privilege_section(
            recorder, granted_rights(RightsFinder(reviewer=reviewer)), scope="run")
    finally:
        reviewer.close()
    (entry,) = section["entries"]
    assert entry["key"] == run and entry["mappings"] == ["web-deploy"]
    assert entry["identities"] == [f"system:serviceaccount:{namespace}:deployer"]
    assert entry["diff_error"] == ""
    assert entry["diff"]["needed"] == []
    unused = {(r["verb"], r["resource"], r["namespace"]) for r in entry["diff"]["unused"]}
    used = {("get", "pods"), ("list", "pods"), ("create", "configmaps")}
    assert unused == {(verb, resource, namespace) for verb in VERBS
                      for resource in ("pods", "configmaps", "secrets")
                      if (verb, resource) not in used}
