"""The token-exchange form (RFC 8693 §2.1), strictly: content type, encoding, duplicates,
required parameters, grant type, scope, audiences and resources, requested token type."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from exchanger.oauth.form import (
    GRANT_TYPE,
    TokenExchangeForm,
    check_content_type,
    parse_form,
)
from kubegate.errors import InvalidRequestError

JWT = "urn:ietf:params:oauth:token-type:jwt"
SA = "urn:kubegate:token-type:kubernetes-service-account"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
BASE = [("grant_type", GRANT_TYPE), ("subject_token", TOKEN), ("subject_token_type", JWT)]


def form(*more: tuple[str, str], base: list[tuple[str, str]] = BASE) -> bytes:
    return urlencode([*base, *more]).encode()


def refused(body: bytes) -> tuple[str, str]:
    with pytest.raises(InvalidRequestError) as raised:
        parse_form(body)
    return raised.value.reason, raised.value.public_message


def test_a_whole_request_becomes_the_use_cases_fields() -> None:
    parsed = parse_form(form(("scope", "web-deploy"), ("audience", "a"), ("audience", "b"),
                             ("resource", "https://k8s.example.com"), ("audience", "a"),
                             ("requested_token_type", SA), ("requested_lifetime", "900"),
                             ("client_id", "ignored")))
    assert parsed == TokenExchangeForm(
        subject_token=TOKEN, subject_token_type=JWT, scope="web-deploy",
        audiences=("a", "b", "https://k8s.example.com"), requested_token_type=SA,
        requested_lifetime=900)
    assert TOKEN not in repr(parsed)


def test_the_minimal_request_names_no_scope_audience_or_type() -> None:
    assert parse_form(form()) == TokenExchangeForm(subject_token=TOKEN, subject_token_type=JWT)


def test_percent_escapes_and_plus_decode_as_in_any_form() -> None:
    parsed = parse_form(b"grant_type=" + GRANT_TYPE.replace(":", "%3A").encode()
                        + b"&subject_token=a%2Bb+c&subject_token_type=" + JWT.encode())
    assert parsed.subject_token == "a+b c"


@pytest.mark.parametrize("name", ["grant_type", "subject_token", "subject_token_type", "scope",
                                  "requested_token_type", "requested_lifetime", "unknown"])
def test_a_parameter_twice_is_refused_rfc6749_3_2(name: str) -> None:
    reason, message = refused(form((name, "x"), (name, "y")))
    assert reason == "DUPLICATE_PARAMETER"
    assert message == (f"{name} is given more than once" if name != "unknown"
                       else "a parameter is given more than once")


@pytest.mark.parametrize(("missing", "reason"), [
    ("grant_type", "MISSING_PARAMETER"), ("subject_token_type", "MISSING_PARAMETER"),
    ("subject_token", "MISSING_SUBJECT_TOKEN")])
def test_required_parameters(missing: str, reason: str) -> None:
    assert refused(form(base=[f for f in BASE if f[0] != missing]))[0] == reason


def test_an_empty_subject_token_is_left_to_the_use_case_which_refuses_it_like_grpc() -> None:
    parsed = parse_form(form(base=[("grant_type", GRANT_TYPE), ("subject_token", ""),
                                   ("subject_token_type", JWT)]))
    assert parsed.subject_token == ""


@pytest.mark.parametrize("grant", ["client_credentials", "authorization_code",
                                   GRANT_TYPE + " ", GRANT_TYPE.upper()])
def test_another_grant_type_is_unsupported(grant: str) -> None:
    body = form(base=[("grant_type", grant), *BASE[1:]])
    assert refused(body)[0] == "UNSUPPORTED_GRANT_TYPE"


@pytest.mark.parametrize("body", [
    b"grant_type", b"a=1&&b=2", b"a=%zz", b"a=%4", b"a=\xff", b"a=%ff%fe",
    b"&".join(b"f%d=1" % n for n in range(65)),
], ids=["no equals", "empty field", "bad escape", "short escape", "raw non-ASCII",
        "escapes not UTF-8", "too many fields"])
def test_a_body_that_is_not_a_strict_form_is_malformed(body: bytes) -> None:
    assert refused(body)[0] == "MALFORMED_FORM"


def test_actor_tokens_are_refused() -> None:
    assert refused(form(("actor_token", "x"), ("actor_token_type", JWT)))[0] == \
        "ACTOR_TOKEN_NOT_SUPPORTED"


@pytest.mark.parametrize("scope", ["two names", "quote\"", "back\\slash", "\u00e9"])
def test_scope_is_one_scope_token(scope: str) -> None:
    assert refused(form(("scope", scope)))[0] == "INVALID_SCOPE"


@pytest.mark.parametrize("resource", ["kubernetes", "/relative", "https://a#fragment",
                                      "https://[::1"])
def test_a_resource_is_an_absolute_uri_without_fragment(resource: str) -> None:
    assert refused(form(("resource", resource)))[0] == "INVALID_TARGET"


@pytest.mark.parametrize("wanted", ["urn:ietf:params:oauth:token-type:access_token",
                                    "urn:ietf:params:oauth:token-type:id_token", "jwt"])
def test_requested_token_type_is_empty_jwt_or_the_service_account_urn(wanted: str) -> None:
    assert refused(form(("requested_token_type", wanted)))[0] == \
        "UNSUPPORTED_REQUESTED_TOKEN_TYPE"


@pytest.mark.parametrize("lifetime", ["-1", "1.5", "15m", "1" * 10, "\u0661"])
def test_requested_lifetime_is_whole_seconds(lifetime: str) -> None:
    assert refused(form(("requested_lifetime", lifetime)))[0] == "INVALID_LIFETIME"


def test_no_error_quotes_the_token() -> None:
    for body in (form(("scope", "a b")), form(("subject_token", TOKEN))):
        with pytest.raises(InvalidRequestError) as raised:
            parse_form(body)
        assert TOKEN not in str(raised.value)


@pytest.mark.parametrize("value", [
    "application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    'application/x-www-form-urlencoded;charset="utf-8"'])
def test_the_form_content_type_is_accepted(value: str) -> None:
    check_content_type([value])


@pytest.mark.parametrize("values", [
    [], ["application/json"], ["text/plain"], ["multipart/form-data; boundary=x"],
    ["application/x-www-form-urlencoded; charset=latin-1"],
    ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded"]])
def test_another_content_type_is_refused(values: list[str]) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        check_content_type(values)
    assert raised.value.reason == "WRONG_CONTENT_TYPE"
