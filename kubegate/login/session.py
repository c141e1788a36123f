"""The sign-in use case: a fresh ID token for (issuer, client), from the cache, by refresh,
or by signing the person in (code flow with PKCE and a loopback redirect, or device grant).

    login = LoginSession(settings).fresh()      # CachedLogin: id_token, expiry, who

Rules of this module:
- the cache is consulted first and, on a hit, nothing is fetched; otherwise the login's lock
  is held while refreshing or signing in and the cache read again under it, so parallel
  kubectl commands make one refresh or one sign-in between them;
- a refresh the provider refuses with an OAuth error leads to an interactive sign-in
  (`interactive=False`: to a `LoginError`), never a traceback: RFC 6749 says `invalid_grant`
  for an expired, revoked or already used refresh token, Dex says `invalid_request`, and for
  any other refusal signing in again is the way on (or says what is wrong); a provider that
  cannot be reached is an error, not a sign-in; a refresh reply without a refresh token keeps
  the old one;
- every ID token is verified on receipt (`idtoken.verify_id_token`) against the keys of the
  issuer the settings name, the code flow's with its nonce; only then is it cached;
- everything for the person (the URL, the user code, notices) goes to `prompt` (stderr):
  stdout may be an ExecCredential;
- ports are injected (`Transport`, the browser opener, clocks, sleep) so tests swap them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from kubegate.login.authorize import (
    authorization_url,
    code_from_callback,
    new_authorization_request,
)
from kubegate.login.device import parse_device_authorization, poll_for_token
from kubegate.login.discovery import ProviderMetadata, discovery_url, parse_provider_metadata
from kubegate.login.errors import LoginError, OAuthError
from kubegate.login.loopback import CallbackListener
from kubegate.login.settings import LoginSettings
from kubegate.login.store import CachedLogin, LoginCache, needs_refresh
from kubegate.login.tokens import (
    TokenReply,
    client_auth,
    code_form,
    device_form,
    parse_token_reply,
    refresh_form,
)
from kubegate.login.transport import Transport, UrllibTransport

__all__ = ["LoginSession", "open_in_browser"]

LOCK_GRACE_SECONDS = 30.0


def open_in_browser(url: str) -> bool:
    """Open url in the person's browser. The browser's own output goes to stderr: our stdout
    may be an ExecCredential that kubectl parses."""
    import webbrowser

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        try:
            return webbrowser.open(url)
        except webbrowser.Error:
            return False
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class LoginSession:
    def __init__(self, settings: LoginSettings, *, transport: Transport | None = None,
                 cache: LoginCache | None = None, prompt: TextIO | None = None,
                 browser: Callable[[str], bool] = open_in_browser,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._transport = transport or UrllibTransport(ca_file=settings.issuer_ca_file)
        self.cache = cache or LoginCache(settings.cache_folder)
        self._prompt = prompt or sys.stderr
        self._browser, self._clock, self._monotonic, self._sleep = (
            browser, clock, monotonic, sleep)
        self._metadata: ProviderMetadata | None = None

    # -- the use case ------------------------------------------------------------------------

    def cached(self) -> CachedLogin | None:
        """The cached login while its ID token is fresh; no network."""
        self.cache.prepare()
        login = self.cache.load(self.settings.issuer, self.settings.client_id)
        if login is None or needs_refresh(login.expiry, self._clock()):
            return None
        return login

    def fresh(self, *, interactive: bool = True) -> CachedLogin:
        if (login := self.cached()) is not None:
            return login
        settings = self.settings
        with self.cache.locked(settings.issuer, settings.client_id,
                               wait=settings.timeout + LOCK_GRACE_SECONDS):
            if (login := self.cached()) is not None:
                return login  # another process refreshed or signed in meanwhile
            stale = self.cache.load(settings.issuer, settings.client_id)
            if stale is not None and stale.refresh_token:
                try:
                    return self.refresh(stale)
                except OAuthError:
                    self._say(f"kubegate login: the saved sign-in to {settings.issuer} has "
                              "expired or was revoked; signing in again")
            if not interactive:
                raise LoginError(f"not signed in to {settings.issuer}: run kubegate login")
            return self.sign_in()

    def refresh(self, login: CachedLogin) -> CachedLogin:
        metadata = self._discover()
        fields, auth = client_auth(self.settings.client_id, self.settings.client_secret)
        reply = parse_token_reply(self._transport.post_form(
            metadata.token_endpoint, {**refresh_form(login.refresh_token), **fields},
            auth=auth), "refreshing the sign-in")
        return self._keep(reply, nonce=None, previous_refresh_token=login.refresh_token)

    def sign_in(self) -> CachedLogin:
        metadata = self._discover()
        if self.settings.device:
            reply = self._device_flow(metadata)
            return self._keep(reply, nonce=None)
        reply, nonce = self._code_flow(metadata)
        return self._keep(reply, nonce=nonce)

    # -- the flows ---------------------------------------------------------------------------

    def _code_flow(self, metadata: ProviderMetadata) -> tuple[TokenReply, str]:
        settings = self.settings
        with CallbackListener(settings.listen_port) as listener:
            request = new_authorization_request(listener.redirect_uri)
            url = authorization_url(metadata.authorization_endpoint,
                                    client_id=settings.client_id, scopes=settings.scopes,
                                    request=request)
            self._say(f"kubegate login: sign in to {settings.issuer} in a browser:\n\n"
                      f"    {url}\n")
            if settings.open_browser:
                self._browser(url)
            code = listener.wait(lambda query: code_from_callback(query, request),
                                 timeout=settings.timeout, clock=self._monotonic)
        fields, auth = client_auth(settings.client_id, settings.client_secret)
        reply = self._transport.post_form(
            metadata.token_endpoint,
            {**code_form(code, request.redirect_uri, request.verifier), **fields}, auth=auth)
        return parse_token_reply(reply, "redeeming the authorization code"), request.nonce

    def _device_flow(self, metadata: ProviderMetadata) -> TokenReply:
        settings = self.settings
        fields, auth = client_auth(settings.client_id, settings.client_secret)
        authorization = parse_device_authorization(self._transport.post_form(
            metadata.device_authorization_endpoint,
            {**fields, "scope": " ".join(settings.scopes)}, auth=auth),
            "the device authorization endpoint")
        lines = [f"kubegate login: to sign in to {settings.issuer}, open "
                 f"{authorization.verification_uri} and enter the code "
                 f"{authorization.user_code}"]
        if authorization.verification_uri_complete:
            lines.append(f"  (or open {authorization.verification_uri_complete})")
        self._say("\n".join(lines))

        def poll() -> TokenReply:
            return parse_token_reply(self._transport.post_form(
                metadata.token_endpoint, {**device_form(authorization.device_code), **fields},
                auth=auth), "the device sign-in")

        return poll_for_token(poll, authorization, timeout=settings.timeout,
                              clock=self._monotonic, sleep=self._sleep)

    # -- shared steps ------------------------------------------------------------------------

    def _discover(self) -> ProviderMetadata:
        if self._metadata is None:
            url = discovery_url(self.settings.issuer)
            reply = self._transport.get(url)
            if reply.status != 200:
                raise LoginError(f"{url}: HTTP {reply.status}")
            self._metadata = parse_provider_metadata(reply.body, self.settings.issuer,
                                                     device=self.settings.device)
        return self._metadata

    def _keys(self, metadata: ProviderMetadata) -> dict[str, Any]:
        reply = self._transport.get(metadata.jwks_uri)
        try:
            document = json.loads(reply.body) if reply.status == 200 else None
        except (UnicodeDecodeError, ValueError):
            document = None
        if not isinstance(document, dict):
            raise LoginError(f"{metadata.jwks_uri}: no JSON key set (HTTP {reply.status})")
        return document

    def _keep(self, reply: TokenReply, *, nonce: str | None,
              previous_refresh_token: str = "") -> CachedLogin:
        from kubegate.login.idtoken import verify_id_token  # pyjwt: not on a cache hit

        metadata = self._discover()
        token = verify_id_token(reply.id_token, self._keys(metadata),
                                issuer=self.settings.issuer, client_id=self.settings.client_id,
                                nonce=nonce, now=self._clock())
        login = CachedLogin(issuer=self.settings.issuer, client_id=self.settings.client_id,
                            id_token=token.token,
                            refresh_token=reply.refresh_token or previous_refresh_token,
                            expiry=token.expires_at, who=token.who)
        self.cache.store(login)
        return login

    def _say(self, text: str) -> None:
        print(text, file=self._prompt, flush=True)
