"""Rights as the API server answers them, normalised and compared: one Right per verb, group,
resource and place; cluster-wide rights told from the namespace's by a review of a namespace
nobody creates; what every identity of its kind may do left out; gains, losses, renames and
changed namespaces between two mapping sets; and the text, markdown and JSON a pull request
gets. The reviewer is a plain fake: a dict of answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from exchanger.blast.diff import ChangeKind, MappingChange, Radius, diff_radii, radius_of
from exchanger.blast.render import (
    changes_json,
    changes_markdown,
    changes_text,
    describe_right,
    radii_json,
    radii_markdown,
    radii_text,
)
from exchanger.blast.rights import (
    BASELINE_USER,
    CLUSTER_PROBE,
    NonResourceRule,
    ResourceRule,
    Right,
    RightsFinder,
    RulesAnswer,
    rule_keys,
    sensitivity,
    subject_of,
)
from exchanger.mappings import ClaimReference, Condition, Grant, Operator, TrustMapping

SA = "system:serviceaccount:web:deployer"
DISCOVERY = NonResourceRule(verbs=("get",), urls=("/api", "/version"))
SELF_REVIEW = ResourceRule(verbs=("create",), groups=("authorization.k8s.io",),
                           resources=("selfsubjectrulesreviews",))
EVERYONE = RulesAnswer(resource_rules=(SELF_REVIEW,), non_resource_rules=(DISCOVERY,))


def rule(verbs: str, resources: str, group: str = "", names: str = "") -> ResourceRule:
    return ResourceRule(verbs=tuple(verbs.split()), groups=(group,),
                        resources=tuple(resources.split()), names=tuple(names.split()))


def answer(*rules: ResourceRule) -> RulesAnswer:
    """What a review answers: the identity's rules plus what everyone has."""
    return RulesAnswer(resource_rules=(*rules, SELF_REVIEW), non_resource_rules=(DISCOVERY,))


@dataclass
class FakeReviewer:
    """Answers by (user, group, namespace); unknown questions get what everyone has."""

    answers: dict[tuple[str, str | None, str], RulesAnswer]
    asked: list[tuple[str, str | None, str]] = field(default_factory=list)

    def review(self, *, user: str, group: str | None, namespace: str) -> RulesAnswer:
        self.asked.append((user, group, namespace))
        return self.answers.get((user, group, namespace), EVERYONE)


def right(verb: str, resource: str, namespace: str | None = "web", group: str = "",
          names: tuple[str, ...] = ()) -> Right:
    return Right(verb=verb, group=group, resource=resource, namespace=namespace, names=names)


def mapping(name: str, grant: Grant, *, ref: str = "refs/heads/main") -> TrustMapping:
    return TrustMapping(name=name, issuer="github", grant=grant, conditions=(
        Condition(path=("repository_id",), operator=Operator.EQUALS, expected="74"),
        Condition(path=("ref",), operator=Operator.EQUALS, expected=ref)))


def sa_grant(account: str = "deployer", namespace: str = "web") -> Grant:
    return Grant(cluster="prod", namespace=namespace, service_account=account)


# -- normalisation -------------------------------------------------------------------------


def test_rules_become_one_key_per_verb_group_and_resource_with_wildcards_kept() -> None:
    keys = rule_keys(RulesAnswer(resource_rules=(
        ResourceRule(verbs=("get", "list"), groups=("", "apps"), resources=("pods",)),
        rule("*", "*", group="*")), non_resource_rules=(DISCOVERY,)))
    assert keys == {("get", "", "pods", ()), ("list", "", "pods", ()),
                    ("get", "apps", "pods", ()), ("list", "apps", "pods", ()),
                    ("*", "*", "*", ()), ("get", "", "/api", ()), ("get", "", "/version", ())}


def test_a_right_limited_to_names_is_dropped_when_it_also_holds_for_every_name() -> None:
    keys = rule_keys(answer(rule("get", "secrets", names="b a"),
                            rule("get", "configmaps", names="x"), rule("get", "configmaps")))
    assert ("get", "", "secrets", ("a", "b")) in keys
    assert [key for key in keys if key[2] == "configmaps"] == [("get", "", "configmaps", ())]


def test_namespace_rights_are_what_the_namespace_adds_to_cluster_wide_and_baseline() -> None:
    reviewer = FakeReviewer({
        (SA, None, "web"): answer(rule("get list", "pods"), rule("list", "nodes")),
        (SA, None, CLUSTER_PROBE): answer(rule("list", "nodes")),
        (BASELINE_USER, "system:serviceaccounts", "web"): answer(rule("get", "pods")),
    })
    found = RightsFinder(reviewer=reviewer).rights(subject_of(sa_grant()), "web")
    assert found.rights == {right("list", "pods"), right("list", "nodes", None)}
    assert found.notes == ()


def test_a_user_with_groups_is_one_review_per_group_united() -> None:
    grant = Grant(cluster="prod", namespace="ops", user="ci:web", groups=("a", "b"))
    reviewer = FakeReviewer({("ci:web", "a", "ops"): answer(rule("get", "pods")),
                             ("ci:web", "b", "ops"): answer(rule("create", "pods/exec"))})
    found = RightsFinder(reviewer=reviewer).rights(subject_of(grant), "ops")
    assert found.rights == {right("get", "pods", "ops"), right("create", "pods/exec", "ops")}
    assert {question[1] for question in reviewer.asked if question[0] == "ci:web"} == {"a", "b"}


def test_each_question_is_asked_once() -> None:
    reviewer = FakeReviewer({})
    finder = RightsFinder(reviewer=reviewer)
    finder.rights(subject_of(sa_grant()), "web")
    finder.rights(subject_of(sa_grant()), "web")
    assert len(reviewer.asked) == len(set(reviewer.asked)) == 4


def test_a_claim_user_is_a_placeholder_with_the_constant_groups_per_person() -> None:
    grant = Grant(cluster="prod", namespace="ops",
                  user=ClaimReference(path=("email",), prefix="oidc:"),
                  groups=("kubegate:sre", ClaimReference(path=("groups",), prefix="oidc:")))
    subject = subject_of(grant)
    assert subject.user.startswith("oidc:") and subject.per_person
    assert subject.groups == ("kubegate:sre",) and subject.baseline_groups == ()
    service_account = subject_of(sa_grant())
    assert (service_account.user, service_account.per_person) == (SA, False)


def test_an_incomplete_answer_becomes_a_note() -> None:
    reviewer = FakeReviewer({(SA, None, "web"): RulesAnswer(
        incomplete=True, evaluation_error="webhook authorizer")})
    found = RightsFinder(reviewer=reviewer).rights(subject_of(sa_grant()), "web")
    assert found.notes == ("the API server's answer is incomplete (web): webhook authorizer",)


@pytest.mark.parametrize(("made", "why"), [
    (right("get", "secrets"), "reads secrets"),
    (right("watch", "secrets"), "reads secrets"),
    (right("create", "pods/exec"), "runs commands in pods"),
    (right("create", "serviceaccounts/token"), "mints service account tokens"),
    (right("bind", "clusterroles", group="rbac.authorization.k8s.io"), "RBAC bind/escalate"),
    (right("create", "rolebindings", group="rbac.authorization.k8s.io"), "writes RBAC"),
    (right("impersonate", "users", None), "impersonates"),
    (right("delete", "namespaces", None), "cluster-wide write"),
    (right("create", "secrets", None), "cluster-wide write"),
    (right("get", "pods"), None),
    (right("list", "nodes", None), None),
    (right("create", "deployments", group="apps"), None),
    (right("get", "/metrics", None), None),
])
def test_sensitive_rights_are_called_out(made: Right, why: str | None) -> None:
    assert sensitivity(made) == why


def test_a_wildcard_is_every_sensitive_thing_at_once() -> None:
    why = sensitivity(right("*", "*", None, group="*")) or ""
    for reason in ("reads secrets", "runs commands in pods", "RBAC bind/escalate",
                   "impersonates", "mints service account tokens", "cluster-wide write"):
        assert reason in why


# -- diffing -------------------------------------------------------------------------------


def radius(made: TrustMapping, *rights: Right, per_person: bool = False) -> Radius:
    return Radius(mapping=made, who=f"who of {made.name}", rights=frozenset(rights),
                  per_person=per_person)


WEAK = (right("get", "pods"), right("get", "configmaps"))
STRONG = (right("get", "pods"), right("get", "secrets"), right("create", "pods/exec"))


def test_a_changed_grant_is_the_difference_of_rights() -> None:
    [change] = diff_radii([radius(mapping("web", sa_grant("viewer")), *WEAK)],
                          [radius(mapping("web", sa_grant()), *STRONG)])
    assert (change.kind, change.who_before) == (ChangeKind.CHANGED, None)
    assert change.gained == {right("get", "secrets"), right("create", "pods/exec")}
    assert change.lost == {right("get", "configmaps")}
    assert change.kept == {right("get", "pods")} and change.gains


def test_added_gains_all_removed_loses_all_and_unchanged_is_not_a_change() -> None:
    same = radius(mapping("same", sa_grant()), *WEAK)
    changes = diff_radii([same, radius(mapping("old", sa_grant("o"), ref="x"), *WEAK)],
                         [same, radius(mapping("new", sa_grant("n"), ref="y"), *STRONG)])
    assert [(c.name, c.kind) for c in changes] == [("new", ChangeKind.ADDED),
                                                   ("old", ChangeKind.REMOVED)]
    assert changes[0].gained == set(STRONG) and not changes[0].lost
    assert changes[1].lost == set(WEAK) and not changes[1].gained and not changes[1].gains


def test_a_new_service_account_with_the_same_rights_is_not_a_change() -> None:
    assert diff_radii([radius(mapping("web", sa_grant("a")), *WEAK)],
                      [radius(mapping("web", sa_grant("b")), *WEAK)]) == []


def test_a_renamed_mapping_is_recognised_by_its_issuer_and_conditions() -> None:
    [change] = diff_radii([radius(mapping("web-old", sa_grant()), *WEAK)],
                          [radius(mapping("web-new", sa_grant()), *WEAK)])
    assert (change.kind, change.name, change.old_name) == (ChangeKind.RENAMED, "web-new",
                                                           "web-old")
    assert not change.gained and not change.lost and not change.gains


def test_a_changed_namespace_loses_the_old_place_and_gains_the_new() -> None:
    [change] = diff_radii([radius(mapping("web", sa_grant()), right("get", "pods"))],
                          [radius(mapping("web", sa_grant(namespace="api")),
                                  right("get", "pods", "api"))])
    assert change.gained == {right("get", "pods", "api")}
    assert change.lost == {right("get", "pods")}


def test_changed_conditions_change_who_and_kept_rights_count_as_a_gain() -> None:
    [change] = diff_radii([radius(mapping("web", sa_grant()), *WEAK)],
                          [radius(mapping("web", sa_grant(), ref="refs/heads/*"), *WEAK)])
    assert change.who_before == "who of web" and change.kept == set(WEAK)
    assert not change.gained and change.gains


def test_radius_of_asks_for_the_grant_namespace_and_says_who() -> None:
    reviewer = FakeReviewer({(SA, None, "web"): answer(rule("get", "pods"))})
    found = radius_of(mapping("web", sa_grant()), RightsFinder(reviewer=reviewer))
    assert found.who == "repository 74 on refs/heads/main"
    assert found.rights == {right("get", "pods")}


# -- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(("made", "said"), [
    (right("create", "pods/exec"), "create pods/exec in namespace web"),
    (right("list", "nodes", None), "list nodes cluster-wide"),
    (right("get", "deployments", group="apps"), "get deployments.apps in namespace web"),
    (right("get", "secrets", names=("a", "b")), "get secrets named a, b in namespace web"),
    (right("*", "*", None, group="*"), "do anything to any resource of any API group "
     "cluster-wide"),
    (right("get", "/metrics", None), "get /metrics"),
])
def test_rights_in_words(made: Right, said: str) -> None:
    assert describe_right(made) == said


def changes() -> list[MappingChange]:
    return diff_radii(
        [radius(mapping("web", sa_grant("viewer")), *WEAK),
         radius(mapping("gone", sa_grant(), ref="x"))],
        [radius(mapping("web", sa_grant()), *STRONG)])


def test_text_is_one_line_per_change() -> None:
    assert changes_text(changes()).splitlines() == [
        "- who of gone: nothing beyond what any authenticated user may do (mapping gone, "
        "mapping removed)",
        "+ who of web can now create pods/exec in namespace web (mapping web, mapping "
        "changed) [sensitive: runs commands in pods]",
        "+ who of web can now get secrets in namespace web (mapping web, mapping changed) "
        "[sensitive: reads secrets]",
        "- who of web can no longer get configmaps in namespace web (mapping web, mapping "
        "changed)",
    ]
    assert changes_text([]) == "no change in who may do what\n"


def test_text_says_who_changed_and_renames() -> None:
    [change] = diff_radii([radius(mapping("a", sa_grant()), *WEAK)],
                          [radius(mapping("b", sa_grant()), *WEAK, per_person=True)])
    assert changes_text([change]).splitlines() == ["~ b: renamed from a"]
    [change] = diff_radii([radius(mapping("web", sa_grant()), *WEAK)],
                          [radius(mapping("web", sa_grant(), ref="r"), *WEAK)])
    assert changes_text([change]).splitlines() == [
        "~ web: who changed: was who of web; now who of web (2 right(s) kept go to them)"]


def test_markdown_is_a_comment_with_a_table_per_mapping_and_sensitive_ones_marked() -> None:
    text = changes_markdown(changes())
    assert text.startswith("## kubegate: blast radius of trust mappings\n\n2 mapping(s) "
                           "changed: 2 right(s) gained (2 sensitive), 1 lost.")
    assert "### `web`: mapping changed" in text and "### `gone`: mapping removed" in text
    assert "| ➕ | get secrets in namespace web | ⚠️ **reads secrets** |" in text
    assert "| ➖ | get configmaps in namespace web |  |" in text
    assert "Rights: nothing beyond what any authenticated user may do." in text
    assert "No change in who may do what." in changes_markdown([])


def test_json_carries_every_right_with_its_place_and_sensitivity() -> None:
    document = json.loads(changes_json(changes()))
    assert document["gains"] is True
    web = next(c for c in document["changes"] if c["mapping"] == "web")
    assert web["gained"][1] == {"verb": "get", "group": "", "resource": "secrets",
                                "namespace": "web", "names": [],
                                "sensitive": "reads secrets",
                                "words": "get secrets in namespace web"}
    assert (web["change"], web["kept"], web["whoBefore"]) == ("changed", 1, None)


def test_radii_render_in_every_format() -> None:
    radii = [radius(mapping("web", sa_grant()), right("create", "pods/exec"),
                    per_person=True), radius(mapping("idle", sa_grant(), ref="x"))]
    assert radii_text(radii).splitlines() == [
        "who of web (per person) can create pods/exec in namespace web (mapping web, "
        "cluster prod) [sensitive: runs commands in pods]",
        "who of idle can do nothing beyond what any authenticated user may do (mapping "
        "idle, cluster prod)"]
    assert "| ➕ | create pods/exec in namespace web | ⚠️ **runs commands in pods** |" in (
        radii_markdown(radii))
    [first, _] = json.loads(radii_json(radii))["mappings"]
    assert (first["mapping"], first["perPerson"], first["namespace"]) == ("web", True, "web")
