"""The HTML audit report in a real headless Chromium (Debian's package): it renders, shows the
sessions and the bypass findings, runs nothing and fetches nothing that a claim, a reason or a
user agent smuggled in, and the test keeps a screenshot. One page is rendered from a report
dict, one by `kubegate audit report -o html --out FILE` over audit logs on disk.

A loopback HTTP server counts requests: a control page with a real <img> pointing at it must
reach it (so the counter works), and the report, whose reason and user agents carry <img>,
<link> and <script> aimed at it, must not.
"""

from __future__ import annotations

import http.server
import json
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchanger.auditreport.html import CONTENT_SECURITY_POLICY, render_html
from tests.support.chromium import Chromium, require_chromium

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Counter(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.paths.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def trap() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server; yields its base URL and the paths it was asked for."""
    handler = type("Counter", (_Counter,), {"paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    return Chromium(tmp_path, require_chromium())


def _hostile(base: str) -> str:
    return (f"<img src=\"{base}/img\"><link rel=\"stylesheet\" href=\"{base}/css\">"
            f"<script>document.body.setAttribute('data-pwned','1');"
            f"fetch('{base}/fetch')</script>")


def _event(time: str, verb: str, resource: str, **extra: Any) -> dict[str, Any]:
    """One action as the report's JSON carries it (the shape of a real audit.k8s.io/v1 event
    reduced by the report: the values come from the kube-apiserver audit logs of the tests)."""
    return {"time": time, "verb": verb, "api_group": "", "resource": resource,
            "subresource": "", "namespace": "t-67e4ee2d", "name": "", "code": 200,
            "user_agent": "kubectl/v1.37.2 (linux/amd64) kubernetes/$Format",
            "privileged": "", "refused": False, "where": "audit.log:1", **extra}


def _report(base: str) -> dict[str, Any]:
    pipeline = {
        "session_id": "3f2c9a1e-pipeline", "token_id": "46d051a7-ca5b-4ad5-b3e3-c7b0afda524b",
        "mapping": "web-deploy", "issuer": "github",
        "subject": "repo:octo-org/web:ref:refs/heads/main", "who": "",
        "service_account": "job", "namespace": "t-67e4ee2d", "cluster": "test",
        "issued_at": "2026-12-02T15:07:00Z", "expires_at": "2026-12-02T15:22:00Z",
        "ci": {"run_id": "123456", "sha": "0123abcd"}, "approvers": [], "reason": "",
        "actions": [
            _event("2026-12-02T15:07:10.2Z", "get", "deployments", api_group="apps", name="web"),
            _event("2026-12-02T15:07:12Z", "patch", "deployments", api_group="apps", name="web"),
            _event("2026-12-02T15:07:30.06Z", "get", "pods", subresource="exec", name="build-1",
                   code=403, privileged="exec", refused=True),
            _event("2026-12-02T15:08:01Z", "get", "secrets", name="db-password",
                   privileged="secret-read", user_agent=_hostile(base)),
        ],
    }
    person = {
        "session_id": "77aa01bb-people", "token_id": "9d1e0c52-0f1e-4b7a-9a55-2b8e7c0d3e11",
        "mapping": "sre-breakglass", "issuer": "dex", "subject": "user-alice",
        "who": "alice@example.com", "user": "oidc:alice@example.com",
        "namespace": "t-67e4ee2d", "issued_at": "2026-12-02T15:10:00Z",
        "expires_at": "2026-12-02T15:40:00Z", "ended_at": "2026-12-02T15:20:00Z",
        "end_reason": "revoked", "access_request": "ar-42",
        "approvers": ["bob@example.com"], "reason": f"incident 981 {_hostile(base)}",
        "actions": [
            _event("2026-12-02T15:11:00Z", "create", "rolebindings",
                   api_group="rbac.authorization.k8s.io", name="hotfix", privileged="rbac"),
            _event("2026-12-02T15:21:00Z", "get", "pods", code=401, refused=True),
        ],
    }
    return {
        "generated_at": "2026-12-02T16:00:00Z", "filters": {},
        "sessions": [pipeline, person],
        "findings": [
            {"kind": "client-certificate", "severity": "high", "user": "admin", "count": 12,
             "first_seen": "2026-12-02T15:05:21Z", "last_seen": "2026-12-02T15:30:00Z",
             "message": "requests with a client certificate (X509SHA256=a7a29593...)"},
            {"kind": "legacy-token", "severity": "high",
             "user": "system:serviceaccount:t-67e4ee2d:legacy", "count": 3,
             "first_seen": "2026-12-02T15:12:00Z", "last_seen": "2026-12-02T15:13:00Z",
             "message": "a legacy service-account token Secret used directly"},
        ],
        "least_privilege": {"suggested_role": "apiVersion: rbac.authorization.k8s.io/v1\n"
                                              "kind: Role\nrules: []\n",
                            "unused": ["delete deployments.apps"]},
        "problems": [{"where": "audit.log.1.gz:88", "message": "truncated JSON line"}],
    }


def test_the_report_renders_in_chromium_with_its_findings_and_a_screenshot(
    tmp_path: Path, chromium: Chromium, trap: tuple[str, list[str]],
) -> None:
    base, requested = trap
    page = tmp_path / "report.html"
    page.write_text(render_html(_report(base)), encoding="utf-8")

    dom = chromium.dump_dom(page)
    png = chromium.screenshot(page, tmp_path / "report.png")

    assert f"content=\"{CONTENT_SECURITY_POLICY}\"" in dom
    for kind, user in (("client-certificate", "admin"),
                       ("legacy-token", "system:serviceaccount:t-67e4ee2d:legacy")):
        assert f"<td class=\"kind\">{kind}</td>" in dom
        assert f"<td class=\"user\">{user}</td>" in dom
    assert "id=\"session-3f2c9a1e-pipeline\"" in dom
    assert "id=\"session-77aa01bb-people\"" in dom
    assert dom.count("<tr class=\"privileged refused\">") == 1  # the refused exec
    assert dom.count("<tr class=\"privileged\">") == 2  # the Secret read, the RoleBinding
    assert dom.count("<tr class=\"refused\">") == 1  # after revocation
    assert "audit.log.1.gz:88" in dom
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    assert "&lt;script&gt;document.body.setAttribute" in dom
    assert requested == []

    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert struct.unpack(">II", data[16:24]) == (1280, 2000)
    assert len(data) > 30_000  # tables, timelines and text, not a blank canvas


def test_the_request_counter_sees_what_a_page_without_the_policy_fetches(
    tmp_path: Path, chromium: Chromium, trap: tuple[str, list[str]],
) -> None:
    base, requested = trap
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><body><img src=\"{base}/img\"></body></html>")
    chromium.dump_dom(page)
    assert "/img" in requested


# -- the command over logs on disk -----------------------------------------------------------

JTI = "46d051a7-ca5b-4ad5-b3e3-c7b0afda524b"
X509 = "X509SHA256=a7a29593ac266639e3d9ea70bac08ee95e52d1c974e937d1f6c0daf05a6b722b"


def _allow_line() -> dict[str, Any]:
    """A kubegate allow line (the exchanger's audit log) for a pipeline's session."""
    return {"time": "2026-12-02T15:07:00.000000Z", "decision": "allow", "reason": "OK",
            "status": "OK", "issuer": "github", "role": "web-deploy", "mapping": "web-deploy",
            "caller": {"iss": "https://token.actions.githubusercontent.com",
                       "sub": "repo:octo-org/web:ref:refs/heads/main", "jti": "gh-1"},
            "grant": {"cluster": "test", "namespace": "t-67e4ee2d", "service_account": "job",
                      "user": "", "groups": [], "audiences": [], "lifetime_seconds": 900},
            "token_id": JTI, "session_id": "3f2c9a1e-pipeline",
            "expires_at": "2026-12-02T15:22:00.000000Z", "peer": "", "detail": "",
            "trace_id": "", "ci": {"run_id": "123456", "sha": "0123abcd"}}


def _cluster_line(number: int, time: str, verb: str, user: dict[str, Any], ref: dict[str, str],
                  code: int, agent: str = "kubectl/v1.37.2 (linux/amd64) kubernetes/$Format",
                  ) -> dict[str, Any]:
    """One audit.k8s.io/v1 event as the tests' kube-apiserver writes it (level Metadata)."""
    path = "/".join(x for x in ("/api/v1/namespaces", ref.get("namespace"),
                                ref["resource"], ref.get("name"), ref.get("subresource")) if x)
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": f"00000000-0000-4000-8000-{number:012d}", "stage": "ResponseComplete",
            "requestURI": path, "verb": verb, "user": user, "sourceIPs": ["127.0.0.1"],
            "userAgent": agent, "objectRef": {"apiVersion": "v1", **ref},
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": time, "stageTimestamp": time,
            "annotations": {"authorization.k8s.io/decision": "forbid" if code == 403
                            else "allow", "authorization.k8s.io/reason": ""}}


def _write_logs(folder: Path, base: str) -> tuple[Path, Path]:
    job = {"username": "system:serviceaccount:t-67e4ee2d:job", "uid": "cccc330f",
           "groups": ["system:serviceaccounts", "system:serviceaccounts:t-67e4ee2d",
                      "system:authenticated"],
           "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={JTI}"]}}
    admin = {"username": "admin", "groups": ["system:masters", "system:authenticated"],
             "extra": {"authentication.kubernetes.io/credential-id": [X509]}}
    legacy = {"username": "system:serviceaccount:t-67e4ee2d:legacy", "uid": "5a0b1c2d",
              "groups": ["system:serviceaccounts", "system:authenticated"]}
    ns = "t-67e4ee2d"
    events = [
        _cluster_line(1, "2026-12-02T15:07:10.2Z", "get", job,
                      {"resource": "pods", "namespace": ns, "name": "build-1"}, 200),
        _cluster_line(2, "2026-12-02T15:07:30.06Z", "get", job,
                      {"resource": "pods", "namespace": ns, "name": "build-1",
                       "subresource": "exec"}, 403),
        _cluster_line(3, "2026-12-02T15:08:01Z", "get", job,
                      {"resource": "secrets", "namespace": ns, "name": "db-password"}, 200,
                      agent=_hostile(base)),
        _cluster_line(4, "2026-12-02T15:09:00Z", "get", admin,
                      {"resource": "secrets", "namespace": ns, "name": "db-password"}, 200),
        _cluster_line(5, "2026-12-02T15:10:00Z", "list", legacy,
                      {"resource": "pods", "namespace": ns}, 200),
    ]
    kubegate_log, cluster_log = folder / "kubegate-audit.log", folder / "audit.log"
    kubegate_log.write_text(json.dumps(_allow_line()) + "\n")
    lines = [json.dumps(e) for e in events]
    cluster_log.write_text("\n".join(lines) + "\n" + lines[0][:80] + "\n")  # one cut short
    return kubegate_log, cluster_log


def test_kubegate_audit_report_writes_an_html_file_chromium_renders(
    tmp_path: Path, chromium: Chromium, trap: tuple[str, list[str]],
) -> None:
    base, requested = trap
    kubegate_log, cluster_log = _write_logs(tmp_path, base)
    page = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "kubegate", "audit", "report", "--kubegate-log",
         str(kubegate_log), "--cluster-log", str(cluster_log), "-o", "html", "--out",
         str(page)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    dom = chromium.dump_dom(page)
    chromium.screenshot(page, tmp_path / "report.png")

    assert f"content=\"{CONTENT_SECURITY_POLICY}\"" in dom
    assert "id=\"session-3f2c9a1e-pipeline\"" in dom
    assert "run_id=123456" in dom
    assert dom.count("<tr class=\"privileged refused\">") == 1  # the refused exec
    assert dom.count("<tr class=\"privileged\">") == 1  # the Secret read
    assert "<td class=\"kind\">client-certificate</td>" in dom
    assert "<td class=\"user\">admin</td>" in dom
    assert "<td class=\"kind\">legacy-token</td>" in dom
    assert "kubegate-observed-session-3f2c9a1e-pipeline" in dom  # the least-privilege Role
    assert "<pre class=\"manifest\">" in dom
    assert f"{cluster_log}:6" in dom  # the line cut short, by file and line
    assert "&lt;script&gt;document.body.setAttribute" in dom
    assert requested == []
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_MAGIC)
