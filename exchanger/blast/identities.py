"""Who a trust mapping admits, in words: "any branch of octo-org/web", "repository 892301 on
refs/heads/main in environment production", "people in group sre-leads with a verified email".

Rules of this module:
- pure: a mapping in, a phrase out; nothing is contacted;
- one noun phrase says who (a GitHub `sub`, a repository, a GitLab project, a Kubernetes
  service account, people in a group), taken from the first condition that names one; every
  other condition becomes a qualifier, in the order written, so no condition is ever left
  out of the phrase (an unknown claim is said as "with CLAIM equal to ...");
- words never widen what a condition says: a glob segment that is not a lone `*` is shown
  as the pattern itself ("branches matching release-*"), a regex is always shown as a regex;
- without a noun phrase the mapping's issuer is the subject ("tokens of issuer corp ...").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from exchanger.mappings.conditions import Condition, Operator, Scalar, claim_label
from exchanger.mappings.model import TrustMapping

_GITHUB_REF_KINDS: Final = (("refs/heads/", "branch", "any branch"),
                            ("refs/tags/", "tag", "any tag"))


def describe_identity(mapping: TrustMapping) -> str:
    """The identities `mapping` admits, as one phrase."""
    subject, rest = _subject(mapping.conditions)
    words = [subject or f"tokens of issuer {mapping.issuer}"]
    words += [describe_qualifier(condition) for condition in rest]
    return " ".join(words)


def _subject(conditions: tuple[Condition, ...]) -> tuple[str | None, list[Condition]]:
    """The first noun phrase a condition makes, and the other conditions."""
    for position, condition in enumerate(conditions):
        noun = describe_subject(condition)
        if noun is not None:
            return noun, [*conditions[:position], *conditions[position + 1:]]
    return None, list(conditions)


def _value(value: Scalar) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _values(condition: Condition, joiner: str = " or ") -> str:
    expected = condition.expected
    values = expected if isinstance(expected, tuple) else (expected,)
    return joiner.join(_value(value) for value in values)


def _literal(condition: Condition) -> bool:
    return condition.operator in (Operator.EQUALS, Operator.ONE_OF)


# -- who -----------------------------------------------------------------------------------


def describe_subject(condition: Condition) -> str | None:
    """The noun phrase a condition makes ("any branch of octo-org/web"), or None when it only
    qualifies one."""
    maker = _SUBJECTS.get(condition.path)
    return None if maker is None else maker(condition)


def _sub(condition: Condition) -> str | None:
    if condition.operator not in (Operator.EQUALS, Operator.GLOB) or not isinstance(
            condition.expected, str):
        return None
    text, glob = condition.expected, condition.operator is Operator.GLOB
    if text.startswith("repo:"):
        return _github_sub(text.removeprefix("repo:"), glob)
    if text.startswith("system:serviceaccount:") and text.count(":") == 3:
        namespace, name = text.split(":")[2:]
        return (f"service account {_segment(name, glob, 'any')} in namespace "
                f"{_segment(namespace, glob, 'any')}")
    if text.startswith("project_path:"):
        return _gitlab_sub(text.removeprefix("project_path:"), glob)
    return None


def _segment(text: str, glob: bool, anything: str) -> str:
    """A glob segment in words: a lone `*` is `anything`, another pattern stays a pattern."""
    if glob and text == "*":
        return anything
    return f"matching {text}" if glob and ("*" in text or "?" in text) else text


def _repository(name: str, glob: bool) -> str:
    owner, _, repository = name.partition("/")
    if glob and repository == "*":
        return f"any repository of {owner}"
    return f"{_segment(repository, glob, 'any repository')} of {owner}" if (
        glob and ("*" in repository or "?" in repository)) else name


def _github_sub(rest: str, glob: bool) -> str | None:
    """`repo:OWNER/REPO:CONTEXT` (GitHub's default sub) in words."""
    name, _, context = rest.partition(":")
    repository = _repository(name, glob)
    if context.startswith("ref:"):
        ref = context.removeprefix("ref:")
        for prefix, one, anything in _GITHUB_REF_KINDS:
            if ref.startswith(prefix):
                tail = ref.removeprefix(prefix)
                if glob and tail == "*":
                    return f"{anything} of {repository}"
                return f"{one} {_segment(tail, glob, anything)} of {repository}"
        return f"ref {_segment(ref, glob, 'any ref')} of {repository}"
    if context.startswith("environment:"):
        environment = context.removeprefix("environment:")
        if glob and environment == "*":
            return f"{repository} in any environment"
        return f"{repository} in environment {_segment(environment, glob, 'any')}"
    if context == "pull_request":
        return f"pull requests of {repository}"
    if glob and context == "*":
        return f"any workflow of {repository}"
    return None


def _gitlab_sub(rest: str, glob: bool) -> str | None:
    """`project_path:GROUP/PROJECT:ref_type:branch:ref:NAME` (GitLab's sub) in words."""
    parts = rest.split(":")
    if len(parts) != 5 or parts[1] != "ref_type" or parts[3] != "ref":
        return None
    project, kind, ref = parts[0], parts[2], parts[4]
    if glob and ref == "*":
        return f"any {_segment(kind, glob, 'ref')} of project {project}"
    return f"{_segment(kind, glob, 'ref')} {_segment(ref, glob, 'any')} of project {project}"


def _named(noun: str, plural: str) -> Callable[[Condition], str | None]:
    def make(condition: Condition) -> str | None:
        if not _literal(condition):
            return None
        several = condition.operator is Operator.ONE_OF and isinstance(
            condition.expected, tuple) and len(condition.expected) > 1
        return f"{plural if several else noun} {_values(condition)}"
    return make


def _owner(noun: str) -> Callable[[Condition], str | None]:
    def make(condition: Condition) -> str | None:
        return f"any {noun} {_values(condition)}" if _literal(condition) else None
    return make


def _people(condition: Condition) -> str | None:
    if condition.operator is not Operator.CONTAINS:
        return None
    return f"people in group {_value(condition.expected)}"  # type: ignore[arg-type]


def _person(noun: str) -> Callable[[Condition], str | None]:
    def make(condition: Condition) -> str | None:
        return f"the person with {noun} {_values(condition)}" if _literal(condition) else None
    return make


_SUBJECTS: Final[dict[tuple[str, ...], Callable[[Condition], str | None]]] = {
    ("sub",): _sub,
    ("repository_id",): _named("repository", "repositories"),
    ("repository",): _named("repository", "repositories"),
    ("repository_owner_id",): _owner("repository of owner"),
    ("repository_owner",): _owner("repository of owner"),
    ("project_id",): _named("project", "projects"),
    ("project_path",): _named("project", "projects"),
    ("namespace_id",): _owner("project of group"),
    ("namespace_path",): _owner("project of group"),
    ("groups",): _people,
    ("email",): _person("email"),
    ("preferred_username",): _person("username"),
    ("kubernetes.io", "serviceaccount", "name"): _named("service account", "service accounts"),
    ("kubernetes.io", "namespace"): _owner("workload in namespace"),
}


# -- qualifiers ----------------------------------------------------------------------------


def describe_qualifier(condition: Condition) -> str:
    """A condition as a qualifier of the subject ("on refs/heads/main", "with a verified
    email"); every operator has a generic form for claims without a special one."""
    special = _QUALIFIERS.get(condition.path)
    said = special(condition) if special is not None else None
    return said if said is not None else _generic(condition)


def _generic(condition: Condition) -> str:
    claim = claim_label(condition.path)
    expected = condition.expected
    match condition.operator:
        case Operator.EQUALS:
            return f"with {claim} equal to {_shown(expected)}"
        case Operator.ONE_OF:
            return f"with {claim} one of {_values(condition, ', ')}"
        case Operator.GLOB:
            return f"with {claim} matching glob {expected}"
        case Operator.REGEX:
            return f"with {claim} matching regex {expected}"
        case Operator.CONTAINS:
            return f"with {claim} containing {_shown(expected)}"
    raise AssertionError(condition.operator)  # pragma: no cover - every operator is above


def _shown(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _ref(condition: Condition) -> str | None:
    if _literal(condition):
        return f"on {_values(condition)}"
    if condition.operator is Operator.GLOB and isinstance(condition.expected, str):
        for prefix, _, anything in _GITHUB_REF_KINDS:
            if condition.expected == prefix + "*":
                return f"on {anything}"
        return f"on a ref matching {condition.expected}"
    return None


def _prefixed(words: str) -> Callable[[Condition], str | None]:
    def make(condition: Condition) -> str | None:
        return f"{words} {_values(condition)}" if _literal(condition) else None
    return make


def _events(condition: Condition) -> str | None:
    return f"on {_values(condition)} events" if _literal(condition) else None


def _verified(condition: Condition) -> str | None:
    literal = condition.operator is Operator.EQUALS and condition.expected is True
    return "with a verified email" if literal else None


def _protected(condition: Condition) -> str | None:
    literal = condition.operator is Operator.EQUALS and condition.expected == "true"
    return "on a protected ref" if literal else None


def _group(condition: Condition) -> str | None:
    if condition.operator is not Operator.CONTAINS:
        return None
    return f"in group {_value(condition.expected)}"  # type: ignore[arg-type]


def _second(maker: Callable[[Condition], str | None]) -> Callable[[Condition], str | None]:
    """A second subject condition as a qualifier: "of repository 74"."""
    def make(condition: Condition) -> str | None:
        said = maker(condition)
        return None if said is None else f"of {said}"
    return make


_QUALIFIERS: Final[dict[tuple[str, ...], Callable[[Condition], str | None]]] = {
    ("ref",): _ref,
    ("environment",): _prefixed("in environment"),
    ("event_name",): _events,
    ("email_verified",): _verified,
    ("ref_protected",): _protected,
    ("ref_type",): _prefixed("on a ref of type"),
    ("job_workflow_ref",): _prefixed("running workflow"),
    ("workflow_ref",): _prefixed("running workflow"),
    ("pipeline_source",): _prefixed("from pipelines triggered by"),
    ("groups",): _group,
    ("kubernetes.io", "namespace"): _prefixed("in namespace"),
    ("kubernetes.io", "serviceaccount", "name"): _prefixed("as service account"),
    **{path: _second(maker) for path, maker in _SUBJECTS.items() if path not in (
        ("sub",), ("groups",), ("kubernetes.io", "namespace"),
        ("kubernetes.io", "serviceaccount", "name"))},
}
