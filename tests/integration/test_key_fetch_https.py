"""HttpsKeyFetcher against real HTTPS servers on 127.0.0.1 (stdlib http.server, TestCA
certificates): discovery, JWKS, every way a key endpoint can misbehave, and a cluster's keys
read from its API server with kubegate's credentials, which no other origin ever sees."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.server import key_fetcher
from exchanger.verify import (
    HttpsKeyFetcher,
    IssuerConfig,
    JWKSUrl,
    KeyCache,
    KeyFetchError,
    KubernetesCluster,
    StaticKeys,
    Verifier,
)
from kubegate.errors import UnavailableError
from tests.support.keyserver import JWKS_BODY, KeyServer, Reply
from tests.support.oidc import GitHubActionsIssuer
from tests.support.pki import TestCA

CLUSTER_TOKEN = "token-of-prod-" + "x" * 40  # noqa: S105 - a test credential, not a secret


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("kubegate-test-key-fetch-ca")


@pytest.fixture(scope="module")
def ca_file(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ca.write(tmp_path_factory.mktemp("ca") / "ca.pem")


@pytest.fixture
def server(ca: TestCA, tmp_path: Path) -> Iterator[KeyServer]:
    key_server = KeyServer(ca, tmp_path)
    yield key_server
    key_server.stop()


def issuer_at(server: KeyServer, ca_file: Path | None, **fields: Any) -> IssuerConfig:
    return IssuerConfig(name="test", url=server.url, audiences=("kubegate",),
                        algorithms=("ES256",), ca_file=ca_file, **fields)


def refused(fetcher: HttpsKeyFetcher, issuer: IssuerConfig) -> KeyFetchError:
    with pytest.raises(KeyFetchError) as caught:
        fetcher.fetch_jwks(issuer)
    error = caught.value
    assert isinstance(error, UnavailableError) and error.reason == "KEYS_UNAVAILABLE"
    return error


# -- the happy paths ------------------------------------------------------------------------------


def test_discovery_then_jwks(server: KeyServer, ca_file: Path) -> None:
    server.serve_discovery()
    document = HttpsKeyFetcher().fetch_jwks(issuer_at(server, ca_file))
    assert document["keys"][0]["kid"] == "k1"
    assert server.paths == ["/.well-known/openid-configuration", "/jwks"]


def test_pinned_jwks_url_skips_discovery(server: KeyServer, ca_file: Path) -> None:
    server.routes["/keys"] = Reply()
    issuer = issuer_at(server, ca_file, key_source=JWKSUrl(url=f"{server.url}/keys"))
    assert HttpsKeyFetcher().fetch_jwks(issuer)["keys"]
    assert server.paths == ["/keys"]


def test_static_keys_need_no_network(ca_file: Path) -> None:
    static = IssuerConfig(name="static", url="https://127.0.0.1:9", audiences=("a",),
                          key_source=StaticKeys(jwks={"keys": [{"kty": "EC"}]}))
    assert HttpsKeyFetcher().fetch_jwks(static) == {"keys": [{"kty": "EC"}]}


def test_body_exactly_at_the_cap_is_accepted(server: KeyServer, ca_file: Path) -> None:
    server.serve_discovery()
    fetcher = HttpsKeyFetcher(max_bytes=len(JWKS_BODY))
    assert fetcher.fetch_jwks(issuer_at(server, ca_file))["keys"]


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_of_the_jwks_is_refused(server: KeyServer, ca_file: Path, status: int) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = Reply(status=status, headers={"Location": f"{server.url}/evil"})
    server.routes["/evil"] = Reply()
    error = refused(HttpsKeyFetcher(), issuer_at(server, ca_file))
    assert "redirect" in error.detail
    assert "/evil" not in server.paths


def test_redirect_of_discovery_is_refused(server: KeyServer, ca_file: Path) -> None:
    server.routes["/.well-known/openid-configuration"] = Reply(
        status=302, headers={"Location": f"{server.url}/other-discovery"})
    refused(HttpsKeyFetcher(), issuer_at(server, ca_file))
    assert server.paths == ["/.well-known/openid-configuration"]


@pytest.mark.parametrize("declared", [True, False], ids=["declared length", "undeclared length"])
def test_oversized_body_is_refused(server: KeyServer, ca_file: Path, declared: bool) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = Reply(body=JWKS_BODY[:-1] + b',"pad":"' + b"x" * 4096 + b'"}',
                                   declare_length=declared)
    error = refused(HttpsKeyFetcher(max_bytes=2048), issuer_at(server, ca_file))
    assert "over 2048 bytes" in error.detail


def test_default_cap_refuses_a_body_over_one_mebibyte(server: KeyServer, ca_file: Path) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = Reply(body=b'{"keys":[],"pad":"' + b"x" * (1 << 20) + b'"}',
                                   declare_length=False)
    assert "over 1048576 bytes" in refused(HttpsKeyFetcher(), issuer_at(server, ca_file)).detail


@pytest.mark.parametrize(
    "jwks_uri",
    ["http://127.0.0.1:{port}/jwks", "file:///etc/passwd", "ftp://127.0.0.1/jwks", "", "/jwks"],
    ids=["http", "file", "ftp", "empty", "relative"],
)
def test_jwks_uri_that_is_not_https_is_refused(
    server: KeyServer, ca_file: Path, jwks_uri: str
) -> None:
    port = server.url.rsplit(":", 1)[1]
    server.serve_discovery(jwks_uri=jwks_uri.format(port=port))
    refused(HttpsKeyFetcher(), issuer_at(server, ca_file))
    assert server.paths == ["/.well-known/openid-configuration"]


def test_http_urls_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="https"):
        JWKSUrl(url="http://127.0.0.1/jwks")
    with pytest.raises(ValueError, match="https"):
        IssuerConfig(name="plain", url="http://127.0.0.1", audiences=("a",))


@pytest.mark.parametrize(
    "claimed", ["{url}/", "https://evil.example", "", "{url}/sub"],
    ids=["trailing slash", "another issuer", "empty", "longer path"],
)
def test_discovery_issuer_mismatch_is_refused(
    server: KeyServer, ca_file: Path, claimed: str
) -> None:
    server.serve_discovery(issuer_url=claimed.format(url=server.url))
    error = refused(HttpsKeyFetcher(), issuer_at(server, ca_file))
    assert "issuer" in error.detail
    assert "/jwks" not in server.paths


def test_server_down_is_an_error(ca_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    issuer = IssuerConfig(name="down", url=f"https://127.0.0.1:{port}", audiences=("a",),
                          ca_file=ca_file)
    error = refused(HttpsKeyFetcher(timeout=2), issuer)
    assert isinstance(error.__cause__, OSError)


def test_untrusted_certificate_is_an_error(server: KeyServer, tmp_path: Path) -> None:
    server.serve_discovery()
    other_ca = TestCA("someone-else").write(tmp_path / "other-ca.pem")
    error = refused(HttpsKeyFetcher(), issuer_at(server, other_ca))
    assert "SSL" in error.detail or "certificate" in error.detail
    assert server.requests == []


def test_system_trust_does_not_trust_the_test_ca(server: KeyServer) -> None:
    server.serve_discovery()
    refused(HttpsKeyFetcher(), issuer_at(server, None))


@pytest.mark.parametrize(
    "reply",
    [Reply(status=500, body=b"{}"), Reply(status=404, body=b"{}"), Reply(status=204, body=b""),
     Reply(body=b"<html>not json</html>"), Reply(body=b"[1, 2]"), Reply(body=b"\xff\xfe{}"),
     Reply(body=b'{"keys": NaN}')],
    ids=["500", "404", "204", "not JSON", "JSON array", "not UTF-8", "NaN"],
)
def test_bad_jwks_response_is_an_error(server: KeyServer, ca_file: Path, reply: Reply) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = reply
    refused(HttpsKeyFetcher(), issuer_at(server, ca_file))


def test_slow_server_times_out(server: KeyServer, ca_file: Path) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = Reply(delay=10)
    started = time.monotonic()
    refused(HttpsKeyFetcher(timeout=0.3), issuer_at(server, ca_file))
    assert time.monotonic() - started < 5


def test_error_is_raised_from_the_library_error(server: KeyServer, ca_file: Path) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = Reply(status=503, body=b"{}")
    error = refused(HttpsKeyFetcher(), issuer_at(server, ca_file))
    assert error.__cause__ is not None
    assert "503" in error.detail


# -- Kubernetes clusters: keys from the cluster's own API server ---------------------------------


@pytest.fixture
def api_server(ca: TestCA, tmp_path: Path) -> Iterator[KeyServer]:
    """What the fetcher is told is cluster prod's API server."""
    folder = tmp_path / "api-server"
    folder.mkdir()
    key_server = KeyServer(ca, folder)
    key_server.routes["/openid/v1/jwks"] = Reply()
    yield key_server
    key_server.stop()


class cluster_client:  # noqa: N801 - used as a context manager, like open()
    """A KubernetesClient for `api` that authenticates with CLUSTER_TOKEN from a token file."""

    def __init__(self, api: KeyServer, ca_file: Path) -> None:
        token_file = ca_file.parent / "cluster-token"
        token_file.write_text(CLUSTER_TOKEN)
        self._client = KubernetesClient(server=api.url, ca_file=ca_file,
                                        credentials=ClusterCredentials(token_file=token_file))

    def __enter__(self) -> KubernetesClient:
        return self._client

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()


def cluster_issuer(server: KeyServer, ca_file: Path | None = None) -> IssuerConfig:
    """An in-cluster issuer whose url is `server` (a stray origin), keys from cluster prod."""
    return issuer_at(server, ca_file, key_source=KubernetesCluster(cluster="prod"))


def test_cluster_keys_come_from_its_api_server_with_its_credentials(
    server: KeyServer, ca_file: Path, api_server: KeyServer,
) -> None:
    server.serve_discovery()
    with cluster_client(api_server, ca_file) as client:
        document = key_fetcher({"prod": client}).fetch_jwks(cluster_issuer(server, ca_file))
    assert document["keys"][0]["kid"] == "k1"
    assert api_server.requests == [("/openid/v1/jwks", f"Bearer {CLUSTER_TOKEN}")]
    assert server.requests == []  # the issuer url is never asked, with or without credentials


def test_a_redirect_of_the_cluster_keys_is_not_followed(
    server: KeyServer, ca_file: Path, api_server: KeyServer,
) -> None:
    api_server.routes["/openid/v1/jwks"] = Reply(status=302,
                                                 headers={"Location": f"{server.url}/jwks"})
    server.serve_discovery()
    with cluster_client(api_server, ca_file) as client:
        error = refused(key_fetcher({"prod": client}), cluster_issuer(server, ca_file))
    assert "redirect" in error.detail and "cluster prod" in error.detail
    assert server.requests == []


@pytest.mark.parametrize("declared", [True, False], ids=["declared length", "undeclared length"])
def test_cluster_keys_are_bounded_like_any_other(
    server: KeyServer, ca_file: Path, api_server: KeyServer, declared: bool,
) -> None:
    api_server.routes["/openid/v1/jwks"] = Reply(
        body=JWKS_BODY[:-1] + b',"pad":"' + b"x" * 4096 + b'"}', declare_length=declared)
    with cluster_client(api_server, ca_file) as client:
        fetcher = HttpsKeyFetcher(max_bytes=2048, cluster_jwks=lambda _, timeout:
                                  client.open_service_account_jwks(timeout))
        error = refused(fetcher, cluster_issuer(server))
    assert "over 2048 bytes" in error.detail


def test_a_slow_cluster_api_server_times_out(
    server: KeyServer, ca_file: Path, api_server: KeyServer,
) -> None:
    api_server.routes["/openid/v1/jwks"] = Reply(delay=10)
    started = time.monotonic()
    with cluster_client(api_server, ca_file) as client:
        fetcher = HttpsKeyFetcher(timeout=0.3, cluster_jwks=lambda _, timeout:
                                  client.open_service_account_jwks(timeout))
        error = refused(fetcher, cluster_issuer(server))
    assert time.monotonic() - started < 5
    assert "cluster prod" in error.detail


def test_an_unreachable_cluster_api_server_is_an_error_naming_the_cluster(
    server: KeyServer, ca_file: Path, tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = tmp_path / "token"
    token_file.write_text(CLUSTER_TOKEN)
    client = KubernetesClient(server=f"https://127.0.0.1:{port}", ca_file=ca_file,
                              credentials=ClusterCredentials(token_file=token_file))
    try:
        error = refused(key_fetcher({"prod": client}), cluster_issuer(server))
    finally:
        client.close()
    assert "cluster prod" in error.detail and "issuer test" in error.detail
    assert server.requests == []


def test_a_cluster_source_without_access_to_the_cluster_asks_no_origin(
    server: KeyServer, ca_file: Path,
) -> None:
    server.serve_discovery()
    for fetcher in (HttpsKeyFetcher(), key_fetcher({})):
        error = refused(fetcher, cluster_issuer(server, ca_file))
        assert "prod" in error.detail
    assert server.requests == []


def test_failed_cluster_fetch_does_not_reveal_the_bearer_token(
    server: KeyServer, ca_file: Path, api_server: KeyServer,
) -> None:
    api_server.routes["/openid/v1/jwks"] = Reply(status=401, body=b'{"message":"Unauthorized"}')
    with cluster_client(api_server, ca_file) as client:
        error = refused(key_fetcher({"prod": client}), cluster_issuer(server))
    assert "401" in error.detail
    assert CLUSTER_TOKEN not in str(error) and CLUSTER_TOKEN not in repr(error.__cause__)


# -- no credential for an issuer's own urls -----------------------------------------------------


@pytest.mark.parametrize("pinned", [False, True], ids=["discovery", "jwksUrl"])
def test_an_issuer_origin_never_gets_an_authorization_header(
    server: KeyServer, ca_file: Path, api_server: KeyServer, pinned: bool,
) -> None:
    """Even from a fetcher that holds a cluster's credentials."""
    server.serve_discovery()
    with cluster_client(api_server, ca_file) as client:
        fetcher = key_fetcher({"prod": client})
        source = JWKSUrl(url=f"{server.url}/jwks") if pinned else None
        issuer = issuer_at(server, ca_file, **({"key_source": source} if source else {}))
        assert fetcher.fetch_jwks(issuer)["keys"]
    assert server.paths[-1] == "/jwks"
    assert server.authorizations == []
    assert api_server.requests == []


# -- end to end with the loopback GitHub issuer ---------------------------------------------------


def test_verifier_with_https_keys_accepts_a_github_token(ca: TestCA, tmp_path: Path) -> None:
    with GitHubActionsIssuer(ca, folder=tmp_path) as github:
        issuer = IssuerConfig(name="github", url=github.url, audiences=("kubegate",),
                              ca_file=github.ca_path, kind="github")
        verifier = Verifier([issuer], KeyCache(HttpsKeyFetcher(), time.time), time.time)
        identity = verifier.verify(github.mint(audience="kubegate"))
        assert identity.issuer == "github"
        assert identity.claims["repository_id"] == "74"


def test_unknown_issuer_causes_no_request(ca: TestCA, tmp_path: Path) -> None:
    with GitHubActionsIssuer(ca, folder=tmp_path) as github:
        trusted = IssuerConfig(name="other", url="https://127.0.0.1:9", audiences=("kubegate",))
        verifier = Verifier([trusted], KeyCache(HttpsKeyFetcher(), time.time), time.time)
        github.reset_counts()
        with pytest.raises(Exception, match="UNKNOWN_ISSUER"):
            verifier.verify(github.mint(audience="kubegate"))
        assert github.request_count("/.well-known/openid-configuration") == 0
        assert github.request_count(github.jwks_path) == 0
