"""One exchange through the credential cache: what `kubegate exchange --output exec-credential`
(the exec plugin kubectl runs before every command) does instead of exchanging each time.

The cache key is a sha256 over everything that decides what the exchanger would hand out:
the exchanger's address, whether TLS is off, a digest of the CA file, the role, the lifetime,
the audiences, and the identity of the subject token: a digest of the token itself (a file, an
environment variable, a GitLab ID token), or for GitHub Actions a digest of the job's ID-token
request URL, request token and audience (each job has its own; fetching an ID token just to
find the key would cost a round trip on every hit). Two tokens that differ in any claim (an
`event_name`, an `environment`) are two identities, so a credential is never handed to a
token the exchanger did not judge; a rotated token file costs one exchange.

Rules of this module:
- a hit makes no network call and imports no grpc: `exchange` (the real exchange, given the
  subject token when it had to be read for the key) is called only on a miss;
- on a miss the key's lock is held across the exchange, and the cache read again under it,
  so parallel kubectl commands make one exchange between them;
- `refresh=True` (`--exec-kubeconfig`'s check) always exchanges, and stores the result for
  the plugin calls that follow;
- errors are the exchange's own (`SubjectTokenError`, `ExchangeError`, `UsageError`); the
  cache itself never fails a call (see `kubegate.client.cache`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from kubegate.client.cache import CacheEntry, CredentialCache, cache_folder, is_fresh
from kubegate.client.settings import ExchangeSettings, TokenSourceConfig, token_source
from kubegate.credential import Credential

__all__ = ["cache_key", "exchange_with_cache", "obtain_credential", "subject_identity"]

KEY_DOMAIN = "kubegate exchange credential cache v1"
Exchange = Callable[[str | None], Credential]  # the subject token, or None: read it yourself


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def subject_identity(source: TokenSourceConfig) -> tuple[str, str | None]:
    """(identity digest, the subject token when it was read to find it)."""
    if source.kind == "github-actions":
        return _digest("github-actions", source.github_request_url,
                       source.github_request_token, source.github_audience), None
    token = token_source(source).read()
    return _digest(source.kind, token), token


def ca_digest(ca_file: Path | None) -> str:
    """sha256 of the CA file's bytes ("" for the system roots); OSError when unreadable."""
    return "" if ca_file is None else hashlib.sha256(ca_file.read_bytes()).hexdigest()


def cache_key(settings: ExchangeSettings, *, identity: str, ca: str) -> str:
    return _digest(KEY_DOMAIN, settings.target, settings.plaintext, ca, settings.role,
                   settings.lifetime, list(settings.audiences), identity)


def exchange_with_cache(settings: ExchangeSettings, cache: CredentialCache, exchange: Exchange,
                        *, refresh: bool = False,
                        clock: Callable[[], float] = time.time) -> Credential:
    try:
        ca = ca_digest(settings.ca_file)
    except OSError:
        return exchange(None)  # which says why the CA file cannot be read
    identity, token = subject_identity(settings.token_source)
    key = cache_key(settings, identity=identity, ca=ca)
    if not refresh and (entry := _fresh(cache, key, clock())) is not None:
        return entry.credential
    with cache.locked(key):
        if not refresh and (entry := _fresh(cache, key, clock())) is not None:
            return entry.credential
        started = int(clock())
        credential = exchange(token)
        cache.store(CacheEntry(key=key, obtained_at=started, credential=credential),
                    now=clock())
        return credential


def _fresh(cache: CredentialCache, key: str, now: float) -> CacheEntry | None:
    entry = cache.load(key)
    return entry if entry is not None and is_fresh(entry, now) else None


def obtain_credential(settings: ExchangeSettings, environ: Mapping[str, str], *,
                      cached: bool, refresh: bool,
                      warn: Callable[[str], None]) -> Credential:
    """The credential of `settings`: through the user's credential cache when `cached` (the
    exec plugin's paths; `refresh` exchanges anyway and stores the result), else one
    exchange. A cache that cannot be used costs a `warn` line and an exchange, never the
    call. grpc is imported only when an exchange is made."""
    def exchange(token: str | None) -> Credential:
        from kubegate.client.once import exchange_once

        return exchange_once(settings, token=token)

    if not cached:
        return exchange(None)
    cache = CredentialCache(cache_folder(environ))
    if problem := cache.prepare():
        warn(f"credential cache not used: {problem}")
        return exchange(None)
    return exchange_with_cache(settings, cache, exchange, refresh=refresh)
