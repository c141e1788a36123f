"""`HttpsKeyFetcher`: the KeyFetcher adapter that reads JWKS documents over HTTPS (urllib).

Rules of this module, each a known way key fetching has gone wrong elsewhere:
- https only: the issuer url, a pinned JWKS url and the discovery document's `jwks_uri`;
- no redirects: a 3xx is an error (PyJWT CVE-2026-102267, key substitution), and no proxies
  from the environment (configuration lives in one place);
- bounded: a per-operation socket timeout and an overall deadline, and at most `max_bytes`
  read (a larger body is refused, never truncated and parsed; octo-sts GHSA-75r6-6jg8-pfcq);
- discovery's `issuer` must equal the configured url exactly, or its `jwks_uri` is not used;
- TLS trust is the issuer's `ca_file` (or the cluster's) when given, else the system's;
- a Kubernetes cluster's bearer token is sent only to the issuer's own origin;
- every failure leaves as KeyFetchError (UNAVAILABLE, KEYS_UNAVAILABLE) raised `from` the
  library error; details name URLs and statuses, never credentials.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exchanger.verify import reasons
from exchanger.verify.compact import loads_strict_json
from exchanger.verify.issuers import (
    IssuerConfig,
    JWKSUrl,
    KubernetesCluster,
    StaticKeys,
    https_url_problem,
)
from kubegate.errors import UnavailableError

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024

# cluster name -> (CA file to trust for its API server or None, bearer token or None)
ClusterLookup = Callable[[str], tuple[Path | None, str | None]]


class KeyFetchError(UnavailableError):
    """An issuer's keys could not be fetched: the key endpoint is down, slow or misbehaving."""

    def __init__(self, detail: str) -> None:
        super().__init__(reasons.KEYS_UNAVAILABLE, detail)


@dataclass(frozen=True, kw_only=True)
class _Access:
    """How to reach one issuer: whom to trust, and a credential for its own origin only."""

    ca_file: Path | None
    bearer_token: str | None = None
    token_origin: str | None = None

    def __repr__(self) -> str:
        return f"_Access(ca_file={self.ca_file!r}, token_origin={self.token_origin!r})"


class HttpsKeyFetcher:
    """Fetches JWKS documents per the issuer's key source. Thread-safe (no shared state)."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        cluster_lookup: ClusterLookup | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0:
            raise ValueError("timeout and max_bytes must be positive")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._cluster_lookup = cluster_lookup

    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        source = issuer.key_source
        if isinstance(source, StaticKeys):
            return source.jwks
        access = self._access(issuer)
        jwks_url = source.url if isinstance(source, JWKSUrl) else self._discover(issuer, access)
        return self._get_json(jwks_url, access, f"JWKS of issuer {issuer.name}")

    def _access(self, issuer: IssuerConfig) -> _Access:
        source = issuer.key_source
        if not isinstance(source, KubernetesCluster) or self._cluster_lookup is None:
            return _Access(ca_file=issuer.ca_file)
        try:
            ca_file, bearer_token = self._cluster_lookup(source.cluster)
        except Exception as error:
            raise KeyFetchError(
                f"no access to cluster {source.cluster} for issuer {issuer.name}"
            ) from error
        return _Access(
            ca_file=ca_file or issuer.ca_file, bearer_token=bearer_token,
            token_origin=_origin(issuer.url),
        )

    def _discover(self, issuer: IssuerConfig, access: _Access) -> str:
        what = f"discovery of issuer {issuer.name}"
        document = self._get_json(issuer.discovery_url, access, what)
        if document.get("issuer") != issuer.url:
            raise KeyFetchError(f"{what}: the document's issuer is not the configured url")
        jwks_uri = document.get("jwks_uri")
        problem = https_url_problem(jwks_uri)
        if problem or not isinstance(jwks_uri, str):
            raise KeyFetchError(f"{what}: jwks_uri {problem}")
        return jwks_uri

    def _get_json(self, url: str, access: _Access, what: str) -> dict[str, Any]:
        body = self._get(url, access, what)
        try:
            document = loads_strict_json(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise KeyFetchError(f"{what}: {url} did not return JSON") from error
        if not isinstance(document, dict):
            raise KeyFetchError(f"{what}: {url} did not return a JSON object")
        return document

    def _get(self, url: str, access: _Access, what: str) -> bytes:
        problem = https_url_problem(url)
        if problem:
            raise KeyFetchError(f"{what}: url {problem}")
        request = urllib.request.Request(url, headers=self._headers(url, access))  # noqa: S310
        try:
            opener = _opener(access.ca_file)
            with opener.open(request, timeout=self._timeout) as response:
                return self._read(response, url, what)
        except urllib.error.HTTPError as error:
            error.close()
            raise KeyFetchError(f"{what}: {url} answered {_status(error.code)}") from error
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise KeyFetchError(f"{what}: {url} failed: {_describe(error)}") from error

    def _headers(self, url: str, access: _Access) -> dict[str, str]:
        # Kubernetes serves its JWKS as application/jwk-set+json and answers 406 to a bare
        # application/json.
        headers = {"Accept": "application/json, application/jwk-set+json",
                   "User-Agent": "kubegate"}
        if access.bearer_token and _origin(url) == access.token_origin:
            headers["Authorization"] = f"Bearer {access.bearer_token}"
        return headers

    def _read(self, response: http.client.HTTPResponse, url: str, what: str) -> bytes:
        if response.status != 200:
            raise KeyFetchError(f"{what}: {url} answered {response.status}, expected 200")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise KeyFetchError(f"{what}: {url} body is over {self._max_bytes} bytes")
        deadline = time.monotonic() + 2 * self._timeout
        body = bytearray()
        while len(body) <= self._max_bytes:
            if time.monotonic() > deadline:
                raise KeyFetchError(f"{what}: {url} is too slow")
            chunk = response.read1(min(_CHUNK_BYTES, self._max_bytes + 1 - len(body)))
            if not chunk:
                return bytes(body)
            body += chunk
        raise KeyFetchError(f"{what}: {url} body is over {self._max_bytes} bytes")


def _opener(ca_file: Path | None) -> urllib.request.OpenerDirector:
    """HTTPS and nothing else: no redirect handler, no proxy handler, no other schemes."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPSHandler(context=context),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.HTTPDefaultErrorHandler(),
    ):
        opener.add_handler(handler)
    return opener


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 443}"


def _status(code: int) -> str:
    if 300 <= code < 400:
        return f"HTTP {code} (a redirect; redirects are not followed)"
    return f"HTTP {code}"


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    return f"{type(error).__name__}: {error}"
