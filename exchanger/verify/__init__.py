"""Verification of subject tokens: compact JWS parsing, issuer keys, signatures and claims.

`Verifier.verify(token)` is the entry point; `KeyCache` holds the issuers' keys behind a
`KeyFetcher` port (`HttpsKeyFetcher` in production); `IssuerConfig` says whom to trust.
"""

from __future__ import annotations

from exchanger.verify.algorithms import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS
from exchanger.verify.claims import TokenClaims, check_claims
from exchanger.verify.compact import DEFAULT_MAX_TOKEN_BYTES, ParsedToken, parse_compact
from exchanger.verify.fetch import ClusterJwks, HttpsKeyFetcher, KeyFetchError, KeyResponse
from exchanger.verify.issuers import (
    IssuerConfig,
    JWKSUrl,
    KeySource,
    KubernetesCluster,
    OIDCDiscovery,
    StaticKeys,
)
from exchanger.verify.jwks import KeySet, VerificationKey, parse_jwks
from exchanger.verify.keys import BackgroundRefresher, Clock, KeyCache, KeyFetcher, KeyHealth
from exchanger.verify.reasons import KEYS_UNAVAILABLE, TOKEN_REASONS
from exchanger.verify.verifier import TokenReviewer, Verifier

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_MAX_TOKEN_BYTES",
    "KEYS_UNAVAILABLE",
    "SUPPORTED_ALGORITHMS",
    "TOKEN_REASONS",
    "BackgroundRefresher",
    "Clock",
    "ClusterJwks",
    "HttpsKeyFetcher",
    "IssuerConfig",
    "JWKSUrl",
    "KeyCache",
    "KeyFetchError",
    "KeyFetcher",
    "KeyHealth",
    "KeyResponse",
    "KeySet",
    "KeySource",
    "KubernetesCluster",
    "OIDCDiscovery",
    "ParsedToken",
    "StaticKeys",
    "TokenClaims",
    "TokenReviewer",
    "VerificationKey",
    "Verifier",
    "check_claims",
    "parse_compact",
    "parse_jwks",
]
