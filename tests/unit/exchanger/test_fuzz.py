r"""Fuzzing the parser, the verifier and the matcher with hypothesis.

Properties, each under the `KUBEGATE_FUZZ_PROFILE` profile (tests/support/hypothesis_profiles.py:
`ci` by default, `long` for 20,000 examples each), each with a per-example deadline:
- no input crashes `parse_compact`, `Verifier.verify` or `MappingSet.match`: they return, or raise
  one of kubegate's errors, never anything else;
- whatever the verifier accepts satisfies every documented claim rule (checked by an oracle
  written from the README's rules, not from the code);
- every single-character mutation (replacement, deletion, insertion, bit flip) of a valid token
  is refused, including other spellings of the same bytes (base64url's unused bits);
- a glob or regex condition never allows a value its intent excludes: globs against an
  independent matcher, regex classes (\d, \w, case folding) against ASCII oracles, and the
  matcher's decision against an oracle that evaluates every condition with strict JSON types.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import assume, given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

from exchanger.identity import Identity
from exchanger.mappings import Condition, Grant, MappingSet, Operator, TrustMapping
from exchanger.verify import (
    SUPPORTED_ALGORITHMS,
    TOKEN_REASONS,
    IssuerConfig,
    KeyCache,
    ParsedToken,
    StaticKeys,
    Verifier,
    parse_compact,
)
from kubegate.errors import InvalidRequestError, InvalidTokenError, PermissionDeniedError
from tests.support.hypothesis_profiles import FUZZ

NOW = 1_750_000_000
ES_URL, RS_URL = "https://es.issuer.example", "https://rs.issuer.example"
AUDIENCE = "kubegate"
MAX_LIFETIME, LEEWAY = 3600, 30
ES_KEY = ec.generate_private_key(ec.SECP256R1())
RS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MISSING = object()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwks(key: Any, kid: str, alg: str) -> dict[str, Any]:
    converter = ECAlgorithm if alg == "ES256" else RSAAlgorithm
    return {"keys": [converter.to_jwk(key.public_key(), as_dict=True) | {"kid": kid, "alg": alg}]}


ISSUERS = (
    IssuerConfig(name="es", url=ES_URL, audiences=(AUDIENCE,), algorithms=("ES256",),
                 key_source=StaticKeys(jwks=jwks(ES_KEY, "es-1", "ES256")),
                 max_token_lifetime=MAX_LIFETIME, leeway=LEEWAY),
    IssuerConfig(name="rs", url=RS_URL, audiences=(AUDIENCE, "other"), algorithms=("RS256",),
                 key_source=StaticKeys(jwks=jwks(RS_KEY, "rs-1", "RS256")),
                 max_token_lifetime=MAX_LIFETIME, leeway=LEEWAY),
)


class NoFetcher:
    """Static keys never reach a fetcher."""

    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        raise AssertionError("static keys were fetched")


def verifier() -> Verifier:
    clock = lambda: float(NOW)  # noqa: E731
    return Verifier(ISSUERS, KeyCache(NoFetcher(), clock), clock, cache_size=0)


VERIFIER = verifier()


def sign(payload: Mapping[str, Any] | bytes, *, alg: str = "ES256",
         header: Mapping[str, Any] | None = None) -> str:
    head = header if header is not None else {
        "alg": alg, "kid": "es-1" if alg == "ES256" else "rs-1", "typ": "JWT"}
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(body)}".encode()
    key = ES_KEY if alg == "ES256" else RS_KEY
    return f"{signing_input.decode()}.{b64(get_default_algorithms()[alg].sign(signing_input, key))}"


def valid_claims(iss: str = ES_URL) -> dict[str, Any]:
    return {"iss": iss, "sub": "repo:octo-org/web:ref:refs/heads/main", "aud": AUDIENCE,
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 300, "jti": "j-1",
            "repository_id": "74"}


VALID_TOKENS = (sign(valid_claims()), sign(valid_claims(RS_URL), alg="RS256"))

# -- strategies -----------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=24))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
tokenish_text = st.text(alphabet=B64URL + ".=+/ \n{}\"", max_size=600)
HEADER_NAMES = ("alg", "kid", "typ", "cty", "crit", "jku", "jwk", "x5u", "x5c", "x5t", "enc",
                "zip", "b64")
algorithms = st.sampled_from(sorted(SUPPORTED_ALGORITHMS) + [
    "none", "None", "HS256", "hs256", "RS256 ", "", "ES256\x00"]) | st.text(max_size=8)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=6),
                          json_values, max_size=6).flatmap(
    lambda h: st.builds(lambda alg: h | {"alg": alg}, algorithms) | st.just(h))


def date_claims(valid: int) -> st.SearchStrategy[object]:
    near = st.integers(min_value=valid - 5000, max_value=valid + 5000)
    odd = st.sampled_from([str(valid), float(valid), True, -1, 0, 2**40, 2**62, 10**30, 1e300])
    return st.one_of(st.just(valid), near, odd, json_values, st.just(MISSING))


claim_sets = st.fixed_dictionaries({
    "iss": st.sampled_from([ES_URL, ES_URL + "/", ES_URL.upper(), [ES_URL], RS_URL,
                            "https://es.issuer.exampl", MISSING]) | json_values,
    "sub": st.sampled_from(["repo:a/b:ref:refs/heads/main", "", MISSING]) | json_values,
    "aud": st.sampled_from([AUDIENCE, [AUDIENCE, "x"], ["x", AUDIENCE], ["x"], [], "",
                            AUDIENCE + " ", [AUDIENCE, 1], MISSING]) | json_values,
    "iat": date_claims(NOW - 60),
    "nbf": date_claims(NOW - 60),
    "exp": date_claims(NOW + 300),
    "jti": st.sampled_from(["j", "", MISSING]) | json_values,
}).map(lambda claims: {k: v for k, v in claims.items() if v is not MISSING})

# -- the parser -----------------------------------------------------------------------------------


def parse_or_refuse(text: str) -> ParsedToken | None:
    try:
        return parse_compact(text)
    except InvalidTokenError as error:
        assert error.reason in TOKEN_REASONS
        return None


@FUZZ
@given(st.text(max_size=2000) | tokenish_text)
def test_parser_parses_or_refuses_any_text(text: str) -> None:
    parse_or_refuse(text)


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=300), st.binary(max_size=80))
def test_parser_parses_or_refuses_any_segment_bytes(header: bytes, payload: bytes,
                                                     signature: bytes) -> None:
    parse_or_refuse(f"{b64(header)}.{b64(payload)}.{b64(signature)}")


@FUZZ
@given(headers, json_values, st.binary(max_size=80))
def test_whatever_the_parser_accepts_has_a_safe_header(header: dict[str, Any], payload: Any,
                                                       signature: bytes) -> None:
    parts = (json.dumps(header).encode(), json.dumps(payload).encode(), signature)
    token = ".".join(b64(part) for part in parts)
    parsed = parse_or_refuse(token)
    if parsed is None:
        return
    assert parsed.header["alg"] in SUPPORTED_ALGORITHMS
    assert not {"jku", "jwk", "x5u", "x5c", "crit", "cty", "enc", "zip", "b64"} & set(parsed.header)
    assert parsed.header.get("typ") in (None, "JWT", "jwt") or str(
        parsed.header["typ"]).lower() in ("jwt", "application/jwt")
    assert parsed.key_id is None or (0 < len(parsed.key_id) <= 256 and parsed.key_id.isprintable())
    assert isinstance(parsed.payload, dict) and parsed.signature == signature


# -- the verifier ---------------------------------------------------------------------------------


def verify_or_refuse(token: str) -> Identity | None:
    try:
        return VERIFIER.verify(token)
    except InvalidTokenError as error:
        assert error.reason in TOKEN_REASONS
        return None


@FUZZ
@given(st.text(max_size=2000) | tokenish_text)
def test_verifier_refuses_any_text(text: str) -> None:
    assert verify_or_refuse(text) is None


@FUZZ
@given(claim_sets)
def test_verifier_accepts_only_what_the_claim_rules_allow(claims: dict[str, Any]) -> None:
    identity = verify_or_refuse(sign(claims))
    if identity is None:
        return
    # the rules, as the README states them
    assert claims["iss"] == ES_URL and identity.issuer == "es"
    assert isinstance(claims["sub"], str) and claims["sub"]
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert all(isinstance(a, str) and a for a in audiences) and AUDIENCE in audiences
    for name in ("iat", "exp", "nbf"):
        assert name not in claims or type(claims[name]) is int, name
    assert 0 < claims["exp"] - claims["iat"] <= MAX_LIFETIME
    assert claims["exp"] > NOW - LEEWAY and claims["iat"] <= NOW + LEEWAY
    assert claims.get("nbf", NOW) <= NOW + LEEWAY


def test_the_valid_tokens_verify() -> None:
    assert [VERIFIER.verify(token).issuer for token in VALID_TOKENS] == ["es", "rs"]


def mutate(token: str, kind: str, position: int, character: str, bit: int) -> str:
    if kind == "replace":
        return token[:position] + character + token[position + 1:]
    if kind == "insert":
        return token[:position] + character + token[position:]
    if kind == "delete":
        return token[:position] + token[position + 1:]
    return token[:position] + chr(ord(token[position]) ^ (1 << bit)) + token[position + 1:]


@FUZZ
@given(st.data())
def test_every_single_character_mutation_of_a_valid_token_is_refused(data: st.DataObject) -> None:
    token = data.draw(st.sampled_from(VALID_TOKENS), label="token")
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "flip"]), label="kind")
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="position")
    character = data.draw(st.sampled_from(B64URL + ".=+/ ") | st.characters()
                          | st.integers(0, 255).map(chr), label="character")
    bit = data.draw(st.integers(min_value=0, max_value=7), label="bit")
    mutated = mutate(token, kind, position, character, bit)
    assume(mutated != token)
    assert verify_or_refuse(mutated) is None


def test_every_flip_of_the_lowest_alphabet_bit_at_every_position_is_refused() -> None:
    """Exhaustive over positions: the smallest change the alphabet allows, everywhere."""
    for token in VALID_TOKENS:
        for position, character in enumerate(token):
            if character == ".":
                continue
            flipped = B64URL[B64URL.index(character) ^ 1]
            assert verify_or_refuse(token[:position] + flipped + token[position + 1:]) is None


def test_other_spellings_of_the_same_bytes_are_refused_as_not_canonical() -> None:
    """base64url leaves unused bits in a segment's last character: 2 or 4 of them. Spellings
    with those bits set decode to the same bytes; the strict canonical check refuses them, so
    one token has exactly one accepted spelling."""
    same_bytes = 0
    for token in VALID_TOKENS:
        segments = token.split(".")
        for index, segment in enumerate(segments):
            for alternative in B64URL:
                if alternative == segment[-1]:
                    continue
                spelt = segments.copy()
                spelt[index] = segment[:-1] + alternative
                decodes_the_same = _decode_lax(spelt[index]) == _decode_lax(segment)
                with pytest.raises(InvalidTokenError) as refused:
                    VERIFIER.verify(".".join(spelt))
                if decodes_the_same:
                    same_bytes += 1
                    assert refused.value.reason == "MALFORMED_TOKEN"
                    assert "canonical" in refused.value.detail
    assert same_bytes > 0  # the case did occur


def _decode_lax(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.mark.parametrize("text", [
    "." * 16384, "A" * 16384, "A" * 8000 + "." + "A" * 8000 + ".AA",
    b64(b"[" * 12000) + ".e30.AA", "eyJhbGciOiJFUzI1NiJ9." + b64(b'{"a":' * 2000) + ".AA",
    sign(b'{"a": ' + b"[" * 6000 + b"]" * 6000 + b"}"),
], ids=["dots", "one segment", "two huge segments", "deep header", "deep payload",
        "deep payload, signed"])
def test_the_largest_inputs_are_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    assert verify_or_refuse(text) is None
    assert time.perf_counter() - started < 0.5


# -- the matcher ----------------------------------------------------------------------------------

RELEASE_REGEX = r"refs/heads/(main|release-\d+)"
MAPPINGS = MappingSet(mappings=tuple(
    TrustMapping(name=name, issuer="github", conditions=conditions,
                 grant=Grant(cluster="c", namespace="web", user=f"ci:{name}"))
    for name, conditions in {
        "by-id-glob": (Condition(path=("repository_id",), operator=Operator.EQUALS, expected="74"),
                       Condition(path=("ref",), operator=Operator.GLOB,
                                 expected="refs/heads/release-*")),
        "by-id-regex": (Condition(path=("repository_id",), operator=Operator.EQUALS,
                                  expected="75"),
                        Condition(path=("ref",), operator=Operator.REGEX,
                                  expected=RELEASE_REGEX)),
        "typed": (Condition(path=("repository_owner_id",), operator=Operator.EQUALS, expected=65),
                  Condition(path=("event_name",), operator=Operator.ONE_OF,
                            expected=("push", "pull_request_target"))),
        "nested": (Condition(path=("kubernetes.io", "namespace"), operator=Operator.EQUALS,
                             expected="ci"),),
        "boolean": (Condition(path=("ref_protected",), operator=Operator.EQUALS, expected=True),
                    Condition(path=("sub",), operator=Operator.GLOB, expected="repo:a/*")),
    }.items()))

near_misses = {
    "repository_id": ["74", "75", 74, 74.0, "74 ", "7?", "*", True, ["74"], {"x": "74"}, None],
    "ref": ["refs/heads/release-1", "refs/heads/release-1/x", "refs/heads/main",
            "refs/heads/release-\u0661", "refs/heads/main\n", "refs/heads/release-*",
            "refs/heads/release-:", "REFS/heads/main", 1],
    "repository_owner_id": [65, "65", 65.0, True, [65]],
    "event_name": ["push", "pull_request_target", "PUSH", "pull_request", ["push"]],
    "kubernetes.io": [{"namespace": "ci"}, {"namespace": "CI"}, {"namespace": ["ci"]},
                      "ci", [{"namespace": "ci"}]],
    "ref_protected": [True, "true", 1, "True", False],
    "sub": ["repo:a/b", "repo:a/b:ref:x", "repo:a/", "repo:a/b/c", "x"],
}
claim_dicts = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(values) | json_values
                  for name, values in near_misses.items()},
).flatmap(lambda fixed: st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(
    lambda extra: extra | fixed))


def same_json(seen: object, expected: object) -> bool:
    """Strict JSON equality: same type (bool, int, float, str are four types) and value."""
    return type(seen) is type(expected) and seen == expected


def glob_matches(pattern: str, value: str) -> bool:
    """An independent glob matcher: `*` any run, `?` one character, never '/' or ':'."""
    @functools.cache
    def match(p: int, v: int) -> bool:
        if p == len(pattern):
            return v == len(value)
        if pattern[p] == "*":
            return match(p + 1, v) or (v < len(value) and value[v] not in "/:" and match(p, v + 1))
        if v == len(value):
            return False
        if pattern[p] == "?":
            return value[v] not in "/:" and match(p + 1, v + 1)
        return pattern[p] == value[v] and match(p + 1, v + 1)

    return match(0, 0)


def lookup(claims: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = claims
    for name in path:
        if not isinstance(value, Mapping) or name not in value:
            return MISSING
        value = value[name]
    return value


def oracle_holds(mapping: TrustMapping, claims: Mapping[str, Any]) -> bool:
    if claims.get("event_name") == "pull_request_target" and not any(
            c.path == ("event_name",) for c in mapping.conditions):
        return False
    for condition in mapping.conditions:
        seen = lookup(claims, condition.path)
        if seen is MISSING:
            return False
        expected = condition.expected
        if condition.operator is Operator.EQUALS:
            ok = same_json(seen, expected)
        elif condition.operator is Operator.ONE_OF:
            assert isinstance(expected, tuple)
            ok = any(same_json(seen, e) for e in expected)
        elif condition.operator is Operator.GLOB:
            ok = type(seen) is str and glob_matches(str(expected), seen)
        else:
            ok = type(seen) is str and re.fullmatch(str(expected), seen, re.ASCII) is not None
        if not ok:
            return False
    return True


@FUZZ
@given(claim_dicts, st.sampled_from([None, "by-id-glob", "typed", "nested", "unknown"]))
def test_matcher_grants_exactly_what_every_condition_allows(claims: dict[str, Any],
                                                            role: str | None) -> None:
    identity = Identity(issuer="github", issuer_url="https://github.example", subject="s",
                        token_id=None, audiences=(AUDIENCE,), issued_at=NOW, expires_at=NOW + 1,
                        claims=claims)
    satisfied = {m.name for m in MAPPINGS.mappings if oracle_holds(m, identity.claims)}
    try:
        granted = MAPPINGS.match(identity, role).name
    except PermissionDeniedError as error:
        assert error.reason in ("NO_MATCHING_MAPPING", "ROLE_NOT_ALLOWED")
        assert (role not in satisfied) if role else not satisfied
        return
    except InvalidRequestError as error:
        assert error.reason == "AMBIGUOUS_MAPPING" and role is None and len(satisfied) > 1
        return
    assert granted in satisfied
    assert role in (None, granted) and (role is not None or satisfied == {granted})


glob_pieces = st.lists(st.sampled_from(["*", "?", "a", "b", "/", ":", ".", "-", "[", "]", "(",
                                        "+", "\\", "^", "$", "|", "{1}", "\u0430"]),
                       min_size=1, max_size=8).map("".join).filter(lambda g: "**" not in g)
glob_values = st.text(alphabet="ab/:.-[]()+\\^$|{}1?*\u0430A", max_size=12)


@FUZZ
@given(glob_pieces, glob_values)
def test_glob_allows_exactly_what_its_segment_rule_allows(pattern: str, value: str) -> None:
    condition = Condition(path=("ref",), operator=Operator.GLOB, expected=pattern)
    assert condition.accepts(value) == glob_matches(pattern, value)
    if condition.accepts(value):
        literal_slashes = pattern.count("/") + pattern.count(":")
        assert value.count("/") + value.count(":") == literal_slashes  # wildcards never add one


UNICODE_DIGITS = "0123456789\u0660\u0661\u0669\u06f1\u0967\uff11\uff19\U0001d7ce\u00b2"
REGEX_INTENTS = {
    r"refs/heads/release-\d+": lambda v: v.startswith("refs/heads/release-") and len(v) > 19
    and all(c in "0123456789" for c in v[19:]),
    r"(?i)k8s-prod": lambda v: v.isascii() and v.lower() == "k8s-prod",
    r"[\w.-]+/[\w.-]+": lambda v: v.count("/") == 1 and all(v.split("/")) and all(
        c.isascii() and (c.isalnum() or c in "_.-") for c in v.replace("/", "")),
}
regex_values = st.one_of(
    st.builds(lambda s: "refs/heads/release-" + s, st.text(alphabet=UNICODE_DIGITS + "a\n",
                                                            max_size=4)),
    st.builds(lambda s: s, st.text(alphabet="kK\u212a8s-prodPROD\u0455", max_size=9)),
    st.builds(lambda a, b: f"{a}/{b}", st.text(alphabet="ab_.-\u0430\u00e9\u0661 ", max_size=4),
              st.text(alphabet="ab_.-\u0430\u00e9\u0661 ", max_size=4)),
    st.text(max_size=24),
)


@FUZZ
@given(st.sampled_from(sorted(REGEX_INTENTS)), regex_values)
def test_regex_character_classes_and_case_folding_mean_ascii(pattern: str, value: str) -> None:
    condition = Condition(path=("x",), operator=Operator.REGEX, expected=pattern)
    assert condition.accepts(value) == REGEX_INTENTS[pattern](value)
