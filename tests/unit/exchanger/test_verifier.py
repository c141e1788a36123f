"""Verifier: real keys, real signatures, a fake key fetcher and a fake clock.

Covers the attack list of the research note (jwt-security-and-performance.md, Part A) end to
end, the verified-token cache rules, TokenReview, and IssuerConfig's construction checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

from exchanger.verify import (
    IssuerConfig,
    JWKSUrl,
    KeyCache,
    KeyFetchError,
    KubernetesCluster,
    OIDCDiscovery,
    StaticKeys,
    Verifier,
)
from kubegate.errors import InvalidTokenError, KubegateError, UnavailableError

NOW = 1_750_000_000
GITHUB = "https://token.actions.githubusercontent.com"
GITLAB = "https://gitlab.example.com"
KUBE = "https://kubernetes.default.svc"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GITLAB_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
KUBE_KEY = ec.generate_private_key(ec.SECP256R1())
MISSING = object()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    public = private_key.public_key()
    converter = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    return {**converter.to_jwk(public, as_dict=True), "kid": kid}


JWKS = {
    "github": {"keys": [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]},
    "gitlab": {"keys": [public_jwk(GITLAB_KEY, "rsa-1"), public_jwk(GITLAB_KEY, "gitlab-only")]},
    "kube": {"keys": [public_jwk(KUBE_KEY, "kube-1")]},
}


def claims(iss: object = GITHUB, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": iss, "sub": "repo:octo-org/app:ref:refs/heads/main", "aud": "kubegate",
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 300, "jti": "jti-1",
        "repository_id": "74",
    }
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not MISSING}


def assemble(header: Mapping[str, object], payload: Mapping[str, object], signature: bytes) -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()),
                     b64(signature)])


def signing_input(header: Mapping[str, object], payload: Mapping[str, object]) -> bytes:
    return assemble(header, payload, b"").rsplit(".", 1)[0].encode("ascii")


def mint(payload: Mapping[str, object] | None = None, *, key: Any = RSA_KEY, alg: str = "RS256",
         kid: str | None = "rsa-1", typ: str | None = "JWT", **header_extra: object) -> str:
    """A token signed for real with pyjwt's algorithm objects, whatever header it states."""
    header = {"alg": alg, **({"typ": typ} if typ else {}), **({"kid": kid} if kid else {}),
              **header_extra}
    payload = claims() if payload is None else payload
    signature = get_default_algorithms()[alg].sign(signing_input(header, payload), key)
    return assemble(header, payload, signature)


def resign(header: Mapping[str, object], payload: Mapping[str, object], signature: bytes) -> str:
    return assemble(header, payload, signature)


class FakeClock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class FakeFetcher:
    def __init__(self) -> None:
        self.documents: dict[str, object] = dict(JWKS)
        self.calls: Counter[str] = Counter()

    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        self.calls[issuer.name] += 1
        document = self.documents[issuer.name]
        if isinstance(document, Exception):
            raise document
        assert isinstance(document, Mapping)
        return document


class FakeReviewer:
    def __init__(self, answer: bool | Exception = True) -> None:
        self.answer = answer
        self.tokens: list[str] = []

    def review(self, issuer: IssuerConfig, token: str) -> bool:
        self.tokens.append(token)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


ISSUERS = (
    IssuerConfig(name="github", url=GITHUB, audiences=("kubegate",), max_token_lifetime=3600),
    IssuerConfig(name="gitlab", url=GITLAB, audiences=("kubegate",), algorithms=("RS256",)),
    IssuerConfig(name="kube", url=KUBE, audiences=("kubegate",), algorithms=("ES256",),
                 key_source=KubernetesCluster(cluster="prod", token_review=True)),
)


class World:
    """A verifier with its fakes, for one test."""

    def __init__(self, reviewer: FakeReviewer | None = None, **options: Any) -> None:
        self.clock = FakeClock()
        self.fetcher = FakeFetcher()
        self.reviewer = reviewer or FakeReviewer()
        self.keys = KeyCache(self.fetcher, self.clock)
        self.verifier = Verifier(ISSUERS, self.keys, self.clock, self.reviewer, **options)

    def reason(self, token: str) -> str:
        with pytest.raises(KubegateError) as caught:
            self.verifier.verify(token)
        return caught.value.reason


@pytest.fixture
def world() -> World:
    return World()


def hs256_with_public_pem() -> str:
    """RS256 -> HS256 confusion: HMAC keyed with the issuer's public key PEM."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    payload = claims()
    return resign(header, payload,
                  hmac.new(pem, signing_input(header, payload), hashlib.sha256).digest())


def with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64(signature)


def tampered_payload() -> str:
    header, _, signature = mint().split(".")
    forged = b64(json.dumps(claims(sub="repo:attacker/app:ref:refs/heads/main")).encode())
    return f"{header}.{forged}.{signature}"


def es256(payload: Mapping[str, object] | None = None) -> str:
    return mint(payload, key=EC_KEY, alg="ES256", kid="ec-1")


def der_signature_for_es256() -> str:
    token = es256()
    raw = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return with_signature(token, der)


ATTACKS = {
    # algorithm
    "alg none": (resign({"alg": "none"}, claims(), b"x"), "DISALLOWED_ALGORITHM"),
    "alg none, empty signature": (resign({"alg": "none"}, claims(), b""),
                                  "DISALLOWED_ALGORITHM"),
    "alg None": (resign({"alg": "None", "kid": "rsa-1"}, claims(), b"x"), "DISALLOWED_ALGORITHM"),
    "alg NONE": (resign({"alg": "NONE", "kid": "rsa-1"}, claims(), b"x"), "DISALLOWED_ALGORITHM"),
    "alg nOnE": (resign({"alg": "nOnE", "kid": "rsa-1"}, claims(), b"x"), "DISALLOWED_ALGORITHM"),
    "HS256 keyed with the issuer's public key PEM": (hs256_with_public_pem(),
                                                     "DISALLOWED_ALGORITHM"),
    "algorithm outside this issuer's allowlist": (
        mint(claims(iss=GITLAB), key=EC_KEY, alg="ES256", kid="ec-1"), "DISALLOWED_ALGORITHM"),
    "supported algorithm the issuer did not allow": (mint(alg="PS256"), "DISALLOWED_ALGORITHM"),
    # signature
    "null signature": (with_signature(mint(), b""), "MALFORMED_TOKEN"),
    "truncated RSA signature": (with_signature(mint(), base64.urlsafe_b64decode(
        mint().rsplit(".", 1)[1] + "==")[:-3]), "BAD_SIGNATURE"),
    "RSA signature of zeros": (with_signature(mint(), bytes(256)), "BAD_SIGNATURE"),
    "one bit flipped in the signature": (with_signature(mint(), bytes(
        [b ^ (i == 0) for i, b in enumerate(base64.urlsafe_b64decode(
            mint().rsplit(".", 1)[1] + "=="))])), "BAD_SIGNATURE"),
    "payload changed after signing": (tampered_payload(), "BAD_SIGNATURE"),
    "signed by another key under our kid": (mint(key=ATTACKER_KEY), "BAD_SIGNATURE"),
    "ECDSA r=s=0 (psychic signature)": (with_signature(es256(), bytes(64)), "BAD_SIGNATURE"),
    "ECDSA signature truncated": (with_signature(es256(), bytes(63)), "BAD_SIGNATURE"),
    "ECDSA signature too long": (with_signature(es256(), bytes(65)), "BAD_SIGNATURE"),
    "ECDSA signature in DER": (der_signature_for_es256(), "BAD_SIGNATURE"),
    # keys
    "unknown kid": (mint(kid="not-published"), "UNKNOWN_KEY"),
    "kid path traversal": (mint(kid="../../../../dev/null"), "UNKNOWN_KEY"),
    "kid of an EC key on an RS256 token": (mint(kid="ec-1"), "ALGORITHM_KEY_MISMATCH"),
    "another issuer's kid": (mint(key=GITLAB_KEY, kid="gitlab-only"), "UNKNOWN_KEY"),
    "same kid, other issuer's key": (mint(claims(iss=GITLAB), key=RSA_KEY), "BAD_SIGNATURE"),
    "no kid, several keys fit": (mint(claims(iss=GITLAB), key=GITLAB_KEY, kid=None),
                                 "AMBIGUOUS_KEY"),
    # headers that bring their own key or semantics
    "embedded jwk": (mint(key=ATTACKER_KEY, jwk=public_jwk(ATTACKER_KEY, "rsa-1")),
                     "FORBIDDEN_HEADER"),
    "jku": (mint(jku="https://attacker.example/jwks.json"), "FORBIDDEN_HEADER"),
    "x5u": (mint(x5u="https://attacker.example/cert.pem"), "FORBIDDEN_HEADER"),
    "x5c": (mint(x5c=["MIIBattacker"]), "FORBIDDEN_HEADER"),
    "crit": (mint(crit=["exp"]), "FORBIDDEN_HEADER"),
    "nested JWT": (mint(cty="JWT"), "NESTED_TOKEN"),
    "JWE": (".".join(["eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ", "a2V5", "aXY", "Y3Q",
                      "dGFn"]), "ENCRYPTED_TOKEN"),
    "JSON serialisation": (json.dumps({"protected": "e30", "payload": "e30", "signature": "c2ln"}),
                           "MALFORMED_TOKEN"),
    "over the size cap": (mint(claims(padding="x" * 17000)), "TOKEN_TOO_LARGE"),
    # issuer
    "unknown issuer": (mint(claims(iss="https://evil.example")), "UNKNOWN_ISSUER"),
    "iss with a trailing slash": (mint(claims(iss=GITHUB + "/")), "UNKNOWN_ISSUER"),
    "iss as a prefix": (mint(claims(iss="https://token.actions.github")), "UNKNOWN_ISSUER"),
    "iss in other case": (mint(claims(iss=GITHUB.upper())), "UNKNOWN_ISSUER"),
    "iss as an array": (mint(claims(iss=[GITHUB])), "INVALID_CLAIM"),
    "iss missing": (mint(claims(iss=MISSING)), "MISSING_CLAIM"),
    # claims, validly signed
    "exp as a string": (mint(claims(exp=str(NOW + 300))), "INVALID_CLAIM"),
    "exp as a float": (mint(claims(exp=NOW + 300.0)), "INVALID_CLAIM"),
    "exp as a bool": (mint(claims(exp=True)), "INVALID_CLAIM"),
    "exp huge": (mint(claims(exp=10**300)), "INVALID_CLAIM"),
    "exp missing": (mint(claims(exp=MISSING)), "MISSING_CLAIM"),
    "nbf as a string": (mint(claims(nbf=str(NOW))), "INVALID_CLAIM"),
    "nbf in the future": (mint(claims(nbf=NOW + 600)), "TOKEN_NOT_YET_VALID"),
    "iat as a float": (mint(claims(iat=NOW - 60.0)), "INVALID_CLAIM"),
    "iat missing": (mint(claims(iat=MISSING)), "MISSING_CLAIM"),
    "iat in the future": (mint(claims(iat=NOW + 600, nbf=MISSING, exp=NOW + 900)),
                          "ISSUED_IN_FUTURE"),
    "expired": (mint(claims(exp=NOW - 31)), "TOKEN_EXPIRED"),
    "lifetime over the maximum": (mint(claims(iat=NOW - 60, exp=NOW + 3600)), "LIFETIME_TOO_LONG"),
    "aud missing": (mint(claims(aud=MISSING)), "MISSING_CLAIM"),
    "aud someone else": (mint(claims(aud="sts.amazonaws.com")), "WRONG_AUDIENCE"),
    "aud array of non-strings": (mint(claims(aud=[1, {"a": "kubegate"}])), "INVALID_CLAIM"),
    "sub missing": (mint(claims(sub=MISSING)), "MISSING_CLAIM"),
    "sub a number": (mint(claims(sub=42)), "INVALID_CLAIM"),
}


@pytest.mark.parametrize(("token", "reason"), ATTACKS.values(), ids=ATTACKS.keys())
def test_attack_is_refused_with_its_reason(world: World, token: str, reason: str) -> None:
    assert world.reason(token) == reason


@pytest.mark.parametrize(("token", "reason"), ATTACKS.values(), ids=ATTACKS.keys())
def test_refusals_never_reveal_the_token(
    world: World, token: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KubegateError) as caught:
        world.verifier.verify(token)
    said = [str(caught.value), caught.value.detail, caught.value.public_message]
    said += [record.getMessage() for record in caplog.records]
    for piece in (p for p in token.split(".") if len(p) >= 8):
        assert not any(piece in text for text in said)


@pytest.mark.parametrize(
    "token",
    [mint(claims(iss="https://evil.example")), mint(claims(iss=GITHUB + "/"), kid="new-kid"),
     resign({"alg": "none"}, claims(iss="https://evil.example"), b"x")],
    ids=["unknown issuer", "near-miss issuer with a new kid", "unknown issuer with alg none"],
)
def test_unknown_issuer_never_triggers_a_key_fetch(world: World, token: str) -> None:
    world.reason(token)
    assert not world.fetcher.calls


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.just("\ud800.\udfff.x"))
def test_arbitrary_text_is_refused_as_a_kubegate_error_never_a_crash(text: str) -> None:
    world = World()
    with pytest.raises(KubegateError):
        world.verifier.verify(text)
    assert not world.fetcher.calls


def test_disallowed_algorithm_never_triggers_a_key_fetch(world: World) -> None:
    assert world.reason(mint(alg="PS256", kid="new")) == "DISALLOWED_ALGORITHM"
    assert not world.fetcher.calls


def test_valid_rs256_token_yields_the_identity(world: World) -> None:
    identity = world.verifier.verify(mint())
    assert identity.issuer == "github"
    assert identity.issuer_url == GITHUB
    assert identity.subject == "repo:octo-org/app:ref:refs/heads/main"
    assert identity.token_id == "jti-1"
    assert identity.audiences == ("kubegate",)
    assert (identity.issued_at, identity.expires_at) == (NOW - 60, NOW + 300)
    assert identity.claims["repository_id"] == "74"


ACCEPTED = {
    "ES256": es256(),
    "aud array with ours beside others": mint(claims(aud=["https://github.com/octo-org",
                                                          "kubegate"])),
    "no jti": mint(claims(jti=MISSING)),
    "no nbf": mint(claims(nbf=MISSING)),
    "no kid, one key fits": mint(claims(iss=KUBE), key=KUBE_KEY, alg="ES256", kid=None),
    "no typ": mint(typ=None),
    "expired within the leeway": mint(claims(exp=NOW - 29)),
    "kid with an x5t header beside it": mint(x5t="thumbprint"),
}


@pytest.mark.parametrize("token", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_token_is_accepted(world: World, token: str) -> None:
    assert world.verifier.verify(token).subject


def test_audiences_keep_the_token_order(world: World) -> None:
    identity = world.verifier.verify(mint(claims(aud=["other", "kubegate"])))
    assert identity.audiences == ("other", "kubegate")


def test_identity_claims_are_read_only(world: World) -> None:
    identity = world.verifier.verify(mint())
    with pytest.raises(TypeError):
        identity.claims["sub"] = "someone else"  # type: ignore[index]


def test_keys_unavailable_propagates_as_unavailable(world: World) -> None:
    world.fetcher.documents["github"] = KeyFetchError("https://github.example/jwks: down")
    with pytest.raises(UnavailableError) as caught:
        world.verifier.verify(mint())
    assert caught.value.reason == "KEYS_UNAVAILABLE"


def test_rotated_key_is_fetched_once_after_the_cooldown(world: World) -> None:
    world.verifier.verify(mint())
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    world.fetcher.documents["github"] = {"keys": [public_jwk(new_key, "rsa-2")]}
    world.clock.now += 61
    assert world.verifier.verify(mint(claims(exp=NOW + 400), key=new_key, kid="rsa-2")).subject
    assert world.keys.fetch_count("github") == 2


# -- the verified-token cache ---------------------------------------------------------------------


def test_repeated_token_is_served_from_the_cache(world: World) -> None:
    token = mint()
    assert world.verifier.verify(token) is world.verifier.verify(token)


def test_cached_token_is_refused_once_it_expires(world: World) -> None:
    token = mint()
    world.verifier.verify(token)
    world.clock.now = NOW + 300 + 30
    with pytest.raises(InvalidTokenError) as caught:
        world.verifier.verify(token)
    assert caught.value.reason == "TOKEN_EXPIRED"
    world.clock.now = NOW
    assert world.verifier.verify(token).subject  # discarded, verified afresh


def test_cache_is_bounded_least_recently_used_first() -> None:
    world = World(cache_size=2)
    first, second, third = (mint(claims(jti=f"j{n}")) for n in range(3))
    kept = world.verifier.verify(first)
    world.verifier.verify(second)
    assert world.verifier.verify(first) is kept  # first is now the most recent
    world.verifier.verify(third)  # evicts second
    assert world.verifier.verify(first) is kept
    evicted = world.verifier.verify(second)
    assert world.verifier.verify(second) is evicted


def test_cache_size_zero_disables_the_cache() -> None:
    world = World(cache_size=0)
    token = mint()
    assert world.verifier.verify(token) is not world.verifier.verify(token)


def test_failures_are_not_cached(world: World) -> None:
    token = mint(claims(nbf=NOW + 100))
    assert world.reason(token) == "TOKEN_NOT_YET_VALID"
    world.clock.now += 100
    assert world.verifier.verify(token).subject


def test_concurrent_verifications_agree(world: World) -> None:
    tokens = [mint(claims(jti=f"c{n}")) for n in range(4)]
    subjects: list[str] = []

    def work() -> None:
        for token in tokens * 5:
            subjects.append(world.verifier.verify(token).subject)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(subjects) == 8 * 20 and len(set(subjects)) == 1
    assert world.keys.fetch_count("github") == 1


# -- TokenReview ----------------------------------------------------------------------------------


def kube_token() -> str:
    return mint(claims(iss=KUBE, sub="system:serviceaccount:ci:runner"), key=KUBE_KEY,
                alg="ES256", kid="kube-1")


def test_token_review_confirms_kubernetes_tokens() -> None:
    world = World(FakeReviewer(True))
    token = kube_token()
    assert world.verifier.verify(token).subject == "system:serviceaccount:ci:runner"
    assert world.reviewer.tokens == [token]


def test_token_review_refusal_is_token_revoked() -> None:
    world = World(FakeReviewer(False))
    assert world.reason(kube_token()) == "TOKEN_REVOKED"


def test_token_review_outage_propagates_as_unavailable() -> None:
    world = World(FakeReviewer(UnavailableError("KUBERNETES_UNAVAILABLE", "prod is down")))
    with pytest.raises(UnavailableError) as caught:
        world.verifier.verify(kube_token())
    assert caught.value.reason == "KUBERNETES_UNAVAILABLE"


def test_token_review_is_not_asked_for_other_issuers(world: World) -> None:
    world.verifier.verify(mint())
    assert world.reviewer.tokens == []


def test_reviewed_token_is_cached_for_at_most_ten_seconds(world: World) -> None:
    token = kube_token()
    world.verifier.verify(token)
    world.clock.now += 10
    world.verifier.verify(token)
    assert len(world.reviewer.tokens) == 1
    world.clock.now += 1
    world.verifier.verify(token)
    assert len(world.reviewer.tokens) == 2


def test_a_pod_deleted_after_review_is_refused_once_the_short_cache_lapses(world: World) -> None:
    token = kube_token()
    world.verifier.verify(token)
    world.reviewer.answer = False
    world.clock.now += 11
    assert world.reason(token) == "TOKEN_REVOKED"


def test_review_cache_of_zero_reviews_every_use() -> None:
    world = World(review_cache_seconds=0)
    token = kube_token()
    world.verifier.verify(token)
    world.verifier.verify(token)
    assert len(world.reviewer.tokens) == 2


# -- construction ---------------------------------------------------------------------------------


def test_verifier_refuses_duplicate_issuer_names_or_urls() -> None:
    keys = KeyCache(FakeFetcher(), FakeClock())
    twin = IssuerConfig(name="github", url=GITLAB, audiences=("a",))
    with pytest.raises(ValueError, match="unique"):
        Verifier([ISSUERS[0], twin], keys, FakeClock())
    same_url = IssuerConfig(name="other", url=GITHUB, audiences=("a",))
    with pytest.raises(ValueError, match="unique"):
        Verifier([ISSUERS[0], same_url], keys, FakeClock())


def test_verifier_refuses_token_review_without_a_reviewer() -> None:
    with pytest.raises(ValueError, match="token_reviewer"):
        Verifier(ISSUERS, KeyCache(FakeFetcher(), FakeClock()), FakeClock())


def config(**changes: Any) -> IssuerConfig:
    fields: dict[str, Any] = {"name": "github", "url": GITHUB, "audiences": ("kubegate",)}
    return IssuerConfig(**{**fields, **changes})


BAD_CONFIGS = {
    "alg none": ({"algorithms": ("none",)}, "never accepted"),
    "alg None": ({"algorithms": ("RS256", "None")}, "never accepted"),
    "HS256": ({"algorithms": ("HS256",)}, "never accepted"),
    "hs512 in lower case": ({"algorithms": ("hs512",)}, "never accepted"),
    "unknown algorithm": ({"algorithms": ("RS257",)}, "not one of"),
    "no algorithms": ({"algorithms": ()}, "algorithms"),
    "no audiences": ({"audiences": ()}, "audiences"),
    "audiences as one string": ({"audiences": "kubegate"}, "audiences"),
    "empty audience": ({"audiences": ("",)}, "audience"),
    "http url": ({"url": "http://token.actions.githubusercontent.com"}, "https"),
    "url with a query": ({"url": GITHUB + "?a=b"}, "query"),
    "url with a fragment": ({"url": GITHUB + "#x"}, "fragment"),
    "url with credentials": ({"url": "https://user:pw@github.example"}, "credentials"),
    "url without a host": ({"url": "https:///path"}, "host"),
    "negative leeway": ({"leeway": -1}, "leeway"),
    "leeway over five minutes": ({"leeway": 301}, "leeway"),
    "fractional leeway": ({"leeway": 1.5}, "leeway"),
    "zero lifetime": ({"max_token_lifetime": 0}, "max_token_lifetime"),
    "empty name": ({"name": ""}, "name"),
    "name with a space": ({"name": "git hub"}, "name"),
    "key source of the wrong type": ({"key_source": "discovery"}, "key_source"),
    "empty kind": ({"kind": ""}, "kind"),
}


@pytest.mark.parametrize(("changes", "message"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_issuer_config_refuses_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**changes)


@pytest.mark.parametrize(
    ("build", "message"),
    [(lambda: JWKSUrl(url="http://keys.example/jwks"), "https"),
     (lambda: StaticKeys(jwks={"keys": []}), "JWKS"),
     (lambda: StaticKeys(jwks={"k": 1}), "JWKS"),
     (lambda: KubernetesCluster(cluster=""), "cluster")],
    ids=["JWKSUrl over http", "StaticKeys empty", "StaticKeys not a JWKS", "cluster unnamed"],
)
def test_key_sources_refuse_bad_values(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_issuer_config_defaults_and_normalised_fields() -> None:
    issuer = config(audiences=["kubegate", "sts"], ca_file="/etc/ca.pem")
    assert issuer.audiences == ("kubegate", "sts")
    assert issuer.algorithms == ("RS256", "ES256")
    assert issuer.key_source == OIDCDiscovery()
    assert issuer.ca_file == Path("/etc/ca.pem")
    assert (issuer.leeway, issuer.max_token_lifetime) == (30, 86400)
    assert issuer.discovery_url == GITHUB + "/.well-known/openid-configuration"
    assert not issuer.token_review
    assert hash(config(key_source=StaticKeys(jwks=JWKS["github"])))
