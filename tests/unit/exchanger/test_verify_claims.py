"""check_claims: issuer, subject, audience and time rules on a payload whose signature is valid.

The audience rule pinned here: a token is accepted when at least one of its audiences is among
the issuer's accepted audiences (RFC 7519 §4.1.3), including an array with ours beside others.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanger.verify.claims import check_claims
from exchanger.verify.issuers import IssuerConfig
from kubegate.errors import InvalidTokenError

URL = "https://token.actions.githubusercontent.com"
NOW = 1_750_000_000
ISSUER = IssuerConfig(
    name="github", url=URL, audiences=("kubegate", "sts.example"),
    max_token_lifetime=3600, leeway=30,
)
PAYLOAD: dict[str, object] = {
    "iss": URL, "sub": "repo:octo-org/app:ref:refs/heads/main", "aud": "kubegate",
    "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 240, "jti": "token-1",
}
MISSING = object()


def payload(**changes: object) -> dict[str, object]:
    changed = {**PAYLOAD, **changes}
    return {name: value for name, value in changed.items() if value is not MISSING}


BAD_NUMERIC_DATES = {
    "a numeric string": str(NOW + 100),
    "a float": float(NOW + 100),
    "a fractional float": NOW + 100.5,
    "true": True,
    "false": False,
    "huge float": 1e300,
    "2**40": 2**40,
    "2**63": 2**63,
    "zero": 0,
    "negative": -1,
    "null": None,
    "an array": [NOW + 100],
}

REFUSED = {
    # iss
    "iss missing": (payload(iss=MISSING), "MISSING_CLAIM"),
    "iss with a trailing slash": (payload(iss=URL + "/"), "WRONG_ISSUER"),
    "iss as a longer string": (payload(iss=URL + ".evil.example"), "WRONG_ISSUER"),
    "iss as a prefix of ours": (payload(iss="https://token.actions"), "WRONG_ISSUER"),
    "iss in other case": (payload(iss=URL.upper()), "WRONG_ISSUER"),
    "iss with http": (payload(iss=URL.replace("https", "http")), "WRONG_ISSUER"),
    "iss as an array holding ours": (payload(iss=[URL]), "WRONG_ISSUER"),
    "iss as an object": (payload(iss={"url": URL}), "WRONG_ISSUER"),
    "iss empty": (payload(iss=""), "WRONG_ISSUER"),
    # sub
    "sub missing": (payload(sub=MISSING), "MISSING_CLAIM"),
    "sub empty": (payload(sub=""), "INVALID_CLAIM"),
    "sub a number": (payload(sub=1234), "INVALID_CLAIM"),
    "sub an array": (payload(sub=["repo:octo-org/app"]), "INVALID_CLAIM"),
    "sub null": (payload(sub=None), "INVALID_CLAIM"),
    # aud
    "aud missing": (payload(aud=MISSING), "MISSING_CLAIM"),
    "aud someone else": (payload(aud="https://github.com/octo-org"), "WRONG_AUDIENCE"),
    "aud ours in other case": (payload(aud="KUBEGATE"), "WRONG_AUDIENCE"),
    "aud ours as a prefix": (payload(aud="kubegate-prod"), "WRONG_AUDIENCE"),
    "aud array without ours": (payload(aud=["a", "b"]), "WRONG_AUDIENCE"),
    "aud empty array": (payload(aud=[]), "INVALID_CLAIM"),
    "aud empty string": (payload(aud=""), "INVALID_CLAIM"),
    "aud array of numbers": (payload(aud=[1, 2]), "INVALID_CLAIM"),
    "aud array of ours and a number": (payload(aud=["kubegate", 1]), "INVALID_CLAIM"),
    "aud array with an empty string": (payload(aud=["kubegate", ""]), "INVALID_CLAIM"),
    "aud nested array": (payload(aud=[["kubegate"]]), "INVALID_CLAIM"),
    "aud an object": (payload(aud={"kubegate": True}), "INVALID_CLAIM"),
    "aud null": (payload(aud=None), "INVALID_CLAIM"),
    "aud a number": (payload(aud=1), "INVALID_CLAIM"),
    # jti
    "jti a number": (payload(jti=5), "INVALID_CLAIM"),
    "jti empty": (payload(jti=""), "INVALID_CLAIM"),
    # required dates
    "exp missing": (payload(exp=MISSING), "MISSING_CLAIM"),
    "iat missing": (payload(iat=MISSING), "MISSING_CLAIM"),
    **{f"exp {name}": (payload(exp=value), "INVALID_CLAIM")
       for name, value in BAD_NUMERIC_DATES.items()},
    **{f"iat {name}": (payload(iat=value), "INVALID_CLAIM")
       for name, value in BAD_NUMERIC_DATES.items()},
    **{f"nbf {name}": (payload(nbf=value), "INVALID_CLAIM")
       for name, value in BAD_NUMERIC_DATES.items()},
    # time
    "expired beyond the leeway": (payload(exp=NOW - 31), "TOKEN_EXPIRED"),
    "expired exactly at the leeway": (payload(exp=NOW - 30), "TOKEN_EXPIRED"),
    "expired long ago": (payload(iat=1000, nbf=1000, exp=2000), "TOKEN_EXPIRED"),
    "not valid before, beyond the leeway": (payload(nbf=NOW + 31), "TOKEN_NOT_YET_VALID"),
    "issued in the future beyond the leeway": (payload(iat=NOW + 31, nbf=MISSING),
                                               "ISSUED_IN_FUTURE"),
    "lifetime over the maximum": (payload(iat=NOW - 60, exp=NOW - 60 + 3601), "LIFETIME_TOO_LONG"),
    "lifetime of a year": (payload(iat=NOW - 60, exp=NOW + 365 * 86400), "LIFETIME_TOO_LONG"),
    "exp equal to iat": (payload(iat=NOW, nbf=MISSING, exp=NOW), "INVALID_CLAIM"),
    "exp before iat": (payload(iat=NOW + 10, nbf=MISSING, exp=NOW + 5), "INVALID_CLAIM"),
}


@pytest.mark.parametrize(("claims", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_claims_are_refused_with_a_specific_reason(claims: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        check_claims(claims, ISSUER, NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("claims", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_refusal_details_never_quote_claim_values(claims: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        check_claims(claims, ISSUER, NOW)
    assert "repo:octo-org" not in str(caught.value)
    assert "token-1" not in str(caught.value)


ACCEPTED = {
    "the usual token": payload(),
    "aud as an array holding ours beside others": payload(aud=["https://github.com/o", "kubegate"]),
    "aud is our second accepted audience": payload(aud="sts.example"),
    "aud array holding both of ours": payload(aud=["kubegate", "sts.example"]),
    "no nbf": payload(nbf=MISSING),
    "no jti": payload(jti=MISSING),
    "expired but within the leeway": payload(exp=NOW - 29),
    "nbf ahead but within the leeway": payload(nbf=NOW + 30),
    "iat ahead but within the leeway": payload(iat=NOW + 30, nbf=MISSING, exp=NOW + 600),
    "lifetime exactly the maximum": payload(iat=NOW - 60, exp=NOW - 60 + 3600),
    "unknown extra claims": payload(repository_id="74", nested={"a": [1, 2]}),
}


@pytest.mark.parametrize("claims", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_claims_are_accepted(claims: dict[str, object]) -> None:
    checked = check_claims(claims, ISSUER, NOW)
    assert checked.subject == claims["sub"]


def test_checked_claims_carry_the_typed_registered_claims() -> None:
    checked = check_claims(payload(aud=["x", "kubegate"]), ISSUER, NOW)
    assert checked.issuer_url == URL
    assert checked.audiences == ("x", "kubegate")
    assert (checked.issued_at, checked.not_before, checked.expires_at) == (
        NOW - 60, NOW - 60, NOW + 240)
    assert checked.token_id == "token-1"


def test_zero_leeway_refuses_a_token_at_its_expiry_second() -> None:
    strict = IssuerConfig(name="strict", url=URL, audiences=("kubegate",), leeway=0)
    with pytest.raises(InvalidTokenError) as caught:
        check_claims(payload(exp=NOW), strict, NOW)
    assert caught.value.reason == "TOKEN_EXPIRED"
    assert check_claims(payload(exp=NOW + 1), strict, NOW).expires_at == NOW + 1


@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=12), st.none()))
def test_any_exp_value_is_accepted_only_as_an_unexpired_bounded_integer(value: object) -> None:
    claims = payload(exp=value)
    try:
        check_claims(claims, ISSUER, NOW)
    except InvalidTokenError as error:
        assert error.reason in {"INVALID_CLAIM", "TOKEN_EXPIRED", "LIFETIME_TOO_LONG"}
        return
    assert type(value) is int
    assert NOW - 30 < value <= NOW - 60 + 3600
