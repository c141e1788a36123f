"""`kubegate audit report` against the real kube-apiserver: a pipeline's session (TokenRequest
backend) and a person's session (Dex ID token, self-issued backend) do a few things; the
report joins the API server's audit log with both exchangers' audit logs by credential id and
shows exactly those actions per session, privileged and refused ones marked, the CI run and
commit the pipeline's token named; `--run` answers "what did this pipeline do"; a malformed
line in a copy of the cluster log is reported with its file and line and the report goes on.

The control plane is shared with other tests: assertions look at the sessions made here, and
at requests on resources (kubectl's discovery requests, `/api` and `/apis`, come and go with
its cache)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubegate.client.access import AccessClient
from kubegate.credential import Credential
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.dex import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, Dex
from tests.support.fixtures_exchanger import (
    StartExchanger,
    TestExchanger,
    cluster_entry,
    self_issued_entry,
    trust_self_issued,
)
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "kubegate"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


PIPELINE_MAPPING = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims:
  - {{claim: repository, equals: octo-org/web}}
  grant: {{cluster: test, namespace: {namespace}, serviceAccount: deployer, maxLifetime: 20m}}
"""

PEOPLE_MAPPING = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: sre-read}}
spec:
  issuer: corp
  claims:
  - {{claim: groups, contains: sre-leads}}
  grant:
    cluster: test
    namespace: {namespace}
    user: {{claim: email, prefix: "oidc:"}}
    groups: ["kubegate:report-sre"]
    maxLifetime: 15m
"""


def start_pipeline(cluster: Cluster, control_plane: ControlPlane,
                   github_issuer: GitHubActionsIssuer,
                   start: StartExchanger) -> tuple[TestExchanger, str]:
    """A namespace whose `deployer` may list pods, create configmaps and read secrets (not
    list configmaps), and an exchanger granting it to octo-org/web."""
    namespace = cluster.create_namespace("report")
    cluster.create_service_account(namespace, "deployer")
    cluster.create_role(namespace, "deploy", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    cluster.bind_role(namespace, "deploy", service_account=(namespace, "deployer"))
    cluster.create_secret(namespace, "db")
    exchanger = start(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "algorithms": ["RS256"], "caFile": str(github_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)],
        mappings=PIPELINE_MAPPING.format(namespace=namespace))
    return exchanger, namespace


def start_people(cluster: Cluster, control_plane: ControlPlane, dex: Dex,
                 start: StartExchanger) -> tuple[TestExchanger, str]:
    """A namespace where the group kubegate:report-sre may list pods, and an exchanger that
    issues its own tokens to sre-leads, trusted by the API server."""
    namespace = cluster.create_namespace("report-ops")
    cluster.create_role(namespace, "reader", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    cluster.bind_role(namespace, "reader", group="kubegate:report-sre")
    self_issued = self_issued_entry()
    exchanger = start(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT]}],
        clusters=[{"name": "test", "server": control_plane.url,
                   "caFile": str(control_plane.ca_path), "backend": "selfIssued"}],
        mappings=PEOPLE_MAPPING.format(namespace=namespace), self_issued=self_issued)
    trust_self_issued(control_plane, exchanger)
    return exchanger, namespace


def run_ok(kubectl: Kubectl, *args: str, refused: bool = False) -> None:
    done = kubectl.run(*args)
    assert (done.returncode != 0) == refused, (args, done.stdout, done.stderr)
    if refused:
        assert "forbidden" in done.stderr.lower(), done.stderr


def audited(plane: ControlPlane, credential: Credential, count: int) -> bool:
    """Whether the API server's audit log has `count` final events of `credential`."""
    wanted = [f"JTI={credential.token_id}"]
    return sum(e.get("stage") == "ResponseComplete"
               and e.get("user", {}).get("extra", {}).get(CREDENTIAL_ID) == wanted
               and "objectRef" in e for e in audit_events(plane.audit_log_path)) >= count


def report(*args: str | Path) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "kubegate", "audit", "report", *map(str, args), "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def resource_rows(session: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["verb"], r["resource"], r["subresource"], r["namespace"], r["name"], r["code"],
             r["privileged"], r["refused"]) for r in session["actions"] if r["resource"]]


def test_the_report_joins_each_session_to_exactly_what_the_cluster_saw(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    dex: Dex, start_test_exchanger: StartExchanger,
    kubectl_with_token: Callable[[str], Kubectl], tmp_path: Path,
) -> None:
    pipeline, web = start_pipeline(cluster, control_plane, github_issuer, start_test_exchanger)
    people, ops = start_people(cluster, control_plane, dex, start_test_exchanger)
    run_id, sha = str(uuid.uuid4().int % 10**9), uuid.uuid4().hex + "0" * 8
    with pipeline.client() as client:
        ci = client.exchange(github_issuer.mint(
            repository="octo-org/web", audience=AUDIENCE,
            extra_claims={"run_id": run_id, "sha": sha, "run_attempt": "2"}))
    with people.client() as client:
        person = client.exchange(str(dex.password_grant("alice@example.com")["id_token"]))

    deployer = kubectl_with_token(ci.token)
    run_ok(deployer, "get", "pods", "-n", web)
    run_ok(deployer, "create", "configmap", "out", "--from-literal=a=b", "-n", web)
    run_ok(deployer, "get", "secret", "db", "-n", web)
    run_ok(deployer, "get", "configmaps", "-n", web, refused=True)
    alice = kubectl_with_token(person.token)
    assert poll(lambda: alice.run("get", "pods", "-n", ops).returncode == 0, 90)
    run_ok(alice, "get", "secret", "db", "-n", web, refused=True)
    assert poll(lambda: audited(control_plane, ci, 4) and audited(control_plane, person, 2),
                15)

    kubegate_logs = [pipeline.config.audit_log, people.config.audit_log]
    document = report("--kubegate-log", *kubegate_logs,
                      "--cluster-log", control_plane.audit_log_path)
    sessions = {s["session_id"]: s for s in document["sessions"]}
    mine = sessions[ci.session_id]
    assert resource_rows(mine) == [
        ("list", "pods", "", web, "", 200, "", False),
        ("create", "configmaps", "", web, "out", 201, "", False),
        ("get", "secrets", "", web, "db", 200, "secret-read", False),
        ("list", "configmaps", "", web, "", 403, "", True)]
    assert mine["ci"]["run_id"] == run_id and mine["ci"]["sha"] == sha
    assert mine["ci"]["run_attempt"] == "2"
    assert (mine["mapping"], mine["issuer"], mine["credential_id"]) == (
        "web-deploy", "github", f"JTI={ci.token_id}")
    assert mine["grant"]["service_account"] == "deployer"
    assert mine["subject"].startswith("repo:octo-org/web:")
    assert all(r["user_agent"].startswith("kubectl") for r in mine["actions"])
    assert mine["counts"]["privileged"] == 1 and mine["counts"]["refused"] == 1

    hers = sessions[person.session_id]
    assert resource_rows(hers) == [
        ("list", "pods", "", ops, "", 200, "", False),
        ("get", "secrets", "", web, "db", 403, "secret-read", True)]
    assert (hers["who"], hers["mapping"], hers["grant"]["user"]) == (
        "alice@example.com", "sre-read", "oidc:alice@example.com")
    assert hers["ci"] == {}

    # what did this pipeline do: only its session
    by_run = report("--kubegate-log", *kubegate_logs,
                    "--cluster-log", control_plane.audit_log_path, "--run", run_id)
    assert [s["session_id"] for s in by_run["sessions"]] == [ci.session_id]
    assert resource_rows(by_run["sessions"][0]) == resource_rows(mine)

    # a malformed line in a copy of the cluster log: reported by file and line, and the
    # report goes on past it
    copy = tmp_path / "audit-copy.log"
    shutil.copyfile(control_plane.audit_log_path, copy)
    lines = copy.read_text().splitlines(keepends=True)
    lines.insert(1, '{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"Resp\n')
    copy.write_text("".join(lines))
    damaged = report("--kubegate-log", *kubegate_logs, "--cluster-log", copy,
                     "--session", ci.session_id)
    assert {"where": f"{copy}:2", "message": damaged["problems"][0]["message"]} in (
        damaged["problems"])
    assert "not JSON" in damaged["problems"][0]["message"]
    assert resource_rows(damaged["sessions"][0]) == resource_rows(mine)


def test_a_revoked_credentials_refused_requests_show_as_refused(
    cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
    start_test_exchanger: StartExchanger, kubectl_with_token: Callable[[str], Kubectl],
) -> None:
    pipeline, web = start_pipeline(cluster, control_plane, github_issuer, start_test_exchanger)
    subject = github_issuer.mint(repository="octo-org/web", audience=AUDIENCE)
    with pipeline.client() as client:
        ci = client.exchange(subject)
    deployer = kubectl_with_token(ci.token)
    run_ok(deployer, "get", "pods", "-n", web)
    with AccessClient(pipeline.target, token=lambda: subject,
                      ca_file=pipeline.running.ca_file) as as_pipeline:
        ended = as_pipeline.revoke_session(ci.session_id, reason="job cancelled")
    assert not ended.active
    # the API server refuses it within seconds (401: the audit log records no identity)
    assert poll(lambda: deployer.run("get", "pods", "-n", web).returncode != 0, 20)
    assert deployer.run("get", "configmaps", "-n", web).returncode != 0

    def refusals() -> int:
        return sum(e.get("responseStatus", {}).get("code") == 401
                   and f"/namespaces/{web}/" in e.get("requestURI", "")
                   for e in audit_events(control_plane.audit_log_path))

    assert poll(lambda: refusals() >= 2, 15)
    document = report("--kubegate-log", pipeline.config.audit_log,
                      "--cluster-log", control_plane.audit_log_path)
    (mine,) = [s for s in document["sessions"] if s["session_id"] == ci.session_id]
    assert mine["end_reason"] == "session-revoked" and mine["ended_at"]
    after = [r for r in mine["actions"] if r["attributed"]]
    assert after and all((r["code"], r["refused"]) == (401, True) for r in after)
    assert {(r["verb"], r["resource"]) for r in after} >= {("list", "configmaps")}
    assert mine["counts"]["refused"] >= len(after)
    assert document["counts"]["unauthenticated_refusals"] >= len(after)
