"""pytest fixtures for the loopback OIDC issuers: one GitHub Actions and one GitLab CI issuer per
test session, both serving certificates from one session CA.

The issuers are shared: a test that rotates or retires keys, sets a JWKS fault or a job context
starts its own issuer (`with GitHubActionsIssuer(oidc_ca) as issuer:`) instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
