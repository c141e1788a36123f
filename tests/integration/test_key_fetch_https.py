"""HttpsKeyFetcher against real HTTPS servers on 127.0.0.1 (stdlib http.server, TestCA
certificates): discovery, JWKS, and every way a key endpoint can misbehave."""

from __future__ import annotations

import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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
from tests.support.oidc import GitHubActionsIssuer
from tests.support.pki import TestCA

JWKS_BODY = (b'{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",'
             b'"x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",'
             b'"y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}]}')


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int = 200
    body: bytes = JWKS_BODY
    headers: dict[str, str] = field(default_factory=dict)
    declare_length: bool = True
    delay: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = False

    def __init__(self, context: ssl.SSLContext, owner: KeyServer) -> None:
        self.context = context
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(5)
        with self.context.wrap_socket(request, server_side=True) as tls:
            _Handler(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are expected here
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # http.server's naming
        owner = self.server.owner
        owner.requests.append((self.path, self.headers.get("Authorization")))
        reply = owner.routes.get(self.path, Reply(status=404, body=b'{"error":"not found"}'))
        if reply.delay:
            owner.stopping.wait(reply.delay)
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.declare_length:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class KeyServer:
    """An HTTPS server with fixed replies per path; records each request's path and auth."""

    def __init__(self, ca: TestCA, folder: Path) -> None:
        cert_path, key_path = ca.issue_server(("127.0.0.1", "localhost")).write(folder, "server")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.stopping = threading.Event()
        self._server = _Server(context, self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_port}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def serve_discovery(self, issuer_url: str | None = None, jwks_uri: str | None = None) -> None:
        issuer_url = self.url if issuer_url is None else issuer_url
        jwks_uri = f"{self.url}/jwks" if jwks_uri is None else jwks_uri
        body = f'{{"issuer":"{issuer_url}","jwks_uri":"{jwks_uri}"}}'.encode()
        self.routes["/.well-known/openid-configuration"] = Reply(body=body)
        self.routes["/jwks"] = Reply()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


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


# -- Kubernetes clusters --------------------------------------------------------------------------


def test_cluster_credentials_are_sent_to_the_issuer_origin(server: KeyServer,
                                                           ca_file: Path) -> None:
    server.serve_discovery()
    fetcher = HttpsKeyFetcher(cluster_lookup=lambda cluster: (ca_file, f"token-of-{cluster}"))
    issuer = issuer_at(server, None, key_source=KubernetesCluster(cluster="prod"))
    assert fetcher.fetch_jwks(issuer)["keys"]
    assert [auth for _, auth in server.requests] == ["Bearer token-of-prod"] * 2


def test_cluster_credentials_never_go_to_another_origin(server: KeyServer, ca_file: Path) -> None:
    other_origin = server.url.replace("127.0.0.1", "localhost")
    server.serve_discovery(jwks_uri=f"{other_origin}/jwks")
    fetcher = HttpsKeyFetcher(cluster_lookup=lambda cluster: (ca_file, "secret-bearer"))
    issuer = issuer_at(server, None, key_source=KubernetesCluster(cluster="prod"))
    assert fetcher.fetch_jwks(issuer)["keys"]
    assert server.requests == [("/.well-known/openid-configuration", "Bearer secret-bearer"),
                               ("/jwks", None)]


def test_cluster_lookup_failure_is_an_error_without_the_credential(
    server: KeyServer, ca_file: Path
) -> None:
    def lookup(cluster: str) -> tuple[Path | None, str | None]:
        raise KeyError(cluster)

    issuer = issuer_at(server, ca_file, key_source=KubernetesCluster(cluster="prod"))
    error = refused(HttpsKeyFetcher(cluster_lookup=lookup), issuer)
    assert "prod" in error.detail


def test_failed_cluster_fetch_does_not_reveal_the_bearer_token(
    server: KeyServer, ca_file: Path
) -> None:
    server.serve_discovery()
    server.routes["/jwks"] = Reply(status=401, body=b'{"message":"Unauthorized"}')
    fetcher = HttpsKeyFetcher(cluster_lookup=lambda cluster: (ca_file, "secret-bearer"))
    issuer = issuer_at(server, None, key_source=KubernetesCluster(cluster="prod"))
    error = refused(fetcher, issuer)
    assert "secret-bearer" not in str(error) and "secret-bearer" not in repr(error.__cause__)


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
