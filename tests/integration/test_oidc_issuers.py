"""The loopback OIDC issuers behave like GitHub Actions and GitLab CI: discovery and keys over real
HTTPS, the providers' exact claim sets and `sub` formats, key rotation, the Actions ID-token
request endpoint, and JWKS faults for later tests."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import time
import urllib.request
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote

import jwt
import pytest

from tests.support.oidc import (
    GITHUB_CLAIMS,
    GITLAB_CLAIMS,
    HUGE_BODY_BYTES,
    GitHubActionsIssuer,
    GitHubJob,
    GitLabCIIssuer,
    GitLabJob,
    JWKSFault,
    OIDCIssuer,
)
from tests.support.pki import TestCA

NOW = 1_700_000_000
GITHUB_ALWAYS = frozenset(GITHUB_CLAIMS) - {"environment", "enterprise", "enterprise_id"}
GITLAB_ENVIRONMENT = frozenset(
    {"environment", "environment_protected", "deployment_tier", "environment_action"}
)
GITLAB_ALWAYS = frozenset(GITLAB_CLAIMS) - GITLAB_ENVIRONMENT
GITLAB_IDS = ("namespace_id", "project_id", "user_id", "pipeline_id", "job_id")
TIME_CLAIMS = frozenset({"iat", "nbf", "exp"})
CUSTOM_AUDIENCE = "https://kubegate.example/cluster 1"
JWKS_PATHS = {"github_issuer": "/.well-known/jwks", "gitlab_issuer": "/oauth/discovery/keys"}


# -- a relying party's view: HTTPS trusting only the test CA -------------------------------------


def fetch(
    url: str, issuer: OIDCIssuer, *, headers: dict[str, str] | None = None, timeout: float = 5
) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(issuer.ca_path))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.status, response.read()
    except HTTPError as error:
        with error:
            return error.code, error.read()


def fetch_json(url: str, issuer: OIDCIssuer) -> Any:
    status, body = fetch(url, issuer)
    assert status == 200, body
    return json.loads(body)


def verify(token: str, issuer: OIDCIssuer, *, audience: str) -> dict[str, Any]:
    """Discovery -> jwks_uri -> key by kid -> RS256 verification, all over verified HTTPS."""
    discovery = fetch_json(issuer.discovery_url, issuer)
    context = ssl.create_default_context(cafile=str(issuer.ca_path))
    keys = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False, ssl_context=context)
    return jwt.decode(
        token, keys.get_signing_key_from_jwt(token).key, algorithms=["RS256"],
        audience=audience, issuer=discovery["issuer"],
        options={"require": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]},
    )


def read_claims(token: str, issuer: OIDCIssuer) -> dict[str, Any]:
    """Claims checked against the issuer's signing key locally (no network, any time, any aud)."""
    return jwt.decode(
        token, issuer.signing_key.private_key.public_key(), algorithms=["RS256"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                 "verify_aud": False},
    )


def issuer_by_name(
    request: pytest.FixtureRequest, name: str
) -> GitHubActionsIssuer | GitLabCIIssuer:
    issuer = request.getfixturevalue(name)
    assert isinstance(issuer, GitHubActionsIssuer | GitLabCIIssuer)
    return issuer


# -- discovery and keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", JWKS_PATHS)
def test_discovery_names_the_exact_issuer_url_and_the_provider_jwks_path(
    request: pytest.FixtureRequest, name: str
) -> None:
    issuer = issuer_by_name(request, name)
    document = fetch_json(issuer.url + "/.well-known/openid-configuration", issuer)

    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", issuer.url)
    assert document["issuer"] == issuer.url
    assert document["jwks_uri"] == issuer.url + JWKS_PATHS[name]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["response_types_supported"] and document["subject_types_supported"]
    expected = GITHUB_CLAIMS if name == "github_issuer" else GITLAB_CLAIMS
    assert set(document["claims_supported"]) == set(expected)


@pytest.mark.parametrize("name", JWKS_PATHS)
def test_jwks_publishes_the_rsa_2048_rs256_signing_key(
    request: pytest.FixtureRequest, name: str
) -> None:
    issuer = issuer_by_name(request, name)
    (key,) = fetch_json(issuer.url + JWKS_PATHS[name], issuer)["keys"]

    assert {"kty", "n", "e", "kid", "alg", "use"} <= set(key)
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert len(base64.urlsafe_b64decode(key["n"] + "==")) == 256
    assert key["kid"] == issuer.signing_key.kid


@pytest.mark.parametrize("name", JWKS_PATHS)
def test_tokens_verify_against_keys_fetched_over_https(
    request: pytest.FixtureRequest, name: str
) -> None:
    issuer = issuer_by_name(request, name)
    claims = verify(issuer.mint(audience="kubegate"), issuer, audience="kubegate")

    assert claims["iss"] == issuer.url
    assert claims["aud"] == "kubegate"


def test_clients_without_the_test_ca_cannot_reach_the_issuer(
    github_issuer: GitHubActionsIssuer,
) -> None:
    with pytest.raises(URLError) as caught:
        urllib.request.urlopen(github_issuer.discovery_url, timeout=5)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


def test_unknown_paths_are_404_and_counted(gitlab_issuer: GitLabCIIssuer) -> None:
    before = gitlab_issuer.request_count("/nowhere")
    status, _ = fetch(gitlab_issuer.url + "/nowhere?x=1", gitlab_issuer)

    assert status == 404
    assert gitlab_issuer.request_count("/nowhere") == before + 1


def test_request_count_counts_each_key_fetch(gitlab_issuer: GitLabCIIssuer) -> None:
    jwks_before = gitlab_issuer.request_count("/oauth/discovery/keys")
    discovery_before = gitlab_issuer.request_count("/.well-known/openid-configuration")
    token = gitlab_issuer.mint()

    verify(token, gitlab_issuer, audience=gitlab_issuer.url)
    verify(token, gitlab_issuer, audience=gitlab_issuer.url)

    assert gitlab_issuer.request_count("/oauth/discovery/keys") == jwks_before + 2
    assert gitlab_issuer.request_count("/.well-known/openid-configuration") == discovery_before + 2


# -- GitHub Actions claims ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "conditional"),
    [
        (GitHubJob(), set()),
        (GitHubJob(environment="production"), {"environment"}),
        (GitHubJob(enterprise="avocado-corp", enterprise_id="2"), {"enterprise", "enterprise_id"}),
    ],
    ids=["plain", "environment", "enterprise"],
)
def test_github_token_has_exactly_githubs_claim_set(
    github_issuer: GitHubActionsIssuer, job: GitHubJob, conditional: set[str]
) -> None:
    claims = verify(github_issuer.mint_job(job), github_issuer, audience="https://github.com/octo-org")

    assert set(claims) == GITHUB_ALWAYS | conditional


def test_github_custom_claims_are_all_strings_including_ids(
    github_issuer: GitHubActionsIssuer,
) -> None:
    claims = read_claims(github_issuer.mint(environment="production"), github_issuer)

    assert all(isinstance(value, str) for name, value in claims.items() if name not in TIME_CLAIMS)
    assert (claims["repository_id"], claims["repository_owner_id"]) == ("74", "65")


def test_github_header_names_kid_x5t_and_typ_jwt_like_github(
    github_issuer: GitHubActionsIssuer,
) -> None:
    header = jwt.get_unverified_header(github_issuer.mint())
    (published,) = fetch_json(github_issuer.jwks_url, github_issuer)["keys"]

    assert header == {
        "typ": "JWT", "alg": "RS256", "x5t": published["x5t"], "kid": published["kid"]
    }


@pytest.mark.parametrize(
    ("inputs", "subject"),
    [
        ({}, "repo:octo-org/octo-repo:ref:refs/heads/main"),
        ({"ref": "refs/tags/v1.2.0"}, "repo:octo-org/octo-repo:ref:refs/tags/v1.2.0"),
        ({"event_name": "pull_request", "ref": "refs/pull/7/merge"},
         "repo:octo-org/octo-repo:pull_request"),
        ({"environment": "prod"}, "repo:octo-org/octo-repo:environment:prod"),
        ({"environment": "prod", "event_name": "pull_request", "ref": "refs/pull/7/merge"},
         "repo:octo-org/octo-repo:environment:prod"),
        ({"repository": "acme/app", "ref": "refs/heads/release"},
         "repo:acme/app:ref:refs/heads/release"),
        ({"immutable_sub": True}, "repo:octo-org@65/octo-repo@74:ref:refs/heads/main"),
        ({"immutable_sub": True, "environment": "prod"},
         "repo:octo-org@65/octo-repo@74:environment:prod"),
        ({"immutable_sub": True, "event_name": "pull_request", "repository_id": "900",
          "repository_owner_id": "31"}, "repo:octo-org@31/octo-repo@900:pull_request"),
    ],
    ids=["branch", "tag", "pull-request", "environment", "environment-beats-pull-request",
         "other-repository", "immutable-branch", "immutable-environment",
         "immutable-pull-request"],
)
def test_github_sub_follows_the_provider_rules(
    github_issuer: GitHubActionsIssuer, inputs: dict[str, Any], subject: str
) -> None:
    assert read_claims(github_issuer.mint(**inputs), github_issuer)["sub"] == subject


def test_github_times_follow_the_documented_example(github_issuer: GitHubActionsIssuer) -> None:
    default = read_claims(github_issuer.mint(now=NOW), github_issuer)
    longer = read_claims(github_issuer.mint(now=NOW, lifetime=900), github_issuer)

    assert (default["iat"], default["nbf"], default["exp"]) == (NOW, NOW - 600, NOW + 300)
    assert longer["exp"] == NOW + 900


def test_github_audience_defaults_to_the_owner_url(github_issuer: GitHubActionsIssuer) -> None:
    claims = read_claims(github_issuer.mint(repository="acme/app"), github_issuer)

    assert claims["aud"] == "https://github.com/acme"
    assert claims["repository_owner"] == "acme"


def test_github_workflow_and_ref_claims_derive_from_the_job(
    github_issuer: GitHubActionsIssuer,
) -> None:
    reusable = "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main"
    job = GitHubJob(ref="refs/tags/v2", job_workflow_ref=reusable)
    claims = read_claims(github_issuer.mint_job(job), github_issuer)

    assert claims["ref_type"] == "tag"
    assert claims["workflow_ref"] == "octo-org/octo-repo/.github/workflows/deploy.yml@refs/tags/v2"
    assert claims["job_workflow_ref"] == reusable
    assert claims["workflow_sha"] == claims["job_workflow_sha"] == claims["sha"]


def test_github_job_refuses_ids_that_are_not_digit_strings() -> None:
    with pytest.raises(ValueError, match="repository_id"):
        GitHubJob(repository_id="R_kgDOabc")


# -- GitLab CI claims -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "conditional"),
    [(None, frozenset()), ("production", GITLAB_ENVIRONMENT)],
    ids=["no-environment", "environment"],
)
def test_gitlab_token_has_exactly_gitlabs_claim_set(
    gitlab_issuer: GitLabCIIssuer, environment: str | None, conditional: frozenset[str]
) -> None:
    token = gitlab_issuer.mint(environment=environment, audience="kubegate")

    assert set(verify(token, gitlab_issuer, audience="kubegate")) == GITLAB_ALWAYS | conditional


@pytest.mark.parametrize(
    ("inputs", "subject", "ref_path"),
    [
        ({}, "project_path:my-group/my-project:ref_type:branch:ref:main", "refs/heads/main"),
        ({"ref": "v1.0.0", "ref_type": "tag"},
         "project_path:my-group/my-project:ref_type:tag:ref:v1.0.0", "refs/tags/v1.0.0"),
        ({"project_path": "top/sub/app", "ref": "feature-1"},
         "project_path:top/sub/app:ref_type:branch:ref:feature-1", "refs/heads/feature-1"),
    ],
    ids=["branch", "tag", "nested-group"],
)
def test_gitlab_sub_is_project_path_ref_type_and_bare_ref(
    gitlab_issuer: GitLabCIIssuer, inputs: dict[str, Any], subject: str, ref_path: str
) -> None:
    claims = read_claims(gitlab_issuer.mint(**inputs), gitlab_issuer)

    assert claims["sub"] == subject
    assert claims["ref_path"] == ref_path
    assert claims["namespace_path"] == claims["project_path"].rpartition("/")[0]


@pytest.mark.parametrize(("protected", "text"), [(True, "true"), (False, "false")])
def test_gitlab_booleans_are_strings_and_runner_id_is_a_number(
    gitlab_issuer: GitLabCIIssuer, protected: bool, text: str
) -> None:
    token = gitlab_issuer.mint(
        ref_protected=protected, environment="production", environment_protected=protected
    )
    claims = read_claims(token, gitlab_issuer)

    assert claims["ref_protected"] == text
    assert claims["environment_protected"] == text
    assert type(claims["runner_id"]) is int


def test_gitlab_ids_are_strings(gitlab_issuer: GitLabCIIssuer) -> None:
    claims = read_claims(gitlab_issuer.mint(project_id="20", namespace_id="72"), gitlab_issuer)

    assert {name: claims[name] for name in GITLAB_IDS} == {
        "namespace_id": "72", "project_id": "20", "user_id": "1", "pipeline_id": "574",
        "job_id": "302",
    }


def test_gitlab_times_config_uri_and_default_audience(gitlab_issuer: GitLabCIIssuer) -> None:
    claims = read_claims(gitlab_issuer.mint(now=NOW), gitlab_issuer)
    host = gitlab_issuer.url.removeprefix("https://")
    config_uri = f"{host}/my-group/my-project//.gitlab-ci.yml@refs/heads/main"

    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW - 5, NOW + 300)
    assert claims["aud"] == gitlab_issuer.url
    assert claims["ci_config_ref_uri"] == config_uri


def test_gitlab_job_refuses_a_qualified_ref() -> None:
    with pytest.raises(ValueError, match="bare"):
        GitLabJob(ref="refs/heads/main")


# -- tampering hooks ------------------------------------------------------------------------------


def test_mint_hooks_add_drop_and_rewrite_claims_and_header(
    github_issuer: GitHubActionsIssuer,
) -> None:
    token = github_issuer.mint(
        extra_claims={"aud": "evil", "repository_id": 74}, drop_claims=["sub"],
        header_overrides={"kid": None, "alg": "none"},
    )
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert "kid" not in header and header["alg"] == "none"
    assert "sub" not in claims
    assert (claims["aud"], claims["repository_id"]) == ("evil", 74)


# -- key rotation ---------------------------------------------------------------------------------


def test_rotation_signs_with_the_new_kid_and_old_tokens_still_verify(oidc_ca: TestCA) -> None:
    with GitHubActionsIssuer(oidc_ca) as issuer:
        old_kid, old_token = issuer.signing_key.kid, issuer.mint(audience="kubegate")
        new_kid = issuer.rotate().kid
        new_token = issuer.mint(audience="kubegate")

        assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
        assert issuer.published_kids == (old_kid, new_kid)
        assert verify(old_token, issuer, audience="kubegate")["jti"]
        assert verify(new_token, issuer, audience="kubegate")["jti"]


def test_retired_key_no_longer_verifies_its_tokens(oidc_ca: TestCA) -> None:
    with GitLabCIIssuer(oidc_ca) as issuer:
        old_kid, old_token = issuer.signing_key.kid, issuer.mint()
        issuer.rotate()
        new_token = issuer.mint()
        issuer.retire(old_kid)

        assert old_kid not in issuer.published_kids
        with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
            verify(old_token, issuer, audience=issuer.url)
        assert verify(new_token, issuer, audience=issuer.url)["jti"]
        with pytest.raises(KeyError):
            issuer.retire(old_kid)


def test_retiring_the_signing_key_leaves_tokens_naming_an_unpublished_key(
    oidc_ca: TestCA,
) -> None:
    with GitHubActionsIssuer(oidc_ca) as issuer:
        old_kid, kid = issuer.signing_key.kid, issuer.rotate().kid
        issuer.retire(kid)
        token = issuer.mint()

        assert issuer.published_kids == (old_kid,)
        assert jwt.get_unverified_header(token)["kid"] == kid
        with pytest.raises(jwt.PyJWKClientError):
            verify(token, issuer, audience="https://github.com/octo-org")


# -- the Actions ID-token request endpoint --------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "{token}", "bearer {token}", "Basic {token}"],
    ids=["missing", "wrong-token", "no-scheme", "lowercase-scheme", "basic-scheme"],
)
def test_id_token_endpoint_refuses_a_missing_or_wrong_bearer_with_401(
    github_issuer: GitHubActionsIssuer, authorization: str | None
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=github_issuer.id_token_request_token)
    status, body = fetch(github_issuer.id_token_request_url, github_issuer, headers=headers)

    assert status == 401
    assert "value" not in json.loads(body)


@pytest.mark.parametrize(
    ("suffix", "audience"),
    [("", "https://github.com/octo-org"),
     ("&audience=" + quote(CUSTOM_AUDIENCE, safe=""), CUSTOM_AUDIENCE)],
    ids=["default-audience", "requested-audience"],
)
def test_id_token_endpoint_returns_a_token_for_the_requested_audience(
    github_issuer: GitHubActionsIssuer, suffix: str, audience: str
) -> None:
    bearer = {"Authorization": f"Bearer {github_issuer.id_token_request_token}"}
    status, body = fetch(github_issuer.id_token_request_url + suffix, github_issuer, headers=bearer)

    assert status == 200
    assert verify(json.loads(body)["value"], github_issuer, audience=audience)["aud"] == audience


def test_id_token_endpoint_mints_for_the_job_the_test_set(oidc_ca: TestCA) -> None:
    with GitHubActionsIssuer(oidc_ca) as issuer:
        issuer.set_job(GitHubJob(repository="acme/app", environment="production"))
        environment = issuer.id_token_environment()
        bearer = {"Authorization": f"Bearer {environment['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"}
        _, body = fetch(environment["ACTIONS_ID_TOKEN_REQUEST_URL"], issuer, headers=bearer)

        assert re.search(r"/_apis/pipelines/workflows/\d+/idtoken\?api-version=2\.0$",
                         environment["ACTIONS_ID_TOKEN_REQUEST_URL"])
        assert read_claims(json.loads(body)["value"], issuer)["sub"] == (
            "repo:acme/app:environment:production"
        )


# -- JWKS faults and shutdown ---------------------------------------------------------------------


def test_jwks_faults_make_the_endpoint_misbehave_until_cleared(oidc_ca: TestCA) -> None:
    with GitLabCIIssuer(oidc_ca) as issuer:
        issuer.set_jwks_fault(JWKSFault.DOWN)
        assert fetch(issuer.jwks_url, issuer)[0] == 503

        issuer.set_jwks_fault(JWKSFault.GARBAGE)
        status, body = fetch(issuer.jwks_url, issuer)
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(body)

        issuer.set_jwks_fault(JWKSFault.HUGE)
        status, body = fetch(issuer.jwks_url, issuer)
        assert status == 200 and len(body) > HUGE_BODY_BYTES
        assert json.loads(body)["keys"][0]["kid"] == issuer.signing_key.kid

        issuer.set_jwks_fault(JWKSFault.SLOW, delay_seconds=0.3)
        started = time.monotonic()
        assert fetch(issuer.jwks_url, issuer)[0] == 200
        assert time.monotonic() - started >= 0.3

        issuer.set_jwks_fault(None)
        assert fetch_json(issuer.jwks_url, issuer)["keys"]


def test_stop_is_prompt_during_a_slow_fetch_and_leaves_no_thread(oidc_ca: TestCA) -> None:
    threads_before = set(threading.enumerate())
    issuer = GitHubActionsIssuer(oidc_ca).start()
    port = int(issuer.url.rpartition(":")[2])
    issuer.set_jwks_fault(JWKSFault.SLOW, delay_seconds=30)
    with pytest.raises(TimeoutError):
        fetch(issuer.jwks_url, issuer, timeout=0.2)

    started = time.monotonic()
    issuer.stop()

    assert time.monotonic() - started < 2
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
