"""A person's ID token (or any verified subject token) at the gateway: the decision an
exchange makes, then a session in the index instead of a credential.

Steps, reusing the exchange's own parts (never copies of them):
1. match: among the trust mappings (`MappingSet`) whose issuer is the identity's and whose
   grant is for the fronted cluster, exactly one must hold (kubectl names no role): none is
   NO_MATCHING_MAPPING, several AMBIGUOUS_MAPPING;
2. the grant's user and groups are resolved from the claims (`Grant.resolve`, claim
   templating such as `{claim: email, prefix: "oidc:"}`; GRANT_CLAIM_UNUSABLE otherwise); a
   grant of a service account is refused (SERVICE_ACCOUNT_GRANT): the gateway acts for users
   and groups only (see `identity_selfissued`), and never for a `system:` name
   (IMPERSONATION_REFUSED), both before any session is made;
3. the access gate (`AccessGate.check`): OUTSIDE_WINDOW, APPROVAL_REQUIRED, or an admission
   whose `not_after` caps the session; its use is recorded (`AccessGate.consume`) when the
   session is created, as an exchange records it after issuing;
4. a `Session` in the index, so `kubegate sessions list|revoke` see it: its id is derived
   from the token (`session_id_of`), so every replica, and every later request with the same
   token, finds the same session instead of making another; `token_id` is a hash of the
   token's `iss` and `jti` (of the whole token without a `jti`), never the token;
   `not_after` = min(token exp, request end, window end).
A mapping of a tokenRequest cluster that grants a user (which the exchange's TokenRequest
backend cannot issue) is usable through the gateway only: that is how people reach such a
cluster. A session already in the index (same token) is reused while it is active and before its
end, without passing the gate again: a single-use request is used once per token. Making a
session is serialised per session id within the process (striped locks), so kubectl's first
burst of parallel requests makes one session and uses the request once; across replicas the
index's create decides (AlreadyExistsError: the other replica's session is used).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Final, Protocol

from exchanger.access.gate import AccessGate, Admission
from exchanger.access.lifecycle import requester_of
from exchanger.access.model import Session
from exchanger.access.ports import AlreadyExistsError, SessionStore
from exchanger.access.revocation import GATEWAY_SESSION_PREFIX
from exchanger.exchange import CI_CLAIMS
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from exchanger.identity import Identity
from exchanger.mappings.model import (
    AMBIGUOUS_MAPPING,
    NO_MATCHING_MAPPING,
    Grant,
    MappingSet,
    TrustMapping,
)
from kubegate.errors import KubegateError

__all__ = ["SYSTEM_PREFIX", "PeopleSessions", "session_id_of", "token_id_of"]

SERVICE_ACCOUNT_GRANT: Final = "SERVICE_ACCOUNT_GRANT"
LOCK_STRIPES: Final = 64
SYSTEM_PREFIX: Final = "system:"
"""Names the gateway never impersonates (checked before a session is made, and again for
every session by `identity`)."""


class CurrentMappings(Protocol):
    """The trust mappings in force (`exchanger.mappings.store.MappingStore`)."""

    @property
    def current(self) -> MappingSet: ...


def token_id_of(identity: Identity, token: str) -> str:
    """What the index keeps of the token: a hash of `iss` and `jti`, or of the token."""
    seed = (f"{identity.issuer_url}\n{identity.token_id}" if identity.token_id
            else token)
    return "sha256:" + hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()


def session_id_of(token_id: str, cluster: str) -> str:
    """A DNS-1123 session id that every replica derives alike from the same token."""
    digest = hashlib.sha256(f"{cluster}\n{token_id}".encode()).hexdigest()
    return GATEWAY_SESSION_PREFIX + digest[:32]


class PeopleSessions:
    """Sessions of verified identities through trust mappings, for one cluster."""

    def __init__(self, *, mappings: CurrentMappings, gate: AccessGate,
                 sessions: SessionStore, cluster: str, clock: Callable[[], float]) -> None:
        self._mappings, self._gate, self._sessions = mappings, gate, sessions
        self._cluster, self._clock = cluster, clock
        self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))

    def session_for(self, identity: Identity, token: str) -> tuple[GatewaySession, Session]:
        """The running session of this token, made now when there is none."""
        token_id = token_id_of(identity, token)
        session_id = session_id_of(token_id, self._cluster)
        stored = self._sessions.get(session_id)
        if stored is None:
            with self._locks[hash(session_id) % len(self._locks)]:
                stored = self._sessions.get(session_id)  # made while we waited?
                if stored is None:
                    mapping = self.match(identity)
                    grant = resolved_grant(mapping, identity)
                    admission = self._gate.check(identity, mapping, self._clock())
                    stored = self._create(identity, mapping, grant, admission, token_id,
                                          session_id)
        grant = resolved_grant(self._mapping_named(stored.mapping), identity)
        return self._gateway_session(identity, stored, grant), stored

    def match(self, identity: Identity) -> TrustMapping:
        """The one mapping for this cluster that holds for the identity (see the module)."""
        current = self._mappings.current
        matched = sorted((m for m in current.candidates(identity)
                          if m.grant.cluster == self._cluster and m.matches(identity.claims)),
                         key=lambda m: m.name)
        if not matched:
            raise GatewayRefusal(403, NO_MATCHING_MAPPING,
                                 "no trust mapping grants this identity access to this cluster")
        if len(matched) > 1:
            names = ", ".join(m.name for m in matched)
            raise GatewayRefusal(403, AMBIGUOUS_MAPPING, "several trust mappings grant this "
                                 f"identity access to this cluster ({names}); only one may")
        return matched[0]

    def _mapping_named(self, name: str) -> TrustMapping:
        mapping = self._mappings.current.get(name)
        if mapping is None or mapping.grant.cluster != self._cluster:
            raise GatewayRefusal(403, NO_MATCHING_MAPPING,
                                 "the trust mapping of this session is gone")
        return mapping

    def _create(self, identity: Identity, mapping: TrustMapping, grant: Grant,
                admission: Admission | None, token_id: str, session_id: str) -> Session:
        now = int(self._clock())
        limit = admission.not_after if admission is not None and admission.not_after else None
        not_after = min(identity.expires_at, limit or identity.expires_at)
        claims = identity.claims
        session = Session(
            id=session_id, mapping=mapping.name, cluster=self._cluster,
            namespace=grant.namespace, caller=requester_of(identity), token_id=token_id,
            issued_at=now, expires_at=identity.expires_at, not_after=not_after,
            access_request=admission.request.id if admission and admission.request else "",
            ci={name: str(claims[name]) for name in CI_CLAIMS if name in claims})
        if admission is not None:
            try:
                self._gate.consume(admission, now)  # NOT_USABLE: revoked or used meanwhile
            except KubegateError:
                made = self._sessions.get(session_id)  # by another replica, with this use?
                if made is None:
                    raise
                return made
        try:
            return self._sessions.create(session)
        except AlreadyExistsError:  # another replica made it from the same token first
            stored = self._sessions.get(session_id)
            if stored is None:
                raise
            return stored

    def _gateway_session(self, identity: Identity, stored: Session,
                         grant: Grant) -> GatewaySession:
        if not stored.active:
            raise GatewayRefusal(403, "SESSION_ENDED", "the session ended ("
                                 f"{stored.end_reason.value if stored.end_reason else 'ended'})")
        if stored.cluster != self._cluster:
            raise GatewayRefusal(403, "WRONG_CLUSTER", "the session is for another cluster")
        not_after = min(stored.not_after, identity.expires_at)
        if self._clock() >= not_after:
            raise GatewayRefusal(403, "SESSION_ENDED", "the session is past its end")
        return GatewaySession(
            id=stored.id, cluster=self._cluster, user=grant.user_name or "",
            groups=grant.group_names, mapping=stored.mapping,
            access_request=stored.access_request,
            subject=f"{identity.issuer} {identity.subject}", not_after=not_after)


def resolved_grant(mapping: TrustMapping, identity: Identity) -> Grant:
    """The mapping's grant with names from the claims; a user grant only (see the module)."""
    if mapping.grant.service_account is not None:
        raise GatewayRefusal(403, SERVICE_ACCOUNT_GRANT, f"trust mapping {mapping.name} "
                             "grants a service account; the gateway acts only for mappings "
                             "that grant a user and groups")
    grant = mapping.grant.resolve(identity.claims)
    names = (grant.user_name or "", *grant.group_names)
    if any(name.startswith(SYSTEM_PREFIX) for name in names):
        raise GatewayRefusal(403, "IMPERSONATION_REFUSED", "the gateway never acts as a user "
                             f"or group starting with {SYSTEM_PREFIX!r}")
    return grant
