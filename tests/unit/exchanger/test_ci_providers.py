"""CircleCI, Buildkite, Bitbucket Pipelines, Azure DevOps and Jenkins (OIDC Provider plugin):
how an issuer or mapping is recognised as theirs, the JSON types of their claims, and the lints
for risky trust in their mappings and issuers. Each lint has a case that fires and one that
does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exchanger.config import ISSUER_KINDS, build_config
from exchanger.mappings import parse_documents
from exchanger.mappings.claimtypes import Provider, known_claim
from exchanger.mappings.lint import check_types, lint_issuers, lint_mapping, provider_of
from exchanger.mappings.model import TrustMapping
from exchanger.verify.issuers import IssuerConfig
from tests.support.ci_issuers import SHAPES

OTHER_CI: tuple[Provider, ...] = ("circleci", "buildkite", "bitbucket", "azure-devops",
                                  "jenkins")
PROJECT = "oidc.circleci.com/project-id"
SAFE: dict[Provider, list[dict[str, Any]]] = {
    "circleci": [{"claim": PROJECT, "equals": "e4f5"},
                 {"claim": "oidc.circleci.com/vcs-ref", "equals": "refs/heads/main"}],
    "buildkite": [{"claim": "organization_id", "equals": "0184"},
                  {"claim": "pipeline_id", "equals": "0185"},
                  {"claim": "build_branch", "equals": "main"}],
    "bitbucket": [{"claim": "repositoryUuid", "equals": "{437d}"},
                  {"claim": "branchName", "equals": "main"}],
    "azure-devops": [{"claim": "prj_id", "equals": "8d7c"}, {"claim": "rpo_id", "equals": "3e4f"},
                     {"claim": "rpo_ref", "equals": "refs/heads/main"}],
    "jenkins": [{"claim": "sub", "equals": "https://ci.example.com/job/web/job/main/"}],
}


def mapping(claims: list[dict[str, Any]], issuer: str) -> TrustMapping:
    document = json.dumps({
        "apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping", "metadata": {"name": "m"},
        "spec": {"issuer": issuer, "claims": claims,
                 "grant": {"cluster": "prod", "namespace": "web", "serviceAccount": "d"}}})
    (parsed,) = parse_documents(document, "m.yaml")
    return parsed


def config_issuer(url: str, *audiences: str, kind: str | None = None) -> IssuerConfig:
    return IssuerConfig(name="ci", url=url, audiences=tuple(audiences or ("kubegate",)),
                        kind=kind)


def warnings(provider: Provider, claims: list[dict[str, Any]]) -> list[str]:
    return lint_mapping(mapping(claims, provider))


# -- recognising the provider -----------------------------------------------------------------


@pytest.mark.parametrize(("url", "provider"), [
    ("https://oidc.circleci.com/org/b3e1f0a2-7c4d-4e5f-8a9b-0c1d2e3f4a5b", "circleci"),
    ("https://agent.buildkite.com", "buildkite"),
    ("https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
     "bitbucket"),
    ("https://vstoken.dev.azure.com/5c0e9b8a-1d2c-4b3a-9f8e-7d6c5b4a3f2e", "azure-devops"),
    ("https://jenkins.example.com/oidc", "jenkins"),
    ("https://ci.example.com/job/team/oidc", "jenkins"),
])
def test_the_issuer_url_names_the_provider(url: str, provider: Provider) -> None:
    plain = mapping([{"claim": "sub", "equals": "x"}], issuer="ci")
    assert provider_of(plain, config_issuer(url)) == provider


@pytest.mark.parametrize("url", ["https://api.bitbucket.org/2.0/user",
                                 "https://sso.example.com", "https://example.com/oidc/x"])
def test_other_urls_name_no_ci_provider(url: str) -> None:
    assert provider_of(mapping([{"claim": "sub", "equals": "x"}], "ci"),
                       config_issuer(url)) is None


@pytest.mark.parametrize("provider", OTHER_CI)
def test_the_issuer_kind_names_the_provider_and_the_config_accepts_it(provider: str) -> None:
    assert provider in ISSUER_KINDS
    config = build_config({
        "listen": "127.0.0.1:0", "selfIssued": {"listen": "127.0.0.1:8444"},
        "clusters": [{"name": "dev", "server": "https://10.0.0.2:6443", "backend": "selfIssued"}],
        "issuers": [{"name": "ci", "url": "https://ci.internal.example", "audiences": ["k"],
                     "kind": provider}]}, base=Path("/etc/kubegate"), environ={}, source="c.yaml")
    (loaded,) = config.issuers
    plain = mapping([{"claim": "sub", "equals": "x"}], issuer="ci")
    assert provider_of(plain, loaded) == provider


@pytest.mark.parametrize(("claim", "provider"), [
    (PROJECT, "circleci"), ("pipeline_slug", "buildkite"), ("organization_id", "buildkite"),
    ("repositoryUuid", "bitbucket"), ("branchName", "bitbucket"), ("prj_id", "azure-devops"),
    ("rpo_ref", "azure-devops"), ("build_number", "jenkins"), ("pipeline_id", "gitlab"),
])
def test_the_claims_a_mapping_names_reveal_the_provider(claim: str, provider: Provider) -> None:
    assert provider_of(mapping([{"claim": claim, "equals": "x"}], "ci"), None) == provider


@pytest.mark.parametrize(("name", "provider"), [
    ("circleci-prod", "circleci"), ("buildkite", "buildkite"), ("bitbucket", "bitbucket"),
    ("azure-devops", "azure-devops"), ("jenkins-oidc", "jenkins")])
def test_the_issuer_name_is_the_last_hint(name: str, provider: Provider) -> None:
    assert provider_of(mapping([{"claim": "sub", "equals": "x"}], name), None) == provider


def test_buildkite_claims_win_over_the_names_gitlab_shares() -> None:
    shared = [{"claim": "pipeline_id", "equals": "x"}, {"claim": "pipeline_slug", "equals": "w"}]
    assert provider_of(mapping(shared, "ci"), None) == "buildkite"
    assert provider_of(mapping([{"claim": "build_number", "equals": 5}], "buildkite"),
                       None) == "buildkite"


def test_an_azure_people_issuer_is_not_taken_for_azure_devops() -> None:
    assert provider_of(mapping([{"claim": "sub", "equals": "x"}], "azure-ad"), None) is None


# -- claim types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "condition", "message"), [
    ("buildkite", {"claim": "build_number", "equals": "5"},
     'build_number is an integer in Buildkite tokens: equals "5" (string) can never match; '
     "write 5 without quotes"),
    ("jenkins", {"claim": "build_number", "equals": "42"},
     "build_number is an integer in Jenkins OIDC Provider tokens"),
    ("circleci", {"claim": "oidc.circleci.com/context-ids", "equals": "a745"},
     "oidc.circleci.com/context-ids is a list of strings in CircleCI tokens: equals can never "
     "match; use contains"),
    ("circleci", {"claim": "oidc.circleci.com/ssh-rerun", "equals": "false"},
     "write false without quotes"),
    ("buildkite", {"claim": "step_key", "equals": 3},
     "step_key is a string or null in Buildkite tokens: equals 3 (integer) can never match; "
     'quote it: "3"'),
    ("bitbucket", {"claim": "repositoryUuid", "contains": "{437d}"},
     "repositoryUuid is a string in Bitbucket Pipelines tokens: contains applies to lists only"),
    ("azure-devops", {"claim": "prj_id", "glob": "*"}, None),
])
def test_conditions_that_can_never_match_a_providers_claim_are_errors(
        provider: Provider, condition: dict[str, Any], message: str | None) -> None:
    errors = check_types(mapping([condition], provider))
    assert (any(message in error for error in errors) if message else errors == []), errors


@pytest.mark.parametrize("provider", OTHER_CI)
def test_the_local_issuers_mint_claims_of_the_types_the_tables_know(provider: Provider) -> None:
    shape = SHAPES[provider]
    claims = shape.claims(shape.job, issuer="https://127.0.0.1:1" + shape.path, audience=None,
                          now=1_700_000_000)
    for name, value in claims.items():
        known = known_claim((name,), provider)
        if known is not None and known.type is not None:
            kind = ("null" if value is None else "boolean" if isinstance(value, bool) else
                    "integer" if isinstance(value, int) else "list" if isinstance(value, list)
                    else "string")
            assert kind in known.type.kinds, (name, value)


def test_azure_devops_ids_of_undocumented_type_are_left_unknown() -> None:
    assert known_claim(("def_id",), "azure-devops") is None
    assert known_claim(("run_id",), "azure-devops") is None


# -- lints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", OTHER_CI)
def test_a_mapping_pinning_ids_gives_no_warning(provider: Provider) -> None:
    assert warnings(provider, SAFE[provider]) == []


@pytest.mark.parametrize(("provider", "claims", "expected"), [
    ("circleci", [{"claim": "oidc.circleci.com/vcs-ref", "equals": "refs/heads/main"}],
     "every project of the CircleCI organization is admitted"),
    ("buildkite", [{"claim": "pipeline_slug", "equals": "web"}],
     "jobs of every Buildkite organization are admitted"),
    ("bitbucket", [{"claim": "branchName", "equals": "main"}],
     "every repository of the Bitbucket workspace is admitted"),
    ("azure-devops", [{"claim": "rpo_ref", "equals": "refs/heads/main"}],
     "every pipeline of the Azure DevOps organization is admitted"),
    ("jenkins", [{"claim": "build_number", "equals": 4}],
     "every job that can bind the id-token credential is admitted"),
])
def test_a_mapping_that_pins_no_id_is_flagged(
        provider: Provider, claims: list[dict[str, Any]], expected: str) -> None:
    assert any(expected in w for w in warnings(provider, claims)), warnings(provider, claims)


@pytest.mark.parametrize(("provider", "claims", "expected"), [
    ("circleci", [{"claim": "sub", "glob": "org/O/project/P/user/*"},
                  {"claim": "oidc.circleci.com/vcs-ref", "equals": "refs/heads/main"}],
     "oidc.circleci.com/vcs-ref is matched without oidc.circleci.com/project-id"),
    ("circleci", [{"claim": "sub", "glob": "org/O/project/P/user/*"},
                  {"claim": "oidc.circleci.com/vcs-origin", "equals": "github.com/o/web"}],
     "oidc.circleci.com/vcs-origin is matched without oidc.circleci.com/project-id"),
    ("buildkite", [{"claim": "organization_id", "equals": "0184"},
                   {"claim": "build_branch", "equals": "main"}],
     "build_branch is matched without pipeline_id"),
    ("bitbucket", [{"claim": "sub", "glob": "{437d}:*"},
                   {"claim": "branchName", "equals": "main"}],
     "branchName is matched without repositoryUuid"),
    ("azure-devops", [{"claim": "prj_id", "equals": "8d7c"},
                      {"claim": "rpo_ref", "equals": "refs/heads/main"}],
     "rpo_ref is matched without rpo_id"),
    ("azure-devops", [{"claim": "prj_id", "equals": "8d7c"},
                      {"claim": "rpo_uri", "equals": "https://dev.azure.com/c/w/_git/w"}],
     "rpo_uri is matched without rpo_id"),
])
def test_a_claim_contributors_choose_without_its_id_is_flagged(
        provider: Provider, claims: list[dict[str, Any]], expected: str) -> None:
    assert any(expected in w for w in warnings(provider, claims)), warnings(provider, claims)


@pytest.mark.parametrize(("name", "identifier"), [("organization_slug", "organization_id"),
                                                  ("pipeline_slug", "pipeline_id")])
def test_a_buildkite_slug_without_its_id_is_flagged_and_next_to_it_is_fine(
        name: str, identifier: str) -> None:
    base = [c for c in SAFE["buildkite"] if c["claim"] != identifier]
    flagged = warnings("buildkite", [*base, {"claim": name, "equals": "web"}])
    assert any(f"{name} is matched without {identifier}" in w for w in flagged), flagged
    assert warnings("buildkite", [*SAFE["buildkite"], {"claim": name, "equals": "web"}]) == []


@pytest.mark.parametrize(("provider", "glob"), [
    ("circleci", "org/O/project/*/user/*"),
    ("circleci", "org/*/project/P/user/*"),
    ("buildkite", "organization:*:pipeline:web:ref:refs/heads/main:commit:*:step:*"),
    ("buildkite", "organization:acme:pipeline:web-*:ref:refs/heads/main:commit:*:step:*"),
    ("bitbucket", "*:{2c3d}"),
    ("azure-devops", "sc://contoso/*/deploy"),
    ("jenkins", "https://ci.example.com/job/web/job/*/"),
    ("jenkins", "https://ci.example.com/job/*/"),
])
def test_a_sub_glob_that_leaves_an_identifying_part_open_is_flagged(
        provider: Provider, glob: str) -> None:
    found = warnings(provider, [*SAFE[provider], {"claim": "sub", "glob": glob}])
    assert any("leaves an identifying part of sub open" in w for w in found), found


@pytest.mark.parametrize(("provider", "glob"), [
    ("circleci", "org/O/project/P/user/*"),  # CircleCI's documented pattern
    ("buildkite", "organization:acme:pipeline:web:ref:refs/heads/main:commit:*:step:*"),
    ("bitbucket", "{437d}:*"),
    ("azure-devops", "sc://contoso/web/deploy"),  # every part names something: no wildcard
    ("jenkins", "https://ci.example.com/job/web/job/main/*"),
])
def test_a_sub_glob_that_spells_out_the_identifying_parts_is_fine(
        provider: Provider, glob: str) -> None:
    found = warnings(provider, [*SAFE[provider], {"claim": "sub", "glob": glob}])
    assert not any("leaves an identifying part" in w for w in found), found


@pytest.mark.parametrize(("url", "audience"), [
    ("https://oidc.circleci.com/org/b3e1f0a2", "b3e1f0a2"),
    ("https://agent.buildkite.com", "https://buildkite.com/acme-inc"),
    ("https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
     "ari:cloud:bitbucket::workspace/6a1b2c3d"),
])
def test_a_ci_providers_default_audience_is_flagged_and_a_dedicated_one_is_not(
        url: str, audience: str) -> None:
    ((_, message),) = lint_issuers([config_issuer(url, audience)])
    assert "default: every job gets it without asking for it" in message
    assert lint_issuers([config_issuer(url, "kubegate")]) == []


def test_azure_devops_fixed_audience_is_another_relying_partys() -> None:
    url = "https://vstoken.dev.azure.com/5c0e9b8a"
    ((_, message),) = lint_issuers([config_issuer(url, "api://AzureADTokenExchange")])
    assert "belongs to another relying party" in message
