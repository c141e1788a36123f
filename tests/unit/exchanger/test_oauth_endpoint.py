"""The token endpoint's routes with the real use case on small fakes: a form in, RFC 8693's
JSON out; refusals audited like gRPC's; requested_token_type held against the backend."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from exchanger.exchange import Exchanger
from exchanger.oauth.endpoint import TokenEndpoint
from exchanger.oauth.gate import TokenTypeGate
from exchanger.oauth.wire import Answer, Request
from kubegate.errors import InvalidTokenError
from tests.unit.exchanger.test_exchange import (
    NOW,
    FakeAudit,
    FakeBackend,
    FakeVerifier,
    mappings,
)

JWT = "urn:ietf:params:oauth:token-type:jwt"
SA = "urn:kubegate:token-type:kubernetes-service-account"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
FORM = "application/x-www-form-urlencoded"
PEER = "https:127.0.0.1:5555"


def endpoint(verifier: FakeVerifier | None = None,
             ) -> tuple[TokenEndpoint, FakeAudit, FakeBackend]:
    audit, backend = FakeAudit(), FakeBackend()
    use_case = Exchanger(verifier=verifier or FakeVerifier(), mappings=mappings(),
                         backends={"prod": TokenTypeGate(backend, SA)}, audit=audit,
                         clock=lambda: NOW, new_session_id=lambda: "session-1")
    return (TokenEndpoint(use_case, issuer="https://kubegate.example.com", clock=lambda: NOW),
            audit, backend)


def post(*fields: tuple[str, str], content_type: str = FORM, target: str = "/oauth2/token",
         method: str = "POST") -> Request:
    return Request(method=method, target=target, headers=(("content-type", content_type),),
                   body=urlencode(fields).encode())


def exchange(*more: tuple[str, str]) -> Request:
    return post(("grant_type", GRANT), ("subject_token", "a.b.c"),
                ("subject_token_type", JWT), *more)


def body(answer: Answer) -> dict[str, Any]:
    return json.loads(answer.body)  # type: ignore[no-any-return]


def test_a_token_exchange_answers_rfc8693_json_with_kubegates_extras() -> None:
    handler, audit, backend = endpoint()
    answer = handler.handle(exchange(("scope", "web"), ("requested_lifetime", "900")), PEER)
    assert answer.status == 200
    assert body(answer) == {
        "access_token": "issued.token.value", "issued_token_type": "t", "token_type": "Bearer",
        "expires_in": 900, "scope": "web", "expires_at": NOW + 900, "token_id": "issued-jti",
        "session_id": "session-1", "mapping": "web",
        "cluster": {"name": "prod", "server": "https://k8s", "certificate_authority_data": "",
                    "namespace": "web", "service_account": "", "user": "", "groups": []}}
    [record] = audit.records
    assert (record.decision, record.role, record.peer) == ("allow", "web", PEER)
    assert backend.issued[0].lifetime == 900


def test_audiences_and_resources_become_the_requested_audiences() -> None:
    handler, audit, _ = endpoint()
    answer = handler.handle(exchange(("audience", "a"), ("resource", "https://r")), PEER)
    assert body(answer)["kubegate_reason"] == "AUDIENCE_NOT_ALLOWED"
    assert (answer.status, body(answer)["error"]) == (400, "invalid_target")
    assert audit.records[0].reason == "AUDIENCE_NOT_ALLOWED"


def test_a_form_that_does_not_parse_is_audited_as_a_denial() -> None:
    handler, audit, backend = endpoint()
    answer = handler.handle(post(("grant_type", "password")), PEER)
    assert (answer.status, body(answer)["error"]) == (400, "unsupported_grant_type")
    [record] = audit.records
    assert (record.decision, record.reason, record.peer) == (
        "deny", "UNSUPPORTED_GRANT_TYPE", PEER)
    assert backend.issued == []


def test_a_refused_subject_token_is_invalid_request_and_audited() -> None:
    handler, audit, _ = endpoint(FakeVerifier(InvalidTokenError("BAD_SIGNATURE")))
    answer = handler.handle(exchange(), PEER)
    assert (answer.status, body(answer)) == (400, {
        "error": "invalid_request", "error_description": "the subject token was not accepted",
        "kubegate_reason": "BAD_SIGNATURE"})
    assert [r.reason for r in audit.records] == ["BAD_SIGNATURE"]


@pytest.mark.parametrize(("wanted", "status"), [("", 200), (SA, 200), (JWT, 400)])
def test_requested_token_type_must_be_what_the_mappings_backend_issues(
    wanted: str, status: int,
) -> None:
    handler, audit, backend = endpoint()
    answer = handler.handle(exchange(("requested_token_type", wanted)), PEER)
    assert answer.status == status
    if status == 400:
        assert body(answer)["kubegate_reason"] == "UNSUPPORTED_REQUESTED_TOKEN_TYPE"
        assert (audit.records[0].reason, audit.records[0].mapping) == (
            "UNSUPPORTED_REQUESTED_TOKEN_TYPE", "web")
        assert backend.issued == []


def test_the_metadata_is_served_on_get() -> None:
    handler, _, _ = endpoint()
    answer = handler.handle(Request(method="GET", target="/.well-known/oauth-authorization-server",
                                    headers=()), PEER)
    assert body(answer)["token_endpoint"] == "https://kubegate.example.com/oauth2/token"


@pytest.mark.parametrize(("request_", "status", "allow", "reason"), [
    (post(method="GET"), 405, "POST", "METHOD_NOT_ALLOWED"),
    (post(method="PUT"), 405, "POST", "METHOD_NOT_ALLOWED"),
    (post(target="/.well-known/oauth-authorization-server"), 405, "GET", "METHOD_NOT_ALLOWED"),
    (post(target="/oauth2/token/"), 404, None, "NOT_FOUND"),
    (post(target="/"), 404, None, "NOT_FOUND"),
    (post(target="/oauth2/token?subject_token=a.b.c"), 400, None, "QUERY_NOT_ALLOWED"),
    (post(content_type="application/json"), 400, None, "WRONG_CONTENT_TYPE"),
], ids=["GET token", "PUT token", "POST metadata", "trailing slash", "root", "query",
        "json"])
def test_methods_paths_and_content_types(request_: Request, status: int, allow: str | None,
                                         reason: str) -> None:
    handler, audit, _ = endpoint()
    answer = handler.handle(request_, PEER)
    assert (answer.status, dict(answer.headers).get("Allow"), body(answer)["kubegate_reason"]) \
        == (status, allow, reason)
    assert len(audit.records) == (1 if status == 400 else 0)


class Broken:
    def exchange(self, request: object) -> Any:
        raise RuntimeError("a.b.c leaked?")

    def refuse(self, request: object, error: object) -> None:
        pass


def test_an_unexpected_failure_is_server_error_with_a_log_id_and_no_text() -> None:
    handler = TokenEndpoint(Broken(), issuer="https://x", clock=lambda: NOW)
    answer = handler.handle(exchange(), PEER)
    assert answer.status == 500
    assert body(answer)["error"] == "server_error"
    assert "a.b.c" not in answer.body.decode() and "log id" in body(answer)["error_description"]
