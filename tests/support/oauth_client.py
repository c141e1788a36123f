"""A small RFC 8693 client for tests: form posts to an exchanger's token endpoint over HTTPS
(keep-alive, the exchanger's CA), answers as status, headers and JSON.

Nothing here decides what is right: tests compare the answers with what they expect.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.support.fixtures_exchanger import TestExchanger

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_PATH = "/oauth2/token"
METADATA_PATH = "/.well-known/oauth-authorization-server"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class OAuthAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any] = field(repr=False)

    @property
    def refusal(self) -> tuple[str, str]:
        """(OAuth `error`, `kubegate_reason`) of a refusal."""
        return self.body.get("error", ""), self.body.get("kubegate_reason", "")


def exchange_form(token: str, **more: str | list[str]) -> list[tuple[str, str]]:
    """The fields of a token exchange of token; a list value repeats its field."""
    fields = [("grant_type", GRANT_TYPE), ("subject_token_type", JWT_TYPE),
              ("subject_token", token)]
    for name, value in more.items():
        fields.extend((name, v) for v in (value if isinstance(value, list) else [value]))
    return fields


class OAuthClient:
    """One keep-alive HTTPS connection to base_url, trusting ca_file."""

    def __init__(self, base_url: str, ca_file: Path, *, timeout: float = 10) -> None:
        parts = urlsplit(base_url)
        context = ssl.create_default_context(cafile=str(ca_file))
        self._connection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, context=context, timeout=timeout)

    @classmethod
    def of(cls, exchanger: TestExchanger) -> OAuthClient:
        running = exchanger.running
        assert running.http_port and running.ca_file is not None, "no httpListen"
        return cls(f"https://127.0.0.1:{running.http_port}", running.ca_file)

    def exchange(self, token: str, **more: str | list[str]) -> OAuthAnswer:
        return self.post(TOKEN_PATH, urlencode(exchange_form(token, **more)).encode())

    def post(self, path: str, body: bytes, content_type: str = FORM) -> OAuthAnswer:
        return self.request("POST", path, body, {"Content-Type": content_type})

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> OAuthAnswer:
        self._connection.request(method, path, body=body, headers=headers or {})
        response = self._connection.getresponse()
        raw = response.read()
        return OAuthAnswer(status=response.status,
                           headers={k.lower(): v for k, v in response.getheaders()},
                           body=json.loads(raw) if raw else {})

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> OAuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def https_attempt(exchanger: TestExchanger, token: str, **more: str | list[str]) -> OAuthAnswer:
    """One token exchange over the exchanger's token endpoint, on a connection of its own."""
    with OAuthClient.of(exchanger) as client:
        return client.exchange(token, **more)
