"""Errors of signing in. A usage or configuration problem (a non-HTTPS issuer, a cache file
others may read) is a `kubegate.errors.UsageError`; everything here is a failure to sign in.

Rules of this module:
- a message is one line for a person and never holds a token, a code, a code verifier, a
  refresh token or a client secret;
- a provider's own error text is shown cut short (it comes from the network).
"""

from __future__ import annotations

from kubegate.errors import Code, SubjectTokenError
from kubegate.grammar import shown

MAX_DESCRIPTION = 200


class LoginError(SubjectTokenError):
    """Signing in failed (denied, timed out, a bad callback, a token that fails its checks):
    without an ID token there is no subject token, hence the parent."""

    reason_name = "LOGIN_FAILED"


class LoginTimeoutError(LoginError):
    """Nobody finished signing in within the time allowed."""

    code = Code.DEADLINE_EXCEEDED


class OAuthError(LoginError):
    """The provider answered an OAuth error (`invalid_grant`, `access_denied`, ...)."""

    def __init__(self, where: str, error: str, description: str = "") -> None:
        self.error = error
        text = f"{where}: {shown(error).strip(chr(39))}"
        if description:
            text += f": {' '.join(description.split())[:MAX_DESCRIPTION]}"
        super().__init__(text)
