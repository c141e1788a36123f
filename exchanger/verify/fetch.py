"""`HttpsKeyFetcher`: the KeyFetcher adapter that reads JWKS documents: over HTTPS (urllib) for
issuers with discovery or a pinned JWKS URL, and from a Kubernetes cluster's own API server for
`KubernetesCluster` key sources.

Rules of this module, each a known way key fetching has gone wrong elsewhere:
- https only: the issuer url, a pinned JWKS url and the discovery document's `jwks_uri`;
- no redirects: a 3xx is an error (PyJWT CVE-2026-102267, key substitution), and no proxies
  from the environment (configuration lives in one place);
- bounded: a per-operation socket timeout and an overall deadline, and at most `max_bytes`
  read (a larger body is refused, never truncated and parsed; octo-sts GHSA-75r6-6jg8-pfcq),
  whoever made the request;
- discovery's `issuer` must equal the configured url exactly, or its `jwks_uri` is not used;
- TLS trust for an issuer's own urls is the issuer's `ca_file` when given, else the system's;
  never a cluster's CA;
- a `KubernetesCluster` source's keys come from that cluster's API server
  (`/openid/v1/jwks` at its `server`, with its CA and kubegate's credentials for it) through
  the `ClusterJwks` port, never by discovery at the issuer url: a kubeadm or kind issuer
  (`https://kubernetes.default.svc...`) does not resolve outside the cluster and publishes its
  JWKS on another origin, and an EKS or GKE issuer is a public origin that must never be
  offered a cluster credential;
- this module holds no credential: the requests it makes carry no Authorization header, so a
  url from configuration or from a discovery document can never receive one;
- every failure leaves as KeyFetchError (UNAVAILABLE, KEYS_UNAVAILABLE) raised `from` the
  library error; details name URLs, clusters and statuses, never credentials.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from exchanger.verify import reasons
from exchanger.verify.compact import loads_strict_json
from exchanger.verify.issuers import (
    IssuerConfig,
    JWKSUrl,
    KubernetesCluster,
    StaticKeys,
    https_url_problem,
)
from kubegate.errors import KubegateError, UnavailableError

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_ACCEPT = {
    # Kubernetes serves its JWKS as application/jwk-set+json and answers 406 to a bare
    # application/json.
    "Accept": "application/json, application/jwk-set+json",
    "User-Agent": "kubegate",
}


class _Headers(Protocol):
    def get(self, name: str, /) -> Any: ...


class KeyResponse(Protocol):
    """An HTTP answer being read: http.client's and urllib3's responses both are one."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> _Headers: ...

    def read1(self, size: int, /) -> bytes: ...


ClusterJwks = Callable[[str, float], AbstractContextManager[KeyResponse]]
"""(cluster name, socket timeout) -> the open answer of that cluster's API server to
`GET /openid/v1/jwks`, asked with the cluster's CA and kubegate's credentials for it, without
following redirects. Raises KubegateError when the server cannot be asked; errors while the
answer is read inside the context leave as KubegateError too."""


class KeyFetchError(UnavailableError):
    """An issuer's keys could not be fetched: the key endpoint is down, slow or misbehaving."""

    def __init__(self, detail: str) -> None:
        super().__init__(reasons.KEYS_UNAVAILABLE, detail)


class HttpsKeyFetcher:
    """Fetches JWKS documents per the issuer's key source. Thread-safe (no shared state)."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        cluster_jwks: ClusterJwks | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0:
            raise ValueError("timeout and max_bytes must be positive")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._cluster_jwks = cluster_jwks

    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        source = issuer.key_source
        if isinstance(source, StaticKeys):
            return source.jwks
        if isinstance(source, KubernetesCluster):
            return self._from_cluster(issuer, source.cluster)
        jwks_url = source.url if isinstance(source, JWKSUrl) else self._discover(issuer)
        return self._get_json(jwks_url, issuer.ca_file, f"JWKS of issuer {issuer.name}")

    def _from_cluster(self, issuer: IssuerConfig, cluster: str) -> dict[str, Any]:
        what = f"JWKS of issuer {issuer.name}"
        where = f"the API server of cluster {cluster}"
        if self._cluster_jwks is None:
            raise KeyFetchError(f"{what}: no access to cluster {cluster}")
        try:
            with self._cluster_jwks(cluster, self._timeout) as response:
                body = self._read(response, where, what)
        except KeyFetchError:
            raise
        except KubegateError as error:
            raise KeyFetchError(f"{what}: {where}: {error.detail or error.reason}") from error
        except (OSError, http.client.HTTPException, ValueError) as error:  # an adapter's slip
            raise KeyFetchError(f"{what}: {where} failed: {_describe(error)}") from error
        return self._parse(body, where, what)

    def _discover(self, issuer: IssuerConfig) -> str:
        what = f"discovery of issuer {issuer.name}"
        document = self._get_json(issuer.discovery_url, issuer.ca_file, what)
        if document.get("issuer") != issuer.url:
            raise KeyFetchError(f"{what}: the document's issuer is not the configured url")
        jwks_uri = document.get("jwks_uri")
        problem = https_url_problem(jwks_uri)
        if problem or not isinstance(jwks_uri, str):
            raise KeyFetchError(f"{what}: jwks_uri {problem}")
        return jwks_uri

    def _get_json(self, url: str, ca_file: Path | None, what: str) -> dict[str, Any]:
        return self._parse(self._get(url, ca_file, what), url, what)

    def _parse(self, body: bytes, url: str, what: str) -> dict[str, Any]:
        try:
            document = loads_strict_json(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise KeyFetchError(f"{what}: {url} did not return JSON") from error
        if not isinstance(document, dict):
            raise KeyFetchError(f"{what}: {url} did not return a JSON object")
        return document

    def _get(self, url: str, ca_file: Path | None, what: str) -> bytes:
        problem = https_url_problem(url)
        if problem:
            raise KeyFetchError(f"{what}: url {problem}")
        request = urllib.request.Request(url, headers=dict(_ACCEPT))  # noqa: S310
        try:
            opener = _opener(ca_file)
            with opener.open(request, timeout=self._timeout) as response:
                return self._read(response, url, what)
        except urllib.error.HTTPError as error:
            error.close()
            raise KeyFetchError(f"{what}: {url} answered {_status(error.code)}") from error
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise KeyFetchError(f"{what}: {url} failed: {_describe(error)}") from error

    def _read(self, response: KeyResponse, url: str, what: str) -> bytes:
        if response.status != 200:
            raise KeyFetchError(f"{what}: {url} answered {_status(response.status)}, "
                                "expected 200")
        declared = response.headers.get("Content-Length")
        if isinstance(declared, str) and declared.isdigit() and int(declared) > self._max_bytes:
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


def _status(code: int) -> str:
    if 300 <= code < 400:
        return f"HTTP {code} (a redirect; redirects are not followed)"
    return f"HTTP {code}"


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    return f"{type(error).__name__}: {error}"
