"""The proxy's header rewrite: who the client claims to be never reaches the apiserver, the
credential's bearer token always does, and hop-by-hop headers stop at the proxy except the
ones an upgrade needs."""

from __future__ import annotations

import pytest

from sidecar.proxy.errors import BadRequestError, MethodNotAllowedError
from sidecar.proxy.headers import (
    BodyFraming,
    Headers,
    is_upgrade_request,
    parse_request_head,
    parse_response_head,
    request_body_framing,
    rewrite_request_headers,
    rewrite_response_headers,
)

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJqb2IifQ.c2lnbmF0dXJl"
HOST = "127.0.0.1:6443"


def rewrite(headers: Headers, *, upgrade: bool = False) -> Headers:
    return rewrite_request_headers(headers, token=TOKEN, host=HOST, upgrade=upgrade)


def names(headers: Headers) -> list[str]:
    return [name.lower() for name, _ in headers]


@pytest.mark.parametrize("name", [
    "Authorization", "authorization", "AUTHORIZATION", "Proxy-Authorization",
    "proxy-authorization", "Impersonate-User", "impersonate-user", "Impersonate-Group",
    "IMPERSONATE-GROUP", "Impersonate-Uid", "Impersonate-Extra-Scopes",
    "impersonate-extra-reason%20x",
])
def test_client_identity_and_impersonation_headers_are_dropped_in_any_case(name: str) -> None:
    rewritten = rewrite(((name, "system:admin"), ("Accept", "application/json")))

    assert ("Accept", "application/json") in rewritten
    assert all(value != "system:admin" for _, value in rewritten)
    assert not [n for n in names(rewritten) if n.startswith("impersonate-")]
    assert "proxy-authorization" not in names(rewritten)


def test_the_credentials_bearer_token_is_the_only_authorization() -> None:
    rewritten = rewrite((("Authorization", "Bearer bogus"), ("authorization", "Basic eDp5")))

    assert [value for name, value in rewritten if name.lower() == "authorization"] == [
        f"Bearer {TOKEN}"]


def test_host_is_the_apiservers_and_appears_once() -> None:
    rewritten = rewrite((("Host", "127.0.0.1:8001"), ("host", "evil.example")))

    assert [value for name, value in rewritten if name.lower() == "host"] == [HOST]


def test_hop_by_hop_headers_and_those_named_by_connection_are_dropped() -> None:
    rewritten = rewrite((
        ("Connection", "keep-alive, X-Hop"), ("Keep-Alive", "timeout=5"), ("X-Hop", "1"),
        ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-Sum"),
        ("Upgrade", "websocket"), ("Expect", "100-continue"), ("User-Agent", "kubectl/v1.37"),
    ))

    assert names(rewritten) == ["host", "user-agent", "authorization", "connection"]
    assert ("Connection", "close") in rewritten


def test_framing_headers_survive_even_when_connection_names_them() -> None:
    rewritten = rewrite((("Connection", "Content-Length, Transfer-Encoding"),
                         ("Content-Length", "12"), ("Transfer-Encoding", "chunked")))

    assert ("Content-Length", "12") in rewritten
    assert ("Transfer-Encoding", "chunked") in rewritten


@pytest.mark.parametrize("protocol", ["websocket", "SPDY/3.1"])
def test_upgrade_requests_keep_connection_upgrade_and_the_upgrade_header(protocol: str) -> None:
    request = (("Connection", "Upgrade"), ("Upgrade", protocol),
               ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"), ("X-Stream-Protocol-Version",
                                                                  "v4.channel.k8s.io"),
               ("Impersonate-User", "system:admin"))

    assert is_upgrade_request(request)
    rewritten = rewrite(request, upgrade=True)
    assert ("Upgrade", protocol) in rewritten
    assert ("Connection", "Upgrade") in rewritten
    assert ("Sec-WebSocket-Protocol", "v5.channel.k8s.io") in rewritten
    assert ("X-Stream-Protocol-Version", "v4.channel.k8s.io") in rewritten
    assert "impersonate-user" not in names(rewritten)


@pytest.mark.parametrize(("headers", "upgrade"), [
    ((("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket")), True),
    ((("connection", "upgrade"), ("upgrade", "SPDY/3.1")), True),
    ((("Upgrade", "websocket"),), False),  # Upgrade without Connection: upgrade is ignored
    ((("Connection", "Upgrade"),), False),  # nothing to upgrade to
    ((("Connection", "Upgrade"), ("Upgrade", "")), False),
])
def test_an_upgrade_needs_connection_upgrade_and_an_upgrade_protocol(
        headers: Headers, upgrade: bool) -> None:
    assert is_upgrade_request(headers) is upgrade


@pytest.mark.parametrize("token", [
    "", "secret value", "secret\r\nImpersonate-User: system:admin", "secret\n", "secret\x00",
])
def test_a_token_that_cannot_be_a_header_value_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(ValueError, match="not a valid bearer token") as raised:
        rewrite_request_headers((), token=token, host=HOST, upgrade=False)
    assert "secret" not in str(raised.value)


def test_responses_lose_hop_by_hop_headers_and_say_connection_close() -> None:
    rewritten = rewrite_response_headers((
        ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
        ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
        ("Audit-Id", "c0ffee"),
    ))

    assert rewritten == (("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
                         ("Audit-Id", "c0ffee"), ("Connection", "close"))


def test_a_request_head_parses_to_method_origin_form_target_and_headers() -> None:
    head = parse_request_head(b"GET /api/v1/namespaces/ci/pods?watch=true HTTP/1.1\r\n"
                              b"Host: 127.0.0.1:8001\r\nAccept:  */* \r\n\r\n")

    assert head.method == "GET"
    assert head.target == "/api/v1/namespaces/ci/pods?watch=true"
    assert head.headers == (("Host", "127.0.0.1:8001"), ("Accept", "*/*"))


def test_an_absolute_form_target_is_cut_to_its_path_and_query() -> None:
    head = parse_request_head(b"GET http://10.0.0.1/api/v1/pods?limit=5 HTTP/1.1\r\n\r\n")

    assert head.target == "/api/v1/pods?limit=5"


@pytest.mark.parametrize("raw", [
    b"GET /api HTTP/2.0\r\n\r\n",
    b"GET /api\r\n\r\n",
    b"GET /api HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET /api HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    b"GET /api HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
    b"GET *.example HTTP/1.1\r\n\r\n",
])
def test_malformed_request_heads_are_bad_requests(raw: bytes) -> None:
    with pytest.raises(BadRequestError):
        parse_request_head(raw)


def test_connect_is_not_allowed() -> None:
    with pytest.raises(MethodNotAllowedError):
        parse_request_head(b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n")


def test_a_response_head_parses_to_status_reason_and_headers() -> None:
    head = parse_response_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\n\r\n")

    assert (head.status, head.reason, head.headers) == (
        101, "Switching Protocols", (("Upgrade", "SPDY/3.1"),))


@pytest.mark.parametrize(("headers", "framing"), [
    ((), BodyFraming()),
    ((("Content-Length", "42"),), BodyFraming(length=42)),
    ((("Content-Length", "42"), ("content-length", "42")), BodyFraming(length=42)),
    ((("Transfer-Encoding", "chunked"),), BodyFraming(chunked=True)),
    ((("Transfer-Encoding", "Chunked"),), BodyFraming(chunked=True)),
])
def test_request_body_framing_follows_content_length_or_chunked(
        headers: Headers, framing: BodyFraming) -> None:
    assert request_body_framing(headers) == framing


@pytest.mark.parametrize("headers", [
    (("Content-Length", "42"), ("Transfer-Encoding", "chunked")),
    (("Content-Length", "42"), ("Content-Length", "43")),
    (("Content-Length", "-1"),),
    (("Content-Length", "4 2"),),
    (("Transfer-Encoding", "gzip, chunked"),),
])
def test_ambiguous_or_unsupported_body_framing_is_refused(headers: Headers) -> None:
    with pytest.raises(BadRequestError):
        request_body_framing(headers)
