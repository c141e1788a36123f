"""One exchange, from subject token to credential: verify, match, issue, audit.

This is the exchanger's use case, free of gRPC: the servicer converts wire messages to an
`ExchangeInput` and our errors to statuses. A verified identity over its rate limit is refused
before matching (RESOURCE_EXHAUSTED). Every decision, allow or deny, is written to the
audit sink; when the allow line cannot be written, the fresh credential is revoked and the
exchange refused, so nothing is issued unrecorded. A grant that takes its user or groups from
claims is resolved right after matching, before the backend is called, so the audit line and
the credential carry the same names; a claim the token cannot supply is a denial
(GRANT_CLAIM_UNUSABLE, naming the claim but never its value), audited like any other.

A mapping with approval rules or windows passes the access gate (`exchanger.access.gate`)
right after matching: outside its windows the exchange is OUTSIDE_WINDOW, without an approved
request of this identity (and its bound claims) APPROVAL_REQUIRED; the credential never
outlives the request or the window (`IssueRequest.not_after`), and the allow line names the
request and its approvers. Only after that line is written is the request's use recorded
(`AccessGate.consume`); when that fails (revoked meanwhile, or a single-use request a racing
exchange used) the fresh credential is revoked and the exchange refused. Then, with a session
store, the credential is recorded as a `Session`; a failure there is logged and counted but
does not fail the exchange: the credential exists and is audited, and it still ends by its
own expiry.

Each exchange is one trace (`exchanger.tracing`, a no-op unless tracing is set up): a span
`exchange` with the issuer, mapping, decision, reason and session id, and a child span per
step (`verify`, `match`, `issue`, `audit`); its trace id is in the audit line and, with the
session id once issued, in every log line written during the exchange (`request_scope`).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from exchanger import tracing
from exchanger.access.gate import APPROVAL_REQUIRED, OUTSIDE_WINDOW, AccessGate, Admission
from exchanger.access.lifecycle import requester_of
from exchanger.access.model import Session
from exchanger.access.ports import SessionStore
from exchanger.audit.log import AuditSink
from exchanger.audit.record import Caller, GrantRecord, allow_record, deny_record
from exchanger.backends.base import (
    MIN_FORCED_LIFETIME,
    MIN_LIFETIME,
    CredentialBackend,
    IssuedCredential,
    IssueRequest,
)
from exchanger.identity import Identity
from exchanger.mappings.model import Grant, TrustMapping
from exchanger.verify.compact import parse_compact
from kubegate.errors import InvalidRequestError, KubegateError, PermissionDeniedError
from kubegate.logformat import request_scope, set_session_id

log = logging.getLogger(__name__)

Clock = Callable[[], float]
ACCEPTED_TOKEN_TYPES = frozenset({
    "", "urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token",
})
MAX_ROLE_LENGTH = 253
MAX_AUDIENCES = 16
REQUEST_ENDING = "REQUEST_ENDING"
CI_CLAIMS = ("repository_id", "run_id", "run_attempt", "sha", "project_id", "pipeline_id",
             "job_id")
"""The caller's claims a Session keeps, so the end of a CI run or job can revoke it."""
AUDIT_CI_CLAIMS = (*CI_CLAIMS, "ref")
"""The caller's claims its allow line keeps: which CI run and commit did this."""
__all__ = ["APPROVAL_REQUIRED", "OUTSIDE_WINDOW", "REQUEST_ENDING", "ExchangeInput",
           "Exchanger", "fit_lifetime"]


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Identity: ...


class MappingMatcher(Protocol):
    def match(self, identity: Identity, role: str | None = None) -> TrustMapping: ...


class IdentityLimiter(Protocol):
    """Raises RateLimitedError when a verified identity exchanges too often."""

    def check(self, identity: Identity) -> None: ...


class ExchangeObserver(Protocol):
    """Metrics hook: called once per exchange with its result."""

    def observe(self, *, result: str, reason: str, seconds: float) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ExchangeInput:
    subject_token: str = field(repr=False)
    subject_token_type: str = ""
    role: str = ""
    requested_lifetime: int = 0  # seconds; 0 = the mapping's maximum
    audiences: tuple[str, ...] = ()
    peer: str = ""


def check_input(request: ExchangeInput) -> None:
    if not request.subject_token:
        raise InvalidRequestError("MISSING_SUBJECT_TOKEN",
                                  public_message="subject_token is required")
    if request.subject_token_type not in ACCEPTED_TOKEN_TYPES:
        raise InvalidRequestError("UNSUPPORTED_TOKEN_TYPE",
                                  public_message="subject_token_type must be a JWT token type")
    if len(request.role) > MAX_ROLE_LENGTH:
        raise InvalidRequestError("INVALID_ROLE", public_message="role is too long")
    if request.requested_lifetime < 0:
        raise InvalidRequestError("INVALID_LIFETIME",
                                  public_message="requested_lifetime must not be negative")
    if len(request.audiences) > MAX_AUDIENCES or not all(request.audiences):
        raise InvalidRequestError("INVALID_AUDIENCES",
                                  public_message="audiences must be at most 16 non-empty strings")


def granted_lifetime(requested: int, grant: Grant) -> int:
    """The requested lifetime clamped to [10 minutes, the mapping's maximum]."""
    wanted = requested or grant.max_lifetime
    return max(MIN_LIFETIME, min(wanted, grant.max_lifetime))


def granted_audiences(requested: tuple[str, ...], grant: Grant) -> tuple[str, ...]:
    """Requested audiences must be among the mapping's; none requested = the mapping's."""
    if not requested:
        return grant.audiences
    extra = sorted(set(requested) - set(grant.audiences))
    if extra:
        raise PermissionDeniedError(
            "AUDIENCE_NOT_ALLOWED", f"audiences {extra} are not granted by the mapping",
            public_message="the requested audiences are not granted by the trust mapping",
        )
    return requested


def fit_lifetime(lifetime: int, admission: Admission | None, now: int) -> int:
    """`lifetime` cut to end at the admission's `not_after`; a denial when less than
    MIN_FORCED_LIFETIME would remain (OUTSIDE_WINDOW when the window ends first, else
    REQUEST_ENDING)."""
    if admission is None or not admission.not_after:
        return lifetime
    remaining = admission.not_after - now
    if remaining < MIN_FORCED_LIFETIME:
        request = admission.request
        window_first = request is None or admission.not_after < request.ends_at
        raise PermissionDeniedError(
            OUTSIDE_WINDOW if window_first else REQUEST_ENDING,
            f"{remaining}s left before not_after",
            public_message=("the time window" if window_first else "the access request")
            + f" ends in less than {MIN_FORCED_LIFETIME}s")
    return min(lifetime, remaining)


def unverified_caller(token: str) -> Caller:
    """iss/sub/jti as the token claims them, for the audit line of a refused token only."""
    try:
        claims = parse_compact(token).payload
    except KubegateError:
        return Caller()
    def text(key: str) -> str:
        value = claims.get(key)
        return value if isinstance(value, str) else ""
    return Caller(iss=text("iss"), sub=text("sub"), jti=text("jti"))


def grant_record(grant: Grant, lifetime: int, audiences: tuple[str, ...]) -> GrantRecord:
    return GrantRecord(
        cluster=grant.cluster, namespace=grant.namespace,
        service_account=grant.service_account or "", user=grant.user_name or "",
        groups=grant.group_names, audiences=audiences, lifetime_seconds=lifetime,
    )


class Exchanger:
    def __init__(
        self, *, verifier: TokenVerifier, mappings: MappingMatcher,
        backends: Mapping[str, CredentialBackend], audit: AuditSink, clock: Clock,
        observer: ExchangeObserver | None = None,
        new_session_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        limiter: IdentityLimiter | None = None,
        gate: AccessGate | None = None,
        sessions: SessionStore | None = None,
        on_session_error: Callable[[str], None] | None = None,
    ) -> None:
        """gate: checks mappings with approval rules or windows (None: such mappings are
        refused, fail closed); sessions: where issued credentials are recorded;
        on_session_error: counts session-store failures (called with the error's reason)."""
        self._verifier, self._mappings, self._backends = verifier, mappings, backends
        self._audit, self._clock, self._observer = audit, clock, observer
        self._new_session_id = new_session_id
        self._limiter = limiter
        self._gate, self._sessions = gate, sessions
        self._on_session_error = on_session_error

    def exchange(self, request: ExchangeInput) -> tuple[IssuedCredential, TrustMapping]:
        started = self._clock()
        with tracing.span("exchange") as root, request_scope(root.trace_id):
            state = _Progress(trace_id=root.trace_id)
            try:
                credential, mapping = self._exchange(request, state)
            except KubegateError as error:
                root.set(**state.summary("deny", error.reason))
                log.debug("exchange denied: %s", error.reason)
                self._deny(request, state, error)
                self._observe("deny", error.reason, started)
                raise
            root.set(**state.summary("allow", "OK"), session_id=credential.session_id)
            log.debug("exchange allowed: mapping %s", mapping.name)
        self._observe("allow", "OK", started)
        return credential, mapping

    def refuse(self, request: ExchangeInput, error: KubegateError) -> None:
        """Record and count a request refused before it could be read (a message that does not
        parse): the same audit line and metrics as any other denial. The caller raises."""
        with tracing.span("exchange", decision="deny", reason=error.reason) as root, \
                request_scope(root.trace_id):
            self._deny(request, _Progress(trace_id=root.trace_id), error)
        self._observe("deny", error.reason, self._clock())

    def _exchange(self, request: ExchangeInput,
                  state: _Progress) -> tuple[IssuedCredential, TrustMapping]:
        check_input(request)
        with tracing.span("verify"):
            state.identity = identity = self._verifier.verify(request.subject_token)
        if self._limiter is not None:
            self._limiter.check(identity)
        with tracing.span("match"):
            state.mapping = mapping = self._mappings.match(identity, request.role or None)
            grant = mapping.grant.resolve(identity.claims)  # GRANT_CLAIM_UNUSABLE: denied
            lifetime = granted_lifetime(request.requested_lifetime, grant)
            audiences = granted_audiences(request.audiences, grant)
            state.granted = (grant, lifetime, audiences)
            admission = self._admit(identity, mapping)
            lifetime = fit_lifetime(lifetime, admission, int(self._clock()))
            state.granted = (grant, lifetime, audiences)
        with tracing.span("issue"):
            backend = self._backends.get(grant.cluster)
            if backend is None:
                raise PermissionDeniedError(
                    "UNKNOWN_CLUSTER", f"mapping {mapping.name} names cluster "
                    f"{grant.cluster!r}, which is not configured")
            credential = backend.issue(IssueRequest(
                identity=identity, mapping=mapping.name, grant=grant, lifetime=lifetime,
                audiences=audiences, session_id=self._new_session_id(),
                not_after=admission.not_after if admission else 0,
            ))
        set_session_id(credential.session_id)
        issued = grant_record(grant, credential.expires_at - int(self._clock()), audiences)
        state.granted = issued
        with tracing.span("audit"):
            self._allow(request, identity, mapping, issued, credential, backend,
                        trace_id=state.trace_id, admission=admission)
        if admission is not None:
            self._consume(admission, credential, backend)
        self._record_session(identity, mapping, grant, credential, admission)
        return credential, mapping

    def _admit(self, identity: Identity, mapping: TrustMapping) -> Admission | None:
        if self._gate is not None:
            return self._gate.check(identity, mapping, self._clock())
        if mapping.approval is not None or mapping.windows:
            raise PermissionDeniedError(
                APPROVAL_REQUIRED if mapping.approval else OUTSIDE_WINDOW,
                f"mapping {mapping.name} needs the access gate, which is not configured",
                public_message="this role needs access requests, which this exchanger does "
                "not serve")
        return None

    def _consume(self, admission: Admission, credential: IssuedCredential,
                 backend: CredentialBackend) -> None:
        """Record the request's use; when it cannot be used any more, take the credential
        back (as far as the backend can) and refuse."""
        if self._gate is None:
            return
        try:
            self._gate.consume(admission, self._clock())
        except KubegateError:
            _revoke(backend, credential, "unusable")
            raise

    def _record_session(self, identity: Identity, mapping: TrustMapping, grant: Grant,
                        credential: IssuedCredential, admission: Admission | None) -> None:
        if self._sessions is None:
            return
        limit = admission.not_after if admission and admission.not_after else None
        claims = identity.claims
        session = Session(
            id=credential.session_id, mapping=mapping.name, cluster=grant.cluster,
            namespace=grant.namespace, caller=requester_of(identity),
            token_id=credential.token_id, issued_at=int(self._clock()),
            expires_at=credential.expires_at,
            not_after=min(credential.expires_at, limit or credential.expires_at),
            secret=credential.secret, caller_pod=credential.caller_pod,
            access_request=admission.request.id if admission and admission.request else "",
            ci={name: str(claims[name]) for name in CI_CLAIMS if name in claims})
        try:
            self._sessions.create(session)
        except KubegateError as error:
            log.error("session %s not recorded (the credential stands): %s",
                      credential.session_id, error.reason)
            if self._on_session_error is not None:
                self._on_session_error(error.reason)

    def _allow(self, request: ExchangeInput, identity: Identity, mapping: TrustMapping,
               grant: GrantRecord, credential: IssuedCredential,
               backend: CredentialBackend, *, trace_id: str,
               admission: Admission | None = None) -> None:
        used = admission.request if admission else None
        record = allow_record(
            now=self._now(), caller=_caller(identity), issuer=identity.issuer,
            mapping=mapping.name, grant=grant, token_id=credential.token_id,
            session_id=credential.session_id, role=request.role, peer=request.peer,
            expires_at=datetime.datetime.fromtimestamp(credential.expires_at, datetime.UTC),
            detail=f"bound to {credential.bound_to}", trace_id=trace_id,
            access_request=used.id if used else "",
            approvers=tuple(a.who or f"{a.issuer} {a.subject}" for a in admission.approvers)
            if admission else (),
            who=requester_of(identity).who, ci=_ci_claims(identity),
        )
        try:
            self._audit.append(record)
        except KubegateError:
            _revoke(backend, credential, "unrecorded")
            raise

    def _deny(self, request: ExchangeInput, state: _Progress, error: KubegateError) -> None:
        identity = state.identity
        record = deny_record(
            now=self._now(), error=error,
            caller=_caller(identity) if identity else unverified_caller(request.subject_token),
            issuer=identity.issuer if identity else "", role=request.role,
            mapping=state.mapping.name if state.mapping else "", grant=state.grant_record(),
            peer=request.peer, trace_id=state.trace_id,
        )
        try:
            with tracing.span("audit"):
                self._audit.append(record)
        except KubegateError as audit_error:
            log.error("audit log unavailable, denial not recorded: %s", audit_error.reason)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)

    def _observe(self, result: str, reason: str, started: float) -> None:
        if self._observer is not None:
            self._observer.observe(result=result, reason=reason,
                                   seconds=max(0.0, self._clock() - started))


@dataclass
class _Progress:
    """How far an exchange got, for the audit line of a denial. `granted` is the grant as
    far as it was decided: its record is built only when a denial needs it."""

    trace_id: str = ""
    identity: Identity | None = None
    mapping: TrustMapping | None = None
    granted: GrantRecord | tuple[Grant, int, tuple[str, ...]] | None = None

    def grant_record(self) -> GrantRecord | None:
        if self.granted is None or isinstance(self.granted, GrantRecord):
            return self.granted
        return grant_record(*self.granted)

    def summary(self, decision: str, reason: str) -> dict[str, str]:
        """The exchange span's attributes: names and the outcome, never a claim value."""
        return {"issuer": self.identity.issuer if self.identity else "",
                "mapping": self.mapping.name if self.mapping else "",
                "decision": decision, "reason": reason}


def _revoke(backend: CredentialBackend, credential: IssuedCredential, why: str) -> None:
    try:
        backend.revoke(credential)
    except KubegateError as error:
        log.error("could not revoke %s session %s: %s", why, credential.session_id,
                  error.reason)


def _caller(identity: Identity) -> Caller:
    return Caller(iss=identity.issuer_url, sub=identity.subject, jti=identity.token_id or "")


def _ci_claims(identity: Identity) -> dict[str, str]:
    """The CI run and commit the verified token named (scalars only)."""
    claims = identity.claims
    return {name: str(claims[name]) for name in AUDIT_CI_CLAIMS
            if isinstance(claims.get(name), str | int) and not isinstance(claims[name], bool)}
