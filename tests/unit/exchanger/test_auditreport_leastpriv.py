"""Least privilege from observed use: which requests count, how they merge into rules, the
manifest they make, and the diff with what the granted identity may do."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from exchanger.auditreport.leastpriv import (
    MAX_NAMES,
    LeastPrivilege,
    Rule,
    as_role_yaml,
    diff,
    granted_rights,
    least_privilege_section,
    manifests,
    role_name,
    scope_for,
)
from exchanger.auditreport.model import BrokeredSession, ClusterEvent, Filters, JoinedAction
from exchanger.blast.rights import (
    BASELINE_USER,
    CLUSTER_PROBE,
    ResourceRule,
    Right,
    RightsFinder,
    RulesAnswer,
)
from kubegate.errors import PreconditionError

SESSION = BrokeredSession(session_id="s1", token_id="t1", mapping="web-deploy", issuer="github",
                          subject="repo:octo/web", cluster="test", namespace="web",
                          service_account="deployer", ci={"run_id": "123456"})


def action(verb: str, resource: str = "pods", *, namespace: str = "web", name: str = "",
           group: str = "", subresource: str = "", code: int = 200, uri: str = "",
           session: BrokeredSession | None = SESSION) -> JoinedAction:
    event = ClusterEvent(time=1.0, audit_id="a", stage="ResponseComplete", verb=verb,
                         username="system:serviceaccount:web:deployer", api_group=group,
                         resource=resource, subresource=subresource, namespace=namespace,
                         name=name, request_uri=uri or f"/api/v1/namespaces/{namespace}/pods",
                         code=code)
    return JoinedAction(event=event, session=session)


def observed(*actions: JoinedAction, scope: Any = "session") -> list[Rule]:
    recorder = LeastPrivilege()
    for each in actions:
        recorder.observe(each)
    assert recorder.findings() == []
    roles = recorder.roles(scope)
    return next(iter(roles.values())) if roles else []


def rule(resources: tuple[str, ...], verbs: tuple[str, ...], *, namespace: str | None = "web",
         group: str = "", names: tuple[str, ...] = ()) -> Rule:
    return Rule(namespace=namespace, api_groups=(group,), resources=resources, verbs=verbs,
                resource_names=names)


# -- which requests count -----------------------------------------------------------------


@pytest.mark.parametrize(("case", "done"), [
    ("a refused request", action("get", name="p", code=403)),
    ("an unauthenticated one", action("get", name="p", code=401)),
    ("a request not yet answered", action("get", name="p", code=0)),
    ("a request not made with a kubegate credential", action("get", name="p", session=None)),
    ("discovery", action("get", "", namespace="", uri="/apis/apps/v1")),
    ("the version", action("get", "", namespace="", uri="/version?timeout=32s")),
    ("a self review", action("create", "selfsubjectaccessreviews", namespace="",
                             group="authorization.k8s.io")),
])
def test_requests_that_were_not_needed_or_everyone_may_make_do_not_count(
    case: str, done: JoinedAction,
) -> None:
    assert observed(done) == [], case


# -- merging --------------------------------------------------------------------------------


def test_verbs_of_the_same_resource_merge_and_resources_with_the_same_verbs_merge() -> None:
    rules = observed(action("list"), action("list", "configmaps"), action("watch"),
                     action("watch", "configmaps"), action("create", "configmaps"),
                     action("list"))
    assert rules == [rule(("configmaps",), ("list", "watch", "create")),
                     rule(("pods",), ("list", "watch"))]


def test_rules_are_one_per_api_group_sorted_by_group_then_resource() -> None:
    rules = observed(action("list", "deployments", group="apps"), action("list", "pods"),
                     action("list", "jobs", group="batch"), action("list", "replicasets",
                                                                  group="apps"))
    assert rules == [rule(("pods",), ("list",)),
                     rule(("deployments", "replicasets"), ("list",), group="apps"),
                     rule(("jobs",), ("list",), group="batch")]


def test_a_list_with_watch_true_in_its_url_is_a_watch() -> None:
    rules = observed(action("list", uri="/api/v1/namespaces/web/pods?watch=true&timeout=5m"),
                     action("list", uri="/api/v1/namespaces/web/pods?limit=500"))
    assert rules == [rule(("pods",), ("list", "watch"))]


def test_verbs_come_in_kubernetes_order_and_unknown_verbs_after_them() -> None:
    rules = observed(*(action(verb, name="p") for verb in
                       ("delete", "escalate", "patch", "get", "update")))
    assert rules[0].verbs == ("get", "update", "patch", "delete", "escalate")


# -- resource names -------------------------------------------------------------------------


def test_a_few_names_read_become_resource_names() -> None:
    rules = observed(action("get", "configmaps", name="b"), action("get", "configmaps", name="a"),
                     action("update", "configmaps", name="a"),
                     action("update", "configmaps", name="b"))
    assert rules == [rule(("configmaps",), ("get", "update"), names=("a", "b"))]


def test_more_than_the_threshold_of_names_becomes_every_name() -> None:
    few = observed(*(action("get", "secrets", name=f"s{i}") for i in range(MAX_NAMES)))
    many = observed(*(action("get", "secrets", name=f"s{i}") for i in range(MAX_NAMES + 1)))
    assert few[0].resource_names == tuple(f"s{i}" for i in range(MAX_NAMES))
    assert many == [rule(("secrets",), ("get",))]


def test_a_request_without_a_name_makes_its_verb_hold_every_name() -> None:
    rules = observed(action("delete", name="p"), action("delete"))
    assert rules == [rule(("pods",), ("delete",))]


@pytest.mark.parametrize("verb", ["list", "watch", "create", "deletecollection"])
def test_verbs_whose_authorization_carries_no_name_never_get_resource_names(verb: str) -> None:
    assert observed(action(verb, name="p")) == [rule(("pods",), (verb,))]


def test_named_and_unnamed_verbs_of_one_resource_are_separate_rules() -> None:
    rules = observed(action("get", name="p"), action("list"))
    assert rules == [rule(("pods",), ("list",)), rule(("pods",), ("get",), names=("p",))]


# -- subresources and scope -------------------------------------------------------------------


def test_subresources_are_resource_slash_subresource() -> None:
    rules = observed(action("create", subresource="exec", name="web-0"),
                     action("get", subresource="log", name="web-0"))
    assert rules == [rule(("pods/exec",), ("create",)),
                     rule(("pods/log",), ("get",), names=("web-0",))]


def test_cluster_scoped_and_all_namespace_requests_go_to_the_cluster_role() -> None:
    rules = observed(action("list", "nodes", namespace=""), action("list", namespace=""),
                     action("get", "pods", name="p"), action("get", "", namespace="",
                                                             uri="/metrics"))
    assert rules == [
        rule(("nodes", "pods"), ("list",), namespace=None),
        Rule(namespace=None, verbs=("get",), non_resource_urls=("/metrics",)),
        rule(("pods",), ("get",), names=("p",)),
    ]


def test_sessions_mappings_and_runs_are_recorded_apart() -> None:
    other = BrokeredSession(session_id="s2", token_id="t2", mapping="web-deploy",
                            issuer="github", subject="repo:octo/web", namespace="web",
                            service_account="deployer", ci={"pipeline_id": "77"})
    recorder = LeastPrivilege()
    recorder.observe(action("list"))
    recorder.observe(action("create", "configmaps", session=other))
    assert recorder.roles("session") == {"s1": [rule(("pods",), ("list",))],
                                         "s2": [rule(("configmaps",), ("create",))]}
    assert recorder.roles("mapping") == {"web-deploy": [rule(("configmaps",), ("create",)),
                                                        rule(("pods",), ("list",))]}
    assert recorder.roles("run") == {"123456": [rule(("pods",), ("list",))],
                                     "77": [rule(("configmaps",), ("create",))]}


def test_only_the_sessions_the_report_filters_admit_are_recorded() -> None:
    recorder = LeastPrivilege(filters=Filters(run="77"))
    recorder.observe(action("list"))
    assert recorder.roles("run") == {}


# -- manifests ------------------------------------------------------------------------------


def test_the_role_manifest_is_a_ready_role_in_its_namespace() -> None:
    rules = observed(action("get", name="p"), action("list"), action("create", "configmaps"),
                     action("list", "nodes", namespace=""))
    text = as_role_yaml("least", "web", rules)
    assert yaml.safe_load(text) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "least", "namespace": "web", "annotations": {
            "kubegate.io/generated-from":
                "observed use (kubegate audit report --least-privilege)"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
                  {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"],
                   "verbs": ["get"]}]}
    cluster = yaml.safe_load(as_role_yaml("least", None, rules))
    assert cluster["kind"] == "ClusterRole" and "namespace" not in cluster["metadata"]
    assert cluster["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]


def test_the_manifest_does_not_depend_on_the_order_of_events() -> None:
    actions = [action("get", name="b"), action("get", name="a"), action("list"),
               action("create", "configmaps"), action("list", "nodes", namespace=""),
               action("patch", "deployments", group="apps", name="web")]
    forward = manifests("x", observed(*actions))
    backward = manifests("x", observed(*reversed(actions)))
    assert forward == backward
    assert [doc["kind"] for doc in yaml.safe_load_all(forward)] == ["ClusterRole", "Role"]


@pytest.mark.parametrize(("key", "name"), [
    ("123456", "kubegate-observed-run-123456"),
    ("Web_Deploy/Prod", "kubegate-observed-run-web-deploy-prod"),
    ("", "kubegate-observed-run-unnamed"),
])
def test_role_names_are_valid_object_names(key: str, name: str) -> None:
    assert role_name("run", key) == name


# -- diff -----------------------------------------------------------------------------------


def right(verb: str, resource: str, namespace: str | None = "web", group: str = "",
          names: tuple[str, ...] = ()) -> Right:
    return Right(verb=verb, group=group, resource=resource, namespace=namespace, names=names)


BROAD = {right(verb, resource) for verb in ("get", "list", "create", "delete")
         for resource in ("pods", "configmaps", "secrets")}


def test_the_diff_lists_granted_rights_never_used_and_nothing_needed() -> None:
    rules = observed(action("get", name="p"), action("list"), action("create", "configmaps"))
    found = diff(rules, BROAD)
    assert found.needed == ()
    assert set(found.unused) == BROAD - {right("get", "pods"), right("list", "pods"),
                                         right("create", "configmaps")}
    assert list(found.unused) == sorted(found.unused, key=Right.sort_key)


def test_the_diff_lists_what_was_done_without_a_grant() -> None:
    rules = observed(action("get", "secrets", name="db"), action("list", namespace="other"),
                     action("list", "nodes", namespace=""))
    found = diff(rules, {right("get", "secrets", names=("api",)), right("list", "pods")})
    assert found.needed == (right("list", "nodes", namespace=None),
                            right("list", "pods", namespace="other"),
                            right("get", "secrets", names=("db",)))


@pytest.mark.parametrize(("case", "granted"), [
    ("every verb", right("*", "pods")),
    ("every group and resource", right("list", "*", group="*")),
    ("cluster-wide", right("list", "pods", namespace=None)),
    ("every subresource of pods", right("create", "pods/*")),
    ("this subresource of everything", right("create", "*/exec")),
])
def test_wildcards_and_cluster_wide_rights_count_as_used(case: str, granted: Right) -> None:
    rules = observed(action("list"), action("create", subresource="exec", name="p"))
    found = diff(rules, {granted})
    assert found.unused == (), case


def test_a_right_limited_to_names_covers_only_those_names() -> None:
    rules = observed(action("get", "secrets", name="db"))
    assert diff(rules, {right("get", "secrets", names=("db", "api"))}).needed == ()
    assert diff(observed(action("get", "secrets")),
                {right("get", "secrets", names=("db",))}).needed == (right("get", "secrets"),)


# -- rights of the granted identity and the section -------------------------------------------


class FakeReviewer:
    """Answers rules reviews from a table: (user, namespace) -> rules."""

    def __init__(self, table: dict[tuple[str, str], tuple[ResourceRule, ...]]) -> None:
        self.table = table
        self.asked: list[tuple[str, str | None, str]] = []

    def review(self, *, user: str, group: str | None, namespace: str) -> RulesAnswer:
        self.asked.append((user, group, namespace))
        return RulesAnswer(resource_rules=self.table.get((user, namespace), ()))


def test_granted_rights_are_the_session_service_account_rights_beyond_the_baseline() -> None:
    sa = "system:serviceaccount:web:deployer"
    reviewer = FakeReviewer({
        (sa, "web"): (ResourceRule(verbs=("get", "list"), groups=("",),
                                   resources=("pods", "secrets")),),
        (sa, CLUSTER_PROBE): (ResourceRule(verbs=("list",), groups=("",),
                                           resources=("namespaces",)),),
    })
    rights = granted_rights(RightsFinder(reviewer=reviewer))(SESSION)
    assert rights == {right("get", "pods"), right("list", "pods"), right("get", "secrets"),
                      right("list", "secrets"), right("list", "namespaces", namespace=None)}
    assert (BASELINE_USER, "system:serviceaccounts", "web") in reviewer.asked


def test_the_section_holds_rules_manifest_and_diff_per_key() -> None:
    recorder = LeastPrivilege()
    recorder.observe(action("list"))
    section = least_privilege_section(recorder, lambda s: {right("list", "pods"),
                                                           right("get", "secrets")},
                                      scope="run")
    assert section["scope"] == "run"
    (entry,) = section["entries"]
    assert entry["key"] == "123456" and entry["role_name"] == "kubegate-observed-run-123456"
    assert entry["mappings"] == ["web-deploy"]
    assert entry["identities"] == ["system:serviceaccount:web:deployer"]
    assert entry["rules"] == [{"namespace": "web", "apiGroups": [""], "resources": ["pods"],
                               "verbs": ["list"]}]
    assert yaml.safe_load(entry["manifest"])["kind"] == "Role"
    assert entry["diff"] == {"needed": [], "unused": [
        {"verb": "get", "group": "", "resource": "secrets", "namespace": "web", "names": []}]}
    assert entry["diff_error"] == ""


def test_the_section_without_rights_has_no_diff_and_a_failed_review_is_noted() -> None:
    recorder = LeastPrivilege()
    recorder.observe(action("list"))
    assert least_privilege_section(recorder)["entries"][0]["diff"] is None

    def forbidden(session: BrokeredSession) -> set[Right]:
        raise PreconditionError("REVIEW_FORBIDDEN", "the API server answered 403")

    (entry,) = least_privilege_section(recorder, forbidden)["entries"]
    assert entry["diff"] is None and "REVIEW_FORBIDDEN" in entry["diff_error"]


@pytest.mark.parametrize(("filters", "scope"), [
    (Filters(), "session"), (Filters(session="s1"), "session"),
    (Filters(mapping="web-deploy"), "mapping"), (Filters(run="1", mapping="m"), "run"),
])
def test_the_scope_follows_the_report_filters(filters: Filters, scope: str) -> None:
    assert scope_for(filters) == scope
