"""The gateway against the real kube-apiserver and the real kubectl: `kubegate gateway` runs as
a process on the exchanger's own config, kubectl's server is the gateway and its token a
kubegate credential (self-issued, from a real exchange). The API server never sees that
token: the gateway calls it as its own service account, whose only rights are to impersonate
(the ClusterRole deploy/ ships), and names the session's user, groups and session id.

Proven here: discovery, get, server-side apply and a watch work through it; the API server's
audit log names the gateway as the impersonator and the session's user as the one acting;
a revoke ends an open watch within one second and refuses the next request; a forged
credential, an expired one, one for another cluster, and a client's Impersonate-User header
are refused and each is recorded in the gateway's hash-chained log, which
`kubegate audit verify` verifies; its /metrics count those requests as its log records them,
and its /healthz answers 200.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from exchanger.access.model import Requester, SessionEnd
from exchanger.access.revocation import Revoker
from exchanger.access.sqlite_store import SqliteStores
from exchanger.config import load_config
from exchanger.server import RunningExchanger, start_exchanger
from kubegate.client.rpc import ExchangeClient
from kubegate.credential import Credential
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.fixtures_exchanger import self_issued_entry, write_mappings
from tests.support.gateway import (
    GATEWAY_USER,
    GatewayProcess,
    gateway_cluster_entry,
    gateway_service_account,
    start_gateway_process,
)
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

AUDIENCE = "kubegate"
USER = "ci:octo-org/web"
GROUP = "kubegate:deployers"
CUT_WITHIN = 1.0  # issue 19: a revoked session's open streams close within one second
FORGED_REASONS = {"BAD_SIGNATURE", "INVALID_SIGNATURE", "TOKEN_INVALID"}
ONCALL = Requester(issuer="corp", subject="oncall-2", who="bob@example.com")
DEPLOYER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps"],
     "verbs": ["get", "list", "watch", "create", "patch", "update"]},
]
MAPPINGS = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-gateway}}
spec:
  issuer: github
  claims: [{{claim: repository, equals: octo-org/web}}]
  grant: {{cluster: test, namespace: {web}, user: "{user}", groups: ["{group}"],
          maxLifetime: 15m}}
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: other-cluster}}
spec:
  issuer: github
  claims: [{{claim: repository, equals: octo-org/other}}]
  grant: {{cluster: other, namespace: {web}, user: "ci:octo-org/other", groups: ["{group}"],
          maxLifetime: 15m}}
"""


@dataclass
class Setup:
    exchanger: RunningExchanger
    gateway: GatewayProcess
    state: Path
    web: str
    folder: Path

    def exchange(self, issuer: GitHubActionsIssuer, repository: str) -> Credential:
        with ExchangeClient(f"127.0.0.1:{self.exchanger.port}",
                            ca_file=self.exchanger.ca_file) as client:
            return client.exchange(issuer.mint(repository=repository, audience=AUDIENCE))

    def kubectl(self, plane: ControlPlane, token: str) -> Kubectl:
        return self.gateway.kubectl(plane, token, self.folder)


@pytest.fixture
def setup(cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
          tmp_path: Path) -> Iterator[Setup]:
    web = cluster.create_namespace("gw")
    cluster.create_role(web, "deployer", DEPLOYER_RULES)
    cluster.bind_role(web, "deployer", group=GROUP)
    state = tmp_path / "state"
    write_mappings(state / "mappings", MAPPINGS.format(web=web, user=USER, group=GROUP))
    token_file = gateway_service_account(cluster, tmp_path)
    document: dict[str, Any] = {
        "listen": "127.0.0.1:0", "stateDir": str(state), "reloadInterval": "1s",
        "issuers": [{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                     "caFile": str(github_issuer.ca_path)}],
        "clusters": [gateway_cluster_entry(control_plane, token_file, "test"),
                     {"name": "other", "server": control_plane.url,
                      "caFile": str(control_plane.ca_path), "backend": "selfIssued"}],
        "selfIssued": self_issued_entry(),
        "gateway": {"listen": "127.0.0.1:0", "cluster": "test",
                    "metricsListen": "127.0.0.1:0"},
    }
    config_file = tmp_path / "exchanger.yaml"
    config_file.write_text(yaml.safe_dump(document))
    exchanger = start_exchanger(load_config(config_file))  # writes the signing key first
    try:
        with start_gateway_process(document, tmp_path) as gateway:
            yield Setup(exchanger=exchanger, gateway=gateway, state=state, web=web,
                        folder=tmp_path)
    finally:
        exchanger.stop(grace=0)


def test_kubectl_works_through_the_gateway_as_the_impersonated_session(
    setup: Setup, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
) -> None:
    credential = setup.exchange(github_issuer, "octo-org/web")
    kubectl = setup.kubectl(control_plane, credential.token)

    api = kubectl.run("get", "--raw", "/api")
    assert api.returncode == 0, api.stderr + setup.gateway.log_tail()
    assert json.loads(api.stdout)["kind"] == "APIVersions"
    resources = kubectl.run("api-resources", "--api-group=")
    assert resources.returncode == 0, resources.stderr
    assert "configmaps" in resources.stdout and "pods" in resources.stdout

    manifest = setup.folder / "cm.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "through-gateway", "namespace": setup.web},
        "data": {"answer": "42"}}))
    applied = kubectl.run("apply", "--server-side", "--field-manager=gw-test", "-f",
                          str(manifest))
    assert applied.returncode == 0, applied.stderr
    shown = kubectl.run("get", "configmap", "through-gateway", "-n", setup.web, "-o", "json")
    assert json.loads(shown.stdout)["data"] == {"answer": "42"}
    denied = kubectl.run("get", "secrets", "-n", setup.web)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    assert USER in denied.stderr  # the API server judged the session's user, not the gateway

    def impersonated_apply() -> dict[str, Any] | None:
        return next((e for e in audit_events(control_plane.audit_log_path)
                     if e.get("verb") == "patch"
                     and e.get("objectRef", {}).get("name") == "through-gateway"
                     and e.get("impersonatedUser")), None)

    assert poll(lambda: impersonated_apply() is not None, 15)
    event = impersonated_apply()
    assert event is not None
    assert event["user"]["username"] == GATEWAY_USER
    assert event["impersonatedUser"]["username"] == USER
    assert GROUP in event["impersonatedUser"]["groups"]
    assert event["impersonatedUser"]["extra"]["kubegate.io/session"] == [credential.session_id]

    def verbs() -> set[tuple[str, int]]:  # a line is written once its connection closed
        return {(r["gateway"]["verb"], r["gateway"]["status"]) for r in setup.gateway.records()
                if r["session_id"] == credential.session_id}

    assert poll(lambda: {("get", 200), ("list", 403)} <= verbs(), 10, 0.05), verbs()
    assert ("patch", 200) in verbs() or ("patch", 201) in verbs()
    records = setup.gateway.records()
    patch = next(r for r in records if r["gateway"]["verb"] == "patch")
    assert patch["gateway"]["user"] == USER and patch["gateway"]["groups"] == [GROUP]
    assert patch["gateway"]["bytes_in"] > 0 and patch["gateway"]["bytes_out"] > 0
    assert patch["reason"] == "OK" and patch["peer"].startswith("127.0.0.1:")
    assert credential.token not in setup.gateway.audit_log.read_text()


def test_a_revoke_ends_an_open_watch_within_a_second_and_refuses_the_next_request(
    setup: Setup, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
) -> None:
    credential = setup.exchange(github_issuer, "octo-org/web")
    kubectl = setup.kubectl(control_plane, credential.token)
    created = kubectl.run("create", "configmap", "watched", "-n", setup.web,
                          "--from-literal=a=b")
    assert created.returncode == 0, created.stderr + setup.gateway.log_tail()
    watch = subprocess.Popen(  # noqa: S603
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "get", "configmaps",
         "-n", setup.web, "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = threading.Event()
        reader = threading.Thread(target=_wait_for_line, args=(watch, "watched", seen),
                                  daemon=True)
        reader.start()
        assert seen.wait(60), "the watch never printed the configmap"
        # the watch request follows the list: the API server says when it started answering
        assert poll(lambda: _watch_started(control_plane, setup.web), 30, 0.05), (
            "the API server never started the watch")
        assert watch.poll() is None, "the watch ended before the revoke"

        stores = SqliteStores(setup.state / "access.db")
        try:
            Revoker(stores.sessions, {}, time.time).revoke_session(
                credential.session_id, by=ONCALL, reason=SessionEnd.REVOKED)
        finally:
            stores.close()
        revoked = time.monotonic()
        watch.wait(timeout=30)
        took = time.monotonic() - revoked
    finally:
        if watch.poll() is None:
            watch.kill()
        watch.wait()
        reader.join(10)
        assert watch.stdout is not None and watch.stderr is not None
        stderr = watch.stderr.read()
        watch.stdout.close()
        watch.stderr.close()
    print(f"\nrevoke -> kubectl's watch ended after {took:.3f} s (exit {watch.returncode}: "
          f"{stderr.strip()[:200]})")
    assert took <= CUT_WITHIN, f"the watch ended {took:.2f} s after the revoke"

    after = kubectl.run("get", "configmaps", "-n", setup.web)
    assert after.returncode != 0
    assert poll(lambda: setup.gateway.records()[-1]["reason"] != "OK", 10, 0.05)
    records = setup.gateway.records()
    cut = [r for r in records if r["session_id"] == credential.session_id
           and r["gateway"]["verb"] == "watch"]
    assert cut and cut[-1]["gateway"]["ended_by"] == "revoked", cut
    refused = records[-1]
    assert refused["session_id"] in ("", credential.session_id)
    assert refused["status"] in ("401", "403") and refused["reason"] != "OK"


def test_forged_expired_foreign_and_impersonating_requests_are_refused_and_recorded(
    setup: Setup, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
) -> None:
    credential = setup.exchange(github_issuer, "octo-org/web")
    header, payload, signature = credential.token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    cases = {
        "forged": f"{header}.{payload}.{flipped}",
        "expired": _expired_copy(credential.token, setup.state / "signing-key.pem"),
        "other cluster": setup.exchange(github_issuer, "octo-org/other").token,
    }
    for what, token in cases.items():
        result = setup.kubectl(control_plane, token).run("get", "pods", "-n", setup.web)
        assert result.returncode != 0, what
        assert any(word in result.stderr for word in (
            "must be logged in", "kubegate gateway", "Forbidden", "forbidden")), (
            what, result.stderr)
    impersonating = setup.kubectl(control_plane, credential.token).run(
        "get", "pods", "-n", setup.web, "--as", "system:admin")
    assert impersonating.returncode != 0
    # kubectl's discovery reads an error's body only when it is text: "Forbidden: unknown"
    assert "Forbidden" in impersonating.stderr, impersonating.stderr

    def refusals() -> list[tuple[str, str]]:
        return [(r["status"], r["reason"]) for r in setup.gateway.records() if r["reason"] != "OK"]

    def all_recorded() -> bool:
        reasons = {reason for _, reason in refusals()}
        return {"IMPERSONATION_REFUSED", "TOKEN_EXPIRED", "WRONG_CLUSTER"} <= reasons \
            and bool(reasons & FORGED_REASONS)

    assert poll(all_recorded, 10, 0.05), refusals()
    records = setup.gateway.records()
    assert all(status in ("401", "403") for status, _ in refusals()), refusals()
    assert all(r["peer"].startswith("127.0.0.1:") for r in records if r["reason"] != "OK")
    impersonation = next(r for r in records if r["reason"] == "IMPERSONATION_REFUSED")
    assert impersonation["session_id"] == credential.session_id  # recorded with who asked
    text = setup.gateway.audit_log.read_text()
    assert all(token not in text for token in (*cases.values(), credential.token))
    verified = setup.gateway.verify_audit()
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # its /metrics count what its log recorded (a request is counted before it is recorded)
    printed = setup.gateway.process.log_path.read_text()
    metrics_url = printed.split("  metrics:    ", 1)[1].split()[0]

    def counts() -> tuple[dict[Any, float], Counter[Any]]:
        """(/metrics, the log): requests by (verb, code) and refusals by reason in each."""
        recorded = Counter[Any]()
        for record in setup.gateway.records():
            recorded[record["gateway"]["verb"], record["status"]] += 1
            if record["reason"] != "OK":
                recorded[record["reason"]] += 1
        found: dict[Any, float] = {}
        for family in text_string_to_metric_families(_fetch(metrics_url)):
            for sample in family.samples:
                if sample.name == "kubegate_gateway_requests_total":
                    found[sample.labels["verb"], sample.labels["code"]] = sample.value
                elif sample.name == "kubegate_gateway_refusals_total":
                    found[sample.labels["reason"]] = sample.value
        return found, recorded

    def agree() -> bool:
        found, recorded = counts()
        return found == recorded

    assert poll(agree, 10, 0.05), counts()
    found, _ = counts()  # kubectl retries: each attempt is a request
    assert found["IMPERSONATION_REFUSED"] >= 1 and found["WRONG_CLUSTER"] >= 1, found
    assert _fetch(metrics_url.replace("/metrics", "/healthz")) == "ok\n"


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
        return str(answer.read().decode())


def _expired_copy(token: str, key_file: Path) -> str:
    """The credential re-signed with the exchanger's own key, with its lifetime moved an hour
    into the past: a genuine kubegate credential in every way but its expiry."""
    claims = jwt.decode(token, options={"verify_signature": False})
    shift = 3600 + int(claims["exp"]) - int(claims["iat"])
    for name in ("iat", "nbf", "exp"):
        if name in claims:
            claims[name] = int(claims[name]) - shift
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    headers = jwt.get_unverified_header(token)
    return jwt.encode(claims, key, algorithm="ES256",  # type: ignore[arg-type]
                      headers={k: v for k, v in headers.items() if k != "alg"})


def _watch_started(plane: ControlPlane, namespace: str) -> bool:
    return any(e.get("stage") == "ResponseStarted" and e.get("verb") == "watch"
               and e.get("impersonatedUser", {}).get("username") == USER
               and e.get("objectRef", {}).get("namespace") == namespace
               for e in audit_events(plane.audit_log_path))


def _wait_for_line(process: subprocess.Popen[str], text: str, seen: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if text in line:
            seen.set()


