"""HTTP to the identity provider: GET a document, POST a form. The port is `Transport`;
`UrllibTransport` is the adapter (urllib, the issuer's CA or the system roots).

Rules of this module:
- every URL passes `discovery.is_allowed_url` (https, or http to a loopback host) before a
  byte is sent; redirects are not followed (a form with a code or a refresh token is never
  re-sent elsewhere), proxies from the environment are not used;
- a reply is read up to `max_bytes` (1 MiB) and a longer one refused; every call has a timeout;
- a non-2xx reply is returned, not raised: the token endpoint's OAuth errors are 400s;
- failures to connect are `LoginError` naming the URL without its query, never a form value.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlencode, urlsplit

from kubegate.errors import UsageError
from kubegate.login.discovery import is_allowed_url
from kubegate.login.errors import LoginError

if TYPE_CHECKING:
    import http.client
    import urllib.request

__all__ = ["BasicAuth", "Reply", "Transport", "UrllibTransport"]

MAX_REPLY_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int
    body: bytes


@dataclass(frozen=True, kw_only=True)
class BasicAuth:
    """client_secret_basic (RFC 6749 section 2.3.1: both parts form-encoded first)."""

    user: str
    password: str

    def header(self) -> str:
        pair = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r})"


class Transport(Protocol):
    def get(self, url: str) -> Reply: ...

    def post_form(self, url: str, form: dict[str, str], *,
                  auth: BasicAuth | None = None) -> Reply: ...


def _where(url: str) -> str:
    return urlsplit(url)._replace(query="", fragment="").geturl()


class UrllibTransport:
    def __init__(self, *, ca_file: Path | None = None, timeout: float = TIMEOUT_SECONDS,
                 max_bytes: int = MAX_REPLY_BYTES) -> None:
        self._ca_file, self._timeout, self._max_bytes = ca_file, timeout, max_bytes
        self._opener: urllib.request.OpenerDirector | None = None

    def get(self, url: str) -> Reply:
        return self._send(url, None, {"Accept": "application/json"})

    def post_form(self, url: str, form: dict[str, str], *,
                  auth: BasicAuth | None = None) -> Reply:
        headers = {"Accept": "application/json",
                   "Content-Type": "application/x-www-form-urlencoded"}
        if auth is not None:
            headers["Authorization"] = auth.header()
        return self._send(url, urlencode(form).encode(), headers)

    def _send(self, url: str, data: bytes | None, headers: dict[str, str]) -> Reply:
        import http.client
        import urllib.error
        import urllib.request

        if not is_allowed_url(url):
            raise LoginError(f"refusing {_where(url)}: not https")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            url, data=data, headers={**headers, "User-Agent": "kubegate"})
        try:
            with self._open(request) as response:
                status, body = response.status, response.read(self._max_bytes + 1)
        except urllib.error.HTTPError as error:
            with error:
                status, body = error.code, error.read(self._max_bytes + 1)
        except (OSError, http.client.HTTPException) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise LoginError(f"{_where(url)}: {' '.join(str(reason).split())}") from None
        if len(body) > self._max_bytes:
            raise LoginError(f"{_where(url)}: the reply is larger than {self._max_bytes} "
                             "bytes")
        return Reply(status=status, body=body)

    def _open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        import ssl
        import urllib.request

        if self._opener is None:
            try:
                context = ssl.create_default_context(
                    cafile=str(self._ca_file) if self._ca_file else None)
            except (OSError, ssl.SSLError) as error:
                raise UsageError(f"--issuer-ca-file {self._ca_file}: cannot load: "
                                 f"{error}") from None
            opener = urllib.request.OpenerDirector()
            for handler in (urllib.request.HTTPSHandler(context=context),
                            urllib.request.HTTPHandler(), urllib.request.HTTPErrorProcessor(),
                            urllib.request.HTTPDefaultErrorHandler()):
                opener.add_handler(handler)
            self._opener = opener
        response: http.client.HTTPResponse = self._opener.open(request, timeout=self._timeout)
        return response
