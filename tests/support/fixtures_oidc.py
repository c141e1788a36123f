"""pytest fixtures for the loopback OIDC issuers: one GitHub Actions and one GitLab CI issuer per
test session, both serving certificates from one session CA, and one issuer per other CI system
(`ci_issuers`, from `ci_issuers.py`).

The issuers are shared: a test that rotates or retires keys, sets a JWKS fault or a job context
starts its own issuer (`with GitHubActionsIssuer(oidc_ca) as issuer:`) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.ci_issuers import SHAPES, CIIssuer
from tests.support.oidc import GitHubActionsIssuer, GitLabCIIssuer
from tests.support.pki import TestCA


@pytest.fixture(scope="session")
def oidc_ca() -> TestCA:
    """The CA that signs the issuers' serving certificates; clients trust it to reach them."""
    return TestCA("kubegate-test-oidc-ca")


@pytest.fixture(scope="session")
def github_issuer(
    oidc_ca: TestCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GitHubActionsIssuer]:
    with GitHubActionsIssuer(oidc_ca, folder=tmp_path_factory.mktemp("github-issuer")) as issuer:
        yield issuer


@pytest.fixture(scope="session")
def gitlab_issuer(
    oidc_ca: TestCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GitLabCIIssuer]:
    with GitLabCIIssuer(oidc_ca, folder=tmp_path_factory.mktemp("gitlab-issuer")) as issuer:
        yield issuer


@pytest.fixture(scope="session")
def ci_issuers(
    oidc_ca: TestCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, CIIssuer]]:
    """One loopback issuer per other CI system (CircleCI, Buildkite, Bitbucket, Azure DevOps,
    Jenkins), keyed by provider kind; shared like the GitHub and GitLab issuers."""
    with ExitStack() as stack:
        yield {provider: stack.enter_context(
                   CIIssuer(oidc_ca, provider, folder=tmp_path_factory.mktemp(provider)))
               for provider in SHAPES}
