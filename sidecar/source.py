"""Where the sidecar gets its subject token: a projected token file, an environment variable,
or the GitHub Actions ID-token endpoint. Each is a `SubjectTokenSource`.

Rules of this module:
- a token file is read again at every exchange (the kubelet rotates projected tokens), and a
  GitHub ID token is fetched fresh at every exchange (it is short-lived and free to get);
- every failure is a `SubjectTokenError` naming where the token should have come from, never
  containing a token;
- `fingerprint()` is a digest of the token `read()` would return now, used to notice that a
  denied token was replaced; None when that cannot be known without asking for a new token.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol


class SubjectTokenError(Exception):
    """The subject token could not be read. The message names the source, never a token."""


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
        raise SubjectTokenError(f"the subject token from {where} is empty")
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


class GitHubActionsTokenSource:
    """A fresh GitHub Actions ID token per exchange (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN)."""

    def __init__(self, request_url: str, request_token: str, audience: str) -> None:
        self._request_url, self._request_token = request_url, request_token
        self._audience = audience

    @property
    def description(self) -> str:
        return "the GitHub Actions ID-token endpoint"

    def read(self) -> str:
        from exchanger.commands.exchange import FetchError, UsageError, fetch_github_token

        environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": self._request_url,
                   "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self._request_token}
        try:
            token = fetch_github_token(environ, self._audience)
        except (UsageError, FetchError) as error:
            raise SubjectTokenError(f"{self.description}: {error}") from None
        return _non_empty(token, self.description)

    def fingerprint(self) -> str | None:
        return None
