"""RFC 8693 token exchange over HTTPS (`httpListen`), end to end: the real `curl` doing the
README's one-liner against a real exchanger with its generated CA, the RFC 8414 metadata, and
the refusals (each with its OAuth error, kubegate's reason, its HTTP status and no-store
headers), audited like gRPC's: the same line, but for its `peer`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

import exchanger.oauth.server as oauth_server
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, self_issued_entry
from tests.support.hostile import DecisionLog
from tests.support.oauth_client import (
    FORM,
    METADATA_PATH,
    TOKEN_PATH,
    OAuthClient,
    exchange_form,
)
from tests.support.oidc import GitHubActionsIssuer

GRANT = ('{cluster: local, namespace: web, user: "ci:web", groups: [deployers], '
         'audiences: [kubernetes, extra], maxLifetime: 15m}')
MAPPINGS = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims: [{{claim: repository_id, equals: "892301"}}]
  grant: {GRANT}
"""
SA_TYPE = "urn:kubegate:token-type:kubernetes-service-account"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def curl() -> str:
    found = shutil.which("curl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is required in CI")
        pytest.skip("curl is not installed")
    return found


@pytest.fixture
def exchanger(github_issuer: GitHubActionsIssuer,
              start_test_exchanger: StartExchanger) -> TestExchanger:
    return start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443",
                   "backend": "selfIssued"}],
        mappings=MAPPINGS, self_issued=self_issued_entry(), httpListen="127.0.0.1:0")


def subject(issuer: GitHubActionsIssuer) -> str:
    return issuer.mint(audience="kubegate", repository_id="892301")


def run_curl(*args: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    done = subprocess.run([curl(), "-sS", "-D", "-", *args], capture_output=True, text=True,
                          timeout=30, check=True)
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    while head.startswith("HTTP/1.1 100"):  # Continue, then the answer
        head, _, body = body.partition("\n\n")
    status_line, *lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_no_store(headers: dict[str, str]) -> None:
    assert (headers["cache-control"], headers["pragma"]) == ("no-store", "no-cache")


def test_curl_one_liner_exchanges_a_token_and_the_audit_line_matches_grpcs(
    exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(subject(github_issuer))
    decisions = DecisionLog(exchanger)
    url = f"https://127.0.0.1:{exchanger.running.http_port}{TOKEN_PATH}"

    status, headers, answer = run_curl(
        "--cacert", str(exchanger.running.ca_file),
        "-d", "grant_type=urn:ietf:params:oauth:grant-type:token-exchange",
        "-d", "subject_token_type=urn:ietf:params:oauth:token-type:jwt",
        "--data-urlencode", f"subject_token@{token_file}", "-d", "scope=web-deploy", url)

    assert status == 200
    assert_no_store(headers)
    assert headers["content-type"] == "application/json"
    assert answer["access_token"].count(".") == 2
    assert (answer["issued_token_type"], answer["token_type"]) == (JWT_TYPE, "Bearer")
    assert 890 <= answer["expires_in"] <= 900
    assert (answer["mapping"], answer["scope"]) == ("web-deploy", "web-deploy")
    assert answer["cluster"] | {"certificate_authority_data": ""} == {
        "name": "local", "server": "https://127.0.0.1:6443", "certificate_authority_data": "",
        "namespace": "web", "service_account": "", "user": "ci:web", "groups": ["deployers"]}
    [line] = decisions.new()
    assert (line["decision"], line["token_id"], line["session_id"]) == (
        "allow", answer["token_id"], answer["session_id"])
    assert line["peer"].startswith("https:127.0.0.1:")

    with exchanger.client() as client:
        client.exchange(subject(github_issuer), role="web-deploy")
    [grpc_line] = decisions.new()
    varying = {"time", "peer", "token_id", "session_id", "expires_at", "caller", "trace_id",
               "seq", "prev", "hash"}
    assert {k: v for k, v in line.items() if k not in varying} == {
        k: v for k, v in grpc_line.items() if k not in varying}
    assert line["caller"]["sub"] == grpc_line["caller"]["sub"]


def test_metadata_names_the_token_endpoint(exchanger: TestExchanger) -> None:
    base = f"https://127.0.0.1:{exchanger.running.http_port}"
    status, headers, document = run_curl("--cacert", str(exchanger.running.ca_file),
                                         base + METADATA_PATH)
    assert status == 200
    assert_no_store(headers)
    assert document["issuer"] == base == exchanger.running.http_public_url
    assert document["token_endpoint"] == base + TOKEN_PATH
    assert document["grant_types_supported"] == [
        "urn:ietf:params:oauth:grant-type:token-exchange"]
    assert document["token_endpoint_auth_methods_supported"] == ["none"]


def test_keep_alive_audiences_lifetime_and_requested_token_type(
    exchanger: TestExchanger, github_issuer: GitHubActionsIssuer,
) -> None:
    with OAuthClient.of(exchanger) as client:
        first = client.exchange(subject(github_issuer), audience="extra",
                                requested_lifetime="600", requested_token_type=JWT_TYPE)
        second = client.exchange(subject(github_issuer), resource="https://kubernetes")
    assert first.status == 200 and 590 <= first.body["expires_in"] <= 600
    assert second.refusal == ("invalid_target", "AUDIENCE_NOT_ALLOWED")
    assert second.status == 400


REFUSALS: dict[str, tuple[list[tuple[str, str]] | bytes, str, int, tuple[str, str], bool]] = {
    # case: (form fields or raw body, content type, status, (error, reason), audited)
    "grant type of another flow": (
        [("grant_type", "client_credentials"), ("subject_token", "x")], FORM, 400,
        ("unsupported_grant_type", "UNSUPPORTED_GRANT_TYPE"), True),
    "a parameter twice": (
        exchange_form("x") + [("scope", "a"), ("scope", "b")], FORM, 400,
        ("invalid_request", "DUPLICATE_PARAMETER"), True),
    "no subject_token_type": (
        [("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
         ("subject_token", "x")], FORM, 400, ("invalid_request", "MISSING_PARAMETER"), True),
    "JSON instead of a form": (
        b'{"grant_type": "token-exchange"}', "application/json", 400,
        ("invalid_request", "WRONG_CONTENT_TYPE"), True),
    "an access token type requested": (
        exchange_form("x", requested_token_type="urn:ietf:params:oauth:token-type:access_token"),
        FORM, 400, ("invalid_request", "UNSUPPORTED_REQUESTED_TOKEN_TYPE"), True),
    "a forged subject token": (
        exchange_form("eyJhbGciOiJub25lIn0.e30."), FORM, 400,
        ("invalid_request", "DISALLOWED_ALGORITHM"), True),
    "a body over 64 KiB": (
        exchange_form("x" * 70_000), FORM, 413, ("invalid_request", "REQUEST_TOO_LARGE"), False),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_carry_their_oauth_error_reason_and_status(
    exchanger: TestExchanger, case: str,
) -> None:
    body, content_type, status, refusal, audited = REFUSALS[case]
    raw = body if isinstance(body, bytes) else "&".join(
        f"{k}={v}" for k, v in body).encode()
    decisions = DecisionLog(exchanger)
    with OAuthClient.of(exchanger) as client:
        answer = client.post(TOKEN_PATH, raw, content_type)
    assert (answer.status, answer.refusal) == (status, refusal)
    assert answer.body["error_description"]
    assert_no_store(answer.headers)
    lines = decisions.new()
    assert [(d["decision"], d["reason"]) for d in lines] == (
        [("deny", refusal[1])] if audited else [])
    if audited:
        assert lines[0]["peer"].startswith("https:127.0.0.1:")


def test_mapping_denials_and_requested_token_type_of_another_backend(
    exchanger: TestExchanger, github_issuer: GitHubActionsIssuer,
) -> None:
    decisions = DecisionLog(exchanger)
    with OAuthClient.of(exchanger) as client:
        unknown = client.exchange(subject(github_issuer), scope="prod-admin")
        other = client.exchange(github_issuer.mint(audience="kubegate", repository_id="1"))
        wrong_type = client.exchange(subject(github_issuer), requested_token_type=SA_TYPE)
    assert (unknown.status, unknown.refusal) == (403, ("access_denied", "ROLE_NOT_ALLOWED"))
    assert (other.status, other.refusal) == (403, ("access_denied", "NO_MATCHING_MAPPING"))
    assert (wrong_type.status, wrong_type.refusal) == (
        400, ("invalid_request", "UNSUPPORTED_REQUESTED_TOKEN_TYPE"))
    assert [(d["reason"], d["mapping"]) for d in decisions.new()] == [
        ("ROLE_NOT_ALLOWED", ""), ("NO_MATCHING_MAPPING", ""),
        ("UNSUPPORTED_REQUESTED_TOKEN_TYPE", "web-deploy")]


def test_methods_paths_and_queries(exchanger: TestExchanger) -> None:
    with OAuthClient.of(exchanger) as client:
        get = client.request("GET", TOKEN_PATH)
        post_metadata = client.request("POST", METADATA_PATH, b"")
        missing = client.request("GET", "/token")
        query = client.request("POST", TOKEN_PATH + "?subject_token=x", b"",
                               {"Content-Type": FORM})
    assert (get.status, get.headers["allow"], get.refusal[1]) == (405, "POST",
                                                                  "METHOD_NOT_ALLOWED")
    assert (post_metadata.status, post_metadata.headers["allow"]) == (405, "GET")
    assert (missing.status, missing.refusal[1]) == (404, "NOT_FOUND")
    assert (query.status, query.refusal) == (400, ("invalid_request", "QUERY_NOT_ALLOWED"))
    for answer in (get, post_metadata, missing, query):
        assert_no_store(answer.headers)


def raw_exchange(exchanger: TestExchanger, data: bytes, *, wait: float = 5) -> bytes:
    """data over TLS as it is, and everything the server answers until it closes."""
    context = ssl.create_default_context(cafile=str(exchanger.running.ca_file))
    with socket.create_connection(("127.0.0.1", exchanger.running.http_port), timeout=wait) \
            as plain, context.wrap_socket(plain, server_hostname="127.0.0.1") as stream:
        stream.sendall(data)
        received = b""
        while chunk := stream.recv(65536):
            received += chunk
    return received


def test_smuggling_is_refused_before_anything_is_exchanged(exchanger: TestExchanger) -> None:
    decisions = DecisionLog(exchanger)
    answer = raw_exchange(exchanger, (
        b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: " + FORM.encode()
        + b"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1"
        b"\r\nHost: x\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"MALFORMED_REQUEST" in answer and answer.count(b"HTTP/1.1") == 1
    assert decisions.new() == []


def test_a_slow_request_gets_408(exchanger: TestExchanger,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth_server, "REQUEST_TIMEOUT", 0.5)
    answer = raw_exchange(exchanger, b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n")
    assert answer.startswith(b"HTTP/1.1 408 ") and b"REQUEST_TIMEOUT" in answer


def test_rate_limited_identity_gets_429_with_retry_after(
    github_issuer: GitHubActionsIssuer, start_test_exchanger: StartExchanger,
) -> None:
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443",
                   "backend": "selfIssued"}],
        mappings=MAPPINGS, self_issued=self_issued_entry(), httpListen="127.0.0.1:0",
        rateLimit={"perIdentity": {"rate": "1/h", "burst": 1}})
    with OAuthClient.of(exchanger) as client:
        assert client.exchange(subject(github_issuer)).status == 200
        limited = client.exchange(subject(github_issuer))
    assert (limited.status, limited.refusal) == (429, ("temporarily_unavailable",
                                                       "RATE_LIMITED"))
    assert limited.headers["retry-after"] == "1"
