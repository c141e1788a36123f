"""The sign-in use case against a fake provider (a `Transport` that is a plain object, with
real keys) and a real loopback listener: the code flow with PKCE, state and nonce, the cache
hit that fetches nothing, refresh, and `invalid_grant` leading to a new sign-in."""

from __future__ import annotations

import io
import json
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest

from kubegate.login.authorize import code_challenge
from kubegate.login.errors import LoginError, LoginTimeoutError, OAuthError
from kubegate.login.session import LoginSession
from kubegate.login.settings import LoginSettings
from kubegate.login.store import CachedLogin, LoginCache
from kubegate.login.transport import BasicAuth, Reply
from tests.unit.kubegate.test_login_rules import CLIENT, ISSUER, KEYS, RSA_KEY


class FakeProvider:
    """Discovery, keys, the token and device endpoints of one issuer, in memory."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: dict[str, str] = {}  # valid refresh token -> email
        self.rotate = True
        self.refresh_error = "invalid_grant"
        self.device_errors: list[str] = []
        self.issued = 0

    # -- Transport ---------------------------------------------------------------------------

    def get(self, url: str) -> Reply:
        self.requests.append((url, {}))
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return self._json({"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                               "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/keys",
                               "device_authorization_endpoint": f"{ISSUER}/device/code"})
        if url == f"{ISSUER}/keys":
            return self._json(KEYS)
        return Reply(status=404, body=b"")

    def post_form(self, url: str, form: dict[str, str], *,
                  auth: BasicAuth | None = None) -> Reply:
        self.requests.append((url, dict(form)))
        if url == f"{ISSUER}/device/code":
            return self._json({"device_code": "dev-code", "user_code": "WXYZ-1234",
                               "verification_uri": f"{ISSUER}/device", "expires_in": 300,
                               "interval": 1})
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self._redeem(form)
        if grant == "refresh_token":
            email = self.refresh_tokens.pop(form["refresh_token"], None)
            if email is None:
                return self._json({"error": self.refresh_error,
                                   "error_description": "Refresh token is invalid"}, 400)
            return self._tokens(email, nonce=None, refresh=self.rotate)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            if self.device_errors:
                return self._json({"error": self.device_errors.pop(0)}, 400)
            return self._tokens("bob@example.com", nonce=None)
        return self._json({"error": "unsupported_grant_type"}, 400)

    # -- what the provider's pages do ---------------------------------------------------------

    def authorize(self, url: str, email: str = "alice@example.com") -> str:
        """The redirect the provider sends the browser to after a sign-in."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        code = f"code-{len(self.codes)}"
        self.codes[code] = {**query, "email": email}
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def _redeem(self, form: dict[str, str]) -> Reply:
        asked = self.codes.pop(form["code"], None)
        if (asked is None or asked["redirect_uri"] != form["redirect_uri"]
                or asked["code_challenge"] != code_challenge(form["code_verifier"])):
            return self._json({"error": "invalid_grant"}, 400)
        return self._tokens(asked["email"], nonce=asked["nonce"])

    def _tokens(self, email: str, *, nonce: str | None, refresh: bool = True) -> Reply:
        self.issued += 1
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": CLIENT, "sub": f"user-{email}", "email": email,
                  "iat": now, "exp": now + 600, "jti": f"id-{self.issued}"}
        if nonce is not None:
            claims["nonce"] = nonce
        reply: dict[str, Any] = {"id_token": jwt.encode(claims, RSA_KEY, algorithm="RS256",
                                                        headers={"kid": "rsa-1"}),
                                 "access_token": "a", "token_type": "bearer"}
        if refresh:
            token = f"refresh-{self.issued}"
            self.refresh_tokens[token] = email
            reply["refresh_token"] = token
        return self._json(reply)

    @staticmethod
    def _json(document: object, status: int = 200) -> Reply:
        return Reply(status=status, body=json.dumps(document).encode())


class Browser:
    """Opens the authorization URL: the provider signs the person in, and the browser GETs
    the callback from a thread (as a real browser would, while we listen)."""

    def __init__(self, provider: FakeProvider, *, tamper: bool = False,
                 extra_paths: tuple[str, ...] = ()) -> None:
        self.provider, self.tamper, self.extra_paths = provider, tamper, extra_paths
        self.answers: list[int] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, url: str) -> bool:
        callback = self.provider.authorize(url)
        if self.tamper:
            callback = callback.replace("state=", "state=x")
        thread = threading.Thread(target=self._visit, args=(callback,))
        thread.start()
        self.threads.append(thread)
        return True

    def _visit(self, callback: str) -> None:
        base = callback.split("/callback")[0]
        for path in self.extra_paths:
            self.answers.append(_status(urllib.request.Request(base + path, method="GET")))
        self.answers.append(_status(urllib.request.Request(base + "/callback", data=b"x")))
        self.answers.append(_status(urllib.request.Request(callback)))

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


def settings(folder: Path, **changes: Any) -> LoginSettings:
    return LoginSettings(**{"issuer": ISSUER, "client_id": CLIENT, "cache_folder": folder,
                            "open_browser": True, "timeout": 10.0, **changes})


@pytest.fixture
def prompt() -> Iterator[io.StringIO]:
    yield io.StringIO()


def session(folder: Path, provider: FakeProvider, prompt: io.StringIO, browser: Any = None,
            **changes: Any) -> LoginSession:
    return LoginSession(settings(folder, **changes), transport=provider, prompt=prompt,
                        browser=browser or Browser(provider))


def test_the_code_flow_signs_in_with_pkce_and_caches_0600(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    browser = Browser(provider, extra_paths=("/favicon.ico", "/", "/callback/../x"))
    login = session(tmp_path / "login", provider, prompt, browser).fresh()
    browser.join()
    assert login.who == "alice@example.com" and login.refresh_token == "refresh-1"
    # the listener serves nothing but GET /callback, and answers it once
    assert browser.answers == [404, 404, 404, 501, 200]
    files = sorted(p.name for p in (tmp_path / "login").iterdir())
    path = LoginCache(tmp_path / "login").path(ISSUER, CLIENT)
    assert path.name in files and not [f for f in files if f.startswith(".")]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "login").stat().st_mode) == 0o700
    assert json.loads(path.read_text())["id_token"] == login.id_token
    token_form = next(form for url, form in provider.requests if url.endswith("/token"))
    text = prompt.getvalue()
    assert "code_challenge_method=S256" in text and "/auth?" in text
    for secret in (token_form["code"], token_form["code_verifier"], login.id_token,
                   login.refresh_token):
        assert secret not in text


def test_a_callback_with_another_state_is_refused_and_nothing_is_cached(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    browser = Browser(provider, tamper=True)
    with pytest.raises(LoginError, match="state does not match"):
        session(tmp_path / "login", provider, prompt, browser).fresh()
    browser.join()
    assert browser.answers[-1] == 400
    assert not [p for p in (tmp_path / "login").iterdir() if p.suffix == ".json"]
    assert not [url for url, _ in provider.requests if url.endswith("/token")]


def test_a_browser_that_never_comes_back_times_out(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    started = time.monotonic()
    with pytest.raises(LoginTimeoutError, match="within 0.5s"):
        session(tmp_path / "login", provider, prompt, lambda url: False, timeout=0.5).fresh()
    assert time.monotonic() - started < 5
    assert not [p for p in (tmp_path / "login").iterdir() if p.suffix == ".json"]


def test_a_refusal_at_the_provider_is_its_oauth_error(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    def refuse(url: str) -> bool:
        query = parse_qs(urlsplit(url).query)
        callback = (f"{query['redirect_uri'][0]}?error=access_denied&"
                    f"state={query['state'][0]}")
        thread = threading.Thread(target=_status, args=(urllib.request.Request(callback),))
        thread.start()
        refuse.threads.append(thread)  # type: ignore[attr-defined]
        return True

    refuse.threads = []  # type: ignore[attr-defined]
    with pytest.raises(OAuthError, match="access_denied"):
        session(tmp_path / "login", provider, prompt, refuse).fresh()
    for thread in refuse.threads:  # type: ignore[attr-defined]
        thread.join(timeout=10)


def store(folder: Path, provider: FakeProvider, *, expires_in: int) -> CachedLogin:
    provider.refresh_tokens["refresh-old"] = "alice@example.com"
    login = CachedLogin(issuer=ISSUER, client_id=CLIENT, id_token="old.id.token",
                        refresh_token="refresh-old", expiry=int(time.time()) + expires_in,
                        who="alice@example.com")
    LoginCache(folder).store(login)
    return login


def test_a_fresh_cached_login_is_used_without_any_request(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    cached = store(tmp_path / "login", provider, expires_in=600)
    assert session(tmp_path / "login", provider, prompt).fresh() == cached
    assert provider.requests == [] and prompt.getvalue() == ""


@pytest.mark.parametrize("expires_in", [30, -3600])
def test_near_or_past_expiry_the_refresh_token_gets_a_new_id_token(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO, expires_in: int) -> None:
    store(tmp_path / "login", provider, expires_in=expires_in)
    login = session(tmp_path / "login", provider, prompt, lambda url: pytest.fail(url)).fresh()
    assert login.id_token != "old.id.token" and login.refresh_token == "refresh-1"
    assert LoginCache(tmp_path / "login").load(ISSUER, CLIENT) == login
    refresh = next(form for url, form in provider.requests if url.endswith("/token"))
    assert refresh == {"grant_type": "refresh_token", "refresh_token": "refresh-old",
                       "client_id": CLIENT}
    assert prompt.getvalue() == ""


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    provider.rotate = False
    store(tmp_path / "login", provider, expires_in=0)
    assert session(tmp_path / "login", provider, prompt).fresh().refresh_token == "refresh-old"


@pytest.mark.parametrize("error", ["invalid_grant", "invalid_request"])  # RFC 6749; Dex
def test_a_revoked_refresh_token_leads_to_a_new_sign_in(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO, error: str) -> None:
    store(tmp_path / "login", provider, expires_in=0)
    provider.refresh_tokens.clear()  # revoked at the provider
    provider.refresh_error = error
    provider.device_errors = ["authorization_pending"]
    login = LoginSession(settings(tmp_path / "login", device=True), transport=provider,
                         prompt=prompt, sleep=lambda seconds: None).fresh()
    assert login.who == "bob@example.com"
    text = prompt.getvalue()
    assert "expired or was revoked; signing in again" in text
    assert f"open {ISSUER}/device and enter the code WXYZ-1234" in text
    assert "dev-code" not in text and "refresh-old" not in text


def test_without_interaction_a_revoked_refresh_token_is_a_login_error(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    store(tmp_path / "login", provider, expires_in=0)
    provider.refresh_tokens.clear()
    with pytest.raises(LoginError, match="not signed in to .*: run kubegate login"):
        session(tmp_path / "login", provider, prompt).fresh(interactive=False)


def test_a_confidential_client_sends_its_secret_only_as_basic_auth(
        tmp_path: Path, provider: FakeProvider, prompt: io.StringIO) -> None:
    seen: list[BasicAuth | None] = []
    post = provider.post_form

    def recording(url: str, form: dict[str, str], *, auth: BasicAuth | None = None) -> Reply:
        seen.append(auth)
        return post(url, form, auth=auth)

    provider.post_form = recording  # type: ignore[method-assign]
    store(tmp_path / "login", provider, expires_in=0)
    session(tmp_path / "login", provider, prompt, client_secret="s3cret").fresh()
    form = next(form for url, form in provider.requests if url.endswith("/token"))
    assert "client_id" not in form and "s3cret" not in json.dumps(form)
    assert seen and seen[0] is not None and seen[0].password == "s3cret"
