"""Who a trust mapping admits, in words: one noun phrase from the condition that names who
(GitHub sub, repository, GitLab project, Kubernetes service account, people in a group), every
other condition a qualifier, and a generic wording for each operator on any other claim."""

from __future__ import annotations

import pytest

from exchanger.blast.identities import describe_identity, describe_qualifier, describe_subject
from exchanger.mappings import Condition, Grant, Operator, TrustMapping


def condition(path: str | tuple[str, ...], operator: str, expected: object) -> Condition:
    return Condition(path=(path,) if isinstance(path, str) else path,
                     operator=Operator(operator), expected=expected)  # type: ignore[arg-type]


def mapping(*conditions: Condition, issuer: str = "github") -> TrustMapping:
    return TrustMapping(name="m", issuer=issuer, conditions=conditions,
                        grant=Grant(cluster="prod", namespace="web", service_account="ci"))


@pytest.mark.parametrize(("expected", "said"), [
    ("repo:octo-org/web:ref:refs/heads/*", "any branch of octo-org/web"),
    ("repo:octo-org/web:ref:refs/tags/*", "any tag of octo-org/web"),
    ("repo:octo-org/web:ref:refs/heads/release-*",
     "branch matching release-* of octo-org/web"),
    ("repo:octo-org/*:ref:refs/heads/main", "branch main of any repository of octo-org"),
    ("repo:octo-org/web:environment:*", "octo-org/web in any environment"),
    ("repo:octo-org/web:environment:prod*", "octo-org/web in environment matching prod*"),
    ("repo:octo-org/web:*", "any workflow of octo-org/web"),
    ("system:serviceaccount:ci:*", "service account any in namespace ci"),
    ("project_path:group/app:ref_type:branch:ref:*", "any branch of project group/app"),
])
def test_a_sub_glob_is_said_in_words(expected: str, said: str) -> None:
    assert describe_identity(mapping(condition("sub", "glob", expected))) == said


@pytest.mark.parametrize(("expected", "said"), [
    ("repo:octo-org/web:ref:refs/heads/main", "branch main of octo-org/web"),
    ("repo:octo-org/web:environment:production", "octo-org/web in environment production"),
    ("repo:octo-org/web:pull_request", "pull requests of octo-org/web"),
    ("system:serviceaccount:ci:builder", "service account builder in namespace ci"),
    ("project_path:group/app:ref_type:tag:ref:v1", "tag v1 of project group/app"),
])
def test_a_sub_equal_to_a_known_form_is_said_in_words(expected: str, said: str) -> None:
    assert describe_identity(mapping(condition("sub", "equals", expected))) == said


def test_a_github_repository_with_ref_and_environment() -> None:
    said = describe_identity(mapping(
        condition("repository_id", "equals", "892301"),
        condition("ref", "equals", "refs/heads/main"),
        condition("environment", "equals", "production")))
    assert said == "repository 892301 on refs/heads/main in environment production"


def test_the_subject_comes_first_whatever_the_order_written() -> None:
    said = describe_identity(mapping(
        condition("event_name", "oneOf", ("push", "workflow_dispatch")),
        condition("ref", "glob", "refs/heads/*"),
        condition("repository", "oneOf", ("octo-org/web", "octo-org/api"))))
    assert said == ("repositories octo-org/web or octo-org/api on push or workflow_dispatch "
                    "events on any branch")


def test_gitlab_claims() -> None:
    said = describe_identity(mapping(
        condition("project_id", "equals", "4711"), condition("ref_protected", "equals", "true"),
        condition("namespace_path", "equals", "my-group"), issuer="gitlab"))
    assert said == "project 4711 on a protected ref of any project of group my-group"


def test_kubernetes_claims() -> None:
    said = describe_identity(mapping(
        condition(("kubernetes.io", "namespace"), "equals", "ci"),
        condition(("kubernetes.io", "serviceaccount", "name"), "equals", "builder")))
    assert said == "any workload in namespace ci as service account builder"


def test_people_in_a_group_with_a_verified_email() -> None:
    said = describe_identity(mapping(
        condition("groups", "contains", "sre-leads"),
        condition("email_verified", "equals", True),
        condition("groups", "contains", "on-call"), issuer="corp"))
    assert said == "people in group sre-leads with a verified email in group on-call"


def test_one_person_by_email() -> None:
    said = describe_identity(mapping(condition("email", "equals", "alice@example.com")))
    assert said == "the person with email alice@example.com"


def test_without_a_subject_the_issuer_is_the_subject() -> None:
    said = describe_identity(mapping(condition("aud", "equals", "kubegate"), issuer="corp"))
    assert said == 'tokens of issuer corp with aud equal to "kubegate"'


@pytest.mark.parametrize(("made", "said"), [
    (condition("run_attempt", "equals", "1"), 'with run_attempt equal to "1"'),
    (condition("run_number", "equals", 7), "with run_number equal to 7"),
    (condition("actor", "oneOf", ("alice", "bob")), "with actor one of alice, bob"),
    (condition("actor", "glob", "bot-*"), "with actor matching glob bot-*"),
    (condition("actor", "regex", "bot-[0-9]+"), "with actor matching regex bot-[0-9]+"),
    (condition("roles", "contains", "admin"), 'with roles containing "admin"'),
    (condition(("a", "b"), "equals", True), "with [a, b] equal to true"),
])
def test_every_operator_has_a_generic_wording(made: Condition, said: str) -> None:
    assert describe_qualifier(made) == said
    assert describe_subject(made) is None


@pytest.mark.parametrize(("made", "said"), [
    (condition("ref", "glob", "refs/tags/*"), "on any tag"),
    (condition("ref", "glob", "refs/heads/rel-*"), "on a ref matching refs/heads/rel-*"),
    (condition("ref", "regex", "refs/heads/.*"), "with ref matching regex refs/heads/.*"),
    (condition("email_verified", "equals", False), "with email_verified equal to false"),
    (condition("job_workflow_ref", "equals", "o/r/.github/workflows/d.yml@refs/heads/main"),
     "running workflow o/r/.github/workflows/d.yml@refs/heads/main"),
])
def test_words_never_widen_a_condition(made: Condition, said: str) -> None:
    assert describe_qualifier(made) == said


def test_a_sub_regex_is_never_said_as_a_repository() -> None:
    said = describe_identity(mapping(condition("sub", "regex", "repo:octo-org/web:.*")))
    assert said == "tokens of issuer github with sub matching regex repo:octo-org/web:.*"
