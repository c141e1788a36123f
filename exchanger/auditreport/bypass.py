"""Bypass findings: the actions the cluster saw that did not go through the broker.

An `EventObserver` of the report builder (and of the live sink): every joined action goes
through `BypassDetector.observe`, which sorts it into at most one finding kind and keeps
counts and a few sample events per (kind, user); `findings()` freezes them.

Kinds (stable ids, see `KINDS`), checked in this order, the first that fits wins:
- `used-after-end` (high): a request with a kubegate credential that took effect after its
  session ended, was revoked or expired (plus `grace`: the API server caches a token's
  authentication for up to 10 s, so a revoked token may still pass for that long);
- `privileged-outside-session` (high) for a kubegate session without an approved access
  request, only when access requests are known (`approved_requests` given);
- `unbrokered-service-account-token` (high): a ServiceAccount kubegate grants used with a
  token whose jti kubegate did not issue, or a TokenRequest for such an account made by
  anyone but the exchanger; the allowlist does not cover a granted account: a pod or a
  kubelet minting its token is a way around the broker too;
- then identities on the allowlist (and the exchanger) are no finding;
- `legacy-token` (high): a Secret-based service-account token (see `is_legacy_token`);
- `client-certificate` (high in `system:masters` or with a privileged action that took
  effect, else medium): a credential id `X509SHA256=...`;
- `privileged-outside-session` (high when access requests are known, else medium): a
  privileged action that took effect, by any other identity kubegate did not issue;
- `unbrokered-user` (low): anything else by an identity kubegate did not issue, refused
  requests included (a refused probe is still someone around the broker).

Rules of this module:
- memory is bounded per (kind, user): a count, the first and last `samples` events, and at
  most `MAX_FACTS` short facts (privileged categories, accounts, secrets) for the message;
- only a request's last stage counts (RequestReceived and ResponseStarted are skipped), so
  a watch or an exec is one request, not two;
- "took effect" is a response code from 100 to 399 (an exec's upgrade is 101), or no code
  and an allow decision; refused and failed requests never make `used-after-end` or
  `privileged-outside-session`;
- pure: no clock, no I/O; `counts()` is what the live sink exports as metrics.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from exchanger.auditreport.model import (
    BrokeredSession,
    ClusterEvent,
    Finding,
    JoinedAction,
    Severity,
)
from kubegate.errors import Code, KubegateError

__all__ = ["DEFAULT_ALLOWED", "KINDS", "PUBLIC_PATHS", "Allowlist", "AllowlistError",
           "BypassDetector", "approved_requests_of", "is_legacy_token"]

USED_AFTER_END: Final = "used-after-end"
UNBROKERED_TOKEN: Final = "unbrokered-service-account-token"  # noqa: S105 - a kind, no token
LEGACY_TOKEN: Final = "legacy-token"  # noqa: S105 - a kind, no token
CLIENT_CERTIFICATE: Final = "client-certificate"
PRIVILEGED_OUTSIDE: Final = "privileged-outside-session"
UNBROKERED_USER: Final = "unbrokered-user"
KINDS: Final = (USED_AFTER_END, UNBROKERED_TOKEN, LEGACY_TOKEN, CLIENT_CERTIFICATE,
                PRIVILEGED_OUTSIDE, UNBROKERED_USER)

# The control plane's own identities: API server loopback, controllers, scheduler, kubelets
# and kube-proxy, and kube-system's controller service accounts
# (--use-service-account-credentials). No person, no CI system.
DEFAULT_ALLOWED: Final = (
    "system:apiserver", "system:kube-controller-manager", "system:kube-scheduler",
    "system:kube-proxy", "system:node:*", "system:serviceaccount:kube-system:*",
)
ANONYMOUS: Final = "system:anonymous"
# What an anonymous caller may read by design (health, version, service-account issuer
# discovery); any other anonymous request is a finding.
PUBLIC_PATHS: Final = ("/healthz", "/livez", "/readyz", "/version",
                       "/.well-known/openid-configuration", "/openid/v1/jwks")
GROUP_PREFIX: Final = "group:"
MASTERS: Final = "system:masters"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
X509_PREFIX: Final = "X509SHA256="
JTI_PREFIX: Final = "JTI="
LAST_STAGES_SKIPPED: Final = frozenset({"RequestReceived", "ResponseStarted"})
MAX_FACTS: Final = 8
DEFAULT_GRACE: Final = 10.0  # seconds: the API server's token authentication cache


class AllowlistError(KubegateError):
    """An allowlist pattern that cannot match anything (empty, or `group:` alone)."""

    code = Code.INVALID_ARGUMENT

    def __init__(self, message: str) -> None:
        super().__init__("AUDIT_BAD_ALLOWLIST", public_message=message)


class Allowlist:
    """System identities whose actions are no finding: glob patterns on the user name
    (`system:node:*`), or `group:NAME` (a glob too) on any of the user's groups."""

    def __init__(self, patterns: Sequence[str] = (), *, defaults: bool = True) -> None:
        chosen = [*(DEFAULT_ALLOWED if defaults else ()), *patterns]
        bad = [p for p in chosen if not p.strip() or p.strip() == GROUP_PREFIX]
        if bad:
            raise AllowlistError(f"allowlist patterns match nothing: {bad!r}")
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys(p.strip() for p in chosen))
        self._users = tuple(p for p in self.patterns if not p.startswith(GROUP_PREFIX))
        self._groups = tuple(p[len(GROUP_PREFIX):] for p in self.patterns
                             if p.startswith(GROUP_PREFIX))

    def allows_user(self, username: str, groups: Iterable[str] = ()) -> bool:
        if any(fnmatch.fnmatchcase(username, p) for p in self._users):
            return True
        return any(fnmatch.fnmatchcase(g, p) for g in groups for p in self._groups)

    def allows(self, event: ClusterEvent) -> bool:
        """Whether `event` is no finding because of who made it (or, for an anonymous
        request, because the path is public)."""
        if event.username == ANONYMOUS and _public(event.request_uri):
            return True
        return self.allows_user(event.username, event.groups)


def _public(request_uri: str) -> bool:
    path = request_uri.split("?", 1)[0]
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def is_legacy_token(event: ClusterEvent) -> bool:
    """A service-account request authenticated by a legacy (Secret-based) token.

    The API server gives every token it issues through TokenRequest a jti and records it as
    credential id `JTI=...`; a legacy token has no jti, so its requests carry a
    service-account user name and no credential id (the API server also annotates them
    `authentication.k8s.io/legacy-token` and `...legacy-token-manual-secret` or
    `...-autogenerated-secret`, which `ClusterEvent` does not keep)."""
    return event.username.startswith(SERVICE_ACCOUNT_PREFIX) and not event.credential_id


def took_effect(event: ClusterEvent) -> bool:
    if event.code:
        return 100 <= event.code < 400
    return event.authorization == "allow"


def approved_requests_of(sessions: Iterable[BrokeredSession]) -> frozenset[str] | None:
    """The access requests the sessions were granted under, or None when no session named
    one (access requests unknown: privileged actions in sessions are then no finding)."""
    named = frozenset(s.access_request for s in sessions if s.access_request)
    return named or None


class GrantedAccounts(Protocol):
    """What the detector needs of the kubegate sessions (`kubegate_log.SessionIndex`)."""

    def service_accounts(self) -> Collection[tuple[str, str]]: ...


@dataclass
class _Tally:
    """One (kind, user): counts and a bounded sample of events."""

    samples: int
    count: int = 0
    first: list[ClusterEvent] = field(default_factory=list)
    last: deque[ClusterEvent] = field(default_factory=deque)
    facts: dict[str, None] = field(default_factory=dict)  # ordered set, at most MAX_FACTS
    high: bool = False

    def add(self, event: ClusterEvent, facts: Iterable[str], high: bool) -> None:
        self.count += 1
        self.high = self.high or high
        if len(self.first) < self.samples:
            self.first.append(event)
        else:
            self.last.append(event)
            while len(self.last) > self.samples:
                self.last.popleft()
        for fact in facts:
            if fact and len(self.facts) < MAX_FACTS:
                self.facts.setdefault(fact)

    def events(self) -> tuple[ClusterEvent, ...]:
        return (*self.first, *self.last)


class BypassDetector:
    """The bypass findings of a stream of joined actions (an `EventObserver`)."""

    def __init__(self, sessions: GrantedAccounts, allowlist: Allowlist, *,
                 exchanger_users: Sequence[str] = (),
                 service_accounts: Collection[tuple[str, str]] = (),
                 approved_requests: Collection[str] | None = None,
                 grace: float = DEFAULT_GRACE, samples: int = 3) -> None:
        """`service_accounts`: granted (namespace, name) pairs beyond those the sessions
        name (from the mappings); `approved_requests`: the approved access requests, None
        when unknown."""
        if samples < 1 or grace < 0:
            raise ValueError("samples must be at least 1 and grace not negative")
        self._allowlist = allowlist
        self._exchanger = frozenset(exchanger_users)
        self._granted = frozenset(sessions.service_accounts()) | frozenset(service_accounts)
        self._approved = None if approved_requests is None else frozenset(approved_requests)
        self._grace = grace
        self._samples = samples
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._counts = dict.fromkeys(KINDS, 0)

    # -- observing ---------------------------------------------------------------------

    def observe(self, action: JoinedAction) -> None:
        event = action.event
        if event.stage in LAST_STAGES_SKIPPED or not event.username:
            return
        if action.session is not None:
            self._observe_session(action, action.session)
        else:
            self._observe_other(action)

    def _observe_session(self, action: JoinedAction, session: BrokeredSession) -> None:
        event = action.event
        if not took_effect(event):
            return
        end = min((t for t in (session.expires_at, session.ended_at) if t), default=0.0)
        if end and event.time > end + self._grace:
            reason = session.end_reason or ("expired" if end == session.expires_at else "ended")
            self._add(USED_AFTER_END, event, (f"session {session.session_id} {reason}",), True)
        elif action.privileged and self._approved is not None and (
                session.access_request not in self._approved):
            self._add(PRIVILEGED_OUTSIDE, event,
                      (action.privileged, f"session {session.session_id}"), True)

    def _observe_other(self, action: JoinedAction) -> None:
        event = action.event
        if event.username in self._exchanger:
            return
        if self._unbrokered_token(event):
            return
        if self._allowlist.allows(event):
            return
        if is_legacy_token(event):
            self._add(LEGACY_TOKEN, event, (action.privileged,), True)
        elif event.credential_id.startswith(X509_PREFIX):
            privileged = bool(action.privileged) and took_effect(event)
            self._add(CLIENT_CERTIFICATE, event, (action.privileged if privileged else "",),
                      MASTERS in event.groups or privileged)
        elif action.privileged and took_effect(event):
            self._add(PRIVILEGED_OUTSIDE, event, (action.privileged,),
                      self._approved is not None)
        else:
            self._add(UNBROKERED_USER, event, (), False)

    def _unbrokered_token(self, event: ClusterEvent) -> bool:
        """A granted account used or minted around kubegate (recorded here when so)."""
        minted = (event.resource, event.subresource, event.verb) == (
            "serviceaccounts", "token", "create") and took_effect(event)
        if minted and (event.namespace, event.name) in self._granted:
            self._add(UNBROKERED_TOKEN, event,
                      (f"minted {event.namespace}/{event.name}",), True)
            return True
        account = _service_account(event.username)
        if account is None or account not in self._granted:
            return False
        if is_legacy_token(event):
            self._add(LEGACY_TOKEN, event, (), True)
        else:
            self._add(UNBROKERED_TOKEN, event, (f"used {event.credential_id}",), True)
        return True

    def _add(self, kind: str, event: ClusterEvent, facts: Iterable[str], high: bool) -> None:
        self._counts[kind] += 1
        key = (kind, event.username)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally(samples=self._samples)
        tally.add(event, facts, high)

    # -- results -----------------------------------------------------------------------

    def counts(self) -> Mapping[str, int]:
        """Events per finding kind so far (every kind, zero included), for metrics."""
        return dict(self._counts)

    def findings(self) -> list[Finding]:
        """One finding per (kind, user), highest severity first, then by kind and user."""
        found = [self._finding(kind, user, tally)
                 for (kind, user), tally in self._tallies.items()]
        order = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}
        return sorted(found, key=lambda f: (order[f.severity], KINDS.index(f.kind), f.user))

    def _finding(self, kind: str, user: str, tally: _Tally) -> Finding:
        severity = Severity.HIGH if tally.high else (
            Severity.LOW if kind == UNBROKERED_USER else Severity.MEDIUM)
        facts = ", ".join(tally.facts)
        message = MESSAGES[kind].format(n=tally.count, s="" if tally.count == 1 else "s")
        return Finding(kind=kind, severity=severity, user=user,
                       message=f"{message} ({facts})" if facts else message,
                       events=tally.events(), count=tally.count)


MESSAGES: Final = {
    USED_AFTER_END: "{n} request{s} succeeded with a kubegate credential after its session "
                    "ended",
    UNBROKERED_TOKEN: "{n} request{s} with a token for a ServiceAccount kubegate grants, "
                      "which kubegate did not issue",
    LEGACY_TOKEN: "{n} request{s} with a legacy service-account token Secret (never "
                  "expires)",
    CLIENT_CERTIFICATE: "{n} request{s} with a client certificate, not through kubegate",
    PRIVILEGED_OUTSIDE: "{n} privileged action{s} outside any approved kubegate session",
    UNBROKERED_USER: "{n} request{s} by an identity kubegate did not issue and the "
                     "allowlist does not name",
}


def _service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of a service-account user name."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, name = username[len(SERVICE_ACCOUNT_PREFIX):].partition(":")
    return (namespace, name) if namespace and name else None
