"""Checks on the claims of a token whose signature is valid: pure functions of the payload,
the issuer's configuration and `now` (whole seconds since the epoch).

Rules:
- `iss` must be a string exactly equal to the issuer's configured url: no normalisation, so a
  trailing slash, other case, a prefix or an array all fail;
- `sub` must be a non-empty string; `jti`, when present, a non-empty string;
- `exp` and `iat` are required, `nbf` optional; each must be a JSON integer (not a bool, float
  or string) with 0 < value < 2**40; a token is valid while
  `nbf - leeway <= now < exp + leeway` and `iat <= now + leeway`, and its lifetime
  `exp - iat` must be positive and at most the issuer's `max_token_lifetime`;
- `aud` is required: a non-empty string or a non-empty array of non-empty strings. AUDIENCE
  RULE (RFC 7519 §4.1.3): the token is accepted when at least one of its audiences is among the
  issuer's accepted audiences; other audiences beside ours do not make it fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exchanger.verify import reasons
from exchanger.verify.issuers import IssuerConfig

MAX_NUMERIC_DATE = 2**40


@dataclass(frozen=True, kw_only=True)
class TokenClaims:
    """The registered claims of a token, checked and typed."""

    issuer_url: str
    subject: str
    audiences: tuple[str, ...]
    issued_at: int
    expires_at: int
    not_before: int | None
    token_id: str | None


def check_claims(payload: Mapping[str, Any], issuer: IssuerConfig, now: int) -> TokenClaims:
    """Every claim rule above, in order; raise InvalidTokenError at the first failure."""
    claims = TokenClaims(
        issuer_url=check_issuer(payload, issuer),
        subject=_required_string(payload, "sub"),
        audiences=check_audience(payload, issuer),
        issued_at=_required_date(payload, "iat"),
        expires_at=_required_date(payload, "exp"),
        not_before=_optional_date(payload, "nbf"),
        token_id=_optional_string(payload, "jti"),
    )
    check_lifetime(claims, issuer)
    check_validity_window(claims, issuer, now)
    return claims


def check_issuer(payload: Mapping[str, Any], issuer: IssuerConfig) -> str:
    if "iss" not in payload:
        raise reasons.rejected(reasons.MISSING_CLAIM, "iss is missing")
    iss = payload["iss"]
    if not isinstance(iss, str):
        raise reasons.rejected(reasons.WRONG_ISSUER, "iss is not a string")
    if iss != issuer.url:
        raise reasons.rejected(reasons.WRONG_ISSUER, f"iss is not {issuer.name}'s url")
    return iss


def check_audience(payload: Mapping[str, Any], issuer: IssuerConfig) -> tuple[str, ...]:
    if "aud" not in payload:
        raise reasons.rejected(reasons.MISSING_CLAIM, "aud is missing")
    audiences = _audiences(payload["aud"])
    if not set(audiences).intersection(issuer.audiences):
        raise reasons.rejected(
            reasons.WRONG_AUDIENCE, f"none of the token's audiences is accepted by {issuer.name}"
        )
    return audiences


def check_lifetime(claims: TokenClaims, issuer: IssuerConfig) -> None:
    lifetime = claims.expires_at - claims.issued_at
    if lifetime <= 0:
        raise reasons.rejected(reasons.INVALID_CLAIM, "exp is not after iat")
    if lifetime > issuer.max_token_lifetime:
        raise reasons.rejected(
            reasons.LIFETIME_TOO_LONG,
            f"lifetime {lifetime}s is above {issuer.name}'s {issuer.max_token_lifetime}s",
        )


def check_validity_window(claims: TokenClaims, issuer: IssuerConfig, now: int) -> None:
    """The time-dependent rules; also re-checked on every use of a cached verification."""
    leeway = issuer.leeway
    if claims.expires_at <= now - leeway:
        raise reasons.rejected(
            reasons.TOKEN_EXPIRED, f"expired {now - claims.expires_at}s ago (leeway {leeway}s)"
        )
    if claims.not_before is not None and claims.not_before > now + leeway:
        raise reasons.rejected(
            reasons.TOKEN_NOT_YET_VALID, f"valid in {claims.not_before - now}s (leeway {leeway}s)"
        )
    if claims.issued_at > now + leeway:
        raise reasons.rejected(
            reasons.ISSUED_IN_FUTURE, f"issued {claims.issued_at - now}s ahead (leeway {leeway}s)"
        )


def _audiences(aud: object) -> tuple[str, ...]:
    if isinstance(aud, str) and aud:
        return (aud,)
    if isinstance(aud, list) and aud and all(isinstance(a, str) and a for a in aud):
        return tuple(aud)
    raise reasons.rejected(
        reasons.INVALID_CLAIM, "aud is not a non-empty string or array of non-empty strings"
    )


def _required_date(payload: Mapping[str, Any], name: str) -> int:
    if name not in payload:
        raise reasons.rejected(reasons.MISSING_CLAIM, f"{name} is missing")
    return _numeric_date(payload[name], name)


def _optional_date(payload: Mapping[str, Any], name: str) -> int | None:
    return _numeric_date(payload[name], name) if name in payload else None


def _numeric_date(value: object, name: str) -> int:
    # type(...) is int: a bool is an int subclass and must not pass as a date.
    if type(value) is not int or not 0 < value < MAX_NUMERIC_DATE:
        raise reasons.rejected(
            reasons.INVALID_CLAIM, f"{name} is not an integer NumericDate within 0..2**40"
        )
    return value


def _required_string(payload: Mapping[str, Any], name: str) -> str:
    if name not in payload:
        raise reasons.rejected(reasons.MISSING_CLAIM, f"{name} is missing")
    value = payload[name]
    if not isinstance(value, str) or not value:
        raise reasons.rejected(reasons.INVALID_CLAIM, f"{name} is not a non-empty string")
    return value


def _optional_string(payload: Mapping[str, Any], name: str) -> str | None:
    if name not in payload:
        return None
    return _required_string(payload, name)
