"""parse_compact: every shape a verifier must never have to reason about is refused, with a
specific reason and a detail that carries no token bytes."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanger.verify.compact import ParsedToken, parse_compact
from kubegate.errors import InvalidTokenError

HEADER = {"alg": "RS256", "kid": "key-1", "typ": "JWT"}
PAYLOAD = {"iss": "https://issuer.example", "sub": "repo:octo/app", "aud": "kubegate"}
SIGNATURE = b"\x01" * 256


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: object) -> str:
    return b64(json.dumps(value).encode())


def token(header: object = None, payload: object = None, signature: bytes = SIGNATURE) -> str:
    header = HEADER if header is None else header
    payload = PAYLOAD if payload is None else payload
    return f"{segment(header)}.{segment(payload)}.{b64(signature)}"


def raw_token(header: bytes, payload: bytes = b'{"sub":"x"}') -> str:
    return f"{b64(header)}.{b64(payload)}.{b64(SIGNATURE)}"


def with_header(**changes: object) -> str:
    return token(header={**HEADER, **changes})


def without_header(name: str) -> str:
    return token(header={k: v for k, v in HEADER.items() if k != name})


def noncanonical(encoded: str) -> str:
    """The same bytes spelt with non-zero unused bits in the last character."""
    assert len(encoded) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(encoded[-1]) ^ 1]
    spelt = encoded[:-1] + last
    padded = spelt + "=" * (-len(spelt) % 4)
    assert base64.urlsafe_b64decode(padded) == base64.urlsafe_b64decode(
        encoded + "=" * (-len(encoded) % 4)
    )
    return spelt


def _noncanonical_signature_token() -> str:
    header, payload, signature = token(signature=b"\x01\x02").split(".")
    return f"{header}.{payload}.{noncanonical(signature)}"


REFUSED = {
    # size and overall shape
    "over the size cap": ("a" * 16385, "TOKEN_TOO_LARGE"),
    "size checked before shape": ("{" * 20000, "TOKEN_TOO_LARGE"),
    "JSON serialisation": (
        json.dumps({"payload": segment(PAYLOAD), "signatures": [{"signature": "c2ln"}]}),
        "MALFORMED_TOKEN",
    ),
    "flattened JSON serialisation": ('{"payload":"e30","signature":"c2ln"}', "MALFORMED_TOKEN"),
    "five segments is a JWE": ("aGVhZA.a2V5.aXY.Y2lwaGVy.dGFn", "ENCRYPTED_TOKEN"),
    "two segments": (token().rsplit(".", 1)[0], "MALFORMED_TOKEN"),
    "four segments": (token() + ".c2ln", "MALFORMED_TOKEN"),
    "many dots": ("." * 1000, "MALFORMED_TOKEN"),
    "empty token": ("", "MALFORMED_TOKEN"),
    "leading whitespace": (" " + token(), "MALFORMED_TOKEN"),
    "trailing newline": (token() + "\n", "MALFORMED_TOKEN"),
    "bearer prefix": ("Bearer " + token(), "MALFORMED_TOKEN"),
    # base64url
    "padding": (segment(HEADER) + "==." + segment(PAYLOAD) + "." + b64(SIGNATURE),
                "MALFORMED_TOKEN"),
    "standard base64 alphabet": (token().replace("-", "+").replace("_", "/") + "+/",
                                 "MALFORMED_TOKEN"),
    "impossible length": (token().split(".")[0] + "." + "a" * 5 + "." + b64(SIGNATURE),
                          "MALFORMED_TOKEN"),
    "non-canonical base64url signature": (_noncanonical_signature_token(), "MALFORMED_TOKEN"),
    "non-canonical base64url header": (
        noncanonical(b64(b'{"alg":"RS256" }')) + "." + segment(PAYLOAD) + "." + b64(SIGNATURE),
        "MALFORMED_TOKEN",
    ),
    "empty header segment": ("." + segment(PAYLOAD) + "." + b64(SIGNATURE), "MALFORMED_TOKEN"),
    "empty signature (null signature)": (token(signature=b""), "MALFORMED_TOKEN"),
    # JSON
    "header not UTF-8": (raw_token(b'{"alg":"RS256","x":"\xff"}'), "MALFORMED_TOKEN"),
    "header in UTF-16": (raw_token('{"alg":"RS256"}'.encode("utf-16")), "MALFORMED_TOKEN"),
    "payload not UTF-8": (raw_token(b'{"alg":"RS256"}', b'{"sub":"\xc3"}'), "MALFORMED_TOKEN"),
    "header not JSON": (raw_token(b"alg=RS256"), "MALFORMED_TOKEN"),
    "header a JSON array": (token(header=["RS256"]), "MALFORMED_TOKEN"),
    "payload a JSON string": (token(payload="claims"), "MALFORMED_TOKEN"),
    "payload JSON null": (raw_token(b'{"alg":"RS256"}', b"null"), "MALFORMED_TOKEN"),
    "duplicate key in header": (raw_token(b'{"alg":"RS256","alg":"none"}'), "MALFORMED_TOKEN"),
    "duplicate key in payload": (
        raw_token(b'{"alg":"RS256"}', b'{"sub":"a","sub":"b"}'), "MALFORMED_TOKEN"),
    "duplicate key nested in payload": (
        raw_token(b'{"alg":"RS256"}', b'{"x":{"a":1,"a":2}}'), "MALFORMED_TOKEN"),
    "NaN in payload": (raw_token(b'{"alg":"RS256"}', b'{"exp":NaN}'), "MALFORMED_TOKEN"),
    "Infinity in payload": (raw_token(b'{"alg":"RS256"}', b'{"exp":Infinity}'), "MALFORMED_TOKEN"),
    "-Infinity in payload": (raw_token(b'{"alg":"RS256"}', b'{"nbf":-Infinity}'),
                             "MALFORMED_TOKEN"),
    "trailing data after JSON": (raw_token(b'{"alg":"RS256"} {}'), "MALFORMED_TOKEN"),
    "deeply nested payload": (raw_token(b'{"alg":"RS256"}', b'{"a":' + b"[" * 5000 + b"]" * 5000
                                        + b"}"), "MALFORMED_TOKEN"),
    "integer with thousands of digits": (raw_token(b'{"alg":"RS256"}', b'{"exp":' + b"9" * 5000
                                                   + b"}"), "MALFORMED_TOKEN"),
    # alg
    "no alg": (without_header("alg"), "INVALID_HEADER"),
    "alg null": (with_header(alg=None), "INVALID_HEADER"),
    "alg a number": (with_header(alg=256), "INVALID_HEADER"),
    "alg an array": (with_header(alg=["RS256"]), "INVALID_HEADER"),
    "alg none": (with_header(alg="none"), "DISALLOWED_ALGORITHM"),
    "alg None": (with_header(alg="None"), "DISALLOWED_ALGORITHM"),
    "alg NONE": (with_header(alg="NONE"), "DISALLOWED_ALGORITHM"),
    "alg nOnE": (with_header(alg="nOnE"), "DISALLOWED_ALGORITHM"),
    "alg none with empty signature": (token(header={"alg": "none"}, signature=b""),
                                      "DISALLOWED_ALGORITHM"),
    "alg HS256": (with_header(alg="HS256"), "DISALLOWED_ALGORITHM"),
    "alg HS512": (with_header(alg="HS512"), "DISALLOWED_ALGORITHM"),
    "alg in other case": (with_header(alg="rs256"), "DISALLOWED_ALGORITHM"),
    "alg empty": (with_header(alg=""), "DISALLOWED_ALGORITHM"),
    "alg of a JWE": (with_header(alg="RSA-OAEP"), "DISALLOWED_ALGORITHM"),
    "alg with trailing space": (with_header(alg="RS256 "), "DISALLOWED_ALGORITHM"),
    # headers that import keys or semantics from the token
    "jku": (with_header(jku="https://attacker.example/jwks"), "FORBIDDEN_HEADER"),
    "x5u": (with_header(x5u="https://attacker.example/cert.pem"), "FORBIDDEN_HEADER"),
    "jwk": (with_header(jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}), "FORBIDDEN_HEADER"),
    "x5c": (with_header(x5c=["MIIB"]), "FORBIDDEN_HEADER"),
    "crit": (with_header(crit=["exp"], exp=1), "FORBIDDEN_HEADER"),
    "crit empty": (with_header(crit=[]), "FORBIDDEN_HEADER"),
    "b64 false": (with_header(b64=False, crit=["b64"]), "FORBIDDEN_HEADER"),
    "zip": (with_header(zip="DEF"), "FORBIDDEN_HEADER"),
    "enc is a JWE": (with_header(enc="A256GCM"), "ENCRYPTED_TOKEN"),
    "cty JWT is a nested token": (with_header(cty="JWT"), "NESTED_TOKEN"),
    "cty jwt is a nested token": (with_header(cty="jwt"), "NESTED_TOKEN"),
    "cty other": (with_header(cty="application/xml"), "FORBIDDEN_HEADER"),
    "typ for access tokens": (with_header(typ="at+jwt"), "WRONG_TOKEN_TYPE"),
    "typ for security events": (with_header(typ="secevent+jwt"), "WRONG_TOKEN_TYPE"),
    "typ not a string": (with_header(typ=1), "WRONG_TOKEN_TYPE"),
    # kid
    "kid a number": (with_header(kid=7), "INVALID_HEADER"),
    "kid null": (with_header(kid=None), "INVALID_HEADER"),
    "kid an object": (with_header(kid={"$ne": ""}), "INVALID_HEADER"),
    "kid empty": (with_header(kid=""), "INVALID_HEADER"),
    "kid too long": (with_header(kid="k" * 257), "INVALID_HEADER"),
    "kid with a control character": (with_header(kid="a\nb"), "INVALID_HEADER"),
    "kid with a NUL": (with_header(kid="a\x00"), "INVALID_HEADER"),
}


@pytest.mark.parametrize(("text", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_parse_refuses_with_a_specific_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        parse_compact(text)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("text", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_refusal_messages_never_contain_token_bytes(text: str, reason: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        parse_compact(text)
    error = caught.value
    for piece in (p for p in text.split(".") if len(p) >= 8):
        for said in (str(error), error.detail, error.public_message, repr(error)):
            assert piece not in said


def test_size_cap_is_configurable() -> None:
    with pytest.raises(InvalidTokenError) as caught:
        parse_compact(token(), max_bytes=100)
    assert caught.value.reason == "TOKEN_TOO_LARGE"


def test_a_token_exactly_at_the_cap_is_parsed() -> None:
    text = token()
    assert parse_compact(text, max_bytes=len(text)).algorithm == "RS256"


def test_non_string_token_is_refused_as_malformed() -> None:
    with pytest.raises(InvalidTokenError) as caught:
        parse_compact(token().encode())  # type: ignore[arg-type]
    assert caught.value.reason == "MALFORMED_TOKEN"


def test_well_formed_token_yields_header_payload_signing_input_and_signature() -> None:
    text = token()
    parsed = parse_compact(text)
    assert parsed.header == HEADER
    assert parsed.payload == PAYLOAD
    assert parsed.signing_input == text.rsplit(".", 1)[0].encode("ascii")
    assert parsed.signature == SIGNATURE
    assert parsed.key_id == "key-1"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "ES256"},
        {"alg": "RS256", "typ": "jwt"},
        {"alg": "PS256", "typ": "application/jwt"},
        {"alg": "RS256", "kid": "../../../../dev/null"},
        {"alg": "RS256", "kid": "x' UNION SELECT '1';--"},
        {"alg": "RS256", "x5t": "thumbprint", "kid": "k"},
        {"alg": "EdDSA", "kid": "k" * 256},
    ],
    ids=["minimal", "typ lower case", "typ media type", "kid path-like", "kid sql-like",
         "x5t ignored", "kid at the length limit"],
)
def test_accepted_headers(header: dict[str, object]) -> None:
    assert parse_compact(token(header=header)).header == header


def test_kid_is_none_when_absent() -> None:
    assert parse_compact(without_header("kid")).key_id is None


def test_repr_of_a_parsed_token_shows_no_token_material() -> None:
    parsed = parse_compact(token())
    assert repr(parsed) == "ParsedToken(alg='RS256', kid='key-1')"


def test_parsed_token_is_frozen() -> None:
    parsed = parse_compact(token())
    with pytest.raises(AttributeError):
        parsed.signature = b""  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_parsed_or_refused_never_crashes(text: str) -> None:
    try:
        parsed = parse_compact(text)
    except InvalidTokenError:
        return
    assert isinstance(parsed, ParsedToken)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=100))
def test_arbitrary_segments_are_parsed_or_refused_never_crash(
    header: bytes, payload: bytes, signature: bytes
) -> None:
    with contextlib.suppress(InvalidTokenError):
        parse_compact(f"{b64(header)}.{b64(payload)}.{b64(signature)}")
