"""What kubegate trusts: one `IssuerConfig` per identity provider, and where its keys come from.

Invariants (checked at construction, ValueError with the field named):
- `url` is the exact `iss` tokens must carry: https, a host, no query, fragment or userinfo;
  it is never normalised (a trailing slash, case or a prefix make a different issuer);
- `audiences` is a non-empty tuple of non-empty strings: an issuer without an audience
  would accept tokens minted for any relying party (Vault CVE-2024-5798);
- `algorithms` is a non-empty subset of algorithms.SUPPORTED_ALGORITHMS: `none` and HMAC are
  refused by name, so a public key can never serve as an HMAC secret;
- `leeway` is within 0..300 seconds and `max_token_lifetime` is positive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exchanger.verify.algorithms import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS

MAX_LEEWAY_SECONDS = 300
DEFAULT_MAX_TOKEN_LIFETIME = 86400
DEFAULT_LEEWAY = 30
DISCOVERY_PATH = "/.well-known/openid-configuration"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


@dataclass(frozen=True, kw_only=True)
class OIDCDiscovery:
    """Keys from `{url}/.well-known/openid-configuration` -> `jwks_uri`."""


@dataclass(frozen=True, kw_only=True)
class JWKSUrl:
    """Keys from a pinned JWKS URL (https)."""

    url: str

    def __post_init__(self) -> None:
        problem = https_url_problem(self.url)
        if problem:
            raise ValueError(f"JWKSUrl.url {problem}")


@dataclass(frozen=True, kw_only=True)
class StaticKeys:
    """Keys given in configuration, as a JWKS document (`{"keys": [...]}`)."""

    jwks: Mapping[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        keys = self.jwks.get("keys") if isinstance(self.jwks, Mapping) else None
        if not isinstance(keys, list) or not keys:
            raise ValueError('StaticKeys.jwks must be a JWKS: {"keys": [at least one key]}')


@dataclass(frozen=True, kw_only=True)
class KubernetesCluster:
    """Keys from the named cluster's own API server (`/openid/v1/jwks`, asked with kubegate's
    credentials for that cluster), whatever its issuer url is; `token_review` asks the
    verifier to confirm each token with a TokenReview too (catches deleted pods)."""

    cluster: str
    token_review: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cluster, str) or not self.cluster:
            raise ValueError("KubernetesCluster.cluster must name a cluster")


KeySource = OIDCDiscovery | JWKSUrl | StaticKeys | KubernetesCluster


@dataclass(frozen=True, kw_only=True)
class IssuerConfig:
    """One trusted issuer. `name` is what trust mappings refer to."""

    name: str
    url: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    key_source: KeySource = field(default_factory=OIDCDiscovery)
    ca_file: Path | None = None
    max_token_lifetime: int = DEFAULT_MAX_TOKEN_LIFETIME
    leeway: int = DEFAULT_LEEWAY
    kind: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "audiences", _as_tuple(self.audiences))
        object.__setattr__(self, "algorithms", _as_tuple(self.algorithms))
        if isinstance(self.ca_file, str):
            object.__setattr__(self, "ca_file", Path(self.ca_file))
        problems = [p for check in _CHECKS if (p := check(self))]
        if problems:
            raise ValueError(f"issuer {self.name!r}: " + "; ".join(problems))

    @property
    def token_review(self) -> bool:
        """Whether tokens of this issuer are confirmed with a TokenReview after verification."""
        return isinstance(self.key_source, KubernetesCluster) and self.key_source.token_review

    @property
    def discovery_url(self) -> str:
        """Where OIDC discovery lives (OpenID Connect Discovery §4: strip a trailing slash)."""
        return self.url.rstrip("/") + DISCOVERY_PATH


def https_url_problem(url: object) -> str | None:
    """Why `url` is not an acceptable https URL for an issuer or a key endpoint, or None."""
    if not isinstance(url, str) or not url:
        return "must be a non-empty string"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https URL with a host"
    if parts.query or parts.fragment or parts.username or parts.password or "#" in url:
        return "must not carry a query, a fragment or credentials"
    if port == 0 or any(c.isspace() or not c.isprintable() for c in url):
        return "is not a valid URL"
    return None


def _as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def _check_name(config: IssuerConfig) -> str | None:
    if not isinstance(config.name, str) or not _NAME.fullmatch(config.name):
        return "name must be 1-253 characters of [A-Za-z0-9._-], starting alphanumeric"
    return None


def _check_url(config: IssuerConfig) -> str | None:
    problem = https_url_problem(config.url)
    return f"url {problem}" if problem else None


def _check_audiences(config: IssuerConfig) -> str | None:
    audiences = config.audiences
    if not isinstance(audiences, tuple) or not audiences:
        return "audiences must be a non-empty list (an issuer without audiences is refused)"
    if not all(isinstance(a, str) and a for a in audiences):
        return "every audience must be a non-empty string"
    return None


def _check_algorithms(config: IssuerConfig) -> str | None:
    algorithms = config.algorithms
    if not isinstance(algorithms, tuple) or not algorithms:
        return "algorithms must be a non-empty list"
    for alg in algorithms:
        if not isinstance(alg, str):
            return "every algorithm must be a string"
        if alg.lower() == "none":
            return f"algorithm {alg!r} is never accepted (unsigned tokens)"
        if alg.upper().startswith("HS"):
            return f"algorithm {alg!r} is never accepted (symmetric keys cannot be trusted here)"
        if alg not in SUPPORTED_ALGORITHMS:
            return f"algorithm {alg!r} is not one of {sorted(SUPPORTED_ALGORITHMS)}"
    return None


def _check_key_source(config: IssuerConfig) -> str | None:
    if not isinstance(config.key_source, OIDCDiscovery | JWKSUrl | StaticKeys | KubernetesCluster):
        return "key_source must be OIDCDiscovery, JWKSUrl, StaticKeys or KubernetesCluster"
    if config.ca_file is not None and not isinstance(config.ca_file, Path):
        return "ca_file must be a path or None"
    return None


def _check_times(config: IssuerConfig) -> str | None:
    leeway, lifetime = config.leeway, config.max_token_lifetime
    if type(leeway) is not int or not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        return f"leeway must be whole seconds within 0..{MAX_LEEWAY_SECONDS}"
    if type(lifetime) is not int or lifetime <= 0:
        return "max_token_lifetime must be a positive number of seconds"
    return None


def _check_kind(config: IssuerConfig) -> str | None:
    if config.kind is not None and (not isinstance(config.kind, str) or not config.kind):
        return "kind must be a non-empty string or None"
    return None


_CHECKS = (
    _check_name, _check_url, _check_audiences, _check_algorithms,
    _check_key_source, _check_times, _check_kind,
)
