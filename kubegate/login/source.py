"""A subject-token source for the exchange that yields the person's fresh ID token
(`TokenSourceConfig(kind="login")`): what `kubegate login --output exec-credential` exchanges.

Rules of this module:
- `fingerprint()` is the sha256 of the cached ID token while it is fresh, else None; it never
  touches the network and never signs anyone in;
- `read()` returns the cached ID token while it is fresh without importing the HTTP, TLS or
  JWT libraries (kubectl runs the plugin before every command); otherwise it refreshes or
  signs the person in (`session.LoginSession`), with every prompt on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kubegate.client.sources import fingerprint_of
from kubegate.errors import UsageError
from kubegate.login.settings import LoginSettings
from kubegate.login.store import LoginCache, needs_refresh

__all__ = ["LoginTokenSource", "cached_id_token"]


def cached_id_token(settings: LoginSettings, *, now: float) -> str | None:
    """The cached ID token while fresh, else None (UsageError for an untrusted cache)."""
    cache = LoginCache(settings.cache_folder)
    cache.prepare()
    login = cache.load(settings.issuer, settings.client_id)
    if login is None or needs_refresh(login.expiry, now):
        return None
    return login.id_token


class LoginTokenSource:
    def __init__(self, settings: LoginSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings, self._clock = settings, clock

    @property
    def description(self) -> str:
        return f"the sign-in to {self._settings.issuer}"

    def read(self) -> str:
        if (token := cached_id_token(self._settings, now=self._clock())) is not None:
            return token
        from kubegate.login.session import LoginSession  # HTTP, TLS, pyjwt: not on a hit

        return LoginSession(self._settings, clock=self._clock).fresh().id_token

    def fingerprint(self) -> str | None:
        try:
            token = cached_id_token(self._settings, now=self._clock())
        except UsageError:
            return None
        return None if token is None else fingerprint_of(token)
