"""Misuse at the trust-mapping level, end to end over gRPC: tokens that verify (the issuer really
signed them) but whose claims try to slip past a mapping. Each is denied with PERMISSION_DENIED
and its reason, audited as a deny, and issues nothing; a valid token per mapping is allowed, so
the denials are about the claim under test and nothing else.

- type confusion: a number where the mapping expects a string, booleans as strings and back;
- glob and regex metacharacters in claim values (values are data, never patterns);
- unicode look-alikes and case changes in repository names and refs (exact comparison; regex
  classes and case folding are ASCII-only);
- GitHub `pull_request_target` (a fork's pull request running as the base repository): only a
  mapping with an `event_name` condition admits it;
- a renamed repository whose old name is re-registered by someone else: mappings pinned on
  `repository_id` / `repository_owner_id` deny it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from kubegate.credential import Credential
from kubegate.errors import ExchangeError
from tests.support.fixtures_exchanger import TestExchanger, self_issued_entry
from tests.support.hostile import DecisionLog, attempt, start_exchanger_in
from tests.support.oidc import GitHubActionsIssuer, GitLabCIIssuer

AUDIENCE = "kubegate"
GITHUB_MAPPINGS = {
    "web-by-id": """
  - {claim: repository_id, equals: "74"}
  - {claim: repository_owner_id, equals: "65"}
  - {claim: ref, equals: refs/heads/main}
  - {claim: event_name, oneOf: [push, workflow_dispatch]}""",
    "web-by-name": """
  - {claim: repository, equals: octo-org/web-name}
  - {claim: repository_owner_id, equals: "65"}""",
    "release": r"""
  - {claim: repository_id, equals: "75"}
  - {claim: ref, regex: 'refs/heads/release-\d+'}""",
    "feature": """
  - {claim: repository_id, equals: "76"}
  - {claim: ref, glob: 'refs/heads/feature-*'}""",
    "k8s-environment": """
  - {claim: repository_id, equals: "77"}
  - {claim: environment, regex: '(?i)k8s-prod'}""",
    "sub-only": """
  - {claim: sub, equals: "repo:octo-org/sub-only:ref:refs/heads/main"}""",
    "sub-admits-prt": """
  - {claim: sub, equals: "repo:octo-org/prt:ref:refs/heads/main"}
  - {claim: event_name, oneOf: [push, pull_request_target]}""",
}
GITLAB_MAPPINGS = {
    "gitlab-protected": """
  - {claim: project_id, equals: "20"}
  - {claim: ref_protected, equals: "true"}""",
    "gitlab-typed-as-boolean": """
  - {claim: project_id, equals: "21"}
  - {claim: ref_protected, equals: true}""",
}


def mapping_documents() -> str:
    def document(name: str, issuer: str, claims: str) -> str:
        return f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: {issuer}
  claims:{claims}
  grant: {{cluster: local, namespace: web, user: "ci:{name}"}}
"""
    return "\n---\n".join(
        [document(name, "github", claims) for name, claims in GITHUB_MAPPINGS.items()]
        + [document(name, "gitlab", claims) for name, claims in GITLAB_MAPPINGS.items()])


@dataclass(frozen=True, kw_only=True)
class Issuers:
    github: GitHubActionsIssuer
    gitlab: GitLabCIIssuer

    def gh(self, **job: object) -> str:
        """A GitHub token; `extra` claims override what the job derives."""
        extra = job.pop("extra", None)
        return self.github.mint(audience=AUDIENCE, extra_claims=extra, **job)  # type: ignore[arg-type]

    def gl(self, **job: object) -> str:
        extra = job.pop("extra", None)
        return self.gitlab.mint(audience=AUDIENCE, extra_claims=extra, **job)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def issuers(github_issuer: GitHubActionsIssuer, gitlab_issuer: GitLabCIIssuer) -> Issuers:
    return Issuers(github=github_issuer, gitlab=gitlab_issuer)


@pytest.fixture(scope="module")
def exchanger(issuers: Issuers, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[TestExchanger]:
    started = start_exchanger_in(
        tmp_path_factory.mktemp("mapping-misuse"),
        issuers=[{"name": "github", "url": issuers.github.url, "audiences": [AUDIENCE],
                  "caFile": str(issuers.github.ca_path)},
                 {"name": "gitlab", "url": issuers.gitlab.url, "audiences": [AUDIENCE],
                  "caFile": str(issuers.gitlab.ca_path)}],
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443", "backend": "selfIssued"}],
        mappings=mapping_documents(), self_issued=self_issued_entry())
    yield started
    started.running.stop(grace=0)


Build = Callable[[Issuers], str]

ALLOWED: dict[str, tuple[Build, str]] = {
    "web by id": (lambda i: i.gh(repository="octo-org/web"), "web-by-id"),
    "web by name and owner id": (lambda i: i.gh(repository="octo-org/web-name",
                                                repository_id="80"), "web-by-name"),
    "release branch": (lambda i: i.gh(repository_id="75", ref="refs/heads/release-12"),
                       "release"),
    "feature branch": (lambda i: i.gh(repository_id="76", ref="refs/heads/feature-login"),
                       "feature"),
    "environment in other ASCII case": (
        lambda i: i.gh(repository_id="77", environment="K8S-Prod"), "k8s-environment"),
    "sub only, push": (lambda i: i.gh(repository="octo-org/sub-only", repository_id="81"),
                       "sub-only"),
    "pull_request_target where the mapping admits it": (
        lambda i: i.gh(repository="octo-org/prt", repository_id="82",
                       event_name="pull_request_target"), "sub-admits-prt"),
    "gitlab protected ref": (lambda i: i.gl(), "gitlab-protected"),
}

DENIED: dict[str, Build] = {
    # -- type confusion ---------------------------------------------------------------------------
    "repository_id as a number": lambda i: i.gh(extra={"repository_id": 74}),
    "repository_id as a float": lambda i: i.gh(extra={"repository_id": 74.0}),
    "repository_id '74.0'": lambda i: i.gh(extra={"repository_id": "74.0"}),
    "repository_id '074'": lambda i: i.gh(extra={"repository_id": "074"}),
    "repository_id with a trailing newline": lambda i: i.gh(extra={"repository_id": "74\n"}),
    "repository_id in a list": lambda i: i.gh(extra={"repository_id": ["74"]}),
    "repository_id an operator object": lambda i: i.gh(extra={"repository_id": {"$ne": ""}}),
    "repository_id true": lambda i: i.gh(extra={"repository_id": True}),
    "repository_id null": lambda i: i.gh(extra={"repository_id": None}),
    "gitlab ref_protected as a boolean": lambda i: i.gl(extra={"ref_protected": True}),
    "gitlab ref_protected 'True'": lambda i: i.gl(extra={"ref_protected": "True"}),
    "gitlab ref_protected '1'": lambda i: i.gl(extra={"ref_protected": "1"}),
    "mapping typed as boolean meets gitlab's 'true'": lambda i: i.gl(project_id="21"),
    # -- metacharacters are data ------------------------------------------------------------------
    "ref '*' against equals": lambda i: i.gh(extra={"ref": "*"}),
    "ref '.*' against equals": lambda i: i.gh(extra={"ref": ".*"}),
    "repository_id '7?' against equals": lambda i: i.gh(extra={"repository_id": "7?"}),
    "repository_id '[7]4' against equals": lambda i: i.gh(extra={"repository_id": "[7]4"}),
    "feature glob: '*' crossing a slash": lambda i: i.gh(
        repository_id="76", ref="refs/heads/feature-x/../../main"),
    "feature glob: '*' crossing a colon": lambda i: i.gh(
        repository_id="76", extra={"ref": "refs/heads/feature-x:ref:refs/heads/main"}),
    "feature glob: another prefix": lambda i: i.gh(repository_id="76",
                                                   ref="refs/tags/feature-x"),
    "release regex: a trailing newline": lambda i: i.gh(
        repository_id="75", extra={"ref": "refs/heads/release-1\n"}),
    "release regex: an alternation smuggled in": lambda i: i.gh(
        repository_id="75", ref="refs/heads/release-1|refs/heads/main"),
    "release regex: a suffix": lambda i: i.gh(repository_id="75",
                                              ref="refs/heads/release-1-hotfix"),
    "release regex: a prefix": lambda i: i.gh(repository_id="75",
                                              ref="refs/heads/evil/refs/heads/release-1"),
    # -- unicode and case -------------------------------------------------------------------------
    "repository with a Cyrillic look-alike": lambda i: i.gh(
        repository="octo-org/w\u0435b-name", repository_id="80"),
    "repository in other case": lambda i: i.gh(repository="Octo-Org/Web-Name",
                                               repository_id="80"),
    "repository in fullwidth letters": lambda i: i.gh(
        repository="\uff4fcto-org/web-name", repository_id="80"),
    "repository with a zero-width space": lambda i: i.gh(
        repository="octo-org/web-name\u200b", repository_id="80"),
    "ref main in other case": lambda i: i.gh(ref="refs/heads/Main"),
    "release regex: Arabic-Indic digits": lambda i: i.gh(
        repository_id="75", ref="refs/heads/release-\u0661\u0662"),
    "release regex: fullwidth digits": lambda i: i.gh(
        repository_id="75", ref="refs/heads/release-\uff11\uff12"),
    "case-insensitive regex: a Kelvin sign for k": lambda i: i.gh(
        repository_id="77", environment="\u212a8s-prod"),
    "feature glob: other case": lambda i: i.gh(repository_id="76", ref="refs/heads/Feature-x"),
    # -- pull_request_target ----------------------------------------------------------------------
    "pull_request_target against an event allowlist": lambda i: i.gh(
        repository="octo-org/web", event_name="pull_request_target"),
    "pull_request_target against a sub-only mapping": lambda i: i.gh(
        repository="octo-org/sub-only", repository_id="81", event_name="pull_request_target"),
    # -- renamed repository, old name re-registered by someone else ------------------------------
    "old repository name, new owner's ids": lambda i: i.gh(
        repository="octo-org/web", repository_id="999", repository_owner_id="666"),
    "old repository name, same owner, new repository id": lambda i: i.gh(
        repository="octo-org/web", repository_id="998"),
    "old organisation name re-registered": lambda i: i.gh(
        repository="octo-org/web-name", repository_id="997", repository_owner_id="666"),
}


def test_every_mapping_is_used_by_a_valid_token() -> None:
    allowed = {mapping for _, mapping in ALLOWED.values()}
    assert allowed == set(GITHUB_MAPPINGS) | set(GITLAB_MAPPINGS) - {"gitlab-typed-as-boolean"}


@pytest.mark.parametrize("case", ALLOWED.keys())
def test_valid_token_gets_its_mapping(exchanger: TestExchanger, issuers: Issuers,
                                      case: str) -> None:
    build, mapping = ALLOWED[case]
    outcome = attempt(exchanger, build(issuers))
    assert isinstance(outcome, Credential), outcome
    assert outcome.mapping == mapping


@pytest.mark.parametrize("case", DENIED.keys())
def test_misuse_is_denied_audited_and_issues_nothing(exchanger: TestExchanger,
                                                     issuers: Issuers, case: str) -> None:
    token = DENIED[case](issuers)
    decisions = DecisionLog(exchanger)
    outcome = attempt(exchanger, token)
    assert isinstance(outcome, ExchangeError), f"{case}: ACCEPTED as {outcome}"
    assert (outcome.code.name, outcome.reason) == ("PERMISSION_DENIED", "NO_MATCHING_MAPPING")
    [line] = decisions.new()
    assert (line["decision"], line["reason"], line["token_id"]) == (
        "deny", "NO_MATCHING_MAPPING", "")
    assert line["caller"]["iss"] in (issuers.github.url, issuers.gitlab.url)  # it did verify


def test_pull_request_target_asking_for_a_sub_only_role_is_told_why_in_the_audit_log(
    exchanger: TestExchanger, issuers: Issuers,
) -> None:
    token = issuers.gh(repository="octo-org/sub-only", repository_id="81",
                       event_name="pull_request_target")
    decisions = DecisionLog(exchanger)
    outcome = attempt(exchanger, token, role="sub-only")
    assert isinstance(outcome, ExchangeError)
    assert (outcome.code.name, outcome.reason) == ("PERMISSION_DENIED", "ROLE_NOT_ALLOWED")
    [line] = decisions.new()
    assert "pull_request_target and no condition names event_name" in line["detail"]
