"""The signing algorithms kubegate can verify at all, and the key each one needs.

Invariants:
- only asymmetric JWS algorithms are listed: never `none`, never HMAC (`HS*`), so no public key
  can ever be used as an HMAC secret (RS256 -> HS256 confusion);
- names are compared exactly, with no case folding (`nOnE` is simply not a name here);
- each algorithm names exactly one key type and, for elliptic curves, exactly one curve, so an RSA
  key never verifies an ES256 token and a P-384 key never verifies an ES256 token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, kw_only=True)
class KeyRequirement:
    """The JWK an algorithm needs: its `kty`, and its `crv` when the key type has curves."""

    kty: str
    curves: frozenset[str] = frozenset()


_RSA = KeyRequirement(kty="RSA")

KEY_REQUIREMENTS: Mapping[str, KeyRequirement] = MappingProxyType({
    "RS256": _RSA,
    "RS384": _RSA,
    "RS512": _RSA,
    "PS256": _RSA,
    "PS384": _RSA,
    "PS512": _RSA,
    "ES256": KeyRequirement(kty="EC", curves=frozenset({"P-256"})),
    "ES384": KeyRequirement(kty="EC", curves=frozenset({"P-384"})),
    "ES512": KeyRequirement(kty="EC", curves=frozenset({"P-521"})),
    "EdDSA": KeyRequirement(kty="OKP", curves=frozenset({"Ed25519", "Ed448"})),
})

SUPPORTED_ALGORITHMS = frozenset(KEY_REQUIREMENTS)
DEFAULT_ALGORITHMS = ("RS256", "ES256")
# RFC 7518 3.3: RSA keys for JWS must be at least 2048 bits.
MIN_RSA_KEY_BITS = 2048
