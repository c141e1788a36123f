"""The authorization code request with PKCE (RFC 7636, S256 only) and its callback.

Rules of this module:
- the code verifier, state and nonce are each 32 random bytes (base64url, 43 characters),
  fresh per sign-in; the verifier never leaves this process except in the token request;
- the callback is accepted only with exactly one `state` equal to ours (constant-time
  compare) and exactly one `code`; a provider's `error` is reported as its error;
- pure: randomness comes from `secrets` and nothing here touches the network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from kubegate.login.errors import LoginError, OAuthError

__all__ = ["AuthorizationRequest", "authorization_url", "code_challenge", "code_from_callback",
           "new_authorization_request", "new_secret", "same_secret"]


def new_secret() -> str:
    """32 random bytes, base64url without padding: a code verifier, a state or a nonce."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def code_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(ASCII(code_verifier))), RFC 7636 section 4.2."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, kw_only=True)
class AuthorizationRequest:
    redirect_uri: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    verifier: str = field(repr=False)


def new_authorization_request(redirect_uri: str) -> AuthorizationRequest:
    return AuthorizationRequest(redirect_uri=redirect_uri, state=new_secret(),
                                nonce=new_secret(), verifier=new_secret())


def authorization_url(endpoint: str, *, client_id: str, scopes: Sequence[str],
                      request: AuthorizationRequest) -> str:
    """The endpoint with the request's parameters added to whatever query it already has."""
    parameters = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": request.redirect_uri,
        "scope": " ".join(scopes), "state": request.state, "nonce": request.nonce,
        "code_challenge": code_challenge(request.verifier), "code_challenge_method": "S256",
    })
    parts = urlsplit(endpoint)
    query = "&".join(q for q in (parts.query, parameters) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def code_from_callback(query: Mapping[str, Sequence[str]],
                       request: AuthorizationRequest) -> str:
    """The authorization code of a callback's query (as `parse_qs` gives it), or LoginError."""
    states = query.get("state", [])
    if len(states) != 1 or not same_secret(states[0], request.state):
        raise LoginError("the sign-in callback's state does not match this sign-in (a "
                         "stale or forged callback); nothing was saved, sign in again")
    if errors := query.get("error"):
        raise OAuthError("the identity provider refused the sign-in", errors[0],
                         (query.get("error_description") or [""])[0])
    codes = query.get("code", [])
    if len(codes) != 1 or not codes[0]:
        raise LoginError("the sign-in callback carries no authorization code")
    return codes[0]
