"""`Verifier`: a subject token in, a verified `Identity` out, or InvalidTokenError.

Order of checks (each one refuses before the next costs anything):
size cap -> verified-token cache -> compact parse (payload read only to pick the issuer) ->
issuer by the exact `iss` among configured issuers only (an unknown issuer never causes a key
fetch) -> algorithm in that issuer's allowlist -> key by (issuer, kid) -> signature ->
claims -> TokenReview for Kubernetes issuers that ask for it.

Cache rules: a verified token is remembered by the sha256 of its text in a bounded,
thread-safe LRU. A cache hit still re-checks `exp`/`nbf`/`iat` against the clock, so an expired
token is refused even when cached. Tokens of issuers with `token_review` are remembered for at
most `review_cache_seconds` (default 10 s, kube-apiserver's own token cache TTL) so that a
deleted pod's token stops working quickly; 0 disables caching them. Failures are never cached.

Tokens are secrets: nothing here logs or puts token text in an error.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from exchanger.identity import Identity
from exchanger.lru import DigestLru
from exchanger.verify import reasons
from exchanger.verify.claims import TokenClaims, check_claims, check_validity_window
from exchanger.verify.compact import DEFAULT_MAX_TOKEN_BYTES, check_size, parse_compact
from exchanger.verify.issuers import IssuerConfig
from exchanger.verify.jwks import verify_signature
from exchanger.verify.keys import Clock, KeyCache
from kubegate.errors import InvalidTokenError

DEFAULT_CACHE_SIZE = 4096
DEFAULT_REVIEW_CACHE_SECONDS = 10.0


class TokenReviewer(Protocol):
    """Asks the issuing cluster whether a token is still valid (Kubernetes TokenReview).

    Returns False for a token the cluster no longer accepts; raises UnavailableError when the
    cluster cannot be asked.
    """

    def review(self, issuer: IssuerConfig, token: str) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class _CachedVerification:
    identity: Identity
    claims: TokenClaims
    issuer: IssuerConfig
    fresh_until: float


class Verifier:
    """Verifies subject tokens against a fixed set of trusted issuers."""

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        keys: KeyCache,
        clock: Clock,
        token_reviewer: TokenReviewer | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        *,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        review_cache_seconds: float = DEFAULT_REVIEW_CACHE_SECONDS,
    ) -> None:
        self._by_url = _index_issuers(issuers)
        if token_reviewer is None and any(i.token_review for i in issuers):
            raise ValueError("an issuer asks for TokenReview but no token_reviewer was given")
        self._keys = keys
        self._clock = clock
        self._reviewer = token_reviewer
        self._cache = DigestLru[_CachedVerification](cache_size)
        self._max_token_bytes = max_token_bytes
        self._review_cache_seconds = review_cache_seconds

    @property
    def issuers(self) -> Mapping[str, IssuerConfig]:
        """The configured issuers by name."""
        return {issuer.name: issuer for issuer in self._by_url.values()}

    def verify(self, token: str) -> Identity:
        """The identity of a valid token; InvalidTokenError (or UnavailableError) otherwise."""
        check_size(token, self._max_token_bytes)
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now <= cached.fresh_until:
            return self._reuse(digest, cached, now)
        entry = self._verify_fully(token, now)
        if entry.fresh_until > now:
            self._cache.put(digest, entry)
        return entry.identity

    def _reuse(self, digest: bytes, cached: _CachedVerification, now: float) -> Identity:
        try:
            check_validity_window(cached.claims, cached.issuer, math.floor(now))
        except InvalidTokenError:
            self._cache.discard(digest)
            raise
        return cached.identity

    def _verify_fully(self, token: str, now: float) -> _CachedVerification:
        parsed = parse_compact(token, self._max_token_bytes)
        issuer = self._pick_issuer(parsed.payload)
        if parsed.algorithm not in issuer.algorithms:
            raise reasons.rejected(
                reasons.DISALLOWED_ALGORITHM,
                f"{parsed.algorithm} is not allowed for issuer {issuer.name}",
            )
        key = self._keys.get_key(issuer, parsed.key_id, parsed.algorithm)
        verify_signature(parsed, key)
        claims = check_claims(parsed.payload, issuer, math.floor(now))
        self._review(issuer, token)
        return _CachedVerification(
            identity=_identity(issuer, claims, parsed.payload),
            claims=claims,
            issuer=issuer,
            fresh_until=self._fresh_until(issuer, now),
        )

    def _pick_issuer(self, payload: Mapping[str, Any]) -> IssuerConfig:
        if "iss" not in payload:
            raise reasons.rejected(reasons.MISSING_CLAIM, "iss is missing")
        iss = payload["iss"]
        if not isinstance(iss, str):
            raise reasons.rejected(reasons.INVALID_CLAIM, "iss is not a string")
        issuer = self._by_url.get(iss)
        if issuer is None:
            raise reasons.rejected(reasons.UNKNOWN_ISSUER, "iss is not a configured issuer")
        return issuer

    def _review(self, issuer: IssuerConfig, token: str) -> None:
        if not issuer.token_review or self._reviewer is None:
            return
        if not self._reviewer.review(issuer, token):
            raise reasons.rejected(
                reasons.TOKEN_REVOKED, f"TokenReview at issuer {issuer.name} refused the token"
            )

    def _fresh_until(self, issuer: IssuerConfig, now: float) -> float:
        """Until when a verification may be reused; not after `now` means it is not cached."""
        return now + self._review_cache_seconds if issuer.token_review else math.inf


def _index_issuers(issuers: Sequence[IssuerConfig]) -> dict[str, IssuerConfig]:
    names = [issuer.name for issuer in issuers]
    urls = [issuer.url for issuer in issuers]
    if len(set(names)) != len(names) or len(set(urls)) != len(urls):
        raise ValueError("issuer names and urls must each be unique")
    return {issuer.url: issuer for issuer in issuers}


def _identity(issuer: IssuerConfig, claims: TokenClaims, payload: Mapping[str, Any]) -> Identity:
    return Identity(
        issuer=issuer.name,
        issuer_url=claims.issuer_url,
        subject=claims.subject,
        token_id=claims.token_id,
        audiences=claims.audiences,
        issued_at=claims.issued_at,
        expires_at=claims.expires_at,
        claims=payload,
    )
