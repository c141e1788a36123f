"""The pure rules of signing in: PKCE, the callback's state, issuer and endpoint URLs, the
discovery document, the ID token's checks, the token endpoint's replies, the refresh decision.
Tokens are signed with real keys; nothing inside pyjwt is faked."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubegate.errors import UsageError
from kubegate.login.authorize import (
    AuthorizationRequest,
    authorization_url,
    code_challenge,
    code_from_callback,
    new_authorization_request,
)
from kubegate.login.discovery import check_issuer_url, parse_provider_metadata
from kubegate.login.errors import LoginError, OAuthError
from kubegate.login.idtoken import verify_id_token
from kubegate.login.store import needs_refresh
from kubegate.login.tokens import client_auth, parse_token_reply
from kubegate.login.transport import Reply

ISSUER = "https://id.example.com"
CLIENT = "kubegate-cli"
NOW = 1_800_000_000


# -- PKCE, state, nonce ----------------------------------------------------------------------


def test_the_s256_challenge_is_rfc_7636_appendix_b() -> None:
    octets = bytes([116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
                    22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121])
    verifier = base64.urlsafe_b64encode(octets).rstrip(b"=").decode()
    assert verifier == "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_each_sign_in_has_its_own_43_character_secrets() -> None:
    first, second = (new_authorization_request("http://127.0.0.1:1/callback") for _ in "ab")
    for request in (first, second):
        assert {len(request.state), len(request.nonce), len(request.verifier)} == {43}
    assert len({first.state, first.nonce, first.verifier, second.state, second.verifier}) == 5
    assert first.verifier not in repr(first) and first.state not in repr(first)


def test_the_authorization_url_asks_for_s256_and_never_carries_the_verifier() -> None:
    request = new_authorization_request("http://127.0.0.1:5/callback")
    url = authorization_url("https://id.example.com/auth?tenant=a", client_id=CLIENT,
                            scopes=("openid", "email"), request=request)
    assert url.startswith("https://id.example.com/auth?tenant=a&response_type=code&")
    assert f"code_challenge={code_challenge(request.verifier)}" in url
    assert "code_challenge_method=S256" in url and request.verifier not in url
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A5%2Fcallback" in url


REQUEST = AuthorizationRequest(redirect_uri="http://127.0.0.1:5/callback", state="s" * 43,
                               nonce="n" * 43, verifier="v" * 43)


def test_a_callback_with_our_state_gives_its_code() -> None:
    assert code_from_callback({"state": ["s" * 43], "code": ["abc"]}, REQUEST) == "abc"


@pytest.mark.parametrize("query", [
    {"code": ["abc"]},                                        # no state
    {"state": [""], "code": ["abc"]},                         # empty state
    {"state": ["s" * 42 + "t"], "code": ["abc"]},             # another state
    {"state": ["s" * 43, "s" * 43], "code": ["abc"]},         # two states
    {"state": ["s" * 43 + "s"], "code": ["abc"]},             # longer
    {"state": ["s" * 43], "error": ["access_denied"]},        # refusal with our state: below
], ids=["missing", "empty", "other", "twice", "longer", "error"])
def test_a_callback_without_exactly_our_state_is_refused(query: dict[str, list[str]]) -> None:
    with pytest.raises(LoginError) as caught:
        code_from_callback(query, REQUEST)
    if "error" in query:
        assert isinstance(caught.value, OAuthError) and caught.value.error == "access_denied"
    else:
        assert "state does not match" in str(caught.value)


def test_a_callback_without_one_code_is_refused() -> None:
    with pytest.raises(LoginError, match="no authorization code"):
        code_from_callback({"state": ["s" * 43], "code": ["a", "b"]}, REQUEST)


# -- issuer and endpoint URLs ----------------------------------------------------------------


@pytest.mark.parametrize("issuer", [
    "https://id.example.com", "https://id.example.com/dex", "http://127.0.0.1:5556",
    "http://127.9.8.7", "http://[::1]:8080/dex", "http://localhost:5556", "http://LOCALHOST",
])
def test_https_or_loopback_http_issuers_are_allowed(issuer: str) -> None:
    check_issuer_url(issuer)


@pytest.mark.parametrize("issuer", [
    "http://example.com", "http://127.0.0.1.example.com", "http://[::ffff:8.8.8.8]",
    "http://0.0.0.0", "http://localhost.evil", "http://localhost.", "http://127.1",
    "http://[::]", "http://10.0.0.1", "http://evil.com#@127.0.0.1", "http://127.0.0.1@evil.com",
    "http://user:pw@127.0.0.1", "https://id.example.com?x=1", "https://id.example.com#f",
    "ftp://127.0.0.1", "https://", "id.example.com", "", "http://127.0.0.1:99999",
])
def test_other_issuers_are_refused_as_usage_errors(issuer: str) -> None:
    with pytest.raises(UsageError, match="--issuer"):
        check_issuer_url(issuer)


def discovery(**changes: object) -> bytes:
    document: dict[str, object] = {
        "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/keys",
        "device_authorization_endpoint": f"{ISSUER}/device/code"}
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def test_a_complete_discovery_document_gives_the_endpoints() -> None:
    metadata = parse_provider_metadata(discovery(), ISSUER, device=True)
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert metadata.device_authorization_endpoint == f"{ISSUER}/device/code"


@pytest.mark.parametrize("missing", ["authorization_endpoint", "token_endpoint", "jwks_uri",
                                     "device_authorization_endpoint"])
def test_each_missing_endpoint_is_named(missing: str) -> None:
    with pytest.raises(LoginError, match=f"has no {missing}") as caught:
        parse_provider_metadata(discovery(**{missing: None}), ISSUER, device=True)
    assert "\n" not in str(caught.value)


def test_the_device_endpoint_is_needed_only_for_the_device_grant() -> None:
    parse_provider_metadata(discovery(device_authorization_endpoint=None), ISSUER,
                            device=False)


@pytest.mark.parametrize("published", [ISSUER + "/", "https://ID.example.com",
                                       "https://other.example.com", None, 5])
def test_the_published_issuer_must_equal_the_url_byte_for_byte(published: object) -> None:
    with pytest.raises(LoginError, match="names issuer"):
        parse_provider_metadata(discovery(issuer=published), ISSUER, device=False)


@pytest.mark.parametrize("endpoint", ["http://id.example.com/token", "http://0.0.0.0/token",
                                      "file:///etc/passwd", "//id.example.com/token"])
def test_an_endpoint_off_https_is_refused(endpoint: str) -> None:
    with pytest.raises(LoginError, match="token_endpoint .* is not https"):
        parse_provider_metadata(discovery(token_endpoint=endpoint), ISSUER, device=False)


def test_loopback_http_endpoints_are_allowed_for_a_loopback_issuer() -> None:
    issuer = "http://127.0.0.1:5556"
    body = json.dumps({"issuer": issuer, "authorization_endpoint": f"{issuer}/auth",
                       "token_endpoint": "http://[::1]:5556/token",
                       "jwks_uri": "http://localhost:5556/keys"}).encode()
    assert parse_provider_metadata(body, issuer, device=False).jwks_uri.endswith("/keys")


@pytest.mark.parametrize("body", [b"not json", b"[]", b"\xff"])
def test_a_document_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(LoginError, match="discovery document"):
        parse_provider_metadata(body, ISSUER, device=False)


# -- the ID token ----------------------------------------------------------------------------


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks(*keys: tuple[Any, str, str]) -> dict[str, Any]:
    entries = []
    for key, kid, alg in keys:
        entry = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(
            key.public_key()))
        entries.append({**entry, "kid": kid, "alg": alg, "use": "sig"})
    return {"keys": entries}


KEYS = jwks((RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256"))


def id_token(*, key: Any = RSA_KEY, kid: str = "rsa-1", alg: str = "RS256",
             **claims: Any) -> str:
    body = {"iss": ISSUER, "aud": CLIENT, "sub": "user-alice", "iat": NOW, "exp": NOW + 600,
            "nonce": "n" * 43, "email": "alice@example.com", "groups": ["sre", "eng"]}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": kid})


def verify(token: str, *, nonce: str | None = "n" * 43, now: float = NOW) -> Any:
    return verify_id_token(token, KEYS, issuer=ISSUER, client_id=CLIENT, nonce=nonce, now=now)


def test_a_good_id_token_gives_its_person() -> None:
    token = verify(id_token())
    assert (token.who, token.groups, token.expires_at) == ("alice@example.com",
                                                          ("sre", "eng"), NOW + 600)
    assert verify(id_token(key=EC_KEY, kid="ec-1", alg="ES256")).subject == "user-alice"
    assert verify(id_token(aud=["other", CLIENT], email=None)).who == "user-alice"


@pytest.mark.parametrize(("token", "nonce", "why"), [
    (id_token(iss="https://evil.example.com"), "n" * 43, "InvalidIssuerError"),
    (id_token(aud="other-client"), "n" * 43, "InvalidAudienceError"),
    (id_token(exp=NOW - 120), "n" * 43, "ExpiredSignatureError|has expired"),
    (id_token(exp=None), "n" * 43, "MissingRequiredClaimError"),
    (id_token(sub=None), "n" * 43, "MissingRequiredClaimError"),
    (id_token(nonce="m" * 43), "n" * 43, "nonce"),
    (id_token(nonce=None), "n" * 43, "nonce"),
    (id_token(key=OTHER_KEY), "n" * 43, "InvalidSignatureError"),
    (id_token(kid="unknown"), "n" * 43, "not signed by a key"),
    (id_token(key=EC_KEY, kid="rsa-1", alg="ES256"), "n" * 43, "not signed by a key"),
    (jwt.encode({"iss": ISSUER}, "secret-secret-secret-secret-secret", algorithm="HS256"),
     None, "algorithm 'HS256' is not allowed"),
    ("not-a-jwt", None, "cannot be read"),
])
def test_an_id_token_failing_a_check_is_refused(token: str, nonce: str | None,
                                                why: str) -> None:
    with pytest.raises(LoginError, match=why) as caught:
        verify(token, nonce=nonce)
    assert token not in str(caught.value)


def test_a_refreshed_id_token_needs_no_nonce() -> None:
    assert verify(id_token(nonce=None), nonce=None).subject == "user-alice"


def test_an_unsigned_token_is_refused() -> None:
    unsigned = jwt.encode({"iss": ISSUER, "aud": CLIENT}, None, algorithm="none")
    with pytest.raises(LoginError, match="'none' is not allowed"):
        verify(unsigned, nonce=None)


# -- the token endpoint ----------------------------------------------------------------------


def test_a_token_reply_gives_the_tokens_and_hides_them_in_its_repr() -> None:
    reply = parse_token_reply(Reply(status=200, body=json.dumps(
        {"id_token": "a.b.c", "refresh_token": "r-secret", "access_token": "x"}).encode()), "t")
    assert (reply.id_token, reply.refresh_token) == ("a.b.c", "r-secret")
    assert "r-secret" not in repr(reply) and "a.b.c" not in repr(reply)


@pytest.mark.parametrize(("status", "body", "message"), [
    (400, {"error": "invalid_grant", "error_description": "Refresh token is invalid"},
     "t: invalid_grant: Refresh token is invalid"),
    (401, {"error": "invalid_client"}, "t: invalid_client"),
    (200, {"access_token": "x"}, "t: the reply has no id_token"),
    (500, "oops", "t: HTTP 500 without a JSON answer"),
    (503, {"detail": "x"}, "t: HTTP 503"),
])
def test_a_token_error_reply_is_one_line(status: int, body: object, message: str) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(LoginError) as caught:
        parse_token_reply(Reply(status=status, body=raw), "t")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_confidential_client_authenticates_with_basic_and_a_public_one_in_the_form() -> None:
    assert client_auth("cli", "") == ({"client_id": "cli"}, None)
    fields, auth = client_auth("a b", "s:e/c")
    assert fields == {} and auth is not None
    assert auth.header() == "Basic " + base64.b64encode(b"a%20b:s%3Ae%2Fc").decode()
    assert "s:e/c" not in repr(auth)


# -- when to refresh -------------------------------------------------------------------------


@pytest.mark.parametrize(("left", "refresh"), [(3600, False), (61, False), (60, True),
                                               (1, True), (0, True), (-5, True)])
def test_the_id_token_is_refreshed_within_a_minute_of_expiry(left: int, refresh: bool) -> None:
    now = time.time()
    assert needs_refresh(now + left, now) is refresh


@pytest.mark.parametrize("issuer", [
    "https://alice:hunter2-secret@sso.example.com",
    "https://alice:hunter2-secret@sso.example.com/?q=1",
    "https://:hunter2-secret@sso.example.com#frag",
    "http://alice:hunter2-secret@127.0.0.1:5556",
])
def test_an_issuer_url_with_credentials_is_refused_without_echoing_them(issuer: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_issuer_url(issuer)
    assert "user name or password" in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)
