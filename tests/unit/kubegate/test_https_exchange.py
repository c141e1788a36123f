"""`HttpsExchangeClient` against a real HTTPS listener on loopback (the exchanger's own
`TokenServer`, TLS from a generated CA): every refusal of the real token endpoint reaches the
client with the code gRPC would have given it (so the same failures are retried), transport
failures are coded as gRPC codes them, answers are bounded in size and time, redirects are
not followed, the CA is the only trust, and no subject token is ever in an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exchanger.backends.base import IssuedCredential
from exchanger.exchange import ExchangeInput
from exchanger.localtls import LocalCA
from exchanger.mappings.conditions import Condition, Operator
from exchanger.mappings.model import Grant, TrustMapping
from exchanger.oauth.endpoint import TokenEndpoint
from exchanger.oauth.form import parse_form
from exchanger.oauth.server import TokenServer, tls_context
from exchanger.oauth.wire import Answer, Request
from exchanger.verify.reasons import TOKEN_REASONS, rejected
from kubegate.client.https_exchange import MAX_ANSWER, HttpsExchangeClient
from kubegate.credential import ClusterInfo
from kubegate.errors import (
    Code,
    ExchangeError,
    InvalidRequestError,
    KubegateError,
    PermissionDeniedError,
    PreconditionError,
    RateLimitedError,
    UnavailableError,
)
from tests.support.controlplane import free_port

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtc3ViamVjdCJ9.c2lnbmF0dXJl"  # noqa: S105
NOW = 1_800_000_000


@dataclass
class Canned:
    """A handler answering what `answer` says, counting the requests it saw."""

    answer: Callable[[Request], Answer]
    requests: list[Request] = field(default_factory=list)

    def handle(self, request: Request, peer: str) -> Answer:
        self.requests.append(request)
        return self.answer(request)


@dataclass
class FakeExchanger:
    """The use case behind the real `TokenEndpoint`: refuses with `error`, else issues."""

    error: Exception | None = None
    seen: list[ExchangeInput] = field(default_factory=list)

    def exchange(self, request: ExchangeInput) -> tuple[IssuedCredential, TrustMapping]:
        self.seen.append(request)
        if self.error is not None:
            raise self.error
        cluster = ClusterInfo(name="prod", server="https://10.0.0.1:6443",
                              certificate_authority_data=b"-----CA-----", namespace="web",
                              service_account="deployer")
        issued = IssuedCredential(token="issued-token", token_type="urn:kubegate:token-type:"
                                  "kubernetes-service-account", token_id="jti-1",
                                  expires_at=NOW + 900, session_id="s-1", cluster=cluster,
                                  bound_to="self-issued")
        condition = Condition(path=("repository_id",), operator=Operator.EQUALS,
                              expected="892301")
        return issued, TrustMapping(name="web-deploy", issuer="github",
                                    conditions=(condition,),
                                    grant=Grant(cluster="prod", namespace="web",
                                                service_account="deployer"))

    def refuse(self, request: ExchangeInput, error: KubegateError) -> None:
        pass


@dataclass(frozen=True)
class Tls:
    ca_file: Path
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")
    ca = LocalCA("test exchanger")
    cert, key = ca.issue_server(("127.0.0.1",)).write(folder, "server")
    return Tls(ca.write(folder / "ca.crt"), cert, key)


@pytest.fixture
def serve(tls: Tls) -> Iterator[Callable[..., str]]:
    """serve(handler, tls=True) -> the URL of a listener answering with handler."""
    servers: list[TokenServer] = []

    def start(handler: Canned | TokenEndpoint, *, with_tls: bool = True) -> str:
        context = tls_context(tls.cert_file, tls.key_file, None) if with_tls else None
        server = TokenServer(host="127.0.0.1", port=0, context=context).start(handler)
        servers.append(server)
        return f"{server.scheme}://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def endpoint(exchanger: FakeExchanger) -> TokenEndpoint:
    return TokenEndpoint(exchanger, issuer="https://127.0.0.1", clock=lambda: NOW)


def exchange_error(call: Callable[[], object]) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        call()
    error = caught.value
    assert TOKEN not in str(error) and TOKEN not in error.describe()
    return error


def test_a_granted_exchange_posts_the_rfc_8693_form_and_returns_the_credential(
    serve: Callable[..., str], tls: Tls,
) -> None:
    exchanger = FakeExchanger()
    url = serve(endpoint(exchanger))
    client = HttpsExchangeClient(url, ca_file=tls.ca_file)
    credential = client.exchange(TOKEN, role="web-deploy", lifetime=600,
                                 audiences=["kubernetes", "extra"])
    assert credential.token == "issued-token"  # noqa: S105
    assert (credential.expires_at, credential.session_id, credential.token_id,
            credential.mapping) == (NOW + 900, "s-1", "jti-1", "web-deploy")
    assert credential.cluster.certificate_authority_data == b"-----CA-----"
    assert credential.cluster.service_account == "deployer"
    [seen] = exchanger.seen
    assert (seen.subject_token, seen.role, seen.requested_lifetime, seen.audiences) == (
        TOKEN, "web-deploy", 600, ("kubernetes", "extra"))
    assert seen.peer.startswith("https:127.0.0.1:")


REFUSALS: list[tuple[Exception, Code, str]] = [
    *[(rejected(reason, "detail"), Code.UNAUTHENTICATED, reason) for reason in TOKEN_REASONS],
    (PermissionDeniedError("NO_MATCHING_MAPPING"), Code.PERMISSION_DENIED,
     "NO_MATCHING_MAPPING"),
    (PermissionDeniedError("AUDIENCE_NOT_ALLOWED"), Code.PERMISSION_DENIED,
     "AUDIENCE_NOT_ALLOWED"),
    (PermissionDeniedError("GRANT_CLAIM_UNUSABLE"), Code.PERMISSION_DENIED,
     "GRANT_CLAIM_UNUSABLE"),
    *[(InvalidRequestError(reason), Code.INVALID_ARGUMENT, reason) for reason in (
        "INVALID_ROLE", "INVALID_AUDIENCES", "INVALID_LIFETIME", "UNSUPPORTED_TOKEN_TYPE",
        "MISSING_SUBJECT_TOKEN")],
    *[(PreconditionError(reason), Code.FAILED_PRECONDITION, reason) for reason in (
        "UNKNOWN_CLUSTER", "KUBEGATE_FORBIDDEN", "OBJECT_NOT_FOUND", "REJECTED_BY_CLUSTER")],
    (UnavailableError("KEYS_UNAVAILABLE"), Code.UNAVAILABLE, "KEYS_UNAVAILABLE"),
    (UnavailableError("KUBERNETES_UNAVAILABLE"), Code.UNAVAILABLE, "KUBERNETES_UNAVAILABLE"),
    (RateLimitedError("RATE_LIMITED"), Code.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
    (KubegateError("SLOW", code=Code.DEADLINE_EXCEEDED), Code.DEADLINE_EXCEEDED, "SLOW"),
    (RuntimeError("a bug"), Code.INTERNAL, "INTERNAL"),
]


@pytest.mark.parametrize(("raised", "code", "reason"), REFUSALS,
                         ids=[f"{c.name}-{r}" for _, c, r in REFUSALS])
def test_a_refusal_arrives_with_the_code_and_reason_grpc_gives_it(
    serve: Callable[..., str], tls: Tls, raised: Exception, code: Code, reason: str,
) -> None:
    url = serve(endpoint(FakeExchanger(error=raised)))
    client = HttpsExchangeClient(url, ca_file=tls.ca_file, attempts=1)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert (error.code, error.reason) == (code, reason)
    assert error.transient == code.transient
    if isinstance(raised, KubegateError):
        assert error.message == raised.public_message


def test_cancelled_travels_as_unavailable_and_is_retried_like_it() -> None:
    assert Code.CANCELLED.transient and Code.UNAVAILABLE.transient


def test_transient_answers_are_retried_and_denials_are_not(
    serve: Callable[..., str], tls: Tls,
) -> None:
    outcomes = iter([UnavailableError("KEYS_UNAVAILABLE"), RateLimitedError("RATE_LIMITED"),
                     None])
    exchanger = FakeExchanger()
    real = exchanger.exchange

    def flaky(request: ExchangeInput) -> tuple[IssuedCredential, TrustMapping]:
        error = next(outcomes)
        if error is not None:
            raise error
        return real(request)

    exchanger.exchange = flaky  # type: ignore[method-assign]
    delays: list[float] = []
    client = HttpsExchangeClient(serve(endpoint(exchanger)), ca_file=tls.ca_file,
                                 sleep=delays.append)
    assert client.exchange(TOKEN).session_id == "s-1"
    assert len(delays) == 2 and all(0 < d <= 5 for d in delays)

    denied = Canned(lambda r: endpoint(FakeExchanger(
        error=PermissionDeniedError("NO_MATCHING_MAPPING"))).handle(r, "x"))
    client = HttpsExchangeClient(serve(denied), ca_file=tls.ca_file, attempts=4,
                                 sleep=delays.append)
    assert exchange_error(lambda: client.exchange(TOKEN)).code is Code.PERMISSION_DENIED
    assert len(denied.requests) == 1 and len(delays) == 2


def test_a_redirect_is_not_followed(serve: Callable[..., str], tls: Tls) -> None:
    canned = Canned(lambda r: Answer(status=307, body=b"", headers=(
        ("Location", "https://127.0.0.1:1/elsewhere"),)))
    client = HttpsExchangeClient(serve(canned), ca_file=tls.ca_file)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert error.code is Code.UNKNOWN and not error.transient
    assert "redirect" in error.message and "elsewhere" not in error.message
    assert len(canned.requests) == 1


@pytest.mark.parametrize(("status", "code"), [(502, Code.UNAVAILABLE), (503, Code.UNAVAILABLE),
                                              (400, Code.INTERNAL), (404, Code.UNIMPLEMENTED),
                                              (418, Code.UNKNOWN)])
def test_an_answer_that_is_not_kubegates_is_coded_as_grpc_codes_http_statuses(
    serve: Callable[..., str], tls: Tls, status: int, code: Code,
) -> None:
    canned = Canned(lambda r: Answer(status=status, body=b"<html>proxy " + TOKEN.encode()
                                     + b"</html>", content_type="text/html"))
    client = HttpsExchangeClient(serve(canned), ca_file=tls.ca_file, attempts=1)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert error.code is code and "proxy" not in error.message


def test_a_token_echoed_in_a_description_is_blanked(serve: Callable[..., str],
                                                    tls: Tls) -> None:
    body = ('{"error": "access_denied", "kubegate_reason": "NO_MATCHING_MAPPING", '
            f'"error_description": "no mapping for {TOKEN}\\nreally"}}').encode()
    client = HttpsExchangeClient(serve(Canned(lambda r: Answer(status=403, body=body))),
                                 ca_file=tls.ca_file)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert error.message == "no mapping for [subject token] really"


def test_an_answer_over_the_bound_is_refused(serve: Callable[..., str], tls: Tls) -> None:
    canned = Canned(lambda r: Answer(status=200, body=b" " * (MAX_ANSWER + 1)))
    client = HttpsExchangeClient(serve(canned), ca_file=tls.ca_file, attempts=1)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert error.code is Code.RESOURCE_EXHAUSTED and "1024 KiB" in error.message


def test_a_malformed_credential_is_internal_naming_the_field(serve: Callable[..., str],
                                                              tls: Tls) -> None:
    canned = Canned(lambda r: Answer(status=200, body=b'{"access_token": 7, "cluster": {}}'))
    client = HttpsExchangeClient(serve(canned), ca_file=tls.ca_file, attempts=1)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert (error.code, error.reason) == (Code.INTERNAL, "MALFORMED_ANSWER")
    assert not error.transient


def test_a_silent_exchanger_is_deadline_exceeded_within_the_timeout(
    serve: Callable[..., str], tls: Tls,
) -> None:
    release = threading.Event()
    canned = Canned(lambda r: (release.wait(10), Answer(status=200, body=b"{}"))[1])
    client = HttpsExchangeClient(serve(canned), ca_file=tls.ca_file, attempts=1)
    started = time.monotonic()
    try:
        error = exchange_error(lambda: client.exchange(TOKEN, timeout=0.5))
    finally:
        release.set()
    assert error.code is Code.DEADLINE_EXCEEDED and error.transient
    assert time.monotonic() - started < 3  # 0.5 s, and a loaded machine's slack


def test_nothing_listening_is_unavailable() -> None:
    client = HttpsExchangeClient(f"https://127.0.0.1:{free_port()}", attempts=1)
    error = exchange_error(lambda: client.exchange(TOKEN))
    assert error.code is Code.UNAVAILABLE and error.transient
    assert "refused" in error.message


def test_only_the_ca_file_is_trusted_and_the_host_is_verified(
    serve: Callable[..., str], tls: Tls, tmp_path: Path,
) -> None:
    url = serve(endpoint(FakeExchanger()))
    other_ca = LocalCA("someone else").write(tmp_path / "other.crt")
    for ca_file in (other_ca, None):  # another CA; the system roots
        client = HttpsExchangeClient(url, ca_file=ca_file, attempts=1)
        error = exchange_error(lambda c=client: c.exchange(TOKEN))  # type: ignore[misc]
        assert error.code is Code.UNAVAILABLE and "not trusted" in error.message
    by_name = url.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1 only
    client = HttpsExchangeClient(by_name, ca_file=tls.ca_file, attempts=1)
    assert "not trusted" in exchange_error(lambda: client.exchange(TOKEN)).message


def test_http_is_plaintext_to_a_loopback_exchanger(serve: Callable[..., str]) -> None:
    client = HttpsExchangeClient(serve(endpoint(FakeExchanger()), with_tls=False))
    assert client.exchange(TOKEN).token == "issued-token"  # noqa: S105


def test_the_form_is_what_the_endpoint_parses() -> None:
    from kubegate.client.token_answers import exchange_form

    form = parse_form(exchange_form(TOKEN, role="r", lifetime=60, audiences=("a", "b")))
    assert (form.subject_token, form.scope, form.requested_lifetime, form.audiences) == (
        TOKEN, "r", 60, ("a", "b"))
    assert parse_form(exchange_form(TOKEN)).scope == ""
