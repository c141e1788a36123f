"""Trust mappings that fit people: `contains` on list claims (an ID token's groups), the
known claim types that make `mappings validate` refuse a condition that can never match, the
email and constant-user lints, and grants whose user and groups come from verified claims
behind a strict prefix, resolved (or refused without the claim's value) at issue time."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from exchanger.identity import Identity
from exchanger.mappings import (
    Condition,
    Grant,
    MappingSet,
    Operator,
    TrustMapping,
    evaluate,
    parse_documents,
)
from exchanger.mappings.claimtypes import (
    GITHUB_CLAIMS,
    GITLAB_CLAIMS,
    ID_TOKEN_CLAIMS,
    JWT_CLAIMS,
    ClaimType,
    Provider,
    known_claim,
    type_errors,
)
from exchanger.mappings.conditions import describe, describe_failure
from exchanger.mappings.crd import crd_schema
from exchanger.mappings.explain import describe_grant
from exchanger.mappings.lint import check_types, lint_mapping, provider_of
from exchanger.mappings.subjects import (
    GRANT_CLAIM_UNUSABLE,
    MAX_CLAIM_GROUPS,
    MAX_NAME_LENGTH,
    ClaimReference,
    has_control_character,
    prefix_problem,
)
from exchanger.mappings.validate import parse_mapping
from exchanger.mappings.verdict import judge
from exchanger.verify.issuers import IssuerConfig
from kubegate.errors import ConfigError, PermissionDeniedError

CONTAINS, EQ = Operator.CONTAINS, Operator.EQUALS
PERSON: dict[str, Any] = {
    "iss": "https://dex.corp.example", "sub": "CiQwOGE4Njg0Yi1kYjg4", "aud": "kubegate",
    "email": "ada@corp.example", "email_verified": True, "name": "Ada",
    "preferred_username": "ada", "groups": ["sre", "sre-leads", "74"],
}


def document(claims: list[dict[str, Any]], *, issuer: str = "corp", name: str = "break-glass",
             **grant: Any) -> dict[str, Any]:
    return {"apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping",
            "metadata": {"name": name},
            "spec": {"issuer": issuer, "claims": claims,
                     "grant": {"cluster": "prod", "namespace": "ops",
                               **(grant or {"user": {"claim": "email", "prefix": "oidc:"}})}}}


def parse(claims: list[dict[str, Any]], **kwargs: Any) -> TrustMapping:
    (parsed,) = parse_documents(json.dumps(document(claims, **kwargs)), "people.yaml")
    return parsed


def problems(claims: list[dict[str, Any]], **kwargs: Any) -> list[str]:
    mapping, found = parse_mapping(document(claims, **kwargs), source="people.yaml")
    assert mapping is None
    return [problem.removeprefix("people.yaml (break-glass): ") for problem in found]


VERIFIED = {"claim": "email_verified", "equals": True}
SRE_LEADS = {"claim": "groups", "contains": "sre-leads"}

# -- contains ------------------------------------------------------------------------------

CONTAINS_CASES = [
    ("an element equals", ["a", "sre-leads"], "sre-leads", True),
    ("no element equals", ["a", "b"], "sre-leads", False),
    ("an empty list", [], "sre-leads", False),
    ("a verified identity's frozen list", ("a", "sre-leads"), "sre-leads", True),
    ("type-strict: a string element is not a number", ["74"], 74, False),
    ("type-strict: a number element", [74, 75], 74, True),
    ("type-strict: true is not 1", [1], True, False),
    ("type-strict: 1 is not 1.0", [1.0], 1, False),
    ("a string claim is not searched", "sre-leads", "sre-leads", False),
    ("nor is an object", {"sre-leads": True}, "sre-leads", False),
    ("a nested list is not flattened", [["sre-leads"]], "sre-leads", False),
]


@pytest.mark.parametrize(("case", "claim", "expected", "passes"), CONTAINS_CASES,
                         ids=[c[0] for c in CONTAINS_CASES])
def test_contains_holds_when_a_list_element_equals_the_value(
        case: str, claim: object, expected: Any, passes: bool) -> None:
    condition = Condition(path=("groups",), operator=CONTAINS, expected=expected)
    assert condition.holds({"groups": claim}) is passes
    assert evaluate(condition, {"groups": claim}).passed is passes


@pytest.mark.parametrize(("claims", "why"), [
    ({}, "claim missing"),
    ({"groups": "sre-leads"}, "claim is string, expected list"),
    ({"groups": {"a": 1}}, "claim is object, expected list"),
    ({"groups": ["a"]}, "no element matched"),
])
def test_a_failed_contains_names_the_type_but_never_the_value(
        claims: dict[str, Any], why: str) -> None:
    condition = Condition(path=("groups",), operator=CONTAINS, expected="sre-leads")
    result = evaluate(condition, claims)
    assert describe_failure(condition, result) == why
    assert describe(condition) == 'groups contains "sre-leads"'


@pytest.mark.parametrize("expected", [("a",), None, [], float("nan")])
def test_contains_takes_one_scalar(expected: Any) -> None:
    with pytest.raises(ValueError, match="contains needs"):
        Condition(path=("groups",), operator=CONTAINS, expected=expected)


def test_contains_in_a_document_and_its_operand_checks() -> None:
    parsed = parse([SRE_LEADS, VERIFIED])
    assert parsed.conditions[0] == Condition(path=("groups",), operator=CONTAINS,
                                             expected="sre-leads")
    assert problems([{"claim": "groups", "contains": ["a"]}]) == [
        "spec.claims[0].contains: expected a string, number or boolean, got list"]
    assert problems([{"claim": "groups", "contains": "a", "equals": "a"}]) == [
        "spec.claims[0]: needs exactly one of equals, glob, regex, oneOf, contains "
        "(found equals, contains)"]


SCALARS = st.one_of(st.sampled_from(["a", "b", "74"]), st.sampled_from([74, 1, True, False]))


@st.composite
def people_sets(draw: st.DrawFn) -> tuple[MappingSet, dict[str, Any]]:
    mappings = []
    for number in range(draw(st.integers(1, 6))):
        operators = draw(st.lists(st.sampled_from([EQ, CONTAINS, Operator.ONE_OF]),
                                  min_size=1, max_size=3))
        conditions = tuple(
            Condition(path=(draw(st.sampled_from(["groups", "email", "team"])),),
                      operator=operator,
                      expected=(draw(SCALARS),) if operator is Operator.ONE_OF
                      else draw(SCALARS))
            for operator in operators)
        mappings.append(TrustMapping(name=f"m{number}", issuer="corp", conditions=conditions,
                                     grant=Grant(cluster="prod", namespace="ops", user="u")))
    claim_values = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))
    claims = draw(st.dictionaries(st.sampled_from(["groups", "email", "team"]), claim_values))
    return MappingSet(mappings=tuple(mappings)), claims


@given(people_sets())
def test_the_index_never_misses_a_mapping_that_contains_admits(
        case: tuple[MappingSet, dict[str, Any]]) -> None:
    mapping_set, claims = case
    identity = Identity(issuer="corp", issuer_url="https://dex", subject="s", token_id=None,
                        audiences=("kubegate",), issued_at=0, expires_at=1, claims=claims)
    found = {m.name for m in mapping_set.candidates(identity)}
    assert {m.name for m in mapping_set.mappings if m.matches(claims)} <= found


# -- claim types ---------------------------------------------------------------------------

SAMPLES: list[tuple[str, object]] = [("string", "x"), ("integer", 74), ("boolean", True),
                                     ("number", 1.5)]
KNOWN = [(provider, name, claim_type)
         for provider, table in (("oidc", JWT_CLAIMS), ("oidc", ID_TOKEN_CLAIMS),
                                 ("github", GITHUB_CLAIMS), ("gitlab", GITLAB_CLAIMS))
         for name, claim_type in table.items()]


def errors_for(provider: Provider, *conditions: Condition) -> list[str]:
    mapping = TrustMapping(name="m", issuer="x", conditions=conditions,
                           grant=Grant(cluster="prod", namespace="ops", user="u"))
    return type_errors(mapping, provider)


def of(claim: str | tuple[str, ...], operator: Operator, expected: Any) -> Condition:
    path = (claim,) if isinstance(claim, str) else claim
    return Condition(path=path, operator=operator, expected=expected)


def operator_outcomes(claim_type: ClaimType) -> list[tuple[Operator, Any, bool]]:
    """(operator, expected, whether it can match) for one claim type."""
    text = "string" in claim_type.kinds
    outcomes: list[tuple[Operator, Any, bool]] = [
        (Operator.GLOB, "x*", text), (Operator.REGEX, "x.*", text),
        (CONTAINS, "x", "list" in claim_type.kinds and claim_type.items == "string"),
    ]
    for kind, value in SAMPLES:
        fits = kind in claim_type.kinds
        outcomes += [(EQ, value, fits), (Operator.ONE_OF, (value,), fits)]
    return outcomes


@pytest.mark.parametrize(("provider", "name", "claim_type"), KNOWN,
                         ids=[f"{p}-{n}" for p, n, _ in KNOWN])
def test_every_known_claim_refuses_the_operators_its_type_cannot_meet(
        provider: Provider, name: str, claim_type: ClaimType) -> None:
    for operator, expected, can_match in operator_outcomes(claim_type):
        found = errors_for(provider, of(name, operator, expected))
        assert bool(found) is not can_match, (operator, expected, found)
        if found:
            assert found[0].startswith(f"spec.claims[0]: {name} is {claim_type.described} "
                                       "in "), found
            assert "can never" in found[0]
    if "object" not in claim_type.kinds:
        (blocked,) = errors_for(provider, of((name, "x"), EQ, "y"))
        assert "goes into it and can never resolve" in blocked


@pytest.mark.parametrize(("provider", "condition", "message"), [
    ("oidc", of("groups", EQ, "sre-leads"),
     "groups is a list of strings in ID tokens: equals can never match; use contains"),
    ("oidc", of("email_verified", EQ, "true"),
     'email_verified is a boolean in ID tokens: equals "true" (string) can never match; '
     "write true without quotes"),
    ("github", of("run_number", EQ, 74),
     'run_number is a string in GitHub Actions tokens: equals 74 (integer) can never match; '
     'quote it: "74"'),
    ("github", of("repository_id", Operator.ONE_OF, ("892301", 892301)),
     "repository_id is a string in GitHub Actions tokens: oneOf value 892301 (integer) can "
     'never match; quote it: "892301"'),
    ("gitlab", of("ref_protected", EQ, True),
     'ref_protected is a string in GitLab CI tokens: equals true (boolean) can never match; '
     'quote it: "true"'),
    ("oidc", of("exp", Operator.GLOB, "17*"),
     "exp is an integer in JWTs: glob applies to strings only and can never match"),
    ("oidc", of("sub", CONTAINS, "x"),
     "sub is a string in JWTs: contains applies to lists only and can never match; use equals"),
    ("oidc", of("groups", CONTAINS, 74),
     "groups is a list of strings in ID tokens: contains 74 (integer) can never match; "
     'quote it: "74"'),
    ("kubernetes", of(("kubernetes.io", "namespace", "x"), EQ, "ci"),
     "[kubernetes.io, namespace] is a string in Kubernetes service-account tokens: the path "
     "[kubernetes.io, namespace, x] goes into it and can never resolve"),
    ("kubernetes", of(("kubernetes.io", "pod", "name"), EQ, 1),
     "[kubernetes.io, pod, name] is a string in Kubernetes service-account tokens: equals 1 "
     '(integer) can never match; quote it: "1"'),
    ("kubernetes", of("kubernetes.io", EQ, "x"),
     'kubernetes.io is an object in Kubernetes service-account tokens: equals "x" (string) '
     "can never match"),
])
def test_type_errors_name_the_field_the_type_and_the_fix(
        provider: Provider, condition: Condition, message: str) -> None:
    assert errors_for(provider, condition) == [f"spec.claims[0]: {message}"]


@pytest.mark.parametrize(("provider", "condition"), [
    ("oidc", of("aud", EQ, "kubegate")), ("oidc", of("aud", CONTAINS, "kubegate")),
    ("oidc", of("aud", Operator.GLOB, "kube*")), ("oidc", of("groups", CONTAINS, "sre")),
    ("kubernetes", of(("kubernetes.io", "namespace"), EQ, "ci")),
    ("kubernetes", of(("kubernetes.io", "pod", "uid"), Operator.REGEX, "[a-f0-9-]+")),
    ("kubernetes", of(("kubernetes.io", "unlisted", "deep"), EQ, 1)),
    ("gitlab", of("runner_id", EQ, 12)), ("gitlab", of("groups_direct", CONTAINS, "g")),
    (None, of("unknown_claim", EQ, 1)), (None, of("repository_id", EQ, 1)),
])
def test_conditions_that_can_match_or_whose_claim_is_unknown_pass(
        provider: Provider | None, condition: Condition) -> None:
    assert errors_for(provider, condition) == []  # type: ignore[arg-type]


def test_the_provider_comes_from_people_claims_an_issuer_kind_host_or_name() -> None:
    assert provider_of(parse([SRE_LEADS, VERIFIED]), None) == "oidc"
    ci = parse([{"claim": "repository_id", "equals": "1"}], issuer="corp")
    assert provider_of(ci, None) == "github"
    plain = parse([{"claim": "sub", "equals": "x"}], issuer="corp")
    assert provider_of(plain, None) is None
    assert provider_of(parse([{"claim": "sub", "equals": "x"}], issuer="dex"), None) == "oidc"
    for url in ("https://corp.okta.com", "https://sso.corp.example/realms/staff",
                "https://dex.corp.example"):
        issuer = IssuerConfig(name="corp", url=url, audiences=("kubegate",))
        assert provider_of(plain, issuer) == "oidc", url
    kinded = IssuerConfig(name="corp", url="https://sso.example", audiences=("k",), kind="oidc")
    assert provider_of(plain, kinded) == "oidc"
    assert known_claim(("groups",), "github") is not None  # ID-token claims are shared


def test_check_types_uses_the_provider_of_the_mapping() -> None:
    mapping = parse([{"claim": "repository_id", "equals": 892301}], issuer="github",
                    user="ci:web")
    assert check_types(mapping) == [
        "spec.claims[0]: repository_id is a string in GitHub Actions tokens: equals 892301 "
        '(integer) can never match; quote it: "892301"']


def test_a_type_error_still_loads_deterministically_and_matches_nothing() -> None:
    text = json.dumps(document([{"claim": "groups", "equals": "sre-leads"}, VERIFIED]))
    first, again = parse_documents(text, "a.yaml"), parse_documents(text, "a.yaml")
    assert first == again
    identity = Identity(issuer="corp", issuer_url="https://dex", subject="s", token_id=None,
                        audiences=("kubegate",), issued_at=0, expires_at=1, claims=PERSON)
    assert not first[0].matches(PERSON)
    assert MappingSet(mappings=first).candidates(identity) == []


# -- people lints --------------------------------------------------------------------------

EMAIL_WARNING = ("email is matched without {claim: email_verified, equals: true}: an "
                 "unverified email can be set by its owner to anyone's address; add "
                 "email_verified equals true")


@pytest.mark.parametrize("email", [
    {"claim": "email", "equals": "ada@corp.example"},
    {"claim": "email", "glob": "*@corp.example"},
    {"claim": "email", "regex": "[a-z]+@corp[.]example"},
    {"claim": "email", "oneOf": ["ada@corp.example"]},
])
def test_email_without_a_verified_condition_is_a_warning_for_any_operator(
        email: dict[str, Any]) -> None:
    assert EMAIL_WARNING in lint_mapping(parse([email]))
    assert EMAIL_WARNING not in lint_mapping(parse([email, VERIFIED]))


def test_email_verified_as_the_string_true_is_a_type_error_and_does_not_count() -> None:
    mapping = parse([{"claim": "email", "equals": "ada@corp.example"},
                     {"claim": "email_verified", "equals": "true"}])
    assert EMAIL_WARNING in lint_mapping(mapping)
    assert check_types(mapping) == [
        'spec.claims[1]: email_verified is a boolean in ID tokens: equals "true" (string) can '
        "never match; write true without quotes"]


def test_a_people_mapping_with_a_constant_user_is_a_warning() -> None:
    constant = parse([SRE_LEADS, VERIFIED], user="break-glass")
    (warning,) = lint_mapping(constant)
    assert warning.startswith("grant.user is the constant 'break-glass': everyone this "
                              "mapping admits becomes the same Kubernetes user")
    assert warning.endswith('take user from a claim: {claim: email, prefix: "oidc:"}')
    assert lint_mapping(parse([SRE_LEADS, VERIFIED])) == []
    by_issuer = IssuerConfig(name="corp", url="https://corp.okta.com", audiences=("k",))
    assert len(lint_mapping(parse([{"claim": "sub", "equals": "x"}], user="u"),
                            by_issuer)) == 1
    ci = parse([{"claim": "sub", "equals": "x"}], user="u")
    assert lint_mapping(ci) == []
    account = parse([SRE_LEADS, VERIFIED], serviceAccount="ops")
    assert lint_mapping(account) == []


# -- prefixes ------------------------------------------------------------------------------

ACCEPTED_PREFIXES = ["oidc:", "corp.example:", "people-eu:", "x:", "0:", "a" * 63 + ":",
                     "sys:", "sy-stem:"]
REFUSED_PREFIXES: list[object] = [
    None, "", ":", "oidc", "OIDC:", "oidc:x:", "oidc::", "o idc:", "oidc_:", "oïdc:",
    "system:", "systems:", "system-x:", "system.corp:", "a" * 64 + ":", "oidc:\n", 5,
    "oidc/", "\u0000:",
]


@pytest.mark.parametrize("prefix", ACCEPTED_PREFIXES)
def test_accepted_prefixes(prefix: str) -> None:
    assert prefix_problem(prefix) is None
    parse([SRE_LEADS, VERIFIED], user={"claim": "email", "prefix": prefix})


@pytest.mark.parametrize("prefix", REFUSED_PREFIXES, ids=repr)
def test_refused_prefixes(prefix: object) -> None:
    assert prefix_problem(prefix) is not None
    found = problems([SRE_LEADS], user={"claim": "email", "prefix": prefix})
    assert len(found) == 1 and found[0].startswith("spec.grant.user.prefix: "), found
    with pytest.raises(ValueError, match="prefix"):
        ClaimReference(path=("email",), prefix=prefix)  # type: ignore[arg-type]


PREFIX_TEXT = st.text(alphabet=string.ascii_letters + string.digits + ".-:_ \x00\u0130",
                      max_size=12)


@given(PREFIX_TEXT, st.text(max_size=40))
def test_no_refused_prefix_resolves_and_resolved_users_start_with_the_prefix(
        prefix: str, value: str) -> None:
    if prefix_problem(prefix) is not None:
        with pytest.raises(ValueError):
            ClaimReference(path=("email",), prefix=prefix)
        return
    assert not prefix.startswith("system") and prefix.endswith(":")
    reference = ClaimReference(path=("email",), prefix=prefix)
    try:
        user = reference.resolve_user({"email": value})
    except PermissionDeniedError as error:
        assert error.reason == GRANT_CLAIM_UNUSABLE
        assert not value or has_control_character(value) or len(prefix + value) > 256
        return
    assert user == prefix + value and not user.startswith("system:")
    assert len(user) <= MAX_NAME_LENGTH and not has_control_character(user)


@given(st.text(max_size=20), st.characters(categories=("Cc", "Cf", "Zl", "Zp")),
       st.text(max_size=20))
def test_no_control_character_passes(head: str, control: str, tail: str) -> None:
    reference = ClaimReference(path=("groups",), prefix="oidc:")
    for claims in ({"groups": head + control + tail}, {"groups": ["ok", head + control + tail]}):
        with pytest.raises(PermissionDeniedError):
            reference.resolve_groups(claims)
    with pytest.raises(PermissionDeniedError):
        reference.resolve_user({"groups": head + control + tail})


# -- resolving a grant ---------------------------------------------------------------------

EMAIL = ClaimReference(path=("email",), prefix="oidc:")
GROUPS = ClaimReference(path=("groups",), prefix="oidc:")
TEMPLATE = Grant(cluster="prod", namespace="ops", user=EMAIL,
                 groups=("kubegate:people", GROUPS))


def test_a_grant_resolves_user_and_groups_from_claims_in_order() -> None:
    resolved = TEMPLATE.resolve(PERSON)
    assert resolved.user == "oidc:ada@corp.example"
    assert resolved.groups == ("kubegate:people", "oidc:sre", "oidc:sre-leads", "oidc:74")
    assert not resolved.templated and TEMPLATE.templated
    assert (resolved.cluster, resolved.namespace, resolved.max_lifetime) == (
        "prod", "ops", TEMPLATE.max_lifetime)
    constant = Grant(cluster="prod", namespace="ops", user="u")
    assert constant.resolve(PERSON) is constant


def test_groups_from_a_string_claim_a_path_and_repeated_names_kept_once() -> None:
    nested = ClaimReference(path=("org", "team"), prefix="corp:")
    grant = Grant(cluster="prod", namespace="ops", user="u",
                  groups=("oidc:sre", GROUPS, nested))
    resolved = grant.resolve({"groups": ["sre", "sre", "db"], "org": {"team": "infra"}})
    assert resolved.groups == ("oidc:sre", "oidc:db", "corp:infra")
    assert grant.resolve({"groups": [], "org": {"team": "infra"}}).groups == (
        "oidc:sre", "corp:infra")


def test_an_unresolved_grant_gives_no_names() -> None:
    with pytest.raises(ValueError, match="resolve it first"):
        _ = TEMPLATE.user_name
    with pytest.raises(ValueError, match="resolve it first"):
        _ = TEMPLATE.group_names


SECRET = "ada.secret-value@corp.example"
UNUSABLE = [
    ("missing user", {"groups": []}, "user", "claim email is missing"),
    ("user not a string", {"email": ["a"], "groups": []}, "user",
     "claim email is list, expected a string"),
    ("user a number", {"email": 74, "groups": []}, "user",
     "claim email is integer, expected a string"),
    ("empty user", {"email": "", "groups": []}, "user", "claim email is an empty string"),
    ("over-long user", {"email": SECRET * 10, "groups": []}, "user",
     "claim email gives a name over 256 characters with its prefix"),
    ("control character", {"email": SECRET + "\n", "groups": []}, "user",
     "claim email holds a control character"),
    ("bidi override", {"email": "\u202e" + SECRET, "groups": []}, "user",
     "claim email holds a control character"),
    ("missing groups", {"email": "a@b"}, "groups", "claim groups is missing"),
    ("groups an object", {"email": "a@b", "groups": {SECRET: 1}}, "groups",
     "claim groups is object, expected a string or a list of strings"),
    ("a group not a string", {"email": "a@b", "groups": [SECRET, 5]}, "groups",
     "claim groups holds a value of type integer, expected strings"),
    ("an empty group", {"email": "a@b", "groups": [SECRET, ""]}, "groups",
     "claim groups is an empty string"),
    ("too many groups", {"email": "a@b", "groups": [f"g{i}" for i in range(101)]}, "groups",
     f"claim groups holds 101 groups, over {MAX_CLAIM_GROUPS}"),
]


@pytest.mark.parametrize(("case", "claims", "field", "why"), UNUSABLE,
                         ids=[u[0] for u in UNUSABLE])
def test_an_unusable_claim_is_refused_naming_the_claim_never_its_value(
        case: str, claims: dict[str, Any], field: str, why: str) -> None:
    with pytest.raises(PermissionDeniedError) as refused:
        TEMPLATE.resolve(claims)
    error = refused.value
    assert error.reason == GRANT_CLAIM_UNUSABLE
    assert error.detail == f"spec.grant.{field}: {why}"
    assert why.removeprefix("claim ").split(" ", 1)[1] in error.public_message
    assert f"from claim {why.split()[1]}" in error.public_message
    for text in (str(error), error.detail, error.public_message):
        assert SECRET not in text and "ada.secret" not in text


def test_a_verified_identity_resolves_like_decoded_claims() -> None:
    frozen = Identity(issuer="corp", issuer_url="https://dex", subject="s", token_id=None,
                      audiences=("kubegate",), issued_at=0, expires_at=1, claims=PERSON)
    assert TEMPLATE.resolve(frozen.claims) == TEMPLATE.resolve(PERSON)


def test_exactly_100_groups_are_accepted() -> None:
    claims = {"email": "a@b", "groups": [f"g{i}" for i in range(100)]}
    assert len(TEMPLATE.resolve(claims).groups) == 101


# -- the grant grammar in documents and resources ------------------------------------------

CLAIM_GRANT = {"user": {"claim": "email", "prefix": "oidc:"},
               "groups": ["kubegate:people", {"claim": "groups", "prefix": "oidc:"}]}


def test_a_document_takes_user_and_groups_from_claims() -> None:
    grant = parse([SRE_LEADS, VERIFIED], **CLAIM_GRANT).grant
    assert grant == Grant(cluster="prod", namespace="ops", user=EMAIL,
                          groups=("kubegate:people", GROUPS))
    path = parse([SRE_LEADS], user={"claim": ["org", "login"], "prefix": "corp:"}).grant
    assert path.user == ClaimReference(path=("org", "login"), prefix="corp:")
    assert describe_grant(grant) == (
        'cluster prod, namespace ops, user {claim: email, prefix: "oidc:"} groups '
        'kubegate:people, {claim: groups, prefix: "oidc:"}, lifetime up to 15m')


@pytest.mark.parametrize(("grant", "expected"), [
    ({"user": {"claim": "email"}}, ["spec.grant.user.prefix: required: a non-empty string"]),
    ({"user": {"prefix": "oidc:"}}, ["spec.grant.user.claim: required"]),
    ({"user": {"claim": "email", "prefix": "oidc:", "default": "x"}},
     ["spec.grant.user.default: unknown field"]),
    ({"user": {"claim": 5, "prefix": "oidc:"}},
     ["spec.grant.user.claim: expected a claim name or a non-empty list of names"]),
    ({"user": {"claim": "email", "prefix": 5}},
     ["spec.grant.user.prefix: expected a string, got integer"]),
    ({"user": None}, ["spec.grant.user: expected a string or {claim, prefix}, got null"]),
    ({"user": "u", "groups": ["a", {"claim": "groups", "prefix": "system:"}]},
     ["spec.grant.groups[1].prefix: must not start with 'system'"]),
    ({"user": "u", "groups": [{"claim": "g", "prefix": "p:"}, {"claim": "g", "prefix": "p:"}]},
     ['spec.grant.groups[1]: duplicate {claim: g, prefix: "p:"}']),
    ({"user": "u", "groups": ["a", 5]},
     ["spec.grant.groups[1]: expected a non-empty string or {claim, prefix}, got integer"]),
    ({"user": "u", "groups": "a"}, ["spec.grant.groups: expected a list of strings"]),
    ({"serviceAccount": "ops", "groups": [{"claim": "groups", "prefix": "oidc:"}]},
     ["spec.grant.groups: groups go with user, not with serviceAccount"]),
    ({"serviceAccount": "ops", "user": {"claim": "email", "prefix": "oidc:"}},
     ["spec.grant.user: a user from a claim is for self-issued grants, not with "
      "serviceAccount", "spec.grant: needs exactly one of serviceAccount or user"]),
])
def test_the_grant_grammar_is_strict(grant: dict[str, Any], expected: list[str]) -> None:
    found = problems([SRE_LEADS], **grant)
    assert len(found) == len(expected), found
    for problem, start in zip(found, expected, strict=True):
        assert problem.startswith(start), found


def structurally_valid(schema: Mapping[str, Any], value: object, where: str = "") -> list[str]:
    """A small structural-schema check, as the API server prunes and types a resource: every
    field declared, every typed node of its type, required fields present."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get(
            "x-kubernetes-int-or-string"):
        return []
    kind = schema["type"]
    expected = {"object": dict, "array": list, "string": str, "integer": int}[kind]
    if not isinstance(value, expected):
        return [f"{where}: expected {kind}"]
    found = []
    if isinstance(value, dict):
        found += [f"{where}.{name}: required" for name in schema.get("required", [])
                  if name not in value]
        for name, item in value.items():
            declared = schema.get("properties", {}).get(name)
            found += ([f"{where}.{name}: not declared"] if declared is None and
                      "properties" in schema else
                      structurally_valid(declared or {"x-kubernetes-preserve-unknown-fields":
                                                      True}, item, f"{where}.{name}"))
    if isinstance(value, list):
        for position, item in enumerate(value):
            found += structurally_valid(schema["items"], item, f"{where}[{position}]")
    return found


def test_a_trust_mapping_resource_takes_the_people_shapes() -> None:
    resource = document([SRE_LEADS, VERIFIED], name="sre-break-glass", **CLAIM_GRANT)
    resource["metadata"].update(namespace="kubegate", uid="u-1", generation=1)
    assert structurally_valid(crd_schema(), resource) == []
    contains = crd_schema()["properties"]["spec"]["properties"]["claims"]["items"]
    assert {"required": ["contains"]} in contains["oneOf"]
    verdict = judge(resource, namespace="kubegate", file_sources={},
                    issuers=frozenset({"corp"}), clusters=frozenset({"prod"}))
    assert verdict.accepted, verdict.message
    assert verdict.mapping is not None and verdict.mapping.grant.user == EMAIL


def test_a_refused_resource_says_why_in_its_status() -> None:
    resource = document([SRE_LEADS], **{"user": {"claim": "email", "prefix": "system:"}})
    verdict = judge(resource, namespace="kubegate", file_sources={},
                    issuers=None, clusters=None)
    assert not verdict.accepted
    assert verdict.message.startswith("spec.grant.user.prefix: must not start with 'system'")


def test_a_bad_prefix_fails_the_whole_folder_like_any_invalid_mapping() -> None:
    text = yaml.safe_dump(document([SRE_LEADS], user={"claim": "email", "prefix": "OIDC"}))
    with pytest.raises(ConfigError):
        parse_documents(text, "people.yaml")


def test_explain_resolves_the_grant_or_denies_as_the_exchange_would() -> None:
    from exchanger.mappings.explain import explain, identity_for, render

    mapping_set = MappingSet(mappings=(parse([SRE_LEADS, VERIFIED], **CLAIM_GRANT),))
    granted = explain(mapping_set, identity_for("corp", PERSON))
    assert granted.grant is not None and granted.grant.user == "oidc:ada@corp.example"
    assert render(granted)[-1].startswith(
        "decision: would grant break-glass: cluster prod, namespace ops, user "
        "oidc:ada@corp.example groups kubegate:people, oidc:sre, oidc:sre-leads, oidc:74")
    without_email = {k: v for k, v in PERSON.items() if k != "email"}
    denied = explain(mapping_set, identity_for("corp", without_email))
    assert denied.granted is None
    assert denied.denial == "GRANT_CLAIM_UNUSABLE: spec.grant.user: claim email is missing"
