"""People sign in against a real Dex: `kubegate login` as a subprocess (as a person runs it),
Dex's own pages driven by the scripted browser of `tests.support.dex`, and the callback
delivered to kubegate's loopback listener over real HTTP.

The code flow with PKCE for a public client (any loopback port) and a confidential one (its
registered port and secret), the device grant, refresh without a browser, a revoked refresh
token leading to a new sign-in, logout, a wrong password (Dex shows its form again, so the
sign-in times out), and a tampered `state` (refused, nothing cached)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from kubegate.login.store import LoginCache
from tests.support.dex import BrowserStuck, Dex

URL = re.compile(r"^\s+(https://\S+/auth\?\S+)$", re.MULTILINE)
DEVICE = re.compile(r"open (\S+) and enter the code (\S+)")


class Login:
    """One `kubegate login` process, its stderr read up to the sign-in prompt."""

    def __init__(self, dex: Dex, cache: Path, *extra: str, client: str | None = None,
                 timeout: str = "60s") -> None:
        self.cache = cache
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubegate", "login", "--issuer", dex.url, "--client-id",
             client or dex.public_client, "--issuer-ca-file", str(dex.ca_path),
             "--no-browser", "--timeout", timeout, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "KUBEGATE_CACHE_DIR": str(cache)})
        self.prompt = ""

    def read_prompt(self, pattern: re.Pattern[str]) -> re.Match[str]:
        assert self.process.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.prompt += line
            if match := pattern.search(self.prompt):
                return match
        self.process.kill()
        pytest.fail(f"no sign-in prompt: {self.prompt}{self.finish()[1]}")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, self.prompt + err


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "cache"


def deliver(callback: str) -> tuple[int, str]:
    """What the browser does with Dex's redirect: GET it from the loopback listener."""
    assert callback.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(callback, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def code_flow(dex: Dex, cache: Path, email: str, *extra: str,
              client: str | None = None) -> tuple[int, str, str]:
    login = Login(dex, cache, *extra, client=client)
    url = login.read_prompt(URL).group(1)
    status, page = deliver(dex.browser_login(url, email))
    assert (status, "Signed in" in page) == (200, True)
    return login.finish()


def cached(cache: Path, dex: Dex, client: str | None = None) -> dict[str, Any]:
    path = LoginCache(cache / "login").path(dex.url, client or dex.public_client)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def test_the_code_flow_signs_alice_in_and_caches_her_tokens(dex: Dex, cache: Path) -> None:
    status, out, err = code_flow(dex, cache, "alice@example.com")
    assert status == 0, err
    assert re.fullmatch(rf"signed in to {re.escape(dex.url)} as alice@example\.com; ID token "
                        r"valid until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", out)
    document = cached(cache, dex)
    token = claims(document["id_token"])
    assert token["groups"] == ["sre-leads", "engineers"] and token["aud"] == dex.public_client
    assert token["exp"] == document["expiry"] and document["refresh_token"]
    for secret in (document["id_token"], document["refresh_token"]):
        assert secret not in out + err


def test_a_second_login_uses_the_cache_without_a_browser(dex: Dex, cache: Path) -> None:
    assert code_flow(dex, cache, "bob@example.com")[0] == 0
    status, out, err = Login(dex, cache).finish()
    assert (status, err) == (0, "") and "as bob@example.com" in out


def test_the_device_grant_signs_bob_in(dex: Dex, cache: Path) -> None:
    login = Login(dex, cache, "--device")
    uri, user_code = login.read_prompt(DEVICE).groups()
    dex.approve_device(uri, user_code, "bob@example.com")
    status, out, err = login.finish()
    assert status == 0, err
    assert "as bob@example.com" in out
    assert claims(cached(cache, dex)["id_token"])["groups"] == ["engineers"]


def expire(cache: Path, dex: Dex, **changes: object) -> dict[str, Any]:
    path = LoginCache(cache / "login").path(dex.url, dex.public_client)
    document = {**json.loads(path.read_text()), "expiry": int(time.time()) - 10, **changes}
    path.write_text(json.dumps(document))
    return document


def test_an_expired_id_token_is_refreshed_without_a_browser(dex: Dex, cache: Path) -> None:
    assert code_flow(dex, cache, "carol@example.com")[0] == 0
    before = expire(cache, dex)
    status, out, err = Login(dex, cache, timeout="5s").finish()
    assert (status, err) == (0, "")  # no URL printed: nobody was asked to sign in
    after = cached(cache, dex)
    assert after["id_token"] != before["id_token"]
    assert after["refresh_token"] and after["expiry"] > time.time() + 60
    assert claims(after["id_token"])["email"] == "carol@example.com"
    assert "groups" not in claims(after["id_token"])  # carol has none


def test_a_refused_refresh_token_leads_to_a_new_sign_in(dex: Dex, cache: Path) -> None:
    assert code_flow(dex, cache, "alice@example.com")[0] == 0
    expire(cache, dex, refresh_token="Chl0aGlzLWlzLW5vdC1hLXJlYWwtb25lEgdmb3JnZWQ")
    login = Login(dex, cache)
    url = login.read_prompt(URL).group(1)
    assert "expired or was revoked; signing in again" in login.prompt
    deliver(dex.browser_login(url, "bob@example.com"))
    status, out, err = login.finish()
    assert status == 0, err
    assert "as bob@example.com" in out and "Traceback" not in err


def test_logout_forgets_the_sign_in(dex: Dex, cache: Path) -> None:
    assert code_flow(dex, cache, "alice@example.com")[0] == 0
    path = LoginCache(cache / "login").path(dex.url, dex.public_client)

    def logout(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubegate", "logout", *flags],
                              capture_output=True, text=True, timeout=30, check=False,
                              env={**os.environ, "KUBEGATE_CACHE_DIR": str(cache)})

    result = logout("--issuer", dex.url, "--client-id", dex.public_client)
    assert (result.returncode, result.stdout) == (0, f"removed {path}\n")
    assert not path.exists()
    result = logout("--all")
    assert result.returncode == 0 and "nothing removed" in result.stdout


def test_a_wrong_password_ends_in_a_clear_timeout(dex: Dex, cache: Path) -> None:
    login = Login(dex, cache, timeout="5s")
    url = login.read_prompt(URL).group(1)
    with pytest.raises(BrowserStuck):
        dex.browser_login(url, "alice@example.com", "not-the-password")
    status, out, err = login.finish()
    assert (status, out) == (1, "")
    assert err.splitlines()[-1] == (
        "kubegate login: no sign-in came back from the browser within 5s (a wrong password "
        "keeps the browser on the sign-in page); run kubegate login again")
    assert not list((cache / "login").glob("*.json"))


def test_a_tampered_state_is_refused_and_nothing_is_cached(dex: Dex, cache: Path) -> None:
    login = Login(dex, cache)
    url = login.read_prompt(URL).group(1)
    callback = dex.browser_login(url, "alice@example.com")
    tampered = re.sub(r"state=[^&]+", "state=forged-state", callback)
    assert tampered != callback
    status, page = deliver(tampered)
    assert status == 400 and "Sign-in failed" in page
    code, out, err = login.finish()
    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith("kubegate login: the sign-in callback's state "
                                           "does not match this sign-in")
    assert not list((cache / "login").glob("*.json"))
    code_value = re.search(r"code=([^&]+)", callback)
    assert code_value is not None and code_value.group(1) not in err


def test_a_confidential_client_signs_in_on_its_registered_port(dex: Dex, cache: Path) -> None:
    status, out, err = code_flow(
        dex, cache, "bob@example.com", "--client-secret-file", str(dex.client_secret_file),
        "--listen-port", str(dex.confidential_port), client=dex.confidential_client)
    assert status == 0, err
    assert "as bob@example.com" in out
    document = cached(cache, dex, dex.confidential_client)
    assert claims(document["id_token"])["aud"] == dex.confidential_client
    assert dex.client_secret_file.read_text() not in out + err
