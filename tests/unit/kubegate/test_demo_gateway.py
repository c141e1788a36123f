"""The pure parts of `kubegate demo`'s gateway scene (kubegate/commands/demo_gateway.py): the
forged credential it presents, how it reads the gateway's refusals, and the compact line it
prints per gateway audit record. The scene itself runs in tests/integration/test_demo.py."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from exchanger.gateway.proxy_rules import status_body
from kubegate.commands.demo_gateway import forge, pod_list, refusal_reason, request_line


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def test_a_forged_token_keeps_header_and_signature_adds_the_group_and_no_longer_verifies(
        ) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"sub": "oidc:alice@example.com", "groups": ["kubegate:sre"]}, key,
                       algorithm="ES256")
    forged = forge(token, "kubegate:cluster-admins")
    assert forged.split(".")[0] == token.split(".")[0]
    assert forged.split(".")[2] == token.split(".")[2]
    assert "=" not in forged
    assert _claims(forged) == {"sub": "oidc:alice@example.com",
                               "groups": ["kubegate:sre", "kubegate:cluster-admins"]}
    jwt.decode(token, key.public_key(), algorithms=["ES256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.public_key(), algorithms=["ES256"])


def test_a_token_without_groups_gets_the_one_group() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    forged = forge(jwt.encode({"sub": "x"}, key, algorithm="ES256"), "g")
    assert _claims(forged)["groups"] == ["g"]


def test_the_reason_of_a_gateway_refusal_is_its_first_cause() -> None:
    refusal = json.loads(status_body(403, "IMPERSONATION_REFUSED", "no"))
    assert refusal_reason(refusal) == "IMPERSONATION_REFUSED"
    assert refusal_reason(pod_list({"impersonateUser": "oidc:a"})) == ""
    assert refusal_reason({}) == ""
    assert refusal_reason({"kind": "Status", "code": 401}) == ""  # the API server's own


def test_a_request_line_names_verb_path_status_reason_session_and_a_cut() -> None:
    record = {"decision": "gateway", "reason": "OK", "status": "200", "session_id": "s-1",
              "gateway": {"verb": "watch", "path": "/api/v1/namespaces/ops/pods?watch=1",
                          "status": 200, "ended_by": "revoked", "user": "oidc:a"}}
    line = request_line(record)
    assert line.split() == ["watch", "/api/v1/namespaces/ops/pods?watch=1", "200", "OK",
                            "session", "s-1", "(cut:", "revoked)"]
    refused = request_line({"reason": "BAD_SIGNATURE", "status": "401", "session_id": "",
                            "gateway": {"verb": "list", "path": "/api/v1/namespaces/ops/pods",
                                        "ended_by": ""}})
    assert refused.split() == ["list", "/api/v1/namespaces/ops/pods", "401", "BAD_SIGNATURE",
                               "session", "-"]
