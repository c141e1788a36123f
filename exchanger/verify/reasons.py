"""The stable reasons verification refuses a token with, and the public message for each.

A reason is machine-readable and travels to the caller (google.rpc.ErrorInfo); the public
message helps the caller fix their side without revealing configuration. The detail, for the
audit log only, is written by the check that failed and never contains token bytes.

The one piece of configuration a public message names is an issuer's configured name, and only
when its keys are unavailable: callers and mapping authors already know it (trust mappings
and `kubectl get trustmappings` show it), and it tells them whose outage they are waiting on.
Never its url, key source or the failure's detail.
"""

# ruff: noqa: S105  (reason names mention "TOKEN"; none of them is a secret)

from __future__ import annotations

from kubegate.errors import InvalidTokenError, UnavailableError

# -- shape of the token (compact.py) --
TOKEN_TOO_LARGE = "TOKEN_TOO_LARGE"
MALFORMED_TOKEN = "MALFORMED_TOKEN"
ENCRYPTED_TOKEN = "ENCRYPTED_TOKEN"
NESTED_TOKEN = "NESTED_TOKEN"
FORBIDDEN_HEADER = "FORBIDDEN_HEADER"
INVALID_HEADER = "INVALID_HEADER"
WRONG_TOKEN_TYPE = "WRONG_TOKEN_TYPE"
DISALLOWED_ALGORITHM = "DISALLOWED_ALGORITHM"
# -- trust: issuer, keys, signature (verifier.py, keys.py, jwks.py) --
UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
UNKNOWN_KEY = "UNKNOWN_KEY"
AMBIGUOUS_KEY = "AMBIGUOUS_KEY"
ALGORITHM_KEY_MISMATCH = "ALGORITHM_KEY_MISMATCH"
BAD_SIGNATURE = "BAD_SIGNATURE"
TOKEN_REVOKED = "TOKEN_REVOKED"
# -- claims (claims.py) --
MISSING_CLAIM = "MISSING_CLAIM"
INVALID_CLAIM = "INVALID_CLAIM"
WRONG_ISSUER = "WRONG_ISSUER"
WRONG_AUDIENCE = "WRONG_AUDIENCE"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"
ISSUED_IN_FUTURE = "ISSUED_IN_FUTURE"
LIFETIME_TOO_LONG = "LIFETIME_TOO_LONG"
# -- a dependency, not the token (raised as UnavailableError) --
KEYS_UNAVAILABLE = "KEYS_UNAVAILABLE"

_PUBLIC_MESSAGES = {
    TOKEN_TOO_LARGE: "the subject token is too large",
    MALFORMED_TOKEN: "the subject token is not a well-formed compact JWS",
    ENCRYPTED_TOKEN: "encrypted tokens (JWE) are not accepted",
    NESTED_TOKEN: "nested tokens are not accepted",
    FORBIDDEN_HEADER: "the subject token carries a header parameter that is not accepted",
    INVALID_HEADER: "the subject token's header is invalid",
    WRONG_TOKEN_TYPE: "the subject token's type is not accepted",
    DISALLOWED_ALGORITHM: "the subject token's signing algorithm is not accepted",
    UNKNOWN_ISSUER: "the subject token's issuer is not trusted",
    UNKNOWN_KEY: "the subject token was signed with an unknown key",
    AMBIGUOUS_KEY: "the subject token names no key and its issuer publishes several",
    ALGORITHM_KEY_MISMATCH: "the subject token's algorithm does not match its key",
    BAD_SIGNATURE: "the subject token's signature is invalid",
    TOKEN_REVOKED: "the subject token is no longer valid at its issuer",
    MISSING_CLAIM: "the subject token lacks a required claim",
    INVALID_CLAIM: "the subject token has a claim of the wrong type or form",
    WRONG_ISSUER: "the subject token's issuer does not match",
    WRONG_AUDIENCE: "the subject token's audience is not accepted",
    TOKEN_EXPIRED: "the subject token has expired",
    TOKEN_NOT_YET_VALID: "the subject token is not valid yet",
    ISSUED_IN_FUTURE: "the subject token was issued in the future",
    LIFETIME_TOO_LONG: "the subject token's lifetime is longer than accepted",
}

TOKEN_REASONS = tuple(_PUBLIC_MESSAGES)


def rejected(reason: str, detail: str) -> InvalidTokenError:
    """The InvalidTokenError for `reason`; `detail` goes to the audit log and must hold no token."""
    return InvalidTokenError(reason, detail, public_message=_PUBLIC_MESSAGES[reason])


def keys_unavailable(issuer_name: str, detail: str) -> UnavailableError:
    """UNAVAILABLE KEYS_UNAVAILABLE for an issuer without keys; the public message names the
    issuer (its configured name), `detail` (the last failure, for the audit log) holds no token."""
    return UnavailableError(
        KEYS_UNAVAILABLE, detail,
        public_message=f"the keys of issuer {issuer_name} are unavailable; try again later")
