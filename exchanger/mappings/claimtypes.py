"""The JSON types of well-known claims, and the conditions that can never match because of them.

`kubegate mappings validate` reports as an error each condition whose operator cannot apply to
its claim's known type: `{claim: groups, equals: sre-leads}` (groups is a list), `{claim:
run_number, equals: 74}` (GitHub sends "74"), `{claim: email_verified, equals: "true"}`, a glob
on `exp`, `contains` on `sub`, a path into a string. Such a mapping is still loaded by the
exchanger (it is valid and harmless: it matches nothing), so a folder loads the same with or
without this table; only the tool refuses it.

Rules of this module:
- a claim's type comes from the provider's table when the provider is known (`lint.provider_of`),
  then from the registered JWT claims and the OpenID Connect ID-token claims, which every
  provider shares; a claim in no table is unknown and never reported;
- the tables say what the providers send (see the trust-policy research, section 6): GitHub
  Actions sends every custom claim as a string (`repository_id` is "892301"); GitLab CI too
  (`ref_protected` is "true"), except `runner_id`, a number; Kubernetes puts its claims in the
  `kubernetes.io` object; `aud` is a string or a list; ID tokens carry `groups` and `amr` as
  lists of strings and `email_verified` as a boolean;
- the other CI systems (see `ci-examples/<provider>/README.md` for each source): CircleCI's
  claims are namespaced (`oidc.circleci.com/project-id`), strings except `context-ids` (a list)
  and `ssh-rerun` (a boolean); Buildkite sends `build_number` as a number and `build_tag` and
  `step_key` as a string or null; Bitbucket sends brace-wrapped UUID strings; Azure DevOps
  sends string ids (`def_id` and `run_id` are left out: their type is not documented);
  Jenkins' OIDC Provider plugin sends `build_number` as an integer by default;
- types are compared as the matcher compares them (`conditions.py`): strictly, so a number is
  not a string and 1.5 is never an integer;
- pure: a mapping and a provider in, messages out; values are shown cut short.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from exchanger.mappings.conditions import Condition, Operator, claim_label
from exchanger.mappings.model import TrustMapping

Provider = Literal["github", "gitlab", "kubernetes", "oidc", "circleci", "buildkite",
                   "bitbucket", "azure-devops", "jenkins"]
PROVIDERS: Final[tuple[Provider, ...]] = typing.get_args(Provider)
"""Every provider kind, in order: what an issuer's `kind` in the config may say."""
"""Who issues a mapping's tokens: a CI system, a Kubernetes cluster, or a people IdP (OIDC)."""

_VALUE_LIMIT: Final = 40


@dataclass(frozen=True, kw_only=True)
class ClaimType:
    """The JSON types a claim can have (`string`, `integer`, `boolean`, `list`, `object`), the
    type of a list's elements, and the known members of an object."""

    kinds: frozenset[str]
    described: str
    items: str | None = None
    members: Mapping[str, ClaimType] = field(default_factory=lambda: MappingProxyType({}))


STRING: Final = ClaimType(kinds=frozenset({"string"}), described="a string")
INTEGER: Final = ClaimType(kinds=frozenset({"integer"}), described="an integer")
BOOLEAN: Final = ClaimType(kinds=frozenset({"boolean"}), described="a boolean")
STRINGS: Final = ClaimType(kinds=frozenset({"list"}), items="string",
                           described="a list of strings")
OBJECTS: Final = ClaimType(kinds=frozenset({"list"}), items="object",
                           described="a list of objects")
OPTIONAL_STRING: Final = ClaimType(kinds=frozenset({"string", "null"}),
                                   described="a string or null")
AUDIENCE: Final = ClaimType(kinds=frozenset({"string", "list"}), items="string",
                            described="a string or a list of strings")


def _object(**members: ClaimType) -> ClaimType:
    return ClaimType(kinds=frozenset({"object"}), described="an object",
                     members=MappingProxyType(members))


def _all(kind: ClaimType, *names: str) -> dict[str, ClaimType]:
    return dict.fromkeys(names, kind)


_NAMED: Final = _object(name=STRING, uid=STRING)

JWT_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({
    **_all(STRING, "iss", "sub", "jti"), **_all(INTEGER, "exp", "iat", "nbf"),
    "aud": AUDIENCE,
})
ID_TOKEN_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({
    **_all(STRING, "email", "name", "preferred_username", "given_name", "family_name",
           "nickname", "nonce", "azp", "acr", "at_hash", "sid", "locale", "zoneinfo"),
    **_all(INTEGER, "auth_time", "updated_at"),
    "email_verified": BOOLEAN, **_all(STRINGS, "groups", "amr"),
})
GITHUB_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType(_all(
    STRING, "actor", "actor_id", "base_ref", "head_ref", "enterprise", "enterprise_id",
    "environment", "event_name", "job_workflow_ref", "job_workflow_sha", "ref", "ref_type",
    "repository", "repository_id", "repository_owner", "repository_owner_id",
    "repository_visibility", "run_id", "run_number", "run_attempt", "runner_environment",
    "sha", "workflow", "workflow_ref", "workflow_sha", "check_run_id",
))
GITLAB_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({
    **_all(STRING, "namespace_id", "namespace_path", "project_id", "project_path", "user_id",
           "user_login", "user_email", "user_access_level", "pipeline_id", "pipeline_source",
           "job_id", "ref", "ref_type", "ref_path", "ref_protected", "environment",
           "environment_protected", "deployment_tier", "environment_action",
           "runner_environment", "sha", "ci_config_ref_uri", "ci_config_sha",
           "project_visibility"),
    "runner_id": INTEGER, "groups_direct": STRINGS, "user_identities": OBJECTS,
})
KUBERNETES_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({
    "kubernetes.io": _object(namespace=STRING, warnafter=INTEGER, node=_NAMED, pod=_NAMED,
                             secret=_NAMED, serviceaccount=_NAMED),
})

CIRCLECI_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({
    **_all(STRING, "oidc.circleci.com/project-id", "oidc.circleci.com/vcs-origin",
           "oidc.circleci.com/vcs-ref"),
    "oidc.circleci.com/context-ids": STRINGS, "oidc.circleci.com/ssh-rerun": BOOLEAN,
})
BUILDKITE_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({
    **_all(STRING, "organization_slug", "organization_id", "pipeline_slug", "pipeline_id",
           "build_branch", "build_commit", "job_id", "agent_id", "build_source",
           "runner_environment"),
    "build_number": INTEGER, **_all(OPTIONAL_STRING, "build_tag", "step_key"),
})
BITBUCKET_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType(_all(
    STRING, "accountUuid", "workspaceUuid", "repositoryUuid", "pipelineUuid", "stepUuid",
    "deploymentEnvironmentUuid", "branchName",
))
AZURE_DEVOPS_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType(_all(
    STRING, "org_id", "prj_id", "rpo_id", "rpo_uri", "rpo_ver", "rpo_ref",
))
JENKINS_CLAIMS: Final[Mapping[str, ClaimType]] = MappingProxyType({"build_number": INTEGER})

_TABLES: Final[Mapping[Provider, tuple[Mapping[str, ClaimType], str]]] = MappingProxyType({
    "github": (GITHUB_CLAIMS, "GitHub Actions tokens"),
    "gitlab": (GITLAB_CLAIMS, "GitLab CI tokens"),
    "kubernetes": (KUBERNETES_CLAIMS, "Kubernetes service-account tokens"),
    "circleci": (CIRCLECI_CLAIMS, "CircleCI tokens"),
    "buildkite": (BUILDKITE_CLAIMS, "Buildkite tokens"),
    "bitbucket": (BITBUCKET_CLAIMS, "Bitbucket Pipelines tokens"),
    "azure-devops": (AZURE_DEVOPS_CLAIMS, "Azure DevOps tokens"),
    "jenkins": (JENKINS_CLAIMS, "Jenkins OIDC Provider tokens"),
})
_SHARED: Final = ((JWT_CLAIMS, "JWTs"), (ID_TOKEN_CLAIMS, "ID tokens"))


@dataclass(frozen=True, kw_only=True)
class KnownClaim:
    """What the tables say about a claim path: its type where the path resolves (None when
    the path reaches past a known type into a member nobody listed), where that holds, and,
    for a path that goes through something that is not an object, the name it stops at."""

    type: ClaimType | None
    where: str
    blocked_at: tuple[str, ...] = ()


def known_claim(path: tuple[str, ...], provider: Provider | None) -> KnownClaim | None:
    """The known type of the claim at `path` for `provider`'s tokens, or None if unknown."""
    tables = [_TABLES[provider]] if provider is not None and provider in _TABLES else []
    for table, where in (*tables, *_SHARED):
        if path[0] in table:
            return _walk(table[path[0]], path, where)
    return None


def _walk(top: ClaimType, path: tuple[str, ...], where: str) -> KnownClaim:
    current: ClaimType | None = top
    for depth, name in enumerate(path[1:], start=1):
        if current is None:
            break
        if "object" not in current.kinds:
            return KnownClaim(type=current, where=where, blocked_at=path[:depth])
        current = current.members.get(name)
    return KnownClaim(type=current, where=where)


def type_errors(mapping: TrustMapping, provider: Provider | None) -> list[str]:
    """`spec.claims[i]: ...` for each condition that can never match its claim's known type."""
    errors = []
    for position, condition in enumerate(mapping.conditions):
        known = known_claim(condition.path, provider)
        problem = None if known is None else _problem(condition, known)
        if problem is not None:
            errors.append(f"spec.claims[{position}]: {problem}")
    return errors


def _problem(condition: Condition, known: KnownClaim) -> str | None:
    if known.blocked_at:
        blocked = known.type
        assert blocked is not None
        return (f"{claim_label(known.blocked_at)} is {blocked.described} in {known.where}: "
                f"the path {claim_label(condition.path)} goes into it and can never resolve")
    claim = known.type
    if claim is None:
        return None
    head = f"{claim_label(condition.path)} is {claim.described} in {known.where}: "
    operator = condition.operator
    if operator in (Operator.GLOB, Operator.REGEX) and "string" not in claim.kinds:
        return head + f"{operator.value} applies to strings only and can never match"
    if operator is Operator.CONTAINS:
        return _contains_problem(condition, claim, head)
    if operator in (Operator.EQUALS, Operator.ONE_OF):
        return _equality_problem(condition, claim, head)
    return None


def _contains_problem(condition: Condition, claim: ClaimType, head: str) -> str | None:
    if "list" not in claim.kinds:
        return head + "contains applies to lists only and can never match" + (
            "; use equals" if claim.kinds - {"object"} else "")
    if claim.items is not None and _kind(condition.expected) != claim.items:
        return head + (f"contains {_shown(condition.expected)} ({_kind(condition.expected)})"
                       f" can never match{_hint(claim.items, condition.expected)}")
    return None


def _equality_problem(condition: Condition, claim: ClaimType, head: str) -> str | None:
    values = (condition.expected if isinstance(condition.expected, tuple)
              else (condition.expected,))
    wrong = [value for value in values if _kind(value) not in claim.kinds]
    if not wrong:
        return None
    if claim.kinds == {"list"}:
        return head + f"{condition.operator.value} can never match; use contains"
    scalar = next(iter(sorted(claim.kinds - {"list", "object", "null"})), "")
    shown = ", ".join(f"{_shown(value)} ({_kind(value)})" for value in wrong)
    subject = ("equals " if condition.operator is Operator.EQUALS else "oneOf value"
               + ("s " if len(wrong) > 1 else " ")) + shown
    return head + f"{subject} can never match{_hint(scalar, wrong[0])}"


def _kind(value: object) -> str:
    """The JSON type of an expected value, as the tables name them (float: `number`)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _hint(kind: str, value: object) -> str:
    if kind == "string":
        return f"; quote it: {_shown(value if isinstance(value, str) else _json(value))}"
    if kind == "boolean" and value in ("true", "false"):
        return f"; write {value} without quotes"
    if kind == "integer" and isinstance(value, str) and value.isascii() and value.isdigit():
        return f"; write {value} without quotes"
    return ""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _shown(value: object) -> str:
    text = _json(value)
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 3] + "..."
