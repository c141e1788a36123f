"""The values of the audit report, shared by its readers, builders and renderers.

Rules:
- a `BrokeredSession` comes from kubegate's own allow line (plus its access-request and
  revocation lines): who (verified identity), what grant, when, the issued credential id
  (`token_id`, which the API server records as `JTI=<token_id>` in
  `user.extra["authentication.kubernetes.io/credential-id"]`), and for CI callers the run
  and commit the token named (`ci`);
- a `ClusterEvent` is one Kubernetes audit event reduced to what the report shows; `where` is
  "file:line" so every row can be traced back to its source;
- values are frozen; times are float unix seconds (the audit logs' RFC 3339 with fractions);
- nothing here holds a token: credential ids are ids (`JTI=...`, `X509SHA256=...`), not
  secrets.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BrokeredSession", "ClusterEvent", "Filters", "Finding", "JoinedAction",
           "Problem", "Severity"]


@dataclass(frozen=True, kw_only=True)
class BrokeredSession:
    session_id: str
    token_id: str  # the issued jti; the API server records "JTI=<token_id>"
    mapping: str
    issuer: str  # configured issuer name
    subject: str  # the caller's verified `sub`
    who: str = ""  # email / preferred_username when the caller is a person
    cluster: str = ""
    namespace: str = ""
    service_account: str = ""
    user: str = ""  # self-issued user (for people: oidc:<email>)
    groups: tuple[str, ...] = ()
    issued_at: float = 0.0
    expires_at: float = 0.0
    ended_at: float = 0.0  # revoked or ended early (0: ran to expires_at)
    end_reason: str = ""
    access_request: str = ""
    approvers: tuple[str, ...] = ()
    reason: str = ""  # the access request's reason, when there was one
    ci: Mapping[str, str] = field(default_factory=dict)  # run_id, run_attempt, sha, ...
    where: str = ""  # "file:line" of the allow line

    @property
    def credential_id(self) -> str:
        return f"JTI={self.token_id}"

    def live_at(self, t: float) -> bool:
        end = min(x for x in (self.expires_at, self.ended_at) if x) if (
            self.expires_at or self.ended_at) else 0.0
        return self.issued_at - 5 <= t and (not end or t <= end)


@dataclass(frozen=True, kw_only=True)
class ClusterEvent:
    time: float  # requestReceivedTimestamp
    audit_id: str
    stage: str
    verb: str
    username: str
    groups: tuple[str, ...] = ()
    credential_id: str = ""  # user.extra["authentication.kubernetes.io/credential-id"][0]
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    request_uri: str = ""
    code: int = 0  # responseStatus.code (0 when the stage has none)
    user_agent: str = ""
    source_ips: tuple[str, ...] = ()
    impersonated_user: str = ""
    issued_credential_id: str = ""  # the issued-credential-id annotation of a TokenRequest
    authorization: str = ""  # annotations["authorization.k8s.io/decision"]
    where: str = ""  # "file:line"

    @property
    def refused(self) -> bool:
        return self.code in (401, 403) or self.authorization == "forbid"

    @property
    def succeeded(self) -> bool:
        return 200 <= self.code < 400


@dataclass(frozen=True, kw_only=True)
class JoinedAction:
    event: ClusterEvent
    session: BrokeredSession | None  # None: not a kubegate credential
    privileged: str = ""  # "" or a category: exec, attach, port-forward, secret-read, rbac,
    #                       admission, crd, namespace-delete
    attributed: bool = False  # a 401 (no identity recorded) tied to an ended session by the
    #                           client's address and user agent, not by credential id


class Severity(enum.StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One bypass finding: `kind` is a stable id (e.g. client-certificate, legacy-token,
    unbrokered-service-account-token, used-after-end, privileged-outside-session)."""

    kind: str
    severity: Severity
    user: str
    message: str
    events: tuple[ClusterEvent, ...] = ()
    count: int = 1


@dataclass(frozen=True, kw_only=True)
class Problem:
    """An input line the report could not read; the report goes on."""

    where: str  # "file:line"
    message: str


@dataclass(frozen=True, kw_only=True)
class Filters:
    since: float = 0.0
    until: float = 0.0
    session: str = ""
    identity: str = ""  # matches subject, who or user
    mapping: str = ""
    run: str = ""  # a CI run id (GitHub run_id, GitLab pipeline_id)

    def admits_session(self, session: BrokeredSession) -> bool:
        if self.session and session.session_id != self.session:
            return False
        if self.identity and self.identity not in (session.subject, session.who, session.user):
            return False
        if self.mapping and session.mapping != self.mapping:
            return False
        runs = (session.ci.get("run_id"), session.ci.get("pipeline_id"))
        return not self.run or self.run in runs

    def admits_time(self, t: float) -> bool:
        return (not self.since or t >= self.since) and (not self.until or t <= self.until)

    @property
    def narrows_sessions(self) -> bool:
        return bool(self.session or self.identity or self.mapping or self.run)
