"""The lean exchange path gives exactly what the plain one gave: the audit chain's line is
byte-for-byte the canonical form of body + hash (as `kubegate audit verify` recomputes it),
`sanitize` skips the pattern only where it could not match, the self-issued token is the
token PyJWT would write (same header and payload bytes, a valid ES256 signature), and the
strict JSON reader refuses what json.loads refused."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from exchanger.audit.chain import (
    GENESIS_HASH,
    ChainHead,
    canonical_json,
    chain_line,
    read_line,
    verify_chain,
)
from exchanger.audit.record import (
    COMPACT_JWT_START,
    MAX_FIELD_CHARS,
    REDACTED,
    Caller,
    GrantRecord,
    sanitize,
)
from exchanger.backends.selfissued import SelfIssuedSigner, public_jwk, sign_es256
from exchanger.verify.compact import loads_strict_json
from kubegate.logformat import TOKEN_SHAPE
from tests.support.hypothesis_profiles import FUZZ

JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyZXBvOm9yZy9hcHAifQ."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
ES_KEY = ec.generate_private_key(ec.SECP256R1())

json_scalars = st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=12)
record_keys = st.text(max_size=10).filter(lambda key: key not in ("seq", "prev", "hash"))
# texts built from the pieces a token shape is made of, so matches are common
tokenish = st.lists(st.sampled_from(["ey", "eyJ", "J", "a", "Zz9", "_", "-", ".", " ", "/",
                                     JWT]), max_size=20).map("".join)
# the second kind of token shape: any `ey...` header with long first segments
long_header_shape = st.from_regex(
    r"ey[A-Za-z0-9_-]{8,12}\.[A-Za-z0-9_-]{8,12}\.[A-Za-z0-9_-]{0,5}", fullmatch=True)


def reference_chain_line(fields: dict[str, Any], head: ChainHead) -> tuple[bytes, ChainHead]:
    """The chain's scheme as its docstring states it (and as it was written before)."""
    body = {**fields, "seq": head.seq + 1, "prev": head.hash}
    digest = hashlib.sha256(canonical_json(body)).hexdigest()
    return canonical_json({**body, "hash": digest}) + b"\n", ChainHead(seq=head.seq + 1,
                                                                       hash=digest)


def reference_sanitize(text: str) -> str:
    cleaned = TOKEN_SHAPE.sub(REDACTED, text)
    return cleaned[:MAX_FIELD_CHARS] + "...[truncated]" if len(cleaned) > MAX_FIELD_CHARS \
        else cleaned


@FUZZ
@given(st.dictionaries(record_keys, json_values, max_size=8), st.integers(0, 2**40))
def test_a_chain_line_is_the_canonical_body_plus_hash(fields: dict[str, Any], seq: int) -> None:
    head = ChainHead(seq=seq, hash=hashlib.sha256(str(seq).encode()).hexdigest())
    line, new_head = chain_line(fields, head)
    assert (line, new_head) == reference_chain_line(fields, head)
    value, read_head, prev = read_line(line)
    assert (read_head, prev) == (new_head, head.hash)
    assert {k: v for k, v in value.items() if k not in ("seq", "prev", "hash")} == fields


def test_chain_lines_with_and_without_keys_before_hash_verify_as_one_chain() -> None:
    head, lines = ChainHead(), []
    for fields in ({}, {"zeta": 1}, {"alpha": "é", "omega": [1, {"hash-like": 2}]},
                   {"caller": {"iss": "x"}, "decision": "allow", "time": "t"}):
        line, head = chain_line(fields, head)
        lines.append(line)
    report = verify_chain(lines)
    assert report.ok and report.lines_checked == 4 and report.head == head
    assert json.loads(lines[0]) == {"seq": 1, "prev": GENESIS_HASH,
                                    "hash": json.loads(lines[0])["hash"]}


def test_chain_line_still_refuses_the_chains_own_names() -> None:
    with pytest.raises(ValueError, match="chain's names"):
        chain_line({"hash": "x"}, ChainHead())


@FUZZ
@given(st.text(max_size=60) | tokenish | long_header_shape
       | st.text(min_size=MAX_FIELD_CHARS - 2, max_size=MAX_FIELD_CHARS + 3))
def test_sanitize_gives_what_the_pattern_gives(text: str) -> None:
    assert sanitize(text) == reference_sanitize(text)


@FUZZ
@given(tokenish | long_header_shape)
def test_every_token_shape_starts_with_the_prefix_the_fast_path_looks_for(text: str) -> None:
    """The premise of sanitize's fast path: a text without `ey` has no token shape."""
    for match in TOKEN_SHAPE.finditer(text):
        assert match.group().startswith(COMPACT_JWT_START)


def test_records_still_redact_tokens_in_every_kind_of_field() -> None:
    caller = Caller(iss=f"https://x/{JWT}", sub="plain", jti="j" * (MAX_FIELD_CHARS + 5))
    assert caller.iss == f"https://x/{REDACTED}" and caller.sub == "plain"
    assert caller.jti.endswith("...[truncated]")
    grant = GrantRecord(cluster="c", namespace="n", groups=("a", JWT), audiences=(JWT,))
    assert grant.groups == ("a", REDACTED) and grant.audiences == (REDACTED,)


def test_the_self_issued_token_is_the_token_pyjwt_writes() -> None:
    signer = SelfIssuedSigner(key=ES_KEY, issuer_url="https://kubegate.example",
                              audience="kubernetes", clock=time.time)
    kid = public_jwk(ES_KEY)["kid"]
    claims = {"iss": "https://kubegate.example", "sub": "ci:ü", "aud": ["kubernetes"],
              "groups": ["g"], "iat": 1, "nbf": 1, "exp": 2_000_000_000, "jti": "s"}
    token = sign_es256(ES_KEY, signer._header, claims)
    written = jwt.encode(claims, ES_KEY, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})
    assert token.split(".")[:2] == written.split(".")[:2]
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": kid, "typ": "JWT"}
    assert jwt.decode(token, ES_KEY.public_key(), algorithms=["ES256"],
                      audience="kubernetes") == claims
    signature = jwt.utils.base64url_decode(token.split(".")[2])
    assert len(signature) == 64  # r || s, 32 bytes each (RFC 7518 §3.4), not DER


def test_a_signature_over_other_claims_does_not_verify() -> None:
    header = SelfIssuedSigner(key=ES_KEY, issuer_url="https://k", audience="a",
                              clock=time.time)._header
    one = sign_es256(ES_KEY, header, {"sub": "a"}).split(".")
    other = sign_es256(ES_KEY, header, {"sub": "b"}).split(".")
    forged = ".".join([one[0], other[1], one[2]])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, ES_KEY.public_key(), algorithms=["ES256"],
                   options={"verify_aud": False})


def test_a_signer_refuses_a_key_that_is_not_p256() -> None:
    with pytest.raises(ValueError, match="P-256"):
        SelfIssuedSigner(key=ec.generate_private_key(ec.SECP384R1()), issuer_url="https://k",
                         audience="a", clock=time.time)


@pytest.mark.parametrize("text", ['\ufeff{"a": 1}', '{"a": 1, "a": 2}', '{"a": NaN}',
                                  '{"a": Infinity}', '{"a": 1} x', ""])
def test_the_strict_json_reader_refuses_what_it_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loads_strict_json(text)


def test_the_strict_json_reader_reads_nested_objects() -> None:
    assert loads_strict_json('{"a": {"b": [1, {"c": null}]}}') == {"a": {"b": [1, {"c": None}]}}
