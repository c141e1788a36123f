"""The HTML report: one self-contained page that shows every value as text."""

from __future__ import annotations

import html.parser
from typing import Any

import pytest

from exchanger.auditreport.html import CONTENT_SECURITY_POLICY, render_html

SCRIPT = "<script>document.body.setAttribute('data-pwned','1')</script>"


def _action(time: str, verb: str, resource: str, **extra: Any) -> dict[str, Any]:
    return {"time": time, "verb": verb, "resource": resource, "subresource": "",
            "namespace": "web", "name": "", "code": 200, "privileged": "", "refused": False,
            "user_agent": "kubectl/v1.37.2 (linux/amd64) kubernetes/$Format", **extra}


def _report(**changes: Any) -> dict[str, Any]:
    """The shape of `render.as_json` (version 1)."""
    report: dict[str, Any] = {
        "version": 1,
        "filters": {"since": "", "until": "", "session": "", "identity": "", "mapping": "",
                    "run": "123456"},
        "counts": {"events": 40, "joined": 3, "sessions": 1, "findings": 1, "problems": 1},
        "sessions": [{
            "session_id": "s-1", "token_id": "d64f01a9", "credential_id": "JTI=d64f01a9",
            "mapping": "web-deploy", "issuer": "github",
            "subject": "repo:octo-org/web:ref:refs/heads/main", "who": "",
            "ci": {"run_id": "123456", "sha": "abc123"},
            "grant": {"cluster": "prod", "namespace": "web", "service_account": "deployer",
                      "user": "", "groups": []},
            "issued_at": "2026-12-02T15:00:00.000000Z",
            "expires_at": "2026-12-02T15:15:00.000000Z", "ended_at": "", "end_reason": "",
            "access_request": "ar-7", "reason": f"hotfix {SCRIPT}",
            "approvers": ["alice@example.com"], "where": "kubegate.log:3",
            "counts": {"actions": 3, "refused": 1, "privileged": 1, "not_kept": 0},
            "first_seen": "2026-12-02T15:01:00.000000Z",
            "last_seen": "2026-12-02T15:03:00.000000Z",
            "actions": [
                _action("2026-12-02T15:01:00Z", "get", "deployments", name="web"),
                _action("2026-12-02T15:02:00Z", "get", "pods", subresource="exec",
                        name="web-1", code=101, privileged="exec", user_agent=SCRIPT),
                _action("2026-12-02T15:03:00Z", "list", "secrets", code=403, refused=True),
            ],
        }],
        "findings": [{"kind": "client-certificate", "severity": "high", "user": "admin",
                      "message": "a client certificate used directly", "count": 4,
                      "events": [_action("2026-12-02T15:05:00.000000Z", "get", "pods"),
                                 _action("2026-12-02T15:04:00.000000Z", "get", "pods")]}],
        "problems": [{"where": "audit.log:17", "message": "truncated JSON line"}],
        "sections": {"least_privilege": {"scope": "session", "entries": [{
            "key": "s-1", "role_name": "kubegate-observed-session-s-1",
            "mappings": ["web-deploy"], "identities": ["system:serviceaccount:web:deployer"],
            "rules": [], "manifest": "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n",
            "diff": {"unused": [{"verb": "delete", "group": "", "resource": "pods",
                                 "namespace": "web", "names": []}],
                     "needed": [{"verb": "get", "group": "apps", "resource": "deployments",
                                 "namespace": "web", "names": ["web"]}]},
            "diff_error": ""}]}},
    }
    return {**report, **changes}


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_a_script_in_a_reason_or_a_user_agent_is_text_not_a_tag() -> None:
    page = render_html(_report())
    assert "<script" not in page
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;" in page
    assert not [tag for tag, _ in _tags(page) if tag == "script"]


@pytest.mark.parametrize("field", ["user", "kind", "message"])
def test_finding_values_are_escaped(field: str) -> None:
    finding = {"kind": "legacy-token", "severity": "high", "user": "u", "message": "m",
               field: "\"><img src=x onerror=alert(1)>"}
    page = render_html(_report(findings=[finding]))
    assert "<img" not in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_page_fetches_nothing_and_says_so_in_its_policy() -> None:
    page = render_html(_report())
    metas = [a for tag, a in _tags(page) if tag == "meta"
             and a.get("http-equiv") == "Content-Security-Policy"]
    assert metas == [{"http-equiv": "Content-Security-Policy",
                      "content": CONTENT_SECURITY_POLICY}]
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    fetching = [(tag, a) for tag, a in _tags(page)
                if tag in ("link", "img", "iframe", "object", "embed", "script")
                or {"src", "href", "srcset", "action"} & set(a)]
    assert fetching == []


def test_the_summary_shows_each_count() -> None:
    page = render_html(_report())
    for key, value in (("sessions", 1), ("events", 40), ("joined", 3), ("privileged", 1),
                       ("refused", 1), ("findings", 1), ("problems", 1)):
        assert f"id=\"count-{key}\"><b>{value}</b>" in page
    assert "filters: run=123456" in page


def test_counts_are_derived_when_the_report_has_none() -> None:
    session = {k: v for k, v in _report()["sessions"][0].items() if k != "counts"}
    page = render_html(_report(counts=None, sessions=[session]))
    assert "id=\"count-events\"><b>3</b>" in page
    assert "id=\"count-privileged\"><b>1</b>" in page
    assert "id=\"count-refused\"><b>1</b>" in page


def test_a_session_shows_who_a_timeline_and_its_actions() -> None:
    page = render_html(_report())
    assert "<section class=\"session\" id=\"session-s-1\">" in page
    assert "run_id=123456, sha=abc123" in page
    assert "<b>as</b> deployer; <b>cluster</b> prod; <b>namespace</b> web" in page
    assert "alice@example.com" in page
    assert page.count("<g class=\"mark\">") == 2  # the exec and the refused list
    assert "<tr class=\"privileged\">" in page
    assert "<span class=\"tag privileged\">exec</span>" in page
    assert "<tr class=\"refused\">" in page
    assert "<td>pods/exec</td><td>web/web-1</td><td>101</td>" in page


def test_privileged_marks_sit_inside_the_bar_in_time_order() -> None:
    page = render_html(_report())
    xs = [float(a["x"] or 0) for tag, a in _tags(page)
          if tag == "rect" and a.get("width") == "4"]
    assert len(xs) == 2
    assert 10 <= xs[0] < xs[1] <= 990


def test_findings_least_privilege_and_problems_are_shown() -> None:
    page = render_html(_report())
    assert "<td class=\"kind\">client-certificate</td>" in page
    assert "<td class=\"sev-high\">high</td>" in page
    assert "<td class=\"user\">admin</td>" in page
    assert "<td>2026-12-02T15:04:00Z</td><td>2026-12-02T15:05:00Z</td>" in page  # first, last
    assert ("<pre class=\"manifest\">apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n"
            "</pre>") in page
    assert "<ul class=\"unused\"><li>delete pods in web</li></ul>" in page
    assert "<ul class=\"needed\"><li>get apps/deployments in web (web)</li></ul>" in page
    assert "<code>audit.log:17</code> truncated JSON line" in page


def test_a_least_privilege_section_of_another_shape_renders_as_is() -> None:
    section = {"suggested_role": "kind: Role\n", "unused": ["delete pods"]}
    page = render_html(_report(sections={}, least_privilege=section))
    assert "<pre>kind: Role\n</pre>" in page
    assert "<li>delete pods</li>" in page


def test_rows_not_kept_by_the_report_are_counted() -> None:
    session = _report()["sessions"][0]
    session = {**session, "counts": {**session["counts"], "not_kept": 1200}}
    page = render_html(_report(sessions=[session]))
    assert "1200 more ordinary actions counted, not listed" in page


def test_long_sessions_keep_privileged_rows_and_count_the_rest() -> None:
    ordinary = [_action(f"2026-12-02T15:0{i % 10}:00Z", "get", "pods") for i in range(9)]
    exec_row = _action("2026-12-02T15:09:30Z", "create", "pods", subresource="exec",
                       privileged="exec")
    session = {**_report()["sessions"][0], "actions": [*ordinary, exec_row]}
    page = render_html(_report(sessions=[session]), max_rows=3)
    assert page.count("<tr class=\"\">") == 3
    assert page.count("<tr class=\"privileged\">") == 1
    assert "6 more ordinary actions counted, not listed" in page


def test_an_empty_report_still_renders() -> None:
    page = render_html({})
    assert page.startswith("<!DOCTYPE html>")
    assert "No brokered session" in page
    assert "No bypass found" in page
    assert "Least privilege" not in page


def test_unix_second_times_are_shown_in_rfc3339() -> None:
    session = {"session_id": "s", "issued_at": 1_764_687_600.0, "expires_at": 1_764_688_500.0,
               "actions": [{"time": 1_764_687_660.5, "verb": "get", "resource": "pods"}]}
    page = render_html({"sessions": [session]})
    assert "<td>2025-12-02T15:01:00Z</td>" in page
