"""Where a client gets its subject token: a projected token file, an environment variable, a
GitLab CI `id_tokens` variable, or the GitHub Actions ID-token endpoint. Each is a
`SubjectTokenSource`; `kubegate exchange` and the sidecar use the same ones.

Rules of this module:
- a token file is read again at every exchange (the kubelet rotates projected tokens), and a
  GitHub ID token is fetched fresh at every exchange (it is short-lived and free to get);
- every failure is a `SubjectTokenError` naming where the token should have come from, never
  containing a token (nor the runtime's request token, nor the request URL's query);
- `fingerprint()` is a digest of the token `read()` would return now, used to notice that a
  denied token was replaced; None when that cannot be known without asking for a new token;
- the ID-token request goes over https (http only to a loopback host), follows no redirects
  (they would carry the runtime's bearer token elsewhere), reads at most 64 KiB, and is
  retried only when the runtime could not be reached or answered 429 or 5xx;
- the HTTP client, TLS and retry libraries are imported only when an ID token is fetched: the
  exec plugin reads a file or a variable on a cache hit and should not pay for them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from kubegate.addresses import HostPort
from kubegate.errors import SubjectTokenError

if TYPE_CHECKING:
    import urllib.request

__all__ = ["EnvTokenSource", "FileTokenSource", "GitHubActionsTokenSource",
           "GitLabTokenSource", "SubjectTokenError", "SubjectTokenSource", "fingerprint_of",
           "id_token_url"]

ID_TOKEN_TIMEOUT_SECONDS = 10.0
ID_TOKEN_MAX_BYTES = 64 * 1024
ID_TOKEN_ATTEMPTS = 3  # the Actions toolkit retries its ID-token request too


class SubjectTokenSource(Protocol):
    @property
    def description(self) -> str: ...

    def read(self) -> str: ...

    def fingerprint(self) -> str | None: ...


def fingerprint_of(token: str) -> str:
    """The digest `fingerprint()` returns for token (sha256, hex, of the stripped token)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _non_empty(token: str, where: str) -> str:
    token = token.strip()
    if not token:
        raise SubjectTokenError(f"the subject token from {where} is empty or missing")
    return token


class FileTokenSource:
    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def description(self) -> str:
        return f"token file {self._path}"

    def read(self) -> str:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SubjectTokenError(f"{self.description}: no such file") from None
        except UnicodeDecodeError:
            raise SubjectTokenError(f"{self.description}: not UTF-8 text") from None
        except OSError as error:
            raise SubjectTokenError(
                f"{self.description}: cannot read: {error.strerror}") from None
        return _non_empty(text, self.description)

    def fingerprint(self) -> str | None:
        try:
            return fingerprint_of(self.read())
        except SubjectTokenError:
            return None


class EnvTokenSource:
    """A token the configuration loader read from an environment variable at start."""

    def __init__(self, name: str, value: str) -> None:
        self._name, self._value = name, value

    @property
    def description(self) -> str:
        return f"environment variable {self._name}"

    def read(self) -> str:
        return _non_empty(self._value, self.description)

    def fingerprint(self) -> str | None:
        return fingerprint_of(self._value.strip())


class GitLabTokenSource(EnvTokenSource):
    """A GitLab CI ID token: the job's `id_tokens:` entry, which GitLab exposes as an
    environment variable of the name the job chose (with `aud:` set to the exchanger's)."""

    @property
    def description(self) -> str:
        return (f"GitLab CI ID token {self._name} (declare it under the job's `id_tokens:` "
                "with the exchanger's audience)")


class GitHubActionsTokenSource:
    """A fresh GitHub Actions ID token per exchange (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN)."""

    def __init__(self, request_url: str, request_token: str, audience: str, *,
                 timeout: float = ID_TOKEN_TIMEOUT_SECONDS,
                 max_bytes: int = ID_TOKEN_MAX_BYTES) -> None:
        self._request_url, self._request_token = request_url, request_token
        self._audience, self._timeout, self._max_bytes = audience, timeout, max_bytes

    @property
    def description(self) -> str:
        return "the GitHub Actions ID-token endpoint"

    def read(self) -> str:
        import urllib.request

        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        check_id_token_url(self._request_url)
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            id_token_url(self._request_url, self._audience), headers={
                "Authorization": f"Bearer {self._request_token}",
                "Accept": "application/json", "User-Agent": "kubegate"})
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, SubjectTokenError)
                                     and e.transient),
            stop=stop_after_attempt(ID_TOKEN_ATTEMPTS),
            wait=wait_exponential_jitter(multiplier=0.5, max=4.0), reraise=True)
        body = retrying(_get, request, self._timeout, self._max_bytes)
        return _non_empty(_token_from_reply(body), self.description)

    def fingerprint(self) -> str | None:
        return None


def id_token_url(request_url: str, audience: str) -> str:
    """The runtime's request URL with `audience=` added to its query, URL-encoded."""
    parts = urlsplit(request_url)
    query = "&".join(q for q in (parts.query, urlencode({"audience": audience})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def check_id_token_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and HostPort(host=parts.hostname,
                                                              port=0).is_local:
        return
    raise SubjectTokenError("ACTIONS_ID_TOKEN_REQUEST_URL must be an https URL "
                            "(http only for a loopback host)")


def _opener() -> urllib.request.OpenerDirector:
    """http(s) and nothing else: no redirects, no proxies, no other schemes."""
    import ssl
    import urllib.request

    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.HTTPSHandler(context=ssl.create_default_context()),
                    urllib.request.HTTPHandler(), urllib.request.HTTPErrorProcessor(),
                    urllib.request.HTTPDefaultErrorHandler()):
        opener.add_handler(handler)
    return opener


def _get(request: urllib.request.Request, timeout: float, max_bytes: int) -> bytes:
    import http.client
    import ssl
    import urllib.error

    where = urlsplit(request.full_url)._replace(query="").geturl()  # the query may be a secret
    prefix = "the GitHub Actions ID-token endpoint"
    try:
        with _opener().open(request, timeout=timeout) as response:
            body: bytes = response.read(max_bytes + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise SubjectTokenError(f"{prefix}: {where} answered HTTP {error.code}",
                                transient=error.code == 429 or error.code >= 500) from None
    except (OSError, http.client.HTTPException) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise SubjectTokenError(f"{prefix}: {where} failed: {' '.join(str(reason).split())}",
                                transient=not isinstance(reason, ssl.SSLError)) from None
    if len(body) > max_bytes:
        raise SubjectTokenError(f"{prefix}: {where} answered more than {max_bytes} bytes")
    return body


def _token_from_reply(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise SubjectTokenError("the GitHub Actions ID-token endpoint: the reply is not "
                                "JSON") from None
    value = document.get("value") if isinstance(document, dict) else None
    if not isinstance(value, str) or not value:
        raise SubjectTokenError('the GitHub Actions ID-token endpoint: the reply has no '
                                '"value"')
    return value
