"""The gateway's request rules: a client never chooses who the API server sees (its
Authorization and every spelling of Impersonate-* are gone, a request carrying one is
refused), the gateway never impersonates a system: name, the session travels as a
percent-encoded user extra, verbs are named as the API server's audit log names them, and
the gateway's own answers are Kubernetes Status objects without secrets."""

from __future__ import annotations

import json

import h11
import pytest

from exchanger.gateway.proxy_rules import (
    bearer_token,
    extra_header,
    impersonation_headers,
    kube_verb,
    refuse_impersonation,
    status_answer,
    upstream_headers,
)
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from kubegate.http.engine import RequestHead
from kubegate.http.headers import BodyFraming

SESSION = GatewaySession(id="s-1", cluster="prod", user="vendor:ann", groups=("vendors", "sre"),
                         mapping="vendor", access_request="r-1", subject="corp ann",
                         not_after=2e9)
IMPERSONATE_SPELLINGS = ["Impersonate-User", "impersonate-user", "IMPERSONATE-GROUP",
                         "Impersonate-Uid", "Impersonate-Extra-scopes",
                         "impersonate-extra-kubegate.io%2fsession", "iMpErSoNaTe-X"]


def head(*headers: tuple[str, str], method: str = "GET", upgrade: bool = False) -> RequestHead:
    return RequestHead(method=method, target="/api/v1/pods", headers=headers,
                       upgrade=upgrade, framing=BodyFraming())


@pytest.mark.parametrize("name", IMPERSONATE_SPELLINGS)
def test_a_request_with_any_impersonate_header_is_refused_403(name: str) -> None:
    with pytest.raises(GatewayRefusal) as refused:
        refuse_impersonation((("Authorization", "Bearer abc"), (name, "system:admin")))
    assert (refused.value.status, refused.value.reason) == (403, "IMPERSONATION_REFUSED")
    assert "system:admin" not in refused.value.message


@pytest.mark.parametrize("name", [*IMPERSONATE_SPELLINGS, "Authorization", "authorization",
                                  "Proxy-Authorization"])
def test_client_identity_headers_never_reach_the_api_server(name: str) -> None:
    sent = upstream_headers(head((name, "client-value"), ("Accept", "application/json")),
                            SESSION, token="gateway-token", host="10.0.0.1:6443")
    assert all(value != "client-value" for _, value in sent), sent
    assert [v for n, v in sent if n.lower() == "authorization"] == ["Bearer gateway-token"]
    assert ("Accept", "application/json") in sent


def test_the_session_is_what_the_api_server_is_told() -> None:
    sent = upstream_headers(head(), SESSION, token="gateway-token", host="h")
    assert [(n, v) for n, v in sent if n.startswith("Impersonate-")] == [
        ("Impersonate-User", "vendor:ann"), ("Impersonate-Group", "vendors"),
        ("Impersonate-Group", "sre"), ("Impersonate-Extra-kubegate.io%2Fsession", "s-1")]


def test_a_certificate_gateway_sends_no_authorization() -> None:
    sent = upstream_headers(head(("Authorization", "Bearer x")), SESSION, token="", host="h")
    assert not [n for n, _ in sent if n.lower() == "authorization"]


def test_the_session_extra_header_is_percent_encoded() -> None:
    assert extra_header("kubegate.io/session") == "Impersonate-Extra-kubegate.io%2Fsession"
    assert extra_header("a b") == "Impersonate-Extra-a%20b"


@pytest.mark.parametrize(("user", "groups"), [
    ("system:admin", ()), ("vendor:ann", ("system:masters",)), ("SYSTEM:node:x", ()),
    ("vendor:ann", ("ok", "system:nodes")),
])
def test_system_names_are_never_impersonated(user: str, groups: tuple[str, ...]) -> None:
    session = GatewaySession(**{**SESSION.__dict__, "user": user, "groups": groups})
    with pytest.raises(GatewayRefusal) as refused:
        impersonation_headers(session)
    assert (refused.value.status, refused.value.reason) == (403, "SYSTEM_IDENTITY_REFUSED")


@pytest.mark.parametrize("user", ["", "ann\r\nImpersonate-Group: system:masters", "ann\x00"])
def test_a_user_that_is_no_printable_name_is_refused(user: str) -> None:
    session = GatewaySession(**{**SESSION.__dict__, "user": user})
    with pytest.raises(GatewayRefusal):
        impersonation_headers(session)


@pytest.mark.parametrize(("headers", "reason"), [
    ((), "NO_CREDENTIAL"),
    ((("Authorization", "Basic dXNlcjpwYXNz"),), "MALFORMED_CREDENTIAL"),
    ((("Authorization", "Bearer a"), ("Authorization", "Bearer b")), "MALFORMED_CREDENTIAL"),
    ((("Authorization", "Bearer a b"),), "MALFORMED_CREDENTIAL"),
    ((("Authorization", "Bearer "),), "MALFORMED_CREDENTIAL"),
])
def test_a_request_without_one_bearer_token_is_refused_401(
        headers: tuple[tuple[str, str], ...], reason: str) -> None:
    with pytest.raises(GatewayRefusal) as refused:
        bearer_token(headers)
    assert (refused.value.status, refused.value.reason) == (401, reason)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_token_is_taken_whatever_the_scheme_case(scheme: str) -> None:
    assert bearer_token((("authorization", f"{scheme} eyJ.a.b"),)) == "eyJ.a.b"


@pytest.mark.parametrize(("method", "target", "verb"), [
    ("GET", "/api", "get"), ("GET", "/apis/apps/v1", "get"), ("GET", "/version", "get"),
    ("GET", "/api/v1/namespaces", "list"), ("GET", "/api/v1/namespaces/web", "get"),
    ("GET", "/api/v1/namespaces/web/pods", "list"),
    ("GET", "/api/v1/namespaces/web/pods?watch=true&resourceVersion=1", "watch"),
    ("GET", "/api/v1/namespaces/web/pods?watch=1", "watch"),
    ("GET", "/api/v1/watch/namespaces/web/pods", "watch"),
    ("GET", "/apis/apps/v1/watch/deployments", "watch"),
    ("GET", "/api/v1/namespaces/web/pods/p", "get"),
    ("GET", "/api/v1/namespaces/web/pods/p/log?follow=true", "get"),
    ("POST", "/api/v1/namespaces/web/pods/p/exec?command=sh", "create"),
    ("POST", "/api/v1/namespaces/web/configmaps", "create"),
    ("PUT", "/api/v1/namespaces/web/configmaps/c", "update"),
    ("PATCH", "/apis/apps/v1/namespaces/web/deployments/d", "patch"),
    ("DELETE", "/api/v1/namespaces/web/pods/p", "delete"),
    ("DELETE", "/api/v1/namespaces/web/pods", "deletecollection"),
    ("GET", "/api/v1/nodes", "list"),
])
def test_requests_are_named_by_their_kubernetes_verb(method: str, target: str,
                                                      verb: str) -> None:
    assert kube_verb(method, target) == verb


@pytest.mark.parametrize("status", [401, 403, 408, 502, 503])
def test_the_gateway_answers_with_a_kubernetes_status(status: int) -> None:
    data = status_answer(status, "SESSION_ENDED", "the session has ended (revoked)")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == status
    headers = dict(response.headers)
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert (b"www-authenticate" in headers) == (status == 401)
    body = client.next_event()
    assert isinstance(body, h11.Data)
    document = json.loads(body.data)
    assert (document["kind"], document["apiVersion"], document["status"]) == (
        "Status", "v1", "Failure")
    assert document["code"] == status
    assert document["message"].startswith("kubegate gateway: SESSION_ENDED")
    assert document["details"]["causes"][0]["reason"] == "SESSION_ENDED"
