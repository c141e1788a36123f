"""Lints for the CI systems beyond GitHub and GitLab (CircleCI, Buildkite, Bitbucket Pipelines,
Azure DevOps, Jenkins with its OIDC provider plugin): what pins a mapping to one project or
job, which claims a contributor chooses, and which parts of each `sub` identify what is
trusted. Sources for each fact are in ci-examples/<provider>/README.md.

Pure: a mapping and its provider in, warning texts out (`exchanger.mappings.lint` calls them).
"""

from __future__ import annotations

from typing import Final

from exchanger.mappings.claimtypes import Provider
from exchanger.mappings.model import TrustMapping

__all__ = ["CHOSEN_BY_CONTRIBUTORS", "SCOPE_IDS", "SUBJECT_PARTS", "chosen_without_id",
           "open_subject_parts", "unpinned_scope"]


def claim_names(mapping: TrustMapping) -> set[str]:
    """The top-level claims the mapping's conditions name."""
    return {c.path[0] for c in mapping.conditions if len(c.path) == 1}


SCOPE_IDS: Final[dict[Provider, tuple[frozenset[str], str]]] = {
    "circleci": (frozenset({"oidc.circleci.com/project-id"}),
                 "every project of the CircleCI organization is admitted (the issuer is per "
                 "organization); add oidc.circleci.com/project-id"),
    "buildkite": (frozenset({"organization_id", "organization_slug"}),
                  "jobs of every Buildkite organization are admitted (https://agent.buildkite"
                  ".com is one issuer for all of them); add organization_id (request it with "
                  "buildkite-agent oidc request-token --claim organization_id)"),
    "bitbucket": (frozenset({"repositoryUuid"}),
                  "every repository of the Bitbucket workspace is admitted (the issuer is per "
                  "workspace); add repositoryUuid"),
    "azure-devops": (frozenset({"prj_id", "rpo_id", "def_id"}),
                     "every pipeline of the Azure DevOps organization is admitted (the issuer "
                     "is per organization); add prj_id and rpo_id"),
    "jenkins": (frozenset(),
                "every job that can bind the id-token credential is admitted; add a sub "
                "condition naming the job's URL"),
}
"""What pins a mapping to one project, organization, repository or job: one of these claims or
a `sub` condition (whose glob `open_subject_parts` judges)."""
CHOSEN_BY_CONTRIBUTORS: Final[dict[Provider, tuple[tuple[str, str, str], ...]]] = {
    "circleci": (
        ("oidc.circleci.com/vcs-ref", "oidc.circleci.com/project-id",
         "a ref anyone who can push creates, in any project of the organization"),
        ("oidc.circleci.com/vcs-origin", "oidc.circleci.com/project-id",
         "a repository URL: names can be registered again, and forks are other origins"),
    ),
    "buildkite": (
        ("build_branch", "pipeline_id",
         "a branch name chosen by whoever pushes or creates a build, in any pipeline"),
    ),
    "bitbucket": (
        ("branchName", "repositoryUuid",
         "a branch name anyone who can push chooses, in any repository of the workspace"),
    ),
    "azure-devops": (
        ("rpo_ref", "rpo_id", "a ref anyone who can push chooses, in any repository"),
        ("rpo_uri", "rpo_id", "a repository URL made of names that can be renamed and "
         "registered again"),
    ),
}
SUBJECT_PARTS: Final[dict[Provider, tuple[str, tuple[str, ...], tuple[int, ...]]]] = {
    "circleci": ("/", ("org", "project"), ()),           # org/ID/project/ID/user/ID[/vcs-...]
    "buildkite": (":", ("organization", "pipeline"), ()),  # organization:SLUG:pipeline:SLUG:...
    "jenkins": ("/", ("job",), ()),                      # https://HOST/job/FOLDER/job/NAME/
    "bitbucket": (":", (), (0,)),                        # {UUID}:...:{STEP_UUID}
    "azure-devops": ("/", (), (2, 3, 4)),                # sc://ORG/PROJECT/CONNECTION
}
"""How each `sub` is split and which segments identify what is trusted: the one after a
keyword, or at a position."""


def unpinned_scope(mapping: TrustMapping, provider: Provider | None) -> list[str]:
    if provider not in SCOPE_IDS or any(c.path == ("sub",) for c in mapping.conditions):
        return []
    identifiers, consequence = SCOPE_IDS[provider]
    if claim_names(mapping) & identifiers:
        return []
    return [f"no {' or '.join(sorted(identifiers)) or 'sub'} condition: {consequence}"]


def chosen_without_id(mapping: TrustMapping, provider: Provider | None) -> list[str]:
    claims = claim_names(mapping)
    return [f"{claim} is matched without {identifier}: {why}; add {identifier}"
            for claim, identifier, why in CHOSEN_BY_CONTRIBUTORS.get(provider or "oidc", ())
            if claim in claims and identifier not in claims]


def open_subject_parts(glob: str, provider: Provider) -> list[str]:
    separator, keywords, positions = SUBJECT_PARTS[provider]
    segments = glob.split(separator)
    named = [segments[at + 1] for at, segment in enumerate(segments[:-1]) if segment in keywords]
    named += [segments[at] for at in positions if at < len(segments)]
    open_parts = [part for part in named if "*" in part or "?" in part]
    if not open_parts:
        return []
    return [f"leaves an identifying part of sub open ({', '.join(open_parts)}): every "
            "organization, project, pipeline, repository or job whose name fits is admitted, "
            "new ones too; spell it out or match its id claim"]
