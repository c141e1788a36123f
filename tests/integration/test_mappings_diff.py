"""`kubegate mappings diff` and `explain --blast-radius` against the real kube-apiserver:
rights come from SelfSubjectRulesReviews made while impersonating the granted service account
or user and groups, and the diff names exactly the rights that changed for each mapping, no
more and no less (what every authenticated user may do is never counted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import ControlPlane
from tests.support.kube import Cluster

KUBEGATE = str(Path(sys.executable).parent / "kubegate")

MAPPING = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: {issuer}
  claims: {claims}
  grant: {grant}
---
"""


def mapping(name: str, claims: str, grant: str, issuer: str = "github") -> str:
    return MAPPING.format(name=name, claims=claims, grant=grant, issuer=issuer)


def kubegate(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEGATE, "mappings", *args, "--kubeconfig",
                           str(plane.admin_kubeconfig_path)],
                          capture_output=True, text=True, timeout=120, check=False)


def rights(entries: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    return {(entry["verb"], entry["resource"], entry["namespace"]) for entry in entries}


@pytest.fixture(scope="module")
def seeded(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two service accounts in `web` with different Roles, one in `ops`; OLD grants the
    weaker one and `ops`, NEW the stronger one, a new mapping, and no `ops`."""
    web, ops = cluster.create_namespace("web"), cluster.create_namespace("ops")
    cluster.create_service_account(web, "viewer")
    cluster.create_service_account(web, "deployer")
    cluster.create_service_account(ops, "reporter")
    cluster.create_role(web, "viewer", [
        {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]}])
    cluster.create_role(web, "deployer", [
        {"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])
    cluster.create_role(ops, "reporter", [
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}])
    cluster.bind_role(web, "viewer", service_account=(web, "viewer"))
    cluster.bind_role(web, "deployer", service_account=(web, "deployer"))
    cluster.bind_role(ops, "reporter", service_account=(ops, "reporter"))
    any_branch = "[{claim: sub, glob: 'repo:octo-org/web:ref:refs/heads/*'}]"
    folder = tmp_path_factory.mktemp("mappings")
    old, new = folder / "old.yaml", folder / "new"
    new.mkdir()
    old.write_text(
        mapping("web-deploy", any_branch,
                f"{{cluster: test, namespace: {web}, serviceAccount: viewer}}")
        + mapping("ops-report", '[{claim: repository_id, equals: "42"}]',
                  f"{{cluster: test, namespace: {ops}, serviceAccount: reporter}}"))
    (new / "web.yaml").write_text(
        mapping("web-deploy", any_branch,
                f"{{cluster: test, namespace: {web}, serviceAccount: deployer}}")
        + mapping("web-release", '[{claim: repository_id, equals: "892301"}, '
                  "{claim: ref, equals: refs/heads/main}, "
                  "{claim: environment, equals: production}]",
                  f"{{cluster: test, namespace: {web}, serviceAccount: viewer}}"))
    return {"web": web, "ops": ops, "old": old, "new": new}


def test_diff_names_exactly_the_rights_each_mapping_gains_or_loses(
        control_plane: ControlPlane, seeded: dict[str, Any]) -> None:
    web, ops = seeded["web"], seeded["ops"]
    done = kubegate(control_plane, "diff", str(seeded["old"]), str(seeded["new"]),
                    "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    changes = {change["mapping"]: change for change in report["changes"]}
    assert report["gains"] is True
    assert set(changes) == {"web-deploy", "web-release", "ops-report"}

    deploy = changes["web-deploy"]
    assert (deploy["change"], deploy["who"], deploy["whoBefore"]) == (
        "changed", "any branch of octo-org/web", None)
    assert rights(deploy["gained"]) == {("get", "secrets", web), ("list", "secrets", web),
                                        ("create", "pods/exec", web)}
    assert rights(deploy["lost"]) == {("get", "configmaps", web), ("list", "configmaps", web)}
    assert {g["resource"]: g["sensitive"] for g in deploy["gained"]} == {
        "secrets": "reads secrets", "pods/exec": "runs commands in pods"}

    release = changes["web-release"]
    assert (release["change"], release["who"]) == (
        "added", "repository 892301 on refs/heads/main in environment production")
    assert rights(release["gained"]) == {(verb, resource, web) for verb in ("get", "list")
                                         for resource in ("pods", "configmaps")}
    assert release["lost"] == []

    report_mapping = changes["ops-report"]
    assert (report_mapping["change"], report_mapping["who"]) == ("removed", "repository 42")
    assert rights(report_mapping["lost"]) == {("list", "events", ops)}
    assert report_mapping["gained"] == []


def test_diff_as_a_ci_gate_and_a_pull_request_comment(
        control_plane: ControlPlane, seeded: dict[str, Any]) -> None:
    old, new = str(seeded["old"]), str(seeded["new"])
    gate = kubegate(control_plane, "diff", old, new, "--fail-on-gain")
    assert gate.returncode == 1, gate.stderr
    assert (f"+ any branch of octo-org/web can now create pods/exec in namespace "
            f"{seeded['web']} (mapping web-deploy, mapping changed) "
            "[sensitive: runs commands in pods]") in gate.stdout.splitlines()
    assert len(gate.stdout.splitlines()) == 3 + 2 + 4 + 1  # gained, lost, added, removed
    assert kubegate(control_plane, "diff", new, new, "--fail-on-gain").returncode == 0
    markdown = kubegate(control_plane, "diff", old, new, "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    text = markdown.stdout
    assert text.startswith("## kubegate: blast radius of trust mappings")
    assert "### `web-deploy`: mapping changed" in text
    assert f"| ➕ | create pods/exec in namespace {seeded['web']} | ⚠️ **runs commands in " \
           "pods** |" in text
    assert f"| ➖ | list events in namespace {seeded['ops']} |  |" in text


def test_explain_blast_radius_of_a_people_grant_bound_to_a_group(
        control_plane: ControlPlane, cluster: Cluster, tmp_path: Path) -> None:
    ops = cluster.create_namespace("sre")
    cluster.create_role(ops, "debugger", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])
    cluster.bind_role(ops, "debugger", group="kubegate:sre")
    path = tmp_path / "people.yaml"
    path.write_text(mapping(
        "sre-break-glass", "[{claim: groups, contains: sre-leads}, "
        "{claim: email_verified, equals: true}]",
        f"{{cluster: test, namespace: {ops}, user: {{claim: email, prefix: 'oidc:'}}, "
        "groups: ['kubegate:sre', {claim: groups, prefix: 'oidc:'}], maxLifetime: 1h}",
        issuer="corp"))
    done = kubegate(control_plane, "explain", "--blast-radius", "--mappings", str(path),
                    "--format", "json")
    assert done.returncode == 0, done.stderr
    [radius] = json.loads(done.stdout)["mappings"]
    assert radius["who"] == "people in group sre-leads with a verified email"
    assert radius["perPerson"] is True
    assert rights(radius["rights"]) == {("get", "pods", ops), ("create", "pods/exec", ops)}
    text = kubegate(control_plane, "explain", "--blast-radius", "--mappings", str(path))
    assert text.stdout.splitlines()[1] == (
        f"people in group sre-leads with a verified email (per person) can create pods/exec "
        f"in namespace {ops} (mapping sre-break-glass, cluster test) "
        "[sensitive: runs commands in pods]")


def test_an_identity_that_may_not_impersonate_is_told_so(
        control_plane: ControlPlane, seeded: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "nobody.kubeconfig"
    config.write_text(json.dumps(control_plane.kubeconfig(user={"token": "not-a-token"})))
    done = subprocess.run([KUBEGATE, "mappings", "diff", str(seeded["old"]),
                           str(seeded["new"]), "--kubeconfig", str(config)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "REVIEW_FORBIDDEN" in done.stderr and "impersonate" in done.stderr
