"""Trust-mapping matching: strict, anchored, segment-safe conditions and deny-by-default
selection of one mapping, with or without a named role."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubegate_bench.mapping_sets import compare_match_cost, synthetic_identity, synthetic_set

from exchanger.identity import Identity
from exchanger.mappings import (
    AMBIGUOUS_MAPPING,
    MISSING,
    NO_MATCHING_MAPPING,
    ROLE_NOT_ALLOWED,
    Condition,
    Grant,
    MappingSet,
    Operator,
    TrustMapping,
    evaluate,
)
from exchanger.mappings.conditions import Scalar
from kubegate.errors import InvalidRequestError, PermissionDeniedError

EQ, GLOB, REGEX, ONE_OF = Operator.EQUALS, Operator.GLOB, Operator.REGEX, Operator.ONE_OF

GITHUB_CLAIMS: dict[str, Any] = {
    "sub": "repo:octo-org/web:environment:production",
    "repository": "octo-org/web",
    "repository_id": "123456",
    "run_number": 74,
    "event_name": "push",
    "job_workflow_ref": "octo-org/deploy/.github/workflows/deploy.yml@refs/tags/v3",
    "ref_protected": "true",
    "private": True,
    "ratio": 1.0,
    "aud": ["kubegate"],
    "nothing": None,
    "kubernetes.io": {"namespace": "ci", "pod": {"name": "runner-1"}},
}


def condition(path: str | tuple[str, ...], operator: Operator,
              expected: Scalar | tuple[Scalar, ...]) -> Condition:
    return Condition(path=(path,) if isinstance(path, str) else path, operator=operator,
                     expected=expected)


def mapping(name: str, *conditions: Condition, issuer: str = "github") -> TrustMapping:
    grant = Grant(cluster="default", namespace="web", service_account="deployer")
    return TrustMapping(name=name, issuer=issuer, conditions=conditions, grant=grant)


def identity(claims: dict[str, Any] | None = None, issuer: str = "github") -> Identity:
    return Identity(issuer=issuer, issuer_url="https://issuer.example", subject="someone",
                    token_id="jti-1", audiences=("kubegate",), issued_at=0, expires_at=300,
                    claims=GITHUB_CLAIMS if claims is None else claims)


CASES = [
    # equals: type and value
    ("equals_same_string_passes", condition("repository_id", EQ, "123456"), True),
    ("equals_other_string_fails", condition("repository_id", EQ, "123457"), False),
    ("equals_string_never_equals_number_claim", condition("run_number", EQ, "74"), False),
    ("equals_number_never_equals_string_claim", condition("repository_id", EQ, 123456), False),
    ("equals_same_integer_passes", condition("run_number", EQ, 74), True),
    ("equals_float_never_equals_integer_claim", condition("run_number", EQ, 74.0), False),
    ("equals_integer_never_equals_float_claim", condition("ratio", EQ, 1), False),
    ("equals_same_float_passes", condition("ratio", EQ, 1.0), True),
    ("equals_true_never_equals_string_true", condition("ref_protected", EQ, True), False),
    ("equals_string_true_equals_string_claim", condition("ref_protected", EQ, "true"), True),
    ("equals_true_passes_on_boolean_claim", condition("private", EQ, True), True),
    ("equals_one_never_equals_true_claim", condition("private", EQ, 1), False),
    ("equals_string_true_never_equals_boolean", condition("private", EQ, "true"), False),
    ("equals_never_matches_a_list_claim", condition("aud", EQ, "kubegate"), False),
    ("equals_never_matches_a_null_claim", condition("nothing", EQ, "None"), False),
    ("equals_on_a_missing_claim_fails", condition("environment", EQ, "production"), False),
    ("equals_metacharacters_are_literal", condition("repository", EQ, "octo-org/.*"), False),
    # oneOf
    ("one_of_passes_when_any_value_equals", condition("event_name", ONE_OF,
                                                      ("push", "workflow_dispatch")), True),
    ("one_of_fails_when_none_equals", condition("event_name", ONE_OF,
                                                ("pull_request", "workflow_dispatch")), False),
    ("one_of_compares_types", condition("run_number", ONE_OF, ("74", 74.0, True)), False),
    ("one_of_true_never_matches_integer_one", condition("private", ONE_OF, (1, "true")), False),
    ("one_of_on_a_missing_claim_fails", condition("environment", ONE_OF, ("prod",)), False),
    # glob
    ("glob_star_matches_within_a_segment",
     condition("sub", GLOB, "repo:octo-org/web:environment:*"), True),
    ("glob_star_cannot_cross_a_colon", condition("sub", GLOB, "repo:octo-org/web:*"), False),
    ("glob_star_cannot_cross_a_slash", condition("repository", GLOB, "*"), False),
    ("glob_org_wildcard_cannot_cover_ref_and_event",
     condition("sub", GLOB, "repo:octo-org/*"), False),
    ("glob_question_mark_is_one_character",
     condition("repository", GLOB, "octo-org/we?"), True),
    ("glob_question_mark_cannot_be_a_slash", condition("repository", GLOB, "octo-org?web"),
     False),
    ("glob_question_mark_cannot_be_empty", condition("repository", GLOB, "octo-org/web?"),
     False),
    ("glob_dot_is_literal", condition("repository", GLOB, "octo-org/w.b"), False),
    ("glob_brackets_are_literal", condition("repository", GLOB, "octo-org/[w]eb"), False),
    ("glob_is_anchored_at_both_ends", condition("repository", GLOB, "org/web"), False),
    ("glob_never_matches_a_number_claim", condition("run_number", GLOB, "7*"), False),
    ("glob_on_a_missing_claim_fails", condition("environment", GLOB, "*"), False),
    # regex
    ("regex_full_match_passes", condition(
        "job_workflow_ref", REGEX,
        r"octo-org/deploy/\.github/workflows/deploy\.yml@refs/tags/v[0-9]+"), True),
    ("regex_is_anchored_against_a_prefix", condition(
        "job_workflow_ref", REGEX, r"deploy/\.github/workflows/deploy\.yml@refs/tags/v[0-9]+"),
     False),
    ("regex_is_anchored_against_a_suffix", condition(
        "job_workflow_ref", REGEX, r"octo-org/deploy/\.github/workflows/deploy\.yml"), False),
    ("regex_alternation_is_anchored_as_a_whole", condition("repository_id", REGEX, "123|456"),
     False),
    ("regex_never_matches_a_number_claim", condition("run_number", REGEX, "74"), False),
    ("regex_never_matches_a_boolean_claim", condition("private", REGEX, "True"), False),
    ("regex_on_a_missing_claim_fails", condition("environment", REGEX, ".*"), False),
    # paths
    ("nested_path_reaches_the_kubernetes_object",
     condition(("kubernetes.io", "namespace"), EQ, "ci"), True),
    ("nested_path_reaches_two_levels", condition(("kubernetes.io", "pod", "name"), EQ,
                                                 "runner-1"), True),
    ("dotted_name_is_one_literal_claim_name",
     condition(("kubernetes", "io", "namespace"), EQ, "ci"), False),
    ("a_string_claim_name_is_not_split_on_dots",
     condition("kubernetes.io.namespace", EQ, "ci"), False),
    ("path_through_a_string_fails", condition(("sub", "x"), EQ, "y"), False),
    ("path_never_indexes_into_a_list", condition(("aud", "0"), EQ, "kubegate"), False),
    ("path_under_a_missing_claim_fails", condition(("missing", "x"), EQ, "y"), False),
    ("path_to_an_object_never_equals_a_scalar", condition("kubernetes.io", EQ, "ci"), False),
]


@pytest.mark.parametrize(("case", "cond", "passes"), CASES, ids=[c[0] for c in CASES])
def test_condition_outcome(case: str, cond: Condition, passes: bool) -> None:
    assert evaluate(cond, GITHUB_CLAIMS).passed is passes


@pytest.mark.parametrize(("claims", "seen"), [
    ({"sub": "x"}, "x"), ({}, MISSING), ({"sub": None}, None), ({"sub": {"a": 1}}, {"a": 1}),
])
def test_evaluate_reports_the_value_seen_or_missing(claims: dict[str, Any], seen: Any) -> None:
    assert evaluate(condition("sub", EQ, "x"), claims).seen == seen


@pytest.mark.parametrize("operator", [EQ, GLOB, REGEX])
@pytest.mark.parametrize("claim_value", ["*", ".*", "?", "web*", "[w]eb", "w.b", "(web)"])
def test_metacharacters_in_claim_values_are_data_not_patterns(operator: Operator,
                                                              claim_value: str) -> None:
    assert not evaluate(condition("repo", operator, "web"), {"repo": claim_value}).passed


def test_glob_with_regex_metacharacters_matches_them_literally() -> None:
    cond = condition("sub", GLOB, "a.b+(c)|[d]$^")
    assert evaluate(cond, {"sub": "a.b+(c)|[d]$^"}).passed
    assert not evaluate(cond, {"sub": "axbb(c)|[d]$^"}).passed


def test_regex_does_not_accept_a_trailing_newline() -> None:
    assert not evaluate(condition("sub", REGEX, "abc"), {"sub": "abc\n"}).passed


@pytest.mark.parametrize(("operator", "expected", "message"), [
    (GLOB, "repo:org/**", "'**' is not allowed"),
    (REGEX, "(unclosed", "invalid regex"),
    (REGEX, "a" * 1025, "longer than 1024"),
    (GLOB, "", "non-empty string"),
    (EQ, None, "string, a finite number or a boolean"),
    (EQ, float("nan"), "finite number"),
    (EQ, ("a",), "equals needs"),
    (ONE_OF, (), "non-empty list"),
    (ONE_OF, ("a", None), "oneOf needs"),
])
def test_condition_refuses_invalid_operands(operator: Operator, expected: Any,
                                            message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        condition("sub", operator, expected)


def test_condition_refuses_an_empty_path() -> None:
    with pytest.raises(ValueError, match="claim path"):
        Condition(path=(), operator=EQ, expected="x")


WEB = mapping("web-deployer", condition("repository_id", EQ, "123456"),
              condition("sub", GLOB, "repo:octo-org/web:environment:*"))
WEB_PUSH = mapping("web-push", condition("repository_id", EQ, "123456"),
                   condition("event_name", ONE_OF, ("push",)))
DOCS = mapping("docs-deployer", condition("repository_id", EQ, "999"))
GITLAB = mapping("gitlab-deployer", condition("repository_id", EQ, "123456"), issuer="gitlab")
PATTERN_ONLY = mapping("pattern-only", condition("sub", GLOB, "repo:octo-org/web:*:*"))


def test_named_role_whose_conditions_hold_is_returned() -> None:
    assert MappingSet(mappings=(WEB, WEB_PUSH, DOCS)).match(identity(), "web-deployer") is WEB


@pytest.mark.parametrize(("role", "detail"), [
    ("no-such-role", "unknown role"),
    ("gitlab-deployer", "for issuer 'gitlab', not 'github'"),
    ("docs-deployer", 'spec.claims[0] (repository_id equals "999"): value did not match'),
])
def test_named_role_is_refused_with_one_public_message_and_a_specific_detail(
        role: str, detail: str) -> None:
    mappings = MappingSet(mappings=(WEB, DOCS, GITLAB))
    with pytest.raises(PermissionDeniedError) as refused:
        mappings.match(identity(), role)
    assert refused.value.reason == ROLE_NOT_ALLOWED
    assert refused.value.public_message == "the requested role is not allowed for this identity"
    assert detail in refused.value.detail
    assert "123456" not in refused.value.detail


@pytest.mark.parametrize(("claims", "detail"), [
    ({"repository_id": 999}, "claim is integer, expected string"),
    ({}, "claim missing"),
])
def test_role_refusal_detail_names_the_claim_type_but_not_its_value(
        claims: dict[str, Any], detail: str) -> None:
    with pytest.raises(PermissionDeniedError) as refused:
        MappingSet(mappings=(DOCS,)).match(identity(claims), "docs-deployer")
    assert detail in refused.value.detail


def test_without_role_the_single_matching_mapping_is_returned() -> None:
    assert MappingSet(mappings=(WEB, DOCS, GITLAB)).match(identity()) is WEB


def test_empty_role_counts_as_no_role() -> None:
    assert MappingSet(mappings=(WEB, DOCS)).match(identity(), "") is WEB


def test_without_role_no_match_is_denied() -> None:
    with pytest.raises(PermissionDeniedError) as denied:
        MappingSet(mappings=(DOCS, GITLAB)).match(identity())
    assert denied.value.reason == NO_MATCHING_MAPPING


def test_without_role_another_issuers_identical_mapping_never_matches() -> None:
    with pytest.raises(PermissionDeniedError):
        MappingSet(mappings=(GITLAB,)).match(identity())
    assert MappingSet(mappings=(GITLAB,)).match(identity(issuer="gitlab")) is GITLAB


def test_without_role_several_matches_are_ambiguous_and_named() -> None:
    with pytest.raises(InvalidRequestError) as ambiguous:
        MappingSet(mappings=(WEB_PUSH, WEB, PATTERN_ONLY, DOCS)).match(identity())
    assert ambiguous.value.reason == AMBIGUOUS_MAPPING
    assert "(pattern-only, web-deployer, web-push)" in ambiguous.value.public_message
    assert "role" in ambiguous.value.public_message


def test_without_role_a_mapping_with_only_patterns_still_matches() -> None:
    assert MappingSet(mappings=(PATTERN_ONLY, DOCS)).match(identity()) is PATTERN_ONLY


def test_without_role_a_mapping_indexed_by_one_of_is_found() -> None:
    by_event = mapping("by-event", condition("event_name", ONE_OF, ("workflow_dispatch",
                                                                    "push")))
    assert MappingSet(mappings=(by_event, DOCS)).match(identity()) is by_event


def test_index_keys_are_type_strict() -> None:
    numeric = mapping("numeric", condition("repository_id", EQ, 123456))
    with pytest.raises(PermissionDeniedError):
        MappingSet(mappings=(numeric,)).match(identity())


def test_index_returns_only_the_bucket_of_the_claim_value_and_the_fallback() -> None:
    many = synthetic_set(1000)
    candidates = many.candidates(synthetic_identity(500))
    assert sorted(m.name for m in candidates) == [
        "fallback-0", "fallback-1", "fallback-2", "repo-500"]
    assert many.match(synthetic_identity(500)).name == "repo-500"


def test_mapping_names_must_be_unique_in_a_set() -> None:
    with pytest.raises(ValueError, match="unique"):
        MappingSet(mappings=(WEB, WEB))


def test_mapping_results_list_every_condition_with_the_value_seen() -> None:
    results = WEB_PUSH.results({"repository_id": "123456"})
    assert [(r.passed, r.seen) for r in results] == [(True, "123456"), (False, MISSING)]


def test_benchmark_compares_few_and_many_mappings() -> None:
    result = compare_match_cost(5, 50, rounds=20)
    assert result.small_seconds > 0
    assert result.large_seconds > 0
    assert result.ratio > 0


SEPARATORS = "/:"
_literal = st.text(alphabet=st.characters(exclude_characters="*?", codec="utf-8"),
                   max_size=6)
_fill = st.text(alphabet=st.characters(codec="utf-8"), max_size=6)


@st.composite
def glob_and_fills(draw: st.DrawFn) -> tuple[list[str], list[str], list[str]]:
    """A glob as literals between wildcards (never two '*' in a row), and one fill each."""
    wildcards = draw(st.lists(st.sampled_from("*?"), min_size=1, max_size=4))
    literals = [draw(_literal) for _ in range(len(wildcards) + 1)]
    for position in range(1, len(wildcards)):
        if wildcards[position - 1] == wildcards[position] == "*" and not literals[position]:
            literals[position] = "x"
    fills = [draw(_fill if w == "*" else st.characters(codec="utf-8")) for w in wildcards]
    return literals, wildcards, fills


def _interleave(literals: list[str], middles: list[str]) -> str:
    return "".join(literal + middle for literal, middle in zip(literals, middles + [""],
                                                                 strict=True))


@given(glob_and_fills())
def test_glob_wildcards_never_match_a_slash_or_colon(
        parts: tuple[list[str], list[str], list[str]]) -> None:
    literals, wildcards, fills = parts
    glob = _interleave(literals, wildcards)
    value = _interleave(literals, fills)
    passed = evaluate(condition("sub", GLOB, glob), {"sub": value}).passed
    if any(separator in fill for fill in fills for separator in SEPARATORS):
        assert not passed
    else:
        assert passed
