r"""Warnings about risky trust in valid mappings and issuers (`kubegate mappings validate`).

A lint never refuses a mapping: the loader decides validity. Lints point at what the
research on CI trust policies calls the usual mistakes (see DESIGN.md and the trust-policy
notes, pitfalls 2 to 6):
- names where immutable ids exist: `repository` without `repository_id`, `repository_owner`
  without `repository_owner_id`, a `sub` naming a repository without an id condition
  (GitHub); `project_path`/`namespace_path` without `project_id`/`namespace_id` (GitLab):
  names can be deleted and registered again by someone else;
- patterns that reach across `/` or `:`: a regex whose `.`, `\S`, `\W`, `\D`, negated class or
  range can match `/` or `:`, and globs on `sub` or a repository claim that leave the
  repository part open (`repo:org/*:...`) or a whole segment open (`repo:org/app:*`);
- GitHub mappings that admit `pull_request_target` (an `event_name` condition that accepts
  it), or say nothing about `event_name` at all;
- reusable workflows trusted through the caller: `workflow_ref` without `job_workflow_ref`;
- people mappings (ID tokens of an organisation's OIDC provider, `people.py`): `email`
  matched without `email_verified equals true`, and a constant `user`;
- issuers whose audience is a provider default (`https://github.com/OWNER`), another relying
  party's, the cluster API's, or shared with another issuer entry of the same URL;
- the other CI systems (CircleCI, Buildkite, Bitbucket Pipelines, Azure DevOps, Jenkins'
  OIDC Provider plugin; sources in `ci-examples/<provider>/README.md`): a mapping that pins no
  id of what it trusts (project, organization, repository, or for Jenkins the job in `sub`),
  a claim a contributor chooses (a branch, a slug, a repository URL) without that id, a name
  without its id (Buildkite slugs), a `sub` glob that leaves an identifying part open
  (`organization:*:`, `org/O/project/*`, `/job/*/`), and the provider's default audience.

Type errors (a condition that can never match its claim's known type) are not lints but
errors of `mappings validate`: `check_types`, with the table in `claimtypes.py`.

Pure: mappings and issuer configs in, messages out. Patterns are read with Python's regex
parser (their text only, never a claim value) and shown cut short (`grammar.shown`).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from exchanger.mappings.access_lints import access_warnings
from exchanger.mappings.ci_lints import (
    SUBJECT_PARTS,
    chosen_without_id,
    claim_names,
    open_subject_parts,
    unpinned_scope,
)
from exchanger.mappings.claimtypes import (
    AZURE_DEVOPS_CLAIMS,
    BITBUCKET_CLAIMS,
    CIRCLECI_CLAIMS,
    PROVIDERS,
    Provider,
    type_errors,
)
from exchanger.mappings.conditions import Condition, Operator, claim_label
from exchanger.mappings.model import TrustMapping
from exchanger.mappings.people import (
    PEOPLE_CLAIMS,
    PEOPLE_ISSUER_WORDS,
    is_people_host,
    lint_people,
)
from exchanger.verify.issuers import IssuerConfig, KubernetesCluster
from kubegate.grammar import shown

__all__ = ["Provider", "check_types", "lint_issuers", "lint_mapping", "provider_of",
           "regex_crossings"]

_sre: Any = importlib.import_module("re._parser")  # the stdlib's regex parser (no stubs)

GITHUB_ONLY_CLAIMS: Final = frozenset({
    "repository", "repository_id", "repository_owner", "repository_owner_id",
    "repository_visibility", "workflow", "workflow_ref", "workflow_sha", "job_workflow_ref",
    "job_workflow_sha", "event_name", "actor", "actor_id", "run_id", "run_number",
    "run_attempt", "head_ref", "base_ref", "enterprise", "enterprise_id",
})
GITLAB_ONLY_CLAIMS: Final = frozenset({
    "project_id", "project_path", "namespace_id", "namespace_path", "pipeline_id",
    "pipeline_source", "job_id", "user_login", "user_id", "user_email", "user_access_level",
    "ref_path", "ref_protected", "environment_protected", "deployment_tier",
    "ci_config_ref_uri", "ci_config_sha", "project_visibility", "runner_id",
})
SHARED_CI_CLAIMS: Final = frozenset({"pipeline_id", "job_id"})
"""Names both GitLab and Buildkite send: they decide only when nothing else does (GitLab)."""
BUILDKITE_ONLY_CLAIMS: Final = frozenset({
    "organization_slug", "organization_id", "pipeline_slug", "build_branch", "build_tag",
    "build_commit", "step_key", "agent_id", "build_source",
})
OTHER_CI_CLAIMS: Final[tuple[tuple[Provider, frozenset[str]], ...]] = (
    ("circleci", frozenset(CIRCLECI_CLAIMS)), ("buildkite", BUILDKITE_ONLY_CLAIMS),
    ("bitbucket", frozenset(BITBUCKET_CLAIMS)), ("azure-devops", frozenset(AZURE_DEVOPS_CLAIMS)),
)
"""Claims only that CI system sends (Buildkite's `pipeline_id` and `job_id` are GitLab's names
too, its `build_number` Jenkins'; Azure DevOps' `run_id` is GitHub's)."""
NAME_WITHOUT_ID: Final[dict[Provider, tuple[tuple[str, str], ...]]] = {
    "github": (("repository", "repository_id"), ("repository_owner", "repository_owner_id")),
    "gitlab": (("project_path", "project_id"), ("namespace_path", "namespace_id")),
    "buildkite": (("organization_slug", "organization_id"), ("pipeline_slug", "pipeline_id")),
}
ISSUER_WORDS: Final[tuple[tuple[str, Provider], ...]] = (
    ("github", "github"), ("gitlab", "gitlab"), ("circleci", "circleci"),
    ("buildkite", "buildkite"), ("bitbucket", "bitbucket"), ("azure-devops", "azure-devops"),
    ("azuredevops", "azure-devops"),
    ("jenkins", "jenkins"),
)

REPOSITORY_CLAIMS: Final = frozenset({"repository", "project_path", "namespace_path"})
FORK_EVENT: Final = "pull_request_target"
OTHER_RELYING_PARTIES: Final = frozenset({
    "sts.amazonaws.com", "api://AzureADTokenExchange", "https://iam.googleapis.com",
    "vault", "sigstore",
})


def provider_of(mapping: TrustMapping, issuer: IssuerConfig | None) -> Provider | None:
    """Which CI system the mapping's issuer is: from the issuer's config when known, else
    from the claims the mapping names, else from the issuer's name."""
    if issuer is not None:
        known = _provider_from_config(issuer)
        if known is not None:
            return known
    names = {condition.path[0] for condition in mapping.conditions}
    return (_provider_from_claims(names) or _provider_from_name(mapping.issuer.lower())
            or ("jenkins" if "build_number" in names else None))


def _provider_from_claims(names: set[str]) -> Provider | None:
    if names & GITHUB_ONLY_CLAIMS:
        return "github"
    if names & (GITLAB_ONLY_CLAIMS - SHARED_CI_CLAIMS):
        return "gitlab"
    for provider, claims in OTHER_CI_CLAIMS:
        if names & claims:
            return provider
    if names & SHARED_CI_CLAIMS:
        return "gitlab"
    if "kubernetes.io" in names:
        return "kubernetes"
    return "oidc" if names & PEOPLE_CLAIMS else None


def _provider_from_name(name: str) -> Provider | None:
    for word, provider in ISSUER_WORDS:
        if word in name:
            return provider
    if any(word in name for word in PEOPLE_ISSUER_WORDS):
        return "oidc"
    return None


def _provider_from_config(issuer: IssuerConfig) -> Provider | None:
    if isinstance(issuer.key_source, KubernetesCluster):
        return "kubernetes"
    for provider in PROVIDERS:
        if issuer.kind == provider:
            return provider
    parts = urlsplit(issuer.url)
    host, path = parts.hostname or "", parts.path
    if is_people_host(host, path):
        return "oidc"
    if (host == "token.actions.githubusercontent.com" or path.endswith("/_services/token")
            or (host.startswith("token.actions.") and host.endswith(".ghe.com"))):
        return "github"
    return _other_ci_host(host, path) or ("gitlab" if "gitlab" in host else None)


def _other_ci_host(host: str, path: str) -> Provider | None:
    """CircleCI `oidc.circleci.com/org/ID`, Buildkite `agent.buildkite.com`, Bitbucket
    `api.bitbucket.org/2.0/workspaces/W/pipelines-config/identity/oidc`, Azure DevOps
    `vstoken.dev.azure.com/ORG_ID`, and Jenkins' OIDC Provider plugin: `JENKINS_URL/oidc`
    (or a folder's `.../oidc`), checked last as the least specific."""
    if host == "oidc.circleci.com":
        return "circleci"
    if host == "agent.buildkite.com":
        return "buildkite"
    if host == "api.bitbucket.org" and path.endswith("/pipelines-config/identity/oidc"):
        return "bitbucket"
    if host == "vstoken.dev.azure.com":
        return "azure-devops"
    return "jenkins" if path.rstrip("/").endswith("/oidc") else None


def lint_mapping(mapping: TrustMapping, issuer: IssuerConfig | None = None,
                 now: float | None = None) -> list[str]:
    """Warnings about one valid mapping; `issuer` is its issuer's config when known; `now`
    (default: the clock) decides which windows have ended."""
    provider = provider_of(mapping, issuer)
    warnings = [*_names_without_ids(mapping, provider), *_open_patterns(mapping, provider),
                *lint_people(mapping, provider == "oidc"), *unpinned_scope(mapping, provider),
                *chosen_without_id(mapping, provider),
                *access_warnings(mapping, time.time() if now is None else now)]
    if provider == "github":
        warnings += _events(mapping)
        warnings += _reusable_workflows(mapping)
    return warnings


def check_types(mapping: TrustMapping, issuer: IssuerConfig | None = None) -> list[str]:
    """Errors for `mappings validate`: conditions that can never match their claim's known
    type (`claimtypes.py`), for the mapping's provider."""
    return type_errors(mapping, provider_of(mapping, issuer))


def _claims(mapping: TrustMapping) -> set[str]:
    return claim_names(mapping)


def _names_without_ids(mapping: TrustMapping, provider: Provider | None) -> list[str]:
    if provider is None:
        return []
    claims, warnings = _claims(mapping), []
    for name, identifier in NAME_WITHOUT_ID.get(provider, ()):
        if name in claims and identifier not in claims:
            warnings.append(f"{name} is matched without {identifier}: names can be deleted "
                            f"and registered again by someone else; add {identifier}")
    prefix, identifier = {"github": ("repo:", "repository_id"),
                          "gitlab": ("project_path:", "project_id")}.get(provider, ("", ""))
    for condition in _conditions_on(mapping, "sub"):
        if (prefix and identifier not in claims and _mentions(condition, prefix)
                and not _immutable_subject(condition)):
            warnings.append(f"sub names the {'repository' if provider == 'github' else 'project'}"
                            f" by name: add a {identifier} condition (names can be registered "
                            "again by someone else)")
    return warnings


def _conditions_on(mapping: TrustMapping, claim: str) -> list[Condition]:
    return [c for c in mapping.conditions if c.path == (claim,)]


def _mentions(condition: Condition, prefix: str) -> bool:
    values = condition.expected if isinstance(condition.expected, tuple) else (
        condition.expected,)
    return any(isinstance(value, str) and value.startswith(prefix) for value in values)


def _immutable_subject(condition: Condition) -> bool:
    """GitHub's immutable subject `repo:OWNER@ID/REPO@ID:...` carries the ids itself."""
    values = condition.expected if isinstance(condition.expected, tuple) else (
        condition.expected,)
    return all(isinstance(v, str) and "@" in [*v.split(":"), ""][1] for v in values)


# -- patterns ------------------------------------------------------------------------------


def _open_patterns(mapping: TrustMapping, provider: Provider | None) -> list[str]:
    warnings = []
    for position, condition in enumerate(mapping.conditions):
        where = f"spec.claims[{position}] ({claim_label(condition.path)})"
        if condition.operator is Operator.REGEX:
            crossing = regex_crossings(str(condition.expected))
            if crossing:
                warnings.append(f"{where}: regex {shown(condition.expected)} can match '/' or ':' "
                                f"through {', '.join(crossing)}: it can reach into another "
                                "segment (owner, repository, ref); spell out the characters "
                                "allowed, e.g. [a-z0-9-]+")
        elif condition.operator is Operator.GLOB:
            warnings += [f"{where}: glob {shown(condition.expected)} {problem}"
                         for problem in _glob_problems(condition, provider)]
    return warnings


def _glob_problems(condition: Condition, provider: Provider | None) -> list[str]:
    glob, claim = str(condition.expected), condition.path
    if claim == ("sub",) and provider in SUBJECT_PARTS:
        return open_subject_parts(glob, provider)
    if claim == ("sub",) and provider in ("github", "gitlab"):
        segments = glob.split(":")
        problems = []
        if len(segments) > 1 and _wild(segments[1]):
            problems.append("leaves the repository part of sub open: any repository of "
                            "that owner (new and scratch ones too) is admitted")
        if any(segment in ("*", "?") or set(segment) <= {"*", "?"} for segment in segments):
            problems.append("leaves a whole segment of sub open (e.g. any event context, "
                            "pull_request included)")
        return problems
    if len(claim) == 1 and claim[0] in REPOSITORY_CLAIMS and _wild(glob):
        return ["admits any repository or project it spans; match the id instead"]
    if claim in (("workflow_ref",), ("job_workflow_ref",)) and _wild(
            "/".join(glob.split("/")[:2])):
        return ["leaves the repository of the workflow open"]
    return []


def _wild(text: str) -> bool:
    return "*" in text or "?" in text


_CROSSING_CATEGORIES: Final = {
    "CATEGORY_NOT_SPACE": "\\S", "CATEGORY_NOT_WORD": "\\W", "CATEGORY_NOT_DIGIT": "\\D",
}
_SEPARATORS: Final = (ord("/"), ord(":"))


def regex_crossings(pattern: str) -> list[str]:
    """The constructs of `pattern` that match '/' or ':' without saying so literally
    (`.`, `\\S`, `\\W`, `\\D`, a negated class or a range spanning them); empty if none."""
    try:
        parsed = _sre.parse(pattern)
    except Exception:  # invalid: the loader reports it
        return []
    found: list[str] = []
    _walk(parsed, found)
    return sorted(set(found))


def _walk(items: Iterable[tuple[Any, Any]], found: list[str]) -> None:
    for op, value in items:
        name = str(op)
        if name == "ANY":
            found.append("'.'")
        elif name == "NOT_LITERAL":
            found.append(f"[^{chr(value)}]")
        elif name == "IN":
            found += _class_crossings(value)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _walk(value[2], found)
        elif name == "SUBPATTERN":
            _walk(value[3], found)
        elif name == "ATOMIC_GROUP":
            _walk(value, found)
        elif name == "BRANCH":
            for branch in value[1]:
                _walk(branch, found)
        elif name == "GROUPREF_EXISTS":
            for branch in value[1:]:
                if branch is not None:
                    _walk(branch, found)


def _class_crossings(items: Sequence[tuple[Any, Any]]) -> list[str]:
    negated = any(str(op) == "NEGATE" for op, _ in items)
    if negated:
        listed = {value for op, value in items if str(op) == "LITERAL"}
        return [] if all(ch in listed for ch in _SEPARATORS) else ["a negated class [^...]"]
    found = []
    for op, value in items:
        if str(op) == "RANGE" and value[0] != value[1] and any(
                value[0] <= ch <= value[1] for ch in _SEPARATORS):
            found.append(f"the range {chr(value[0])}-{chr(value[1])}")
        elif str(op) == "CATEGORY" and str(value) in _CROSSING_CATEGORIES:
            found.append(_CROSSING_CATEGORIES[str(value)])
    return found


# -- events and workflows ------------------------------------------------------------------


def _events(mapping: TrustMapping) -> list[str]:
    conditions = _conditions_on(mapping, "event_name")
    if not conditions:
        return ["no event_name condition: every event is admitted (pull_request, "
                "issue_comment, workflow_run ...); name the events you mean, e.g. "
                "oneOf [push, workflow_dispatch]"]
    if any(c.accepts(FORK_EVENT) for c in conditions):
        return [f"event_name admits {FORK_EVENT}: a fork's pull request runs with the base "
                "repository's sub and ref (a 'pwn request'); leave it out"]
    return []


def _reusable_workflows(mapping: TrustMapping) -> list[str]:
    claims = _claims(mapping)
    if "workflow_ref" in claims and "job_workflow_ref" not in claims:
        return ["workflow_ref names the calling workflow; to trust a reusable (called) "
                "workflow, match job_workflow_ref (and job_workflow_sha) instead"]
    return []


# -- issuers --------------------------------------------------------------------------------


def lint_issuers(issuers: Sequence[IssuerConfig]) -> list[tuple[IssuerConfig, str]]:
    """Warnings about audiences: (issuer, message) pairs."""
    warnings: list[tuple[IssuerConfig, str]] = []
    for issuer in issuers:
        warnings += [(issuer, message) for message in _audience_problems(issuer, issuers)]
    return warnings


def _audience_problems(issuer: IssuerConfig, issuers: Sequence[IssuerConfig]) -> list[str]:
    provider, problems = _provider_from_config(issuer), []
    for audience in issuer.audiences:
        if provider == "github" and audience.startswith("https://github.com/"):
            problems.append(f"audience {audience!r} is GitHub's default: every workflow of "
                            "the owner gets it without asking for it, and other services "
                            "accept it too; use a dedicated audience such as kubegate")
        elif audience == issuer.url:
            problems.append(f"audience {audience!r} is the issuer's own URL"
                            + (": the cluster API's audience, so any pod's default token is "
                               "accepted" if provider == "kubernetes" else
                               ", which other relying parties accept too")
                            + "; use a dedicated audience such as kubegate")
        elif audience in OTHER_RELYING_PARTIES or audience.startswith(
                "https://iam.googleapis.com/"):
            problems.append(f"audience {audience!r} belongs to another relying party: a "
                            "token meant for it would be accepted here")
        elif _default_audience(provider, issuer.url, audience):
            problems.append(f"audience {audience!r} is {provider}'s default: every job gets "
                            "it without asking for it, and other services accept it too; "
                            "request a dedicated audience such as kubegate")
        elif provider == "kubernetes" and audience.startswith("https://kubernetes.default"):
            problems.append(f"audience {audience!r} is the cluster API's: any pod's default "
                            "token is accepted; use a dedicated audience such as kubegate")
        shared = [other.name for other in issuers if other is not issuer
                  and other.url == issuer.url and audience in other.audiences]
        if shared:
            problems.append(f"audience {audience!r} is shared with issuer "
                            f"{', '.join(shared)} of the same URL: one token meets the "
                            "mappings of both; give each its own audience")
    return problems


def _default_audience(provider: Provider | None, url: str, audience: str) -> bool:
    """CircleCI: the organization id (the issuer's last segment); Buildkite:
    `https://buildkite.com/ORG_SLUG`; Bitbucket: `ari:cloud:bitbucket::workspace/UUID`."""
    if provider == "circleci":
        return audience == url.rstrip("/").rpartition("/")[2]
    if provider == "buildkite":
        return audience.startswith("https://buildkite.com/")
    return provider == "bitbucket" and audience.startswith("ari:cloud:bitbucket::workspace/")
