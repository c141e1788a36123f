"""Who is behind a bearer token at the gateway: `GatewayAuthenticator.authenticate(token)`
returns the `GatewaySession` that may act now, or raises `GatewayRefusal`.

Two kinds of token are accepted, both through one `Verifier` (the exchanger's, with the
config's issuers, plus kubegate's own credentials as one more issuer):
- a self-issued kubegate credential (`identity_selfissued`): its session is read from the
  index by its `jti`; the user is its `sub`, the groups its `groups` claim, as the cluster's
  AuthenticationConfiguration maps them. TokenRequest credentials are refused 401
  USE_SELF_ISSUED (their user is a `system:serviceaccount:` name, which the gateway never
  impersonates; see that module);
- a person's ID token, or any subject token of a configured issuer (`identity_people`): the
  exchange's decision (mapping for this cluster, grant with claim templating, access gate:
  approval, windows), then a session in the index.

Rules of this module:
- refusals: 401 for a token that is missing, malformed, forged, expired, of an unknown issuer
  or without a session (its reason is the verifier's: BAD_SIGNATURE, TOKEN_EXPIRED, ...);
  403 for a valid identity that may not act now (OUTSIDE_WINDOW, APPROVAL_REQUIRED,
  SESSION_ENDED, WRONG_CLUSTER, NO_MATCHING_MAPPING, ...); 503 when a dependency (keys, the
  session index) cannot be reached. Messages are public messages: claim names at most, never
  a token or a claim's value; one boundary (`_refusal`) translates our errors;
- no user or group starting with `system:` ever leaves here (IMPERSONATION_REFUSED);
- a result is cached per sha256 of the token, bounded (`CACHE_SIZE`, least recently used
  out), for at most `CACHE_SECONDS` and never past the session's `not_after`; a cache hit
  still asks `ends.is_ended` and the clock, so a revoke is seen within one `SessionWatch`
  tick and an end on time exactly; every session let through is `track`ed by the watch.

Usage (the proxy's server):

    identity = start_identity(config)          # identity_assembly: stores, keys, mappings
    identity.ends.subscribe(on_session_end)    # (session id, SessionEnd value)
    session = identity.authenticator.authenticate(bearer_token)   # or GatewayRefusal
    ...
    identity.stop()

or, with parts built by the caller (tests):

    authenticator = build_authenticator(config, keys=keys, mappings=store,
                                        requests=requests, sessions=sessions,
                                        ends=watch, clock=clock)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from exchanger.access.gate import AccessGate
from exchanger.access.model import Session
from exchanger.access.ports import AccessStore, SessionStore
from exchanger.config import Config
from exchanger.gateway.identity_people import SYSTEM_PREFIX, CurrentMappings, PeopleSessions
from exchanger.gateway.identity_selfissued import (
    SELF_ISSUED_ISSUER,
    self_issued_issuer,
    session_of_credential,
)
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from exchanger.lru import DigestLru
from exchanger.verify import reasons
from exchanger.verify.compact import parse_compact
from exchanger.verify.keys import KeyCache
from exchanger.verify.verifier import TokenReviewer, Verifier
from kubegate.errors import Code, KubegateError

__all__ = ["CACHE_SECONDS", "CACHE_SIZE", "USE_SELF_ISSUED", "GatewayAuthenticator",
           "build_authenticator"]

CACHE_SECONDS: Final = 30.0
CACHE_SIZE: Final = 4096
USE_SELF_ISSUED: Final = "USE_SELF_ISSUED"
Clock = Callable[[], float]


class EndsView(Protocol):
    """What the authenticator needs of `SessionWatch`."""

    def is_ended(self, session_id: str) -> str | None: ...

    def track(self, session: Session) -> None: ...


@dataclass(frozen=True, kw_only=True)
class _Cached:
    session: GatewaySession
    fresh_until: float


class GatewayAuthenticator:
    """The gateway's `Authenticator` (see the module docstring)."""

    def __init__(self, *, verifier: Verifier, people: PeopleSessions,
                 sessions: SessionStore, ends: EndsView, cluster: str, clock: Clock,
                 cache_size: int = CACHE_SIZE) -> None:
        self._verifier, self._people, self._sessions = verifier, people, sessions
        self._ends, self._cluster, self._clock = ends, cluster, clock
        self._cache = DigestLru[_Cached](cache_size)

    def authenticate(self, token: str) -> GatewaySession:
        if not token:
            raise GatewayRefusal(401, "MISSING_CREDENTIAL", "a bearer token is required")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now < cached.fresh_until:
            return self._still_running(digest, cached.session, now)
        try:
            session = self._authenticate(token, now)
        except KubegateError as error:
            raise _refusal(error, token) from None
        self._cache.put(digest, _Cached(session=session,
                                        fresh_until=min(now + CACHE_SECONDS, session.not_after)))
        return session

    def _still_running(self, digest: bytes, session: GatewaySession,
                       now: float) -> GatewaySession:
        why = self._ends.is_ended(session.id)
        if why is None and now < session.not_after:
            return session
        self._cache.discard(digest)
        raise GatewayRefusal(403, "SESSION_ENDED", f"the session ended ({why or 'expired'})")

    def _authenticate(self, token: str, now: float) -> GatewaySession:
        identity = self._verifier.verify(token)
        if identity.issuer == SELF_ISSUED_ISSUER:
            stored = self._sessions.get(identity.token_id) if identity.token_id else None
            if stored is None:
                raise GatewayRefusal(401, "UNKNOWN_SESSION",
                                     "no session of this credential in the index")
            session = session_of_credential(identity, stored, cluster=self._cluster, now=now)
        else:
            session, stored = self._people.session_for(identity, token)
        _refuse_system_names(session)
        why = self._ends.is_ended(session.id)
        if why is not None:
            raise GatewayRefusal(403, "SESSION_ENDED", f"the session ended ({why})")
        self._ends.track(stored)
        return session


def build_authenticator(config: Config, *, keys: KeyCache, mappings: CurrentMappings,
                        requests: AccessStore, sessions: SessionStore, ends: EndsView,
                        clock: Clock, reviewer: TokenReviewer | None = None,
                        ) -> GatewayAuthenticator:
    """The authenticator of `config.gateway` over the given parts (ConfigError when the
    self-issued key cannot be read)."""
    settings = config.gateway
    if settings is None:
        raise ValueError("the config has no gateway section")
    own = self_issued_issuer(config)
    issuers = (*config.issuers, *((own,) if own is not None else ()))
    verifier = Verifier(issuers, keys, clock, reviewer)
    people = PeopleSessions(mappings=mappings, gate=AccessGate(requests, clock),
                            sessions=sessions, cluster=settings.cluster, clock=clock)
    return GatewayAuthenticator(verifier=verifier, people=people, sessions=sessions,
                                ends=ends, cluster=settings.cluster, clock=clock)


def _refuse_system_names(session: GatewaySession) -> None:
    names = (session.user, *session.groups)
    if not session.user or any(name.startswith(SYSTEM_PREFIX) for name in names):
        raise GatewayRefusal(403, "IMPERSONATION_REFUSED", "the gateway never acts as a "
                             f"user or group starting with {SYSTEM_PREFIX!r}")


_STATUS: Final = {Code.UNAUTHENTICATED: 401, Code.UNAVAILABLE: 503, Code.ABORTED: 503,
                  Code.RESOURCE_EXHAUSTED: 429}


def _refusal(error: KubegateError, token: str) -> GatewayRefusal:
    """Our errors as the gateway answers them: the reason, the public message, a status.
    A token that failed verification and looks like a Kubernetes service-account token (a
    TokenRequest credential) is told so (USE_SELF_ISSUED); its unverified claims only choose
    the words of a refusal, never admit anything."""
    status = _STATUS.get(error.code, 403)
    if status == 401 and _service_account_token(token):
        return GatewayRefusal(401, USE_SELF_ISSUED, "Kubernetes service-account tokens "
                              "(TokenRequest credentials) are not accepted by the gateway: "
                              "present a self-issued kubegate credential or your ID token")
    if error.reason == reasons.UNKNOWN_ISSUER:
        return GatewayRefusal(401, error.reason, "the token's issuer is not trusted here: "
                              "present a self-issued kubegate credential or an ID token of a "
                              "configured issuer (TokenRequest credentials are not accepted)")
    return GatewayRefusal(status, error.reason, error.public_message)


def _service_account_token(token: str) -> bool:
    try:
        claims = parse_compact(token).payload
    except KubegateError:
        return False
    return isinstance(claims.get("kubernetes.io"), Mapping) or str(
        claims.get("sub", "")).startswith("system:serviceaccount:")
