"""JWKS documents to verification keys, and the signature check with one of those keys.

Pure: a JWKS document and an issuer's algorithm allowlist in, a `KeySet` out; cryptography is
pyjwt's (`jwt.PyJWK`, its `Algorithm` objects), nothing is hand-rolled.

Invariants:
- keys are parsed one by one; a malformed or unusable key is skipped and counted, never fatal
  to the rest of the set (PyJWT CVE-2026-102274, the OpenID conformance decoy keys);
- a key is prepared only for algorithms that are in the issuer's allowlist AND fit its `kty`
  (and `crv`), AND equal its own `alg` when the JWK states one: the token's `alg` alone never
  chooses how a key is used (RFC 8725 §3.1);
- private keys (`d`), symmetric keys (`oct`), keys whose `use` is not `sig`, RSA keys under
  2048 bits and second keys with an already seen `kid` are skipped;
- a token without `kid` is matched only when exactly one key fits its algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt

from exchanger.verify import reasons
from exchanger.verify.algorithms import KEY_REQUIREMENTS, MIN_RSA_KEY_BITS
from exchanger.verify.compact import ParsedToken


@dataclass(frozen=True, kw_only=True)
class VerificationKey:
    """One public key of an issuer, prepared for each algorithm it may verify."""

    kid: str | None
    kty: str
    by_algorithm: Mapping[str, jwt.PyJWK]

    def accepts(self, algorithm: str) -> bool:
        return algorithm in self.by_algorithm


@dataclass(frozen=True, kw_only=True)
class KeySet:
    """The usable keys of one JWKS document, and how many of its entries were skipped."""

    keys: tuple[VerificationKey, ...]
    skipped: int = 0

    def find(self, kid: str | None, algorithm: str) -> VerificationKey | None:
        """The key for a token's `kid` and `alg`; None when this set does not have it."""
        if kid is None:
            return self._only_key_for(algorithm)
        key = next((k for k in self.keys if k.kid == kid), None)
        if key is not None and not key.accepts(algorithm):
            raise reasons.rejected(
                reasons.ALGORITHM_KEY_MISMATCH,
                f"the key named by kid cannot verify {algorithm} (it is {key.kty})",
            )
        return key

    def _only_key_for(self, algorithm: str) -> VerificationKey | None:
        candidates = [k for k in self.keys if k.accepts(algorithm)]
        if len(candidates) > 1:
            raise reasons.rejected(
                reasons.AMBIGUOUS_KEY, f"no kid, and {len(candidates)} keys fit {algorithm}"
            )
        return candidates[0] if candidates else None


def parse_jwks(document: Mapping[str, Any], algorithms: Sequence[str]) -> KeySet:
    """The usable keys of `document` for `algorithms`; ValueError when there are none."""
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError('not a JWKS document (no "keys" array)')
    keys: list[VerificationKey] = []
    seen_kids: set[str] = set()
    for entry in entries:
        key = load_key(entry, algorithms)
        if key is None or key.kid in seen_kids:
            continue
        if key.kid is not None:
            seen_kids.add(key.kid)
        keys.append(key)
    if not keys:
        raise ValueError(f"the JWKS has no usable key among {len(entries)} entries")
    return KeySet(keys=tuple(keys), skipped=len(entries) - len(keys))


def load_key(entry: object, algorithms: Sequence[str]) -> VerificationKey | None:
    """One JWK prepared for the algorithms it fits, or None when it is unusable."""
    if not _is_public_signing_key(entry):
        return None
    prepared = {}
    for algorithm in algorithms:
        if fits(entry, algorithm):
            jwk = _prepare(entry, algorithm)
            if jwk is None:
                return None
            prepared[algorithm] = jwk
    if not prepared:
        return None
    return VerificationKey(kid=entry.get("kid"), kty=entry["kty"], by_algorithm=prepared)


def fits(entry: Mapping[str, Any], algorithm: str) -> bool:
    """Whether a JWK may verify `algorithm`: its kty and curve, and its own alg if stated."""
    requirement = KEY_REQUIREMENTS[algorithm]
    if entry.get("kty") != requirement.kty:
        return False
    if requirement.curves and entry.get("crv") not in requirement.curves:
        return False
    return "alg" not in entry or entry["alg"] == algorithm


def verify_signature(token: ParsedToken, key: VerificationKey) -> None:
    """Raise BAD_SIGNATURE unless `key` signed `token` with the token's algorithm."""
    jwk = key.by_algorithm.get(token.algorithm)
    if jwk is None:
        raise reasons.rejected(
            reasons.ALGORITHM_KEY_MISMATCH, f"the key cannot verify {token.algorithm}"
        )
    try:
        valid = jwk.Algorithm.verify(token.signing_input, jwk.key, token.signature)
    except Exception as error:  # any failure inside the crypto library is a refusal
        raise reasons.rejected(
            reasons.BAD_SIGNATURE, f"signature check failed ({type(error).__name__})"
        ) from error
    if not valid:
        raise reasons.rejected(reasons.BAD_SIGNATURE, f"{token.algorithm} signature is invalid")


def _is_public_signing_key(entry: object) -> TypeGuard[dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("kty"), str):
        return False
    kid = entry.get("kid")
    if kid is not None and not (isinstance(kid, str) and kid):
        return False
    return "d" not in entry and entry.get("use", "sig") == "sig"


def _prepare(entry: dict[str, Any], algorithm: str) -> jwt.PyJWK | None:
    try:
        jwk = jwt.PyJWK(dict(entry), algorithm=algorithm)
    except Exception:  # untrusted input to a third-party parser: any failure skips the key
        return None
    if entry["kty"] == "RSA" and jwk.key.key_size < MIN_RSA_KEY_BITS:
        return None
    return jwk
