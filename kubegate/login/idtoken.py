"""The ID token's checks on receipt (OpenID Connect Core 1.0 section 3.1.3.7): signature by
one of the issuer's keys, `iss`, `aud`, `exp`, and for the code flow the `nonce` we sent.

Rules of this module:
- the algorithm comes from an asymmetric allowlist, never `none` or an HMAC (the client
  secret must not become a signing key); the key is the JWKS entry named by the header's
  `kid` (the only one when it names none);
- `aud` must contain our client id; `exp`, `iat` and `sub` are required; a small leeway
  absorbs clock skew;
- pure: keys (a JWKS document) and `now` are arguments; pyjwt's errors become `LoginError`
  here and nowhere else, and no message holds the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from kubegate.login.errors import LoginError

__all__ = ["ALGORITHMS", "IdToken", "verify_id_token"]

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
LEEWAY_SECONDS = 30


@dataclass(frozen=True, kw_only=True)
class IdToken:
    token: str = field(repr=False)
    subject: str
    email: str
    groups: tuple[str, ...]
    expires_at: int

    @property
    def who(self) -> str:
        return self.email or self.subject


def verify_id_token(token: str, jwks: Mapping[str, Any], *, issuer: str, client_id: str,
                    nonce: str | None, now: float) -> IdToken:
    key = _signing_key(token, jwks)
    try:
        claims = jwt.decode(
            token, key=key.key, algorithms=[key.algorithm_name], audience=client_id,
            issuer=issuer, leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"], "verify_iat": False})
    except jwt.PyJWTError as error:
        raise LoginError(f"the ID token from {issuer} was refused: "
                         f"{type(error).__name__}") from None
    if claims["exp"] + LEEWAY_SECONDS <= now:
        raise LoginError(f"the ID token from {issuer} has expired (check this clock)")
    if nonce is not None and not (isinstance(claims.get("nonce"), str)
                                  and hmac.compare_digest(claims["nonce"], nonce)):
        raise LoginError(f"the ID token from {issuer} does not carry this sign-in's nonce")
    groups = claims.get("groups", [])
    email = claims.get("email", "")
    return IdToken(token=token, subject=str(claims["sub"]),
                   email=email if isinstance(email, str) else "",
                   groups=tuple(g for g in groups if isinstance(g, str))
                   if isinstance(groups, list) else (),
                   expires_at=int(claims["exp"]))


def _signing_key(token: str, jwks: Mapping[str, Any]) -> jwt.PyJWK:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise LoginError(f"the ID token cannot be read: {type(error).__name__}") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in ALGORITHMS:
        raise LoginError(f"the ID token's algorithm {str(algorithm)[:20]!r} is not allowed")
    entries = jwks.get("keys")
    found = [entry for entry in (entries if isinstance(entries, list) else [])
             if isinstance(entry, dict) and (not kid or entry.get("kid") == kid)
             and entry.get("alg", algorithm) == algorithm and entry.get("use", "sig") == "sig"]
    if len(found) != 1:
        raise LoginError("the ID token is not signed by a key the issuer publishes")
    try:
        return jwt.PyJWK(found[0], algorithm=algorithm)
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise LoginError(f"the issuer's key for the ID token cannot be used: "
                         f"{type(error).__name__}") from None
