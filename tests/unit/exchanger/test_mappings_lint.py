"""Lints for risky trust: names without ids, patterns that reach across '/' or ':', events
that admit pull_request_target, reusable workflows trusted through the caller, and audiences
that are a provider default, another relying party's, or shared."""

from __future__ import annotations

from typing import Any

import pytest

from exchanger.mappings import parse_documents
from exchanger.mappings.lint import lint_issuers, lint_mapping, provider_of, regex_crossings
from exchanger.mappings.model import TrustMapping
from exchanger.verify.issuers import IssuerConfig, KubernetesCluster

SAFE_GITHUB = [
    {"claim": "repository_id", "equals": "74"},
    {"claim": "repository_owner_id", "equals": "65"},
    {"claim": "event_name", "oneOf": ["push", "workflow_dispatch"]},
    {"claim": "ref", "equals": "refs/heads/main"},
]
SAFE_GITLAB = [{"claim": "project_id", "equals": "20"},
               {"claim": "ref_protected", "equals": "true"}]


def mapping(claims: list[dict[str, Any]], issuer: str = "github") -> TrustMapping:
    import json

    document = json.dumps({
        "apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping",
        "metadata": {"name": "m"},
        "spec": {"issuer": issuer, "claims": claims,
                 "grant": {"cluster": "prod", "namespace": "web", "serviceAccount": "d"}}})
    (parsed,) = parse_documents(document, "m.yaml")
    return parsed


def warnings(claims: list[dict[str, Any]], issuer: str = "github") -> list[str]:
    return lint_mapping(mapping(claims, issuer))


def test_pinned_ids_events_and_refs_give_no_warning() -> None:
    assert warnings(SAFE_GITHUB) == []
    assert warnings(SAFE_GITLAB, issuer="gitlab") == []


@pytest.mark.parametrize(("extra", "expected"), [
    ({"claim": "repository", "equals": "octo-org/web"}, "repository is matched without "
     "repository_id"),
    ({"claim": "repository_owner", "equals": "octo-org"}, "repository_owner is matched "
     "without repository_owner_id"),
])
def test_a_github_name_without_its_id_is_flagged(extra: dict[str, Any], expected: str) -> None:
    claims = [c for c in SAFE_GITHUB if c["claim"] not in ("repository_id",
                                                           "repository_owner_id")]
    assert any(expected in w for w in warnings([*claims, extra]))


def test_a_name_next_to_its_id_is_fine() -> None:
    assert warnings([*SAFE_GITHUB, {"claim": "repository", "equals": "octo-org/web"}]) == []


@pytest.mark.parametrize(("claim", "identifier"), [("project_path", "project_id"),
                                                   ("namespace_path", "namespace_id")])
def test_a_gitlab_name_without_its_id_is_flagged(claim: str, identifier: str) -> None:
    found = warnings([{"claim": claim, "equals": "g/p"}], issuer="gitlab")
    assert any(f"{claim} is matched without {identifier}" in w for w in found)


def test_a_sub_naming_the_repository_needs_an_id_unless_it_is_an_immutable_subject() -> None:
    events = {"claim": "event_name", "equals": "push"}
    named = warnings([{"claim": "sub", "equals": "repo:octo-org/web:ref:refs/heads/main"},
                      events])
    assert any("sub names the repository by name" in w for w in named)
    immutable = warnings([{"claim": "sub", "equals":
                           "repo:octo-org@65/web@74:ref:refs/heads/main"}, events])
    assert immutable == []


@pytest.mark.parametrize(("pattern", "crossing"), [
    ("octo-org/web/.*", ["'.'"]),
    (r"repo:octo-org/\S+", ["\\S"]),
    (r"refs/heads/\W", ["\\W"]),
    ("repo:octo-org/[^/]+:ref:x", ["[^/]"]),
    ("refs/tags/[!-~]+", ["the range !-~"]),
    ("repo:o/(a|.+)", ["'.'"]),
])
def test_regexes_that_can_match_a_separator_are_found(pattern: str,
                                                      crossing: list[str]) -> None:
    assert regex_crossings(pattern) == crossing


@pytest.mark.parametrize("pattern", [
    "refs/tags/v[0-9]+", "repo:octo-org/[a-z0-9-]+:ref:refs/heads/main",
    "octo-org/deploy/\\.github/workflows/deploy\\.yml@refs/tags/v\\d+",
    "repo:o/[^/:]+:ref:x", "[a-z/]+",
])
def test_regexes_that_spell_out_their_characters_pass(pattern: str) -> None:
    assert regex_crossings(pattern) == []


def test_a_crossing_regex_is_a_warning_naming_the_condition() -> None:
    (warning,) = warnings([*SAFE_GITHUB, {"claim": "job_workflow_ref",
                                           "regex": "octo-org/deploy/.*"}])
    assert warning.startswith("spec.claims[4] (job_workflow_ref): regex 'octo-org/deploy/.*' "
                              "can match '/' or ':' through '.'")


@pytest.mark.parametrize(("glob", "expected"), [
    ("repo:octo-org/*:ref:refs/heads/main", "leaves the repository part of sub open"),
    ("repo:octo-org/web:*", "leaves a whole segment of sub open"),
])
def test_sub_globs_that_leave_the_repository_or_a_segment_open_are_flagged(
        glob: str, expected: str) -> None:
    assert any(expected in w for w in warnings([*SAFE_GITHUB, {"claim": "sub", "glob": glob}]))


def test_a_sub_glob_on_the_ref_only_is_segment_safe() -> None:
    glob = {"claim": "sub", "glob": "repo:octo-org@65/web@74:ref:refs/heads/release-*"}
    assert warnings([*SAFE_GITHUB, glob]) == []


@pytest.mark.parametrize("condition", [
    {"claim": "event_name", "equals": "pull_request_target"},
    {"claim": "event_name", "oneOf": ["push", "pull_request_target"]},
    {"claim": "event_name", "glob": "pull_request*"},
    {"claim": "event_name", "regex": "pull_request(_target)?"},
])
def test_event_conditions_that_admit_pull_request_target_are_flagged(
        condition: dict[str, Any]) -> None:
    claims = [c for c in SAFE_GITHUB if c["claim"] != "event_name"] + [condition]
    assert any("admits pull_request_target" in w for w in warnings(claims))


def test_a_github_mapping_without_an_event_condition_is_flagged() -> None:
    claims = [c for c in SAFE_GITHUB if c["claim"] != "event_name"]
    assert any(w.startswith("no event_name condition") for w in warnings(claims))


def test_workflow_ref_without_job_workflow_ref_is_flagged() -> None:
    ref = {"claim": "workflow_ref",
           "equals": "octo-org/web/.github/workflows/deploy.yml@refs/heads/main"}
    assert any("match job_workflow_ref" in w for w in warnings([*SAFE_GITHUB, ref]))
    job = {**ref, "claim": "job_workflow_ref"}
    assert warnings([*SAFE_GITHUB, ref, job]) == []


def test_the_provider_comes_from_the_issuer_url_then_the_claims_then_the_name() -> None:
    plain = mapping([{"claim": "sub", "equals": "x"}], issuer="ci")
    github = IssuerConfig(name="ci", url="https://token.actions.githubusercontent.com",
                          audiences=("kubegate",))
    gitlab = IssuerConfig(name="ci", url="https://gitlab.example.com", audiences=("kubegate",))
    assert provider_of(plain, github) == "github"
    assert provider_of(plain, gitlab) == "gitlab"
    assert provider_of(plain, None) is None
    assert provider_of(mapping(SAFE_GITLAB, issuer="ci"), None) == "gitlab"
    assert provider_of(mapping([{"claim": "sub", "equals": "x"}], issuer="github-prod"),
                       None) == "github"


def issuer(name: str, url: str, *audiences: str, cluster: bool = False) -> IssuerConfig:
    source = KubernetesCluster(cluster="prod") if cluster else None
    return IssuerConfig(name=name, url=url, audiences=audiences,
                        **({"key_source": source} if source else {}))


def test_audiences_that_are_defaults_foreign_or_shared_are_flagged() -> None:
    issuers = [
        issuer("github", "https://token.actions.githubusercontent.com", "kubegate",
               "https://github.com/octo-org"),
        issuer("gitlab", "https://gitlab.com", "https://gitlab.com"),
        issuer("aws-shared", "https://ci.example.com", "sts.amazonaws.com"),
        issuer("pods", "https://kubernetes.default.svc.cluster.local", "kubegate",
               "https://kubernetes.default.svc.cluster.local", cluster=True),
        issuer("github-again", "https://token.actions.githubusercontent.com", "kubegate"),
    ]
    found = [(i.name, message) for i, message in lint_issuers(issuers)]
    assert any(n == "github" and "GitHub's default" in m for n, m in found)
    assert any(n == "gitlab" and "the issuer's own URL" in m for n, m in found)
    assert any(n == "aws-shared" and "another relying party" in m for n, m in found)
    assert any(n == "pods" and "any pod's default token is accepted" in m for n, m in found)
    assert any(n == "github" and "shared with issuer github-again of the same URL" in m
               for n, m in found)
    assert not any("shared with issuer pods" in m for _, m in found)


def test_dedicated_audiences_give_no_warning() -> None:
    issuers = [issuer("github", "https://token.actions.githubusercontent.com", "kubegate"),
               issuer("gitlab", "https://gitlab.com", "kubegate")]
    assert lint_issuers(issuers) == []
