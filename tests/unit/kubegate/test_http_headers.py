"""The header rules: who the client claims to be never reaches the upstream, the credential's
bearer token always does, hop-by-hop headers stop at the relay except the ones an upgrade
needs, and body framing is the relay's own."""

from __future__ import annotations

import pytest

from kubegate.http.errors import BadRequestError
from kubegate.http.headers import (
    BodyFraming,
    Headers,
    is_upgrade_request,
    origin_form,
    request_framing,
    rewrite_request_headers,
    rewrite_response_headers,
    rewrite_switch_headers,
)

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJqb2IifQ.c2lnbmF0dXJl"
HOST = "127.0.0.1:6443"


def rewrite(headers: Headers, *, upgrade: bool = False,
            framing: BodyFraming | None = None) -> Headers:
    return rewrite_request_headers(headers, token=TOKEN, host=HOST, upgrade=upgrade,
                                   framing=framing)


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


def test_host_is_the_upstreams_and_appears_once() -> None:
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


@pytest.mark.parametrize(("framing", "expected"), [
    (BodyFraming(), []),
    (BodyFraming(length=12), [("Content-Length", "12")]),
    (BodyFraming(chunked=True), [("Transfer-Encoding", "chunked")]),
])
def test_framing_upstream_is_the_relays_own_never_the_clients_spelling(
        framing: BodyFraming, expected: list[tuple[str, str]]) -> None:
    rewritten = rewrite((("Connection", "Content-Length"), ("content-length", "0012"),
                         ("Content-Length", "12"), ("transfer-encoding", "CHUNKED")),
                        framing=framing)

    assert [(n, v) for n, v in rewritten if n.lower() in ("content-length",
                                                           "transfer-encoding")] == expected


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


def test_a_response_with_both_framings_keeps_only_chunked() -> None:
    rewritten = rewrite_response_headers((("Content-Length", "5"),
                                          ("Transfer-Encoding", "chunked")))

    assert names(rewritten) == ["transfer-encoding", "connection"]


def test_a_switch_keeps_connection_and_upgrade_but_not_other_hop_by_hop_headers() -> None:
    rewritten = rewrite_switch_headers((
        ("Connection", "Upgrade, X-Hop"), ("Upgrade", "SPDY/3.1"), ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"), ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ))

    assert rewritten == (("Connection", "Upgrade, X-Hop"), ("Upgrade", "SPDY/3.1"),
                         ("X-Stream-Protocol-Version", "v4.channel.k8s.io"))


@pytest.mark.parametrize(("target", "origin"), [
    ("/api/v1/namespaces/ci/pods?watch=true", "/api/v1/namespaces/ci/pods?watch=true"),
    ("http://10.0.0.1/api/v1/pods?limit=5", "/api/v1/pods?limit=5"),
    ("https://10.0.0.1", "/"),
])
def test_targets_become_origin_form(target: str, origin: str) -> None:
    assert origin_form(target) == origin


@pytest.mark.parametrize("target", ["*", "*.example", "10.0.0.1:443", "/a\x7fb"])
def test_other_target_forms_are_refused(target: str) -> None:
    with pytest.raises(BadRequestError):
        origin_form(target)


@pytest.mark.parametrize(("headers", "framing"), [
    ((), BodyFraming()),
    ((("Content-Length", "42"),), BodyFraming(length=42)),
    ((("Content-Length", "42"), ("content-length", "42")), BodyFraming(length=42)),
    ((("Transfer-Encoding", "chunked"),), BodyFraming(chunked=True)),
    ((("Transfer-Encoding", "Chunked"),), BodyFraming(chunked=True)),
])
def test_request_body_framing_follows_content_length_or_chunked(
        headers: Headers, framing: BodyFraming) -> None:
    assert request_framing(headers) == framing


@pytest.mark.parametrize("headers", [
    (("Content-Length", "42"), ("Transfer-Encoding", "chunked")),
    (("Content-Length", "42"), ("Content-Length", "43")),
    (("Content-Length", "-1"),),
    (("Content-Length", "4 2"),),
    (("Transfer-Encoding", "gzip, chunked"),),
])
def test_ambiguous_or_unsupported_body_framing_is_refused(headers: Headers) -> None:
    with pytest.raises(BadRequestError):
        request_framing(headers)
