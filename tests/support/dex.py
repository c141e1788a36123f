"""Dex, a real OpenID Connect provider, for the tests where people sign in.

`tools/build-dex.sh` builds Dex v2.45.1 from the Go module proxy into the per-machine cache
(or `DEX` names a ready binary). Without it a test skips saying how to get it, and fails under
CI=true (`require_dex`).

`Dex` runs one Dex on loopback over HTTPS (a test CA at `ca_path`), issuer at the root path
(Dex's device flow for confidential clients breaks when the issuer has a path, dexidp/dex#3798),
memory storage, no approval screen, ID tokens of `id_token_lifetime`, and the `local` password
connector with static users:

| email               | groups                  | email_verified |
|---------------------|-------------------------|----------------|
| alice@example.com   | sre-leads, engineers    | true           |
| bob@example.com     | engineers               | true           |
| carol@example.com   | (none: no groups claim) | true           |
| mallory@example.com | sre-leads               | false          |

All share `PASSWORD`. Clients: `PUBLIC_CLIENT` (public: any loopback redirect port, device flow)
and `CONFIDENTIAL_CLIENT` (secret in `client_secret_file`, redirect
`http://127.0.0.1:{confidential_port}/callback` only).

`browser_login` and `approve_device` do what a person does in a browser: follow Dex's pages,
fill in the forms (email, password, user code), and stop at the first redirect that leaves Dex,
returning it unfetched: the caller decides whether to deliver it to the loopback listener, or
to tamper with it first.

The `dex` fixture is one Dex per test session; a test that needs other settings starts its own
(`with Dex(folder, ...) as dex:`).
"""

from __future__ import annotations

import html.parser
import http.cookiejar
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.support.controlplane import (
    Process,
    free_port,
    start_process,
    versions,
    wait_until,
)
from tests.support.pki import TestCA

__all__ = ["CONFIDENTIAL_CLIENT", "PASSWORD", "PUBLIC_CLIENT", "USERS", "Dex", "find_dex",
           "require_dex"]

HOW_TO_GET_DEX = (
    "dex is missing: run tools/build-dex.sh (needs Go >= 1.26 and the Go module proxy; it "
    "builds Dex at the version pinned in tools/versions.env through the wrapper module "
    "tools/dex), or set DEX to a dex binary"
)

PASSWORD: Final = "correct-horse-battery"
# bcrypt (cost 10) of PASSWORD, made once with golang.org/x/crypto/bcrypt: Dex wants hashes
_PASSWORD_HASH: Final = "$2a$10$86JMrJ/CEWfmk4fryBvUk.yNEbaClLBZx9vJMZLbJgKqeSSBF9KpO"
PUBLIC_CLIENT: Final = "kubegate-cli"
CONFIDENTIAL_CLIENT: Final = "kubegate-confidential"
_CLIENT_SECRET: Final = "confidential-client-secret-for-tests"  # noqa: S105 - a test fixture

USERS: Final[dict[str, dict[str, Any]]] = {
    "alice@example.com": {"groups": ["sre-leads", "engineers"], "verified": True},
    "bob@example.com": {"groups": ["engineers"], "verified": True},
    "carol@example.com": {"groups": [], "verified": True},
    "mallory@example.com": {"groups": ["sre-leads"], "verified": False},
}


def cached_dex() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubegate" / "tools" / f"dex-{versions()['DEX_VERSION']}" / "dex"


def find_dex() -> Path | None:
    ready = os.environ.get("DEX")
    binary = Path(ready) if ready else cached_dex()
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def require_dex() -> Path:
    binary = find_dex()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {HOW_TO_GET_DEX}", pytrace=False)
        pytest.skip(HOW_TO_GET_DEX)
    return binary


class Dex:
    """One Dex on 127.0.0.1 over HTTPS; see the module docstring for users and clients."""

    def __init__(self, folder: Path, *, binary: Path | None = None, ca: TestCA | None = None,
                 id_token_lifetime: str = "10m",  # noqa: S107 - a duration, not a secret
                 refresh_idle: str = "1h") -> None:
        self.folder = folder
        self.binary = binary or require_dex()
        self.ca = ca or TestCA("kubegate-test-dex-ca")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.confidential_port = free_port()
        self.id_token_lifetime = id_token_lifetime
        self.refresh_idle = refresh_idle
        self.ca_path = self.ca.write(folder / "dex-ca.crt")
        self.client_secret_file = folder / "client-secret"
        self.client_secret_file.write_text(_CLIENT_SECRET)
        self.client_secret_file.chmod(0o600)
        self.public_client = PUBLIC_CLIENT
        self.confidential_client = CONFIDENTIAL_CLIENT
        self.password = PASSWORD
        self.process: Process | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Dex:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        cert, key = self.ca.issue_server(("127.0.0.1",)).write(self.folder, "dex-tls")
        config = self.folder / "dex.yaml"
        config.write_text(json.dumps(self._config(cert, key), indent=2))  # JSON is YAML
        self.process = start_process("dex", [str(self.binary), "serve", str(config)],
                                     self.folder)
        wait_until(self._discovery_ok, timeout=30, what="dex discovery", process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self.process else ""

    def _config(self, cert: Path, key: Path) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "storage": {"type": "memory"},
            "web": {"https": f"127.0.0.1:{self.port}", "tlsCert": str(cert),
                    "tlsKey": str(key)},
            "logger": {"level": "info", "format": "text"},
            "expiry": {"idTokens": self.id_token_lifetime, "deviceRequests": "5m",
                       "refreshTokens": {"validIfNotUsedFor": self.refresh_idle,
                                         "reuseInterval": "3s"}},
            "oauth2": {"skipApprovalScreen": True, "responseTypes": ["code"],
                       "passwordConnector": "local",
                       "grantTypes": [
                           "authorization_code", "refresh_token", "password",
                           "urn:ietf:params:oauth:grant-type:device_code",
                           "urn:ietf:params:oauth:grant-type:token-exchange"]},
            "enablePasswordDB": True,
            "staticPasswords": [
                {"email": email, "hash": _PASSWORD_HASH, "username": email.split("@")[0],
                 "userID": f"user-{email.split('@')[0]}", "emailVerified": user["verified"],
                 **({"groups": user["groups"]} if user["groups"] else {})}
                for email, user in USERS.items()],
            "staticClients": [
                {"id": PUBLIC_CLIENT, "name": "kubegate CLI", "public": True},
                {"id": CONFIDENTIAL_CLIENT, "name": "kubegate (confidential)",
                 "secret": _CLIENT_SECRET,
                 "redirectURIs": [f"http://127.0.0.1:{self.confidential_port}/callback"]},
            ],
        }

    # -- what a relying party and a browser do ----------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def discovery(self) -> dict[str, Any]:
        with urllib.request.urlopen(  # noqa: S310 - https to the test's own Dex
                f"{self.url}/.well-known/openid-configuration", context=self.ssl_context(),
                timeout=5) as reply:
            document: dict[str, Any] = json.load(reply)
        return document

    def _discovery_ok(self) -> bool:
        try:
            return self.discovery().get("issuer") == self.url
        except (OSError, ValueError):
            return False

    def password_grant(self, email: str, *, password: str = PASSWORD,
                       scopes: str = "openid email groups profile") -> dict[str, Any]:
        """Tokens for a user without a browser (the confidential client's password grant)."""
        form = {"grant_type": "password", "username": email, "password": password,
                "scope": scopes, "client_id": CONFIDENTIAL_CLIENT,
                "client_secret": _CLIENT_SECRET}
        request = urllib.request.Request(  # noqa: S310 - https to the test's own Dex
            f"{self.url}/token", data=urllib.parse.urlencode(form).encode(), method="POST")
        with urllib.request.urlopen(request, context=self.ssl_context(),  # noqa: S310
                                    timeout=10) as reply:
            tokens: dict[str, Any] = json.load(reply)
        return tokens

    def browser_login(self, authorize_url: str, email: str, password: str = PASSWORD) -> str:
        """Follow `authorize_url` through Dex's login form as a browser would, and return the
        first redirect that leaves Dex (the client's callback), without fetching it.

        Raises BrowserStuck when Dex answers with a page that has no form to fill in and no
        way on (for example a wrong password shows the form again: see `max_forms`)."""
        return _Browser(self, {"login": email, "password": password}).run(authorize_url)

    def approve_device(self, verification_uri: str, user_code: str, email: str,
                       password: str = PASSWORD) -> str:
        """Enter `user_code` at `verification_uri` and sign in: the device flow's browser half.
        Returns the text of the last page Dex showed (its success page on success)."""
        browser = _Browser(self, {"login": email, "password": password, "user_code": user_code})
        return browser.run(verification_uri, leave_dex=False)


class BrowserStuck(AssertionError):
    """The scripted browser found no way forward (a wrong password, an error page)."""


class _Form(html.parser.HTMLParser):
    """The first form of a page: its action, method and named inputs with their values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self._inside = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and not self._done:
            self.action, self.method, self._inside = values.get("action", ""), values.get(
                "method", "get").lower(), True
        elif tag == "input" and self._inside and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._inside:
            self._inside, self._done = False, True


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


class _Browser:
    """Pages of one sign-in, with cookies, following redirects by hand (to see them)."""

    def __init__(self, dex: Dex, answers: dict[str, str], max_steps: int = 20,
                 max_forms: int = 3) -> None:
        self.dex, self.answers = dex, answers
        self.max_steps, self.max_forms = max_steps, max_forms
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=dex.ssl_context()),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirects())

    def run(self, url: str, *, leave_dex: bool = True) -> str:
        data: bytes | None = None
        forms, page = 0, ""
        for _ in range(self.max_steps):
            if not url.startswith(self.dex.url + "/"):
                if leave_dex:
                    return url
                raise BrowserStuck(f"redirected away from Dex to {url}")
            status, location, page = self._fetch(url, data)
            data = None
            if location is not None:
                url = urllib.parse.urljoin(url, location)
                continue
            form = _Form()
            form.feed(page)
            if form.action is None:
                if not leave_dex:
                    return page
                raise BrowserStuck(f"Dex answered {status} with no form:\n{page[:2000]}")
            forms += 1
            if forms > self.max_forms:
                raise BrowserStuck(f"Dex keeps showing a form (a wrong password?):\n"
                                   f"{page[:2000]}")
            fields = {**form.fields, **{k: v for k, v in self.answers.items()
                                        if k in form.fields}}
            url = urllib.parse.urljoin(url, form.action or url)
            encoded = urllib.parse.urlencode(fields)
            if form.method == "post":
                data = encoded.encode()
            else:
                url = f"{url}{'&' if '?' in url else '?'}{encoded}"
        raise BrowserStuck(f"more than {self.max_steps} pages: {url}")

    def _fetch(self, url: str, data: bytes | None) -> tuple[int, str | None, str]:
        request = urllib.request.Request(url, data=data)  # noqa: S310 - the test's own Dex
        try:
            with self.opener.open(request, timeout=10) as reply:
                return reply.status, None, reply.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            location = error.headers.get("Location")
            body = error.read().decode(errors="replace")
            if 300 <= error.code < 400 and location:
                return error.code, location, body
            return error.code, None, body


@pytest.fixture(scope="session")
def dex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dex]:
    """One Dex for the test session (users and clients in the module docstring)."""
    binary = require_dex()
    with Dex(tmp_path_factory.mktemp("dex"), binary=binary) as running:
        yield running
