"""People through the broker, end to end: a real Dex signs people in, their ID tokens are
subject tokens at a real exchanger, a people mapping (`groups contains`, `email_verified`, a
user taken from the `email` claim) admits some of them, and the real kube-apiserver sees each
person under their own name, with exactly the permissions RBAC gives the mapped groups.

Tokens come from Dex's password grant here (the browser and device flows of `kubegate login`
are tested in test_login_dex.py); what is under test is what happens to a person's token.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import yaml

from kubegate.credential import Credential
from kubegate.errors import Code, ExchangeError
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.dex import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, Dex
from tests.support.fixtures_exchanger import (
    StartExchanger,
    TestExchanger,
    self_issued_entry,
    trust_self_issued,
)
from tests.support.hostile import DecisionLog, attempt
from tests.support.kube import Cluster, Kubectl
from tests.support.wait import poll

PEOPLE_MAPPINGS = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: sre-admin}}
spec:
  issuer: corp
  description: SRE leads administer the ops namespace, each under their own name
  claims:
  - {{claim: groups, contains: sre-leads}}
  - {{claim: email_verified, equals: true}}
  grant:
    cluster: test
    namespace: {namespace}
    user: {{claim: email, prefix: "oidc:"}}
    groups: ["kubegate:sre", {{claim: groups, prefix: "oidc:"}}]
    maxLifetime: 15m
"""


@dataclass(frozen=True)
class People:
    dex: Dex
    exchanger: TestExchanger
    namespace: str
    control_plane: ControlPlane
    kubectl_with_token: Callable[[str], Kubectl]

    def token_of(self, email: str) -> str:
        return str(self.dex.password_grant(email)["id_token"])

    def exchange(self, email: str) -> Credential | ExchangeError:
        return attempt(self.exchanger, self.token_of(email), role="sre-admin")


@pytest.fixture
def people(
    dex: Dex, cluster: Cluster, control_plane: ControlPlane,
    start_test_exchanger: StartExchanger, kubectl_with_token: Callable[[str], Kubectl],
) -> Iterator[People]:
    ops = cluster.create_namespace("ops")
    cluster.create_role(ops, "operator", [
        {"apiGroups": [""], "resources": ["pods", "configmaps"],
         "verbs": ["get", "list", "create", "delete"]}])
    cluster.bind_role(ops, "operator", group="kubegate:sre")
    self_issued = self_issued_entry()
    exchanger = start_test_exchanger(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT]}],
        clusters=[{"name": "test", "server": control_plane.url,
                   "caFile": str(control_plane.ca_path), "backend": "selfIssued"}],
        mappings=PEOPLE_MAPPINGS.format(namespace=ops), self_issued=self_issued)
    trust_self_issued(control_plane, exchanger)
    yield People(dex=dex, exchanger=exchanger, namespace=ops, control_plane=control_plane,
                 kubectl_with_token=kubectl_with_token)


def test_a_person_in_the_mapped_group_gets_the_mapped_permissions_under_their_own_name(
    people: People,
) -> None:
    credential = people.exchange("alice@example.com")
    assert isinstance(credential, Credential), credential
    claims = jwt.decode(credential.token, options={"verify_signature": False})
    assert claims["sub"] == "oidc:alice@example.com"
    assert sorted(claims["groups"]) == ["kubegate:sre", "oidc:engineers", "oidc:sre-leads"]

    kubectl = people.kubectl_with_token(credential.token)
    ops = people.namespace
    assert poll(lambda: kubectl.run("get", "pods", "-n", ops).returncode == 0, 90), \
        kubectl.run("get", "pods", "-n", ops).stderr
    whoami = json.loads(kubectl.run("auth", "whoami", "-o", "json").stdout)
    user = whoami["status"]["userInfo"]
    assert user["username"] == "oidc:alice@example.com"
    assert {"kubegate:sre", "oidc:sre-leads"} <= set(user["groups"])
    assert kubectl.can_i("create", "configmaps", ops)
    assert not kubectl.can_i("get", "secrets", ops)
    assert not kubectl.can_i("list", "pods", "default")
    assert not kubectl.can_i("create", "clusterroles", ops)

    record = people.exchanger.decisions()[-1]
    assert (record["decision"], record["mapping"], record["grant"]["user"]) == (
        "allow", "sre-admin", "oidc:alice@example.com")
    created = kubectl.run("create", "configmap", "incident-note", "-n", ops)
    assert created.returncode == 0, created.stderr

    def the_cluster_audit_names_alice() -> bool:
        return any(
            e.get("user", {}).get("username") == "oidc:alice@example.com"
            and e.get("verb") == "create" and e.get("objectRef", {}).get("namespace") == ops
            and e.get("user", {}).get("extra", {}).get(
                "authentication.kubernetes.io/credential-id") == [f"JTI={credential.token_id}"]
            for e in audit_events(people.control_plane.audit_log_path))

    assert poll(the_cluster_audit_names_alice, 15)


def test_two_people_of_one_group_mapping_are_two_kubernetes_users(people: People) -> None:
    alice = people.exchange("alice@example.com")
    alice_again = people.exchange("alice@example.com")
    assert isinstance(alice, Credential) and isinstance(alice_again, Credential)
    subjects = {jwt.decode(c.token, options={"verify_signature": False})["sub"]
                for c in (alice, alice_again)}
    assert subjects == {"oidc:alice@example.com"}
    assert alice.token_id != alice_again.token_id


@pytest.mark.parametrize(("email", "why"), [
    ("bob@example.com", "groups contains"),            # in engineers only
    ("carol@example.com", "claim missing"),            # no groups at all: Dex sends no claim
    ("mallory@example.com", "email_verified equals"),  # in sre-leads, email not verified
])
def test_people_the_mapping_does_not_admit_are_denied_with_a_clear_reason(
    people: People, email: str, why: str,
) -> None:
    log = DecisionLog(people.exchanger)
    refused = people.exchange(email)
    assert isinstance(refused, ExchangeError), f"{email} was admitted"
    assert (refused.code, refused.reason) == (Code.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    (record,) = log.new()
    assert (record["decision"], record["reason"]) == ("deny", "ROLE_NOT_ALLOWED")
    assert why in record["detail"]
    # the audit detail names the condition, never the person's claim values
    line = json.dumps(record)
    assert "engineers" not in record["detail"] and email not in record["detail"]
    assert people.token_of(email).split(".")[2] not in line


def test_a_grant_claim_the_token_lacks_is_refused_and_audited_without_values(
    people: People, dex: Dex, start_test_exchanger: StartExchanger,
) -> None:
    # Dex leaves `groups` out unless the scope asks for it: the user template needs the claim
    mapping = PEOPLE_MAPPINGS.format(namespace=people.namespace).replace(
        "{claim: groups, contains: sre-leads}", "{claim: email, equals: alice@example.com}")
    exchanger = start_test_exchanger(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [CONFIDENTIAL_CLIENT]}],
        clusters=[{"name": "test", "server": people.control_plane.url,
                   "caFile": str(people.control_plane.ca_path), "backend": "selfIssued"}],
        mappings=mapping, self_issued=self_issued_entry())
    token = str(dex.password_grant("alice@example.com", scopes="openid email")["id_token"])
    assert "groups" not in jwt.decode(token, options={"verify_signature": False})
    log = DecisionLog(exchanger)
    refused = attempt(exchanger, token, role="sre-admin")
    assert isinstance(refused, ExchangeError)
    assert refused.code == Code.PERMISSION_DENIED
    assert "groups" in refused.message and "alice" not in refused.message
    (record,) = log.new()
    assert record["decision"] == "deny"
    assert "groups" in record["detail"] and "alice@example.com" not in record["detail"]


# -- kubectl for people: the exec kubeconfig of `kubegate login` ------------------------------

SIGN_IN_URL = re.compile(r"^\s+(https://\S+/auth\?\S+)$", re.MULTILINE)


def person_environment(control_plane: ControlPlane, home: Path) -> dict[str, str]:
    """kubegate (this venv) and kubectl on PATH, no display (no browser), caches under home."""
    path = os.pathsep.join([str(Path(sys.executable).parent),
                            str(control_plane.kubectl_path.parent), "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(home), "KUBEGATE_CACHE_DIR": str(home / "cache"),
            "LANG": "C.UTF-8"}


def signing_in(argv: list[str], env: dict[str, str], dex: Dex, email: str,
               ) -> subprocess.CompletedProcess[str]:
    """Run argv (kubegate login, or kubectl running it as its exec plugin), act as the
    person's browser when the sign-in URL shows on stderr, and wait for the end."""
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen, deadline = "", time.monotonic() + 60
    while (match := SIGN_IN_URL.search(seen)) is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen += line
    if match is None:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"no sign-in URL on stderr:\n{seen}{err}")
    callback = dex.browser_login(match.group(1), email)
    assert callback.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(callback, timeout=10) as reply:  # noqa: S310 - loopback
        assert reply.status == 200
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, process.returncode, out, seen + err)


def kubectl(kubeconfig: Path, env: dict[str, str], *args: str,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          check=False)


def test_kubectl_with_the_people_kubeconfig_signs_in_once_then_stays_silent(
    people: People, dex: Dex, tmp_path: Path,
) -> None:
    env = person_environment(people.control_plane, tmp_path)
    kubeconfig, ops = tmp_path / "kubeconfig", people.namespace
    login = [str(Path(sys.executable).parent / "kubegate"), "login", "--issuer", dex.url,
             "--client-id", PUBLIC_CLIENT, "--issuer-ca-file", str(dex.ca_path),
             "--server", people.exchanger.target,
             "--ca-file", str(people.exchanger.running.ca_file), "--role", "sre-admin",
             "--exec-kubeconfig", str(kubeconfig)]
    written = signing_in(login, env, dex, "alice@example.com")
    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    document = json.loads(kubeconfig.read_text()) if kubeconfig.read_text().startswith(
        "{") else yaml.safe_load(kubeconfig.read_text())
    assert "token" not in json.dumps(document["users"])  # no secret: an exec plugin
    assert document["users"][0]["user"]["exec"]["interactiveMode"] == "IfAvailable"

    # the apiserver may still be loading the self-issued issuer: wait for the first success
    assert poll(lambda: kubectl(kubeconfig, env, "get", "pods", "-n", ops).returncode == 0,
                90), kubectl(kubeconfig, env, "get", "pods", "-n", ops).stderr
    allowed_before = sum(d["decision"] == "allow" for d in people.exchanger.decisions())
    for _ in range(3):  # silent: from the credential cache, no sign-in, no exchange
        done = kubectl(kubeconfig, env, "get", "pods", "-n", ops, "-o", "name")
        assert (done.returncode, done.stderr) == (0, "")
    assert sum(d["decision"] == "allow" for d in people.exchanger.decisions()) == allowed_before
    whoami = json.loads(kubectl(kubeconfig, env, "auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "oidc:alice@example.com"
    assert kubectl(kubeconfig, env, "auth", "can-i", "create", "configmaps", "-n",
                   ops).stdout.strip() == "yes"
    assert kubectl(kubeconfig, env, "auth", "can-i", "get", "secrets", "-n",
                   ops).stdout.strip() == "no"
    assert kubectl(kubeconfig, env, "auth", "can-i", "list", "pods", "-n",
                   "default").stdout.strip() == "no"

    # the credential runs out (its cache entry is gone): the cached ID token is exchanged
    # again without asking the person anything
    for entry in (tmp_path / "cache").glob("*.json"):
        entry.unlink()
    done = kubectl(kubeconfig, env, "get", "pods", "-n", ops, "-o", "name")
    assert (done.returncode, done.stderr) == (0, "")
    assert sum(d["decision"] == "allow" for d in people.exchanger.decisions()) == (
        allowed_before + 1)

    # signed out: the next kubectl command walks the person through sign-in again
    out = subprocess.run([str(Path(sys.executable).parent / "kubegate"), "logout", "--all"],
                         env=env, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    for entry in (tmp_path / "cache").glob("*.json"):
        entry.unlink()
    again = signing_in(["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-n", ops,
                        "-o", "name"], env, dex, "alice@example.com")
    assert again.returncode == 0, again.stderr


def test_a_person_outside_the_group_is_told_why_by_kubectl(
    people: People, dex: Dex, tmp_path: Path,
) -> None:
    env = person_environment(people.control_plane, tmp_path)
    login = [str(Path(sys.executable).parent / "kubegate"), "login", "--issuer", dex.url,
             "--client-id", PUBLIC_CLIENT, "--issuer-ca-file", str(dex.ca_path),
             "--server", people.exchanger.target,
             "--ca-file", str(people.exchanger.running.ca_file), "--role", "sre-admin",
             "--exec-kubeconfig", str(tmp_path / "kubeconfig")]
    refused = signing_in(login, env, dex, "bob@example.com")
    assert refused.returncode == 1
    assert "PERMISSION_DENIED ROLE_NOT_ALLOWED" in refused.stderr
    assert not (tmp_path / "kubeconfig").exists()
