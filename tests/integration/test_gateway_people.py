"""People through the gateway, against the real kube-apiserver and the real kubectl: a vendor
SRE signs in at the organisation's OpenID Connect provider (a local HTTPS issuer with real
keys, discovery and JWKS) and uses the ID token as kubectl's token, with no credential issued
at all. The gateway verifies it, matches the vendor's trust mapping for the cluster it fronts,
passes the access gate (the mapping's maintenance window), records a session in the index
(`kubegate sessions list` sees it), and forwards the requests impersonating the mapping's
user (`{claim: email, prefix: "vendor:"}`) and groups.

Proven here: inside the window kubectl works and the API server's audit log names the vendor
as the impersonated user; outside it the vendor is refused (403 OUTSIDE_WINDOW), recorded;
and when the window closes during an open watch, the watch is cut within a second of its end
and the next request is refused. The cluster entry is a tokenRequest one, as deploy/ ships
(`in-cluster`): a mapping that grants a user there is usable through the gateway only.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchanger.access.sqlite_store import SqliteStores
from tests.support.controlplane import ControlPlane, audit_events
from tests.support.gateway import (
    GATEWAY_USER,
    GatewayProcess,
    gateway_service_account,
    start_gateway_process,
)
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import OIDCIssuer
from tests.support.pki import TestCA
from tests.support.wait import poll

CLIENT_ID = "kubegate-cli"
GROUP = "vendor-sre"
CUT_WITHIN = 1.0  # issue 19: a session ends on time, its open streams closed at once
VIEWER_RULES = [{"apiGroups": [""], "resources": ["pods", "configmaps"],
                 "verbs": ["get", "list", "watch"]}]
MAPPING = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: corp
  claims:
  - {{claim: groups, contains: {group}}}
  - {{claim: email_verified, equals: true}}
  grant:
    cluster: test
    namespace: {namespace}
    user: {{claim: email, prefix: "vendor:"}}
    groups: [{grant_group}]
  windows:
  - {{start: "{start}", end: "{end}"}}
"""


def rfc3339(at: float) -> str:
    return dt.datetime.fromtimestamp(int(at), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class People:
    corp: OIDCIssuer
    gateway: GatewayProcess
    state: Path
    web: str
    folder: Path

    def id_token(self, email: str, group: str) -> str:
        now = int(time.time())
        return self.corp.sign({
            "iss": self.corp.url, "sub": f"corp-{uuid.uuid4().hex[:8]}", "aud": CLIENT_ID,
            "iat": now, "exp": now + 900, "jti": uuid.uuid4().hex, "email": email,
            "email_verified": True, "groups": [group]})

    def kubectl(self, plane: ControlPlane, token: str) -> Kubectl:
        return self.gateway.kubectl(plane, token, self.folder)

    def add_mapping(self, name: str, group: str, start: float, end: float) -> None:
        write_mapping(self.state, self.web, name, group, start, end)


def write_mapping(state: Path, namespace: str, name: str, group: str, start: float,
                  end: float) -> None:
    """A vendor mapping whose one window is [start, end), picked up within reloadInterval."""
    (state / "mappings" / f"{name}.yaml").write_text(MAPPING.format(
        name=name, group=group, namespace=namespace, grant_group=GROUP,
        start=rfc3339(start), end=rfc3339(end)))


@pytest.fixture
def people(cluster: Cluster, control_plane: ControlPlane, oidc_ca: TestCA,
           tmp_path: Path) -> Iterator[People]:
    web = cluster.create_namespace("vendor")
    cluster.create_role(web, "viewer", VIEWER_RULES)
    cluster.bind_role(web, "viewer", group=GROUP)
    state = tmp_path / "state"
    (state / "mappings").mkdir(parents=True)
    token_file = gateway_service_account(cluster, tmp_path)
    with OIDCIssuer(oidc_ca, folder=tmp_path) as corp:
        document: dict[str, Any] = {
            "stateDir": str(state), "reloadInterval": "1s",
            "issuers": [{"name": "corp", "url": corp.url, "audiences": [CLIENT_ID],
                         "caFile": str(corp.ca_path), "kind": "oidc"}],
            "clusters": [{"name": "test", "server": control_plane.url,
                          "caFile": str(control_plane.ca_path), "backend": "tokenRequest",
                          "credentials": {"tokenFile": str(token_file)}}],
            "gateway": {"listen": "127.0.0.1:0", "cluster": "test"},
        }
        now = time.time()
        write_mapping(state, web, "vendor-now", "vendors", now - 60, now + 3600)
        write_mapping(state, web, "vendor-later", "vendors-later", now + 86400, now + 90000)
        with start_gateway_process(document, tmp_path) as gateway:
            yield People(corp=corp, gateway=gateway, state=state, web=web, folder=tmp_path)


def test_a_vendor_inside_the_window_works_and_outside_it_is_refused_and_recorded(
        people: People, control_plane: ControlPlane) -> None:
    vendor = "vera@vendor.example"
    token = people.id_token(vendor, "vendors")
    kubectl = people.kubectl(control_plane, token)
    listed = kubectl.run("get", "pods", "-n", people.web)
    assert listed.returncode == 0, listed.stderr + people.gateway.log_tail()
    denied = kubectl.run("get", "secrets", "-n", people.web)
    assert denied.returncode != 0 and f"vendor:{vendor}" in denied.stderr

    def impersonated_list() -> dict[str, Any] | None:
        return next((e for e in audit_events(control_plane.audit_log_path)
                     if e.get("verb") == "list" and e.get("impersonatedUser")
                     and e["impersonatedUser"].get("username") == f"vendor:{vendor}"), None)

    assert poll(lambda: impersonated_list() is not None, 15)
    event = impersonated_list()
    assert event is not None and event["user"]["username"] == GATEWAY_USER
    assert GROUP in event["impersonatedUser"]["groups"]
    session_id = event["impersonatedUser"]["extra"]["kubegate.io/session"][0]
    stores = SqliteStores(people.state / "access.db")
    try:
        session = stores.sessions.get(session_id)
    finally:
        stores.close()
    assert session is not None and session.active and session.mapping == "vendor-now"
    assert session.caller.who == vendor and token not in session.token_id

    later = people.kubectl(control_plane, people.id_token("olaf@vendor.example",
                                                          "vendors-later"))
    refused = later.run("get", "pods", "-n", people.web)
    assert refused.returncode != 0

    def outside() -> list[dict[str, Any]]:  # recorded once the gateway closed the connection
        return [r for r in people.gateway.records() if r["reason"] == "OUTSIDE_WINDOW"]

    assert poll(lambda: bool(outside()), 10, 0.1), people.gateway.records()[-3:]
    assert outside()[-1]["status"] == "403"
    assert all(token not in json.dumps(r) for r in people.gateway.records())


def test_an_open_watch_is_cut_when_the_window_closes_and_the_vendor_is_refused_after(
        people: People, control_plane: ControlPlane, cluster: Cluster) -> None:
    cluster.core.create_namespaced_config_map(people.web, {
        "metadata": {"name": "watched"}, "data": {"a": "b"}})
    end = int(time.time()) + 20
    people.add_mapping("vendor-closing", "vendors-closing", end - 3600, end)
    kubectl = people.kubectl(control_plane, people.id_token("cora@vendor.example",
                                                            "vendors-closing"))
    assert poll(lambda: kubectl.run("get", "pods", "-n", people.web).returncode == 0, 15), (
        "the new mapping was never in force" + people.gateway.log_tail())
    watch = subprocess.Popen(  # noqa: S603
        [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", "get", "configmaps",
         "-n", people.web, "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        opened = threading.Event()
        reader = threading.Thread(target=_wait_for_line, args=(watch, "watched", opened),
                                  daemon=True)
        reader.start()
        assert opened.wait(30), "the watch never listed"
        assert time.time() < end - 1, "too slow to open the watch before the window closed"
        watch.wait(timeout=end - time.time() + 30)
        ended_after = time.time() - end
    finally:
        if watch.poll() is None:
            watch.kill()
        watch.wait()
        assert watch.stdout is not None and watch.stderr is not None
        watch.stdout.close()
        watch.stderr.close()
    print(f"\nwindow end -> kubectl's watch ended after {ended_after:.3f} s")
    assert -0.05 <= ended_after <= CUT_WITHIN, f"the watch ended {ended_after:.2f} s after " \
        "the window closed"
    after = kubectl.run("get", "pods", "-n", people.web)
    assert after.returncode != 0
    fresh = people.kubectl(control_plane, people.id_token("cora@vendor.example",
                                                          "vendors-closing"))
    assert fresh.run("get", "pods", "-n", people.web).returncode != 0

    def last_two() -> list[tuple[str, str]]:  # a refusal is recorded as it is answered
        return [(r["reason"], r["status"]) for r in people.gateway.records()[-2:]]

    assert poll(lambda: last_two() == [("SESSION_ENDED", "403"), ("OUTSIDE_WINDOW", "403")],
                10), last_two()
    cut = [r for r in people.gateway.records() if r["gateway"]["verb"] == "watch"]
    assert cut and cut[-1]["gateway"]["ended_by"], cut


def _wait_for_line(process: subprocess.Popen[str], text: str, seen: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if text in line:
            seen.set()
