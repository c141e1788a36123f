"""KeyCache and BackgroundRefresher: per-issuer keys behind a fake fetcher and a fake clock."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from exchanger.verify.fetch import KeyFetchError
from exchanger.verify.issuers import IssuerConfig, StaticKeys
from exchanger.verify.jwks import VerificationKey
from exchanger.verify.keys import BackgroundRefresher, KeyCache
from kubegate.errors import InvalidTokenError, UnavailableError

RSA_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_WEAK = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
EC_P256 = ec.generate_private_key(ec.SECP256R1())
EC_P384 = ec.generate_private_key(ec.SECP384R1())
ED25519 = ed25519.Ed25519PrivateKey.generate()


def jwk(private_key: Any, kid: str | None, **extra: object) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        document = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        document = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        document = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        document["kid"] = kid
    return {**document, **extra}


def jwks(*keys: object) -> dict[str, Any]:
    return {"keys": list(keys)}


def issuer(name: str = "github", algorithms: tuple[str, ...] = ("RS256", "ES256"),
           **fields: Any) -> IssuerConfig:
    return IssuerConfig(name=name, url=f"https://{name}.example", audiences=("kubegate",),
                        algorithms=algorithms, **fields)


def public_numbers(key: VerificationKey, algorithm: str) -> Any:
    return key.by_algorithm[algorithm].key.public_numbers()


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeFetcher:
    """Serves a JWKS per issuer name; an Exception as a document is raised instead."""

    def __init__(self, documents: Mapping[str, object]) -> None:
        self.documents = dict(documents)
        self.calls: Counter[str] = Counter()
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        self.calls[issuer.name] += 1
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        document = self.documents[issuer.name]
        if isinstance(document, Exception):
            raise document
        assert isinstance(document, Mapping)
        return document


def cache_for(documents: Mapping[str, object], clock: FakeClock | None = None,
              **options: Any) -> tuple[KeyCache, FakeFetcher, FakeClock]:
    fetcher, clock = FakeFetcher(documents), clock or FakeClock()
    return KeyCache(fetcher, clock, **options), fetcher, clock


def reason_of(call: Any) -> str:
    with pytest.raises((InvalidTokenError, UnavailableError)) as caught:
        call()
    return str(caught.value.reason)


# -- lookups and fetches --------------------------------------------------------------------------


def test_known_kid_is_served_from_cache_without_another_fetch() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    first = cache.get_key(issuer(), "a", "RS256")
    second = cache.get_key(issuer(), "a", "RS256")
    assert first is second
    assert cache.fetch_count("github") == 1 == fetcher.calls["github"]


def test_unknown_kid_fetches_once_and_finds_a_rotated_key() -> None:
    cache, fetcher, clock = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    cache.get_key(issuer(), "a", "RS256")
    fetcher.documents["github"] = jwks(jwk(RSA_A, "a"), jwk(RSA_B, "b"))
    clock.now += 61
    key = cache.get_key(issuer(), "b", "RS256")
    assert public_numbers(key, "RS256") == RSA_B.public_key().public_numbers()
    assert cache.fetch_count("github") == 2


def test_unknown_kid_within_the_cooldown_does_not_fetch_again() -> None:
    cache, fetcher, clock = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    cache.get_key(issuer(), "a", "RS256")
    for attempt in range(20):
        clock.now += 2
        assert reason_of(lambda n=attempt: cache.get_key(issuer(), f"x{n}", "RS256")) == (
            "UNKNOWN_KEY")
    assert cache.fetch_count("github") == 1  # 40 s of unknown kids: still within 60 s


def test_unknown_kid_after_the_cooldown_fetches_again() -> None:
    cache, _, clock = cache_for({"github": jwks(jwk(RSA_A, "a"))}, cooldown=60)
    assert reason_of(lambda: cache.get_key(issuer(), "nope", "RS256")) == "UNKNOWN_KEY"
    clock.now += 59
    assert reason_of(lambda: cache.get_key(issuer(), "nope", "RS256")) == "UNKNOWN_KEY"
    assert cache.fetch_count("github") == 1
    clock.now += 1
    assert reason_of(lambda: cache.get_key(issuer(), "nope", "RS256")) == "UNKNOWN_KEY"
    assert cache.fetch_count("github") == 2


def run_concurrently(count: int, call: Any) -> list[object]:
    """Start `count` threads doing `call`, return their results (exceptions become reasons)."""
    results: list[object] = []

    def work() -> None:
        try:
            results.append(call())
        except (InvalidTokenError, UnavailableError) as error:
            results.append(error.reason)

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    return results


@pytest.mark.parametrize("warm", [False, True], ids=["cold cache", "warm cache, rotated key"])
def test_concurrent_lookups_of_a_new_kid_share_one_fetch(warm: bool) -> None:
    # cooldown 0: only single flight can explain a single fetch
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "old"))}, cooldown=0)
    if warm:
        cache.get_key(issuer(), "old", "RS256")
    fetcher.documents["github"] = jwks(jwk(RSA_A, "old"), jwk(RSA_B, "new"))
    fetcher.calls.clear()
    fetcher.started.clear()
    fetcher.gate = threading.Event()
    release = threading.Timer(0.3, fetcher.gate.set)  # let every caller queue behind the fetch
    release.start()
    results = run_concurrently(16, lambda: cache.get_key(issuer(), "new", "RS256"))
    release.join()
    assert len(results) == 16 and all(isinstance(r, VerificationKey) for r in results)
    assert len({id(r) for r in results}) == 1
    assert fetcher.calls["github"] == 1


def test_concurrent_lookups_of_a_forged_kid_cause_one_fetch() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    fetcher.gate = threading.Event()
    release = threading.Timer(0.3, fetcher.gate.set)
    release.start()
    results = run_concurrently(16, lambda: cache.get_key(issuer(), "forged", "RS256"))
    release.join()
    assert results == ["UNKNOWN_KEY"] * 16
    assert fetcher.calls["github"] == 1


# -- failures and last good keys ------------------------------------------------------------------


def test_failed_fetch_keeps_serving_the_last_good_keys() -> None:
    cache, fetcher, clock = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    cache.get_key(issuer(), "a", "RS256")
    fetcher.documents["github"] = KeyFetchError("https://github.example/jwks answered HTTP 503")
    assert cache.refresh(issuer()) == "error"
    clock.now += 120
    assert cache.get_key(issuer(), "a", "RS256") is not None
    assert reason_of(lambda: cache.get_key(issuer(), "b", "RS256")) == "UNKNOWN_KEY"
    assert cache.fetch_count("github") == 3


def test_invalid_document_keeps_serving_the_last_good_keys() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    cache.get_key(issuer(), "a", "RS256")
    fetcher.documents["github"] = jwks({"kty": "RSA", "n": "!!", "e": "AQAB", "kid": "a"})
    assert cache.refresh(issuer()) == "invalid"
    assert cache.get_key(issuer(), "a", "RS256") is not None


def test_nothing_ever_fetched_and_fetch_failing_is_unavailable_not_invalid_token() -> None:
    cache, _, _ = cache_for({"github": KeyFetchError("https://github.example/jwks: timed out")})
    with pytest.raises(UnavailableError) as caught:
        cache.get_key(issuer(), "a", "RS256")
    assert caught.value.reason == "KEYS_UNAVAILABLE"
    assert "github" in caught.value.detail and "timed out" in caught.value.detail


def test_unavailable_keys_name_the_issuer_in_public_and_the_failure_only_in_the_detail() -> None:
    cache, _, _ = cache_for({"github": KeyFetchError("https://github.example/jwks answered 503")})
    with pytest.raises(UnavailableError) as caught:
        cache.get_key(issuer(), "a", "RS256")
    assert caught.value.public_message == ("the keys of issuer github are unavailable; "
                                           "try again later")
    assert "503" in caught.value.detail and "example" not in caught.value.public_message


def test_fetcher_bug_is_contained_and_reported_as_unavailable() -> None:
    cache, _, _ = cache_for({"github": RuntimeError("bug")})
    with pytest.raises(UnavailableError) as caught:
        cache.get_key(issuer(), "a", "RS256")
    assert caught.value.reason == "KEYS_UNAVAILABLE"
    assert "RuntimeError" in caught.value.detail


@pytest.mark.parametrize(
    "document",
    [jwks(), {"keys": "nope"}, {"jwks": []}, jwks(jwk(EC_P384, "p384"))],
    ids=["empty set", "keys not an array", "no keys member", "no key fits the allowlist"],
)
def test_document_without_usable_keys_counts_as_a_failed_fetch(document: object) -> None:
    cache, _, _ = cache_for({"github": document})
    assert cache.refresh(issuer()) == "invalid"
    assert reason_of(lambda: cache.get_key(issuer(), "a", "RS256")) == "KEYS_UNAVAILABLE"


def test_refresh_drops_keys_the_issuer_no_longer_publishes() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a"), jwk(RSA_B, "b"))})
    cache.get_key(issuer(), "a", "RS256")
    fetcher.documents["github"] = jwks(jwk(RSA_B, "b"))
    assert cache.refresh(issuer()) == "ok"
    assert reason_of(lambda: cache.get_key(issuer(), "a", "RS256")) == "UNKNOWN_KEY"


# -- what a JWKS entry must be --------------------------------------------------------------------

UNUSABLE_ENTRIES = {
    "not an object": 42,
    "no kty": {"kid": "x", "n": "AQAB", "e": "AQAB"},
    "RSA with a broken modulus": {"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"},
    "RSA without a modulus": {"kty": "RSA", "kid": "x", "e": "AQAB"},
    "RSA with a numeric exponent": {**jwk(RSA_B, "x"), "e": 65537},
    "RSA under 2048 bits": jwk(RSA_WEAK, "weak"),
    "unknown kty (AKP decoy)": {"kty": "AKP", "kid": "x", "alg": "ML-DSA-44", "pub": "AAAA"},
    "unknown alg": jwk(RSA_B, "x", alg="RS999"),
    "unknown curve": {**jwk(EC_P256, "x"), "crv": "P-999"},
    "EC point not on the curve": {**jwk(EC_P256, "x"), "y": jwk(EC_P384, "q")["y"]},
    "private key material": {**jwk(RSA_B, "x"), "d": "AQAB"},
    "symmetric key": {"kty": "oct", "kid": "x", "k": "c2VjcmV0"},
    "encryption key": jwk(RSA_B, "x", use="enc"),
    "numeric kid": {**jwk(RSA_B, None), "kid": 7},
}


def test_malformed_keys_are_skipped_and_counted_and_the_rest_serve() -> None:
    document = jwks(*UNUSABLE_ENTRIES.values(), jwk(RSA_A, "good"))
    cache, _, _ = cache_for({"github": document})
    assert cache.get_key(issuer(), "good", "RS256") is not None
    key_set = cache.key_set("github")
    assert key_set is not None
    assert key_set.skipped == len(UNUSABLE_ENTRIES)
    assert [k.kid for k in key_set.keys] == ["good"]


def test_second_key_with_an_already_seen_kid_is_skipped() -> None:
    cache, _, _ = cache_for({"github": jwks(jwk(RSA_A, "same"), jwk(RSA_B, "same"))})
    key = cache.get_key(issuer(), "same", "RS256")
    assert public_numbers(key, "RS256") == RSA_A.public_key().public_numbers()


def test_same_kid_at_two_issuers_never_mixes() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "shared")),
                                   "gitlab": jwks(jwk(RSA_B, "shared"))})
    from_github = cache.get_key(issuer("github"), "shared", "RS256")
    from_gitlab = cache.get_key(issuer("gitlab"), "shared", "RS256")
    assert public_numbers(from_github, "RS256") == RSA_A.public_key().public_numbers()
    assert public_numbers(from_gitlab, "RS256") == RSA_B.public_key().public_numbers()
    assert fetcher.calls == Counter({"github": 1, "gitlab": 1})


def test_kid_known_at_one_issuer_is_unknown_at_another() -> None:
    cache, _, _ = cache_for({"github": jwks(jwk(RSA_A, "only-github")),
                             "gitlab": jwks(jwk(RSA_B, "only-gitlab"))})
    cache.get_key(issuer("github"), "only-github", "RS256")
    assert reason_of(lambda: cache.get_key(issuer("gitlab"), "only-github", "RS256")) == (
        "UNKNOWN_KEY")


# -- algorithm and key type -----------------------------------------------------------------------

MISMATCHES = {
    "RSA key named by an ES256 token": (jwk(RSA_A, "k"), "ES256"),
    "EC key named by an RS256 token": (jwk(EC_P256, "k"), "RS256"),
    "P-384 key named by an ES256 token": (jwk(EC_P384, "k"), "ES256"),
    "key stating RS384 named by an RS256 token": (jwk(RSA_A, "k", alg="RS384"), "RS256"),
    "key stating PS256 named by an RS256 token": (jwk(RSA_A, "k", alg="PS256"), "RS256"),
    "Ed25519 key named by an ES256 token": (jwk(ED25519, "k"), "ES256"),
}


@pytest.mark.parametrize(("entry", "algorithm"), MISMATCHES.values(), ids=MISMATCHES.keys())
def test_a_key_never_verifies_an_algorithm_it_does_not_fit(
    entry: dict[str, Any], algorithm: str
) -> None:
    every = ("RS256", "RS384", "PS256", "ES256", "ES384", "EdDSA")
    cache, _, _ = cache_for({"github": jwks(entry)})
    assert reason_of(lambda: cache.get_key(issuer(algorithms=every), "k", algorithm)) == (
        "ALGORITHM_KEY_MISMATCH")


def test_algorithms_outside_the_issuer_allowlist_are_never_prepared() -> None:
    cache, _, _ = cache_for({"github": jwks(jwk(RSA_A, "r"), jwk(EC_P256, "e"))})
    key = cache.get_key(issuer(algorithms=("ES256",)), "e", "ES256")
    assert set(key.by_algorithm) == {"ES256"}
    assert reason_of(lambda: cache.get_key(issuer(algorithms=("ES256",)), "r", "RS256")) == (
        "UNKNOWN_KEY")


def test_token_without_kid_uses_the_only_key_for_its_algorithm() -> None:
    cache, _, _ = cache_for({"github": jwks(jwk(RSA_A, "r"), jwk(EC_P256, "e"))})
    assert cache.get_key(issuer(), None, "ES256").kid == "e"
    assert cache.get_key(issuer(), None, "RS256").kid == "r"


def test_token_without_kid_is_refused_when_several_keys_fit() -> None:
    cache, _, _ = cache_for({"github": jwks(jwk(RSA_A, "a"), jwk(RSA_B, "b"))})
    assert reason_of(lambda: cache.get_key(issuer(), None, "RS256")) == "AMBIGUOUS_KEY"


# -- static keys, observation, background refresh -------------------------------------------------


def test_static_keys_are_served_without_the_fetcher() -> None:
    static = issuer(key_source=StaticKeys(jwks=jwks(jwk(EC_P256, "s"))))
    cache, fetcher, _ = cache_for({})
    assert cache.get_key(static, "s", "ES256").kid == "s"
    assert not fetcher.calls


def test_on_fetch_reports_each_result_per_issuer() -> None:
    seen: list[tuple[str, str]] = []
    cache, fetcher, _ = cache_for(
        {"github": jwks(jwk(RSA_A, "a")), "gitlab": KeyFetchError("down"), "other": jwks()},
        on_fetch=lambda name, result: seen.append((name, result)),
    )
    cache.refresh_all([issuer("github"), issuer("gitlab"), issuer("other")])
    assert seen == [("github", "ok"), ("gitlab", "error"), ("other", "invalid")]


# -- health ---------------------------------------------------------------------------------------


def test_health_follows_an_issuer_from_pending_to_ok_stale_and_failing() -> None:
    cache, fetcher, clock = cache_for({"github": jwks(jwk(RSA_A, "a"), jwk(RSA_B, "b"))})
    pending = cache.health("github")
    assert (pending.state, pending.serving, pending.last_success) == ("pending", False, None)
    assert fetcher.calls["github"] == 0  # health never fetches

    cache.refresh(issuer())
    ok = cache.health("github")
    assert (ok.state, ok.serving, ok.key_count, ok.last_success, ok.last_error) == (
        "ok", True, 2, 1000.0, "")

    clock.now = 1300.0
    fetcher.documents["github"] = KeyFetchError("https://github.example/jwks answered HTTP 503")
    cache.refresh(issuer())
    stale = cache.health("github")
    assert (stale.state, stale.serving, stale.last_success, stale.last_attempt) == (
        "stale", True, 1000.0, 1300.0)
    assert "503" in stale.last_error

    fresh, fetcher, _ = cache_for({"gitlab": KeyFetchError("gitlab.example: timed out")})
    fresh.refresh(issuer("gitlab"))
    failing = fresh.health("gitlab")
    assert (failing.state, failing.serving, failing.key_count) == ("failing", False, 0)
    assert "timed out" in failing.last_error


def test_health_recovers_with_the_next_good_fetch() -> None:
    cache, fetcher, clock = cache_for({"github": KeyFetchError("down")})
    cache.refresh(issuer())
    fetcher.documents["github"] = jwks(jwk(RSA_A, "a"))
    clock.now = 2000.0
    cache.refresh(issuer())
    health = cache.health("github")
    assert (health.state, health.last_success, health.last_error) == ("ok", 2000.0, "")


def test_a_failing_on_fetch_callback_does_not_break_lookups() -> None:
    def explode(name: str, result: str) -> None:
        raise RuntimeError("metrics down")

    cache, _, _ = cache_for({"github": jwks(jwk(RSA_A, "a"))}, on_fetch=explode)
    assert cache.get_key(issuer(), "a", "RS256").kid == "a"


def test_refresh_all_ignores_the_cooldown_and_never_raises() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a")), "gitlab": RuntimeError("x")})
    issuers = [issuer("github"), issuer("gitlab")]
    assert cache.refresh_all(issuers) == {"github": "ok", "gitlab": "error"}
    assert cache.refresh_all(issuers) == {"github": "ok", "gitlab": "error"}
    assert fetcher.calls == Counter({"github": 2, "gitlab": 2})


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_background_refresher_refreshes_every_issuer_and_survives_failures() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a")), "gitlab": RuntimeError("x")})
    refresher = BackgroundRefresher(cache, [issuer("github"), issuer("gitlab")], interval=0.01)
    with refresher:
        assert wait_until(lambda: fetcher.calls["gitlab"] >= 3 and fetcher.calls["github"] >= 3)
        assert refresher.running
    assert not refresher.running
    assert cache.get_key(issuer("github"), "a", "RS256").kid == "a"


def test_background_refresher_stops_promptly_with_a_long_interval() -> None:
    cache, fetcher, _ = cache_for({"github": jwks(jwk(RSA_A, "a"))})
    refresher = BackgroundRefresher(cache, [issuer()], interval=300)
    refresher.start()
    assert fetcher.started.wait(10)
    refresher.stop()
    assert not refresher.running
    assert cache.fetch_count("github") == 1


def test_negative_cooldown_and_interval_are_refused() -> None:
    with pytest.raises(ValueError, match="cooldown"):
        KeyCache(FakeFetcher({}), FakeClock(), cooldown=-1)
    with pytest.raises(ValueError, match="interval"):
        BackgroundRefresher(KeyCache(FakeFetcher({}), FakeClock()), [], interval=0)
