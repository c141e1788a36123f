"""The stories of break-glass and just-in-time access, end to end: real Dex for people, a
GitHub-shaped issuer for CI, a real exchanger (TokenRequest backend, its access store), the
`kubegate access` / `kubegate exchange` commands as people and pipelines run them, and the real
kube-apiserver deciding whether the credentials work.

1. Break-glass: a ServiceAccount bound to cluster-admin that nobody can get a token for; an
   on-call engineer asks with a reason; they cannot approve themselves; an approver does; the
   credential works, lasts no longer than approved, and its exchange names the request and
   the approver; an approver ends it early and the API server refuses it within 15 s; a
   request that runs out ends its session by itself.
2. A vendor SRE, signing in at their own identity provider, gets the mapped role only inside a
   maintenance window; after the window the exchange is refused with OUTSIDE_WINDOW and the
   credential issued inside it stops working.
3. A production deploy needs one approval bound to its run: the approved run deploys; another
   run, another attempt or another commit of the same repository is refused.
And: the exchanger restarted mid-request loses nothing; two replicas share one request.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchanger.server import start_exchanger
from kubegate.credential import Credential
from kubegate.errors import ExchangeError
from tests.support.controlplane import ControlPlane
from tests.support.dex import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, Dex
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.hostile import attempt
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

KUBEGATE = str(Path(sys.executable).parent / "kubegate")
REVOKED_WITHIN = 15.0


def utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Stage:
    dex: Dex
    exchanger: TestExchanger
    cluster: Cluster
    control_plane: ControlPlane
    kubectl_with_token: Callable[[str], Kubectl]
    tmp_path: Path
    namespace: str = ""

    def id_token(self, email: str) -> str:
        return str(self.dex.password_grant(email)["id_token"])

    def kubegate(self, *args: str, token: str, check: bool = True,
                 ) -> subprocess.CompletedProcess[str]:
        """A kubegate command run as the holder of `token` (in KUBEGATE_CALLER_TOKEN)."""
        env = {**os.environ, "KUBEGATE_CALLER_TOKEN": token,
               "KUBEGATE_CACHE_DIR": str(self.tmp_path / "cache")}
        done = subprocess.run(
            [KUBEGATE, *args, "--server", self.exchanger.target,
             "--ca-file", str(self.exchanger.running.ca_file),
             "--token-env", "KUBEGATE_CALLER_TOKEN"],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert token not in done.stdout + done.stderr
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def access(self, *args: str, token: str, check: bool = True) -> dict[str, Any]:
        done = self.kubegate("access", *args, "-o", "json", token=token, check=check)
        if not check and done.returncode != 0:
            return {"error": done.stderr.strip(), "status": done.returncode}
        document: dict[str, Any] = json.loads(done.stdout.splitlines()[0])
        return document

    def exchange(self, token: str, role: str) -> Credential:
        result = attempt(self.exchanger, token, role=role)
        assert isinstance(result, Credential), result
        return result

    def refused(self, token: str, role: str) -> ExchangeError:
        result = attempt(self.exchanger, token, role=role)
        assert isinstance(result, ExchangeError), f"{role} was granted"
        return result

    def works(self, token: str) -> bool:
        done = self.kubectl_with_token(token).run("get", "namespaces", "-o", "name")
        return done.returncode == 0

    def refused_within(self, token: str, seconds: float) -> float:
        started = time.monotonic()
        assert poll(lambda: not self.works(token), seconds), "the credential still works"
        return time.monotonic() - started


BREAK_GLASS = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: break-glass-admin}}
spec:
  issuer: corp
  description: on-call engineers may become cluster-admin once a lead approves
  claims:
  - {{claim: groups, contains: engineers}}
  - {{claim: email_verified, equals: true}}
  grant: {{cluster: test, namespace: {namespace}, serviceAccount: break-glass, maxLifetime: 10m}}
  approval:
    approvers: {{issuer: corp, claims: [{{claim: groups, contains: sre-leads}}]}}
    count: 1
    reasonRequired: true
    ticketPattern: 'INC-[0-9]+'
    maxDuration: 30m
"""


@pytest.fixture
def stage(dex: Dex, cluster: Cluster, control_plane: ControlPlane,
          start_test_exchanger: StartExchanger, kubectl_with_token: Callable[[str], Kubectl],
          tmp_path: Path) -> Iterator[Stage]:
    ops = cluster.create_namespace("ops")
    cluster.create_service_account(ops, "break-glass")
    cluster.rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"break-glass-{ops}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "break-glass", "namespace": ops}]})
    exchanger = start_test_exchanger(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT], "kind": "oidc"}],
        clusters=[cluster_entry(control_plane)], mappings=BREAK_GLASS.format(namespace=ops))
    yield Stage(dex, exchanger, cluster, control_plane, kubectl_with_token, tmp_path, ops)
    # the cluster is shared: leave no standing cluster-admin behind for other tests to find
    cluster.rbac.delete_cluster_role_binding(f"break-glass-{ops}")


def test_break_glass_from_request_to_revoke(stage: Stage) -> None:
    bob, alice = stage.id_token("bob@example.com"), stage.id_token("alice@example.com")
    # standing admin is dead: nobody gets a token for the account without an approval
    assert stage.refused(bob, "break-glass-admin").reason == "APPROVAL_REQUIRED"
    assert stage.refused(alice, "break-glass-admin").reason == "APPROVAL_REQUIRED"

    # a request needs a reason and a ticket of the mapping's shape
    missing = stage.access("request", "--role", "break-glass-admin", "--reason", "db down",
                           "--ticket", "JIRA-1", "--duration", "15m", token=bob, check=False)
    assert missing["status"] == 1 and "TICKET" in missing["error"]
    made = stage.access("request", "--role", "break-glass-admin", "--reason",
                        "INC-7 the API is down", "--ticket", "INC-7", "--duration", "15m",
                        token=bob)
    assert made["state"] == "pending"

    # the requester cannot approve; someone outside the approvers cannot either
    own = stage.access("approve", made["id"], token=bob, check=False)
    assert own["status"] == 1 and "SELF_APPROVAL" in own["error"], own
    outsider = stage.access("approve", made["id"], token=stage.id_token("carol@example.com"),
                            check=False)
    assert outsider["status"] == 1 and "PERMISSION_DENIED" in outsider["error"]
    alices = stage.access("request", "--role", "break-glass-admin", "--reason",
                          "INC-8 own request", "--ticket", "INC-8", token=alice)
    self_approval = stage.access("approve", alices["id"], token=alice, check=False)
    assert "SELF_APPROVAL" in self_approval["error"]

    approved = stage.access("approve", made["id"], "--comment", "go", token=alice)
    assert approved["state"] == "approved"

    credential = stage.exchange(bob, "break-glass-admin")
    ends_at = datetime.datetime.fromisoformat(approved["ends_at"]).timestamp()
    assert credential.expires_at <= ends_at  # no longer than what was approved
    assert poll(lambda: stage.works(credential.token), 30)
    assert stage.kubectl_with_token(credential.token).can_i("delete", "nodes", "default")

    allow = [d for d in stage.exchanger.decisions() if d["decision"] == "allow"][-1]
    assert (allow["access_request"], allow["approvers"]) == (made["id"], ["alice@example.com"])
    assert allow["token_id"] == credential.token_id  # the API server's audit joins on this

    # an approver ends it early: the API server refuses the credential within 15 s
    revoked = stage.access("revoke", made["id"], "--reason", "incident over", token=alice)
    assert revoked["request"]["state"] == "revoked"
    took = stage.refused_within(credential.token, REVOKED_WITHIN)
    print(f"revoked credential refused after {took:.1f}s")
    assert stage.refused(bob, "break-glass-admin").reason == "APPROVAL_REQUIRED"
    events = [line["access"]["event"] for line in stage.exchanger.audit_lines()
              if line.get("decision") == "access" and line["access"]["request"] == made["id"]]
    assert events[:3] == ["created", "approved", "activated"] and "revoked" in events


def test_a_request_that_runs_out_ends_its_session_by_itself(stage: Stage) -> None:
    bob, alice = stage.id_token("bob@example.com"), stage.id_token("alice@example.com")
    made = stage.access("request", "--role", "break-glass-admin", "--reason", "INC-9 quick look",
                        "--ticket", "INC-9", "--duration", "65s", token=bob)
    stage.access("approve", made["id"], token=alice)
    credential = stage.exchange(bob, "break-glass-admin")
    assert poll(lambda: stage.works(credential.token), 30)
    # TokenRequest tokens live at least 10 minutes; the session Secret goes at the request's end
    # (an exchange needs 60 s left of the request: less is refused with REQUEST_ENDING)
    took = stage.refused_within(credential.token, 65 + REVOKED_WITHIN + 5)
    print(f"credential refused {took:.1f}s after issue (request of 65s)")
    sessions = json.loads(stage.kubegate("sessions", "list", "--request", made["id"], "-o",
                                         "json", token=alice).stdout.splitlines()[0])
    (session,) = sessions["sessions"]
    assert not session["active"]


def test_the_exchanger_restarted_mid_request_loses_nothing(stage: Stage) -> None:
    bob, alice = stage.id_token("bob@example.com"), stage.id_token("alice@example.com")
    made = stage.access("request", "--role", "break-glass-admin", "--reason", "INC-10 restart",
                        "--ticket", "INC-10", token=bob)
    config = stage.exchanger.config
    stage.exchanger.running.stop(grace=0)
    restarted = start_exchanger(config)
    try:
        stage.exchanger = TestExchanger(running=restarted, config=config)
        shown = stage.access("show", made["id"], token=bob)
        assert shown["state"] == "pending"
        stage.access("approve", made["id"], token=alice)
        assert stage.exchange(bob, "break-glass-admin").token
    finally:
        restarted.stop(grace=0)


def test_two_replicas_share_one_request(stage: Stage, start_test_exchanger: StartExchanger,
                                        dex: Dex, control_plane: ControlPlane) -> None:
    first = stage.exchanger
    second = start_test_exchanger(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT], "kind": "oidc"}],
        clusters=[cluster_entry(control_plane)],
        mappings=BREAK_GLASS.format(namespace=stage.namespace),
        access={"sqliteFile": str(first.config.access.sqlite_file)})
    bob, alice = stage.id_token("bob@example.com"), stage.id_token("alice@example.com")
    made = stage.access("request", "--role", "break-glass-admin", "--reason", "INC-11 replicas",
                        "--ticket", "INC-11", token=bob)
    stage.exchanger = second
    stage.access("approve", made["id"], token=alice)
    stage.exchanger = first
    assert stage.exchange(bob, "break-glass-admin").token
    assert isinstance(attempt(second, bob, role="break-glass-admin"), Credential)


# -- story 2: a vendor inside its maintenance window ------------------------------------------

VENDOR = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: vendor-maintenance}}
spec:
  issuer: vendor
  description: the vendor's SRE, only in the maintenance window
  claims:
  - {{claim: email, equals: carol@example.com}}
  - {{claim: email_verified, equals: true}}
  grant: {{cluster: test, namespace: {namespace}, serviceAccount: vendor-sre, maxLifetime: 10m}}
  windows:
  - {{start: "{start}", end: "{end}"}}
"""


def test_a_vendor_gets_in_only_inside_the_window(
    cluster: Cluster, control_plane: ControlPlane, start_test_exchanger: StartExchanger,
    kubectl_with_token: Callable[[str], Kubectl], tmp_path: Path,
) -> None:
    maintenance = cluster.create_namespace("maint")
    cluster.create_service_account(maintenance, "vendor-sre")
    cluster.create_role(maintenance, "maintainer", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]}])
    cluster.bind_role(maintenance, "maintainer", service_account=(maintenance, "vendor-sre"))
    (tmp_path / "vendor-idp").mkdir()
    with Dex(tmp_path / "vendor-idp") as vendor_idp:  # the vendor's own identity provider
        now = time.time()
        start, end = now - 120, now + 75  # an exchange needs 60 s of the window left
        exchanger = start_test_exchanger(
            issuers=[{"name": "vendor", "url": vendor_idp.url, "caFile": str(vendor_idp.ca_path),
                      "audiences": [CONFIDENTIAL_CLIENT], "kind": "oidc"}],
            clusters=[cluster_entry(control_plane)],
            mappings=VENDOR.format(namespace=maintenance, start=utc(start), end=utc(end)))
        token = str(vendor_idp.password_grant("carol@example.com")["id_token"])
        inside = attempt(exchanger, token, role="vendor-maintenance")
        assert isinstance(inside, Credential), inside
        assert inside.expires_at >= int(end)  # TokenRequest's 10 minutes ...
        kubectl = kubectl_with_token(inside.token)
        assert poll(lambda: kubectl.run("get", "pods", "-n", maintenance).returncode == 0, 30)
        # ... but the session ends with the window: refused within 15 s of its end
        assert poll(lambda: kubectl.run("get", "pods", "-n", maintenance).returncode != 0,
                    max(0.0, end - time.time()) + REVOKED_WITHIN)
        assert time.time() >= end - 1
        after = attempt(exchanger, str(vendor_idp.password_grant("carol@example.com")["id_token"]),
                        role="vendor-maintenance")
        assert isinstance(after, ExchangeError) and after.reason == "OUTSIDE_WINDOW"


# -- story 3: a production deploy approved for one run ----------------------------------------

DEPLOY = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: prod-deploy}}
spec:
  issuer: github
  claims:
  - {{claim: repository_id, equals: "74"}}
  - {{claim: ref, equals: refs/heads/main}}
  - {{claim: event_name, equals: push}}
  grant: {{cluster: test, namespace: {namespace}, serviceAccount: deployer, maxLifetime: 10m}}
  approval:
    approvers: {{issuer: corp, claims: [{{claim: groups, contains: sre-leads}}]}}
    reasonRequired: true
    maxDuration: 1h
    bindTo: [run_id, run_attempt, sha]
"""


def test_a_deploy_approval_is_bound_to_its_run(
    dex: Dex, github_issuer: GitHubActionsIssuer, cluster: Cluster,
    control_plane: ControlPlane, start_test_exchanger: StartExchanger,
    kubectl_with_token: Callable[[str], Kubectl], tmp_path: Path,
) -> None:
    prod = cluster.create_namespace("prod")
    cluster.create_service_account(prod, "deployer")
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path), "kind": "github"},
                 {"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT], "kind": "oidc"}],
        clusters=[cluster_entry(control_plane)], mappings=DEPLOY.format(namespace=prod))
    stage = Stage(dex, exchanger, cluster, control_plane, kubectl_with_token, tmp_path)

    def run_token(run_id: str, attempt_number: str = "1", sha: str = "a" * 40) -> str:
        return github_issuer.mint(audience="kubegate", extra_claims={
            "run_id": run_id, "run_attempt": attempt_number, "sha": sha})

    job = run_token("9001")
    assert stage.refused(job, "prod-deploy").reason == "APPROVAL_REQUIRED"
    made = stage.access("request", "--role", "prod-deploy", "--reason", "release v1.2.3",
                        token=job)
    assert made["bound"] == {"run_id": "9001", "run_attempt": "1", "sha": "a" * 40}
    stage.access("approve", made["id"], token=stage.id_token("alice@example.com"))

    assert stage.exchange(run_token("9001"), "prod-deploy").token  # the approved run
    for other in (run_token("9002"), run_token("9001", "2"), run_token("9001", sha="b" * 40)):
        assert stage.refused(other, "prod-deploy").reason == "APPROVAL_REQUIRED"


ACCESS_CRDS = [Path(__file__).resolve().parents[2] / "deploy" / "base" / name
               for name in ("crd-accessrequest.yaml", "crd-kubegatesession.yaml")]


def test_two_replicas_against_a_cluster_share_requests_and_sessions_as_resources(
    stage: Stage, start_test_exchanger: StartExchanger, dex: Dex, control_plane: ControlPlane,
) -> None:
    admin = Kubectl(binary=control_plane.kubectl_path,
                    kubeconfig=control_plane.admin_kubeconfig_path)
    for path in ACCESS_CRDS:
        applied = admin.run("apply", "--server-side", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
    assert admin.run("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/accessrequests.kubegate.io",
                     "crd/kubegatesessions.kubegate.io").returncode == 0
    home = stage.cluster.create_namespace("kubegate")
    replicas = [start_test_exchanger(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT], "kind": "oidc"}],
        clusters=[cluster_entry(control_plane)],
        mappings=BREAK_GLASS.format(namespace=stage.namespace),
        access={"store": "cluster", "cluster": {"name": "test", "namespace": home}})
        for _ in range(2)]
    bob, alice = stage.id_token("bob@example.com"), stage.id_token("alice@example.com")
    stage.exchanger = replicas[0]
    made = stage.access("request", "--role", "break-glass-admin", "--reason", "INC-12 two",
                        "--ticket", "INC-12", token=bob)
    stage.exchanger = replicas[1]
    stage.access("approve", made["id"], token=alice)
    credential = stage.exchange(bob, "break-glass-admin")  # on the replica that approved
    stage.exchanger = replicas[0]
    assert stage.exchange(bob, "break-glass-admin").token  # and on the other one
    resource = admin.run("get", "accessrequests.kubegate.io", made["id"], "-n", home,
                         "-o", "json")
    assert resource.returncode == 0, resource.stderr
    assert json.loads(resource.stdout)["spec"]["state"] == "active"
    # a revoke on one replica ends the session the other one issued
    assert poll(lambda: stage.works(credential.token), 30)
    stage.access("revoke", made["id"], "--reason", "done", token=alice)
    stage.refused_within(credential.token, REVOKED_WITHIN)
    sessions = admin.run("get", "kubegatesessions.kubegate.io", "-n", home, "-o", "json")
    states = {item["spec"]["access_request"]: item["spec"]["ended_at"]
              for item in json.loads(sessions.stdout)["items"]}
    assert states and all(ended for ended in states.values())
