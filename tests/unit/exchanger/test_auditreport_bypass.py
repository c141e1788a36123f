"""Bypass findings: every kind fires on the event it is about and not on its near miss; the
allowlist's globs and groups; aggregation keeps counts and a bounded sample."""

from __future__ import annotations

from typing import Any

import pytest

from exchanger.auditreport.bypass import (
    DEFAULT_ALLOWED,
    KINDS,
    Allowlist,
    AllowlistError,
    BypassDetector,
    approved_requests_of,
    is_legacy_token,
)
from exchanger.auditreport.kubegate_log import SessionIndex
from exchanger.auditreport.model import (
    BrokeredSession,
    ClusterEvent,
    Finding,
    JoinedAction,
    Severity,
)
from exchanger.auditreport.privileged import classify

T0 = 1_800_000_000.0
SA = "system:serviceaccount:web:deployer"
CERT = "X509SHA256=" + "ab" * 32

SESSION = BrokeredSession(
    session_id="s1", token_id="jti-1", mapping="ci-deploys-web", issuer="github",
    subject="repo:acme/web:ref:refs/heads/main", namespace="web",
    service_account="deployer", issued_at=T0, expires_at=T0 + 900)


def event(**fields: Any) -> ClusterEvent:
    values: dict[str, Any] = {
        "time": T0 + 60, "audit_id": "a", "stage": "ResponseComplete", "verb": "list",
        "username": "alice", "resource": "pods", "namespace": "web", "code": 200,
        "authorization": "allow"}
    values.update(fields)
    return ClusterEvent(**values)


def detector(*, sessions: tuple[BrokeredSession, ...] = (SESSION,),
             **options: Any) -> BypassDetector:
    options.setdefault("exchanger_users", ("kubegate-exchanger",))
    return BypassDetector(SessionIndex(sessions), Allowlist(), **options)


def run(found: BypassDetector, *events: ClusterEvent,
        session: BrokeredSession | None = None) -> list[Finding]:
    for one in events:
        found.observe(JoinedAction(event=one, session=session, privileged=classify(one)))
    return found.findings()


def kinds(findings: list[Finding]) -> list[tuple[str, Severity, str]]:
    return [(f.kind, f.severity, f.user) for f in findings]


# -- every kind, and its near miss ------------------------------------------------------

FIRES = {
    "client certificate, ordinary user": (
        event(username="bob", groups=("devs",), credential_id=CERT), None,
        ("client-certificate", Severity.MEDIUM, "bob")),
    "client certificate in system:masters": (
        event(username="root", groups=("system:masters",), credential_id=CERT), None,
        ("client-certificate", Severity.HIGH, "root")),
    "client certificate reading a Secret": (
        event(username="bob", credential_id=CERT, resource="secrets", verb="get"), None,
        ("client-certificate", Severity.HIGH, "bob")),
    "legacy token (service account, no credential id)": (
        event(username="system:serviceaccount:ops:old"), None,
        ("legacy-token", Severity.HIGH, "system:serviceaccount:ops:old")),
    "legacy token of a granted account": (
        event(username=SA), None, ("legacy-token", Severity.HIGH, SA)),
    "granted account with a jti kubegate did not issue": (
        event(username=SA, credential_id="JTI=not-ours"), None,
        ("unbrokered-service-account-token", Severity.HIGH, SA)),
    "TokenRequest for a granted account by someone else": (
        event(username="bob", credential_id=CERT, verb="create", resource="serviceaccounts",
              subresource="token", name="deployer", code=201,
              issued_credential_id="JTI=minted"), None,
        ("unbrokered-service-account-token", Severity.HIGH, "bob")),
    "TokenRequest for a granted account by a kubelet (allowlisted)": (
        event(username="system:node:n1", verb="create", resource="serviceaccounts",
              subresource="token", name="deployer", code=201), None,
        ("unbrokered-service-account-token", Severity.HIGH, "system:node:n1")),
    "kubegate credential succeeding after its session ended": (
        event(username=SA, credential_id="JTI=jti-1", time=T0 + 100), "ended",
        ("used-after-end", Severity.HIGH, SA)),
    "kubegate credential succeeding after it expired": (
        event(username=SA, credential_id="JTI=jti-1", time=T0 + 1000), "live",
        ("used-after-end", Severity.HIGH, SA)),
    "privileged action by an unknown user": (
        event(username="oidc:eve", verb="create", resource="pods", subresource="exec",
              code=101), None,
        ("privileged-outside-session", Severity.MEDIUM, "oidc:eve")),
    "anything else by an unknown user": (
        event(username="oidc:eve"), None, ("unbrokered-user", Severity.LOW, "oidc:eve")),
    "a refused privileged attempt by an unknown user": (
        event(username="oidc:eve", resource="secrets", verb="get", code=403,
              authorization="forbid"), None, ("unbrokered-user", Severity.LOW, "oidc:eve")),
    "anonymous, not a public path": (
        event(username="system:anonymous", request_uri="/api/v1/namespaces"), None,
        ("unbrokered-user", Severity.LOW, "system:anonymous")),
}

ENDED = BrokeredSession(**{**SESSION.__dict__, "ended_at": T0 + 50,
                           "end_reason": "session-revoked"})


@pytest.mark.parametrize(("case", "expected"), [(name, case[2]) for name, case in
                                                 FIRES.items()], ids=list(FIRES))
def test_each_kind_fires_on_the_event_it_is_about(case: str, expected: tuple[Any, ...]) -> None:
    one, state, _ = FIRES[case]
    session = {"ended": ENDED, "live": SESSION}.get(state or "")
    found = detector(sessions=(session or SESSION,))
    assert kinds(run(found, one, session=session)) == [expected]


NEAR_MISSES = {
    "the exchanger's own TokenRequest": (
        event(username="kubegate-exchanger", credential_id=CERT, verb="create",
              resource="serviceaccounts", subresource="token", name="deployer", code=201),
        None),
    "a TokenRequest for an account kubegate does not grant": (
        event(username="system:node:n1", verb="create", resource="serviceaccounts",
              subresource="token", name="other", code=201), None),
    "a refused TokenRequest for a granted account is no minted token": (
        event(username="system:serviceaccount:kube-system:x", verb="create",
              resource="serviceaccounts", subresource="token", name="deployer", code=403,
              authorization="forbid"), None),
    "a controller's client certificate": (
        event(username="system:kube-controller-manager", credential_id=CERT), None),
    "a kubelet's client certificate": (
        event(username="system:node:worker-1", credential_id=CERT,
              groups=("system:nodes",)), None),
    "a kube-system controller's bound token": (
        event(username="system:serviceaccount:kube-system:replicaset-controller",
              credential_id="JTI=x"), None),
    "kubegate's own token, in session": (
        event(username=SA, credential_id="JTI=jti-1", time=T0 + 60), "live"),
    "kubegate's token within the revocation grace": (
        event(username=SA, credential_id="JTI=jti-1", time=T0 + 55), "ended"),
    "kubegate's token refused after its end": (
        event(username=SA, credential_id="JTI=jti-1", time=T0 + 500, code=401,
              authorization=""), "ended"),
    "privileged in a session when access requests are unknown": (
        event(username=SA, credential_id="JTI=jti-1", resource="secrets", verb="get"),
        "live"),
    "anonymous health check": (
        event(username="system:anonymous", request_uri="/readyz?verbose", resource=""),
        None),
    "a stage that is not the last": (
        event(username="oidc:eve", stage="ResponseStarted"), None),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_a_near_miss_is_no_finding(case: str) -> None:
    one, state = NEAR_MISSES[case]
    session = {"ended": ENDED, "live": SESSION}.get(state or "")
    found = detector(sessions=(session or SESSION,))
    assert run(found, one, session=session) == []
    assert set(found.counts().values()) == {0}


def test_privileged_in_a_session_without_an_approved_request_when_requests_are_known() -> None:
    approved = BrokeredSession(**{**SESSION.__dict__, "session_id": "s2", "token_id": "jti-2",
                                  "access_request": "ar-1", "approvers": ("carol",)})
    found = detector(sessions=(SESSION, approved),
                     approved_requests=approved_requests_of([SESSION, approved]))
    secret_read = event(username=SA, credential_id="JTI=jti-1", resource="secrets",
                        verb="get")
    run(found, secret_read, session=SESSION)
    run(found, event(username=SA, credential_id="JTI=jti-2", resource="secrets", verb="get"),
        session=approved)
    run(found, event(username=SA, credential_id="JTI=jti-1"), session=SESSION)  # ordinary
    findings = run(found, event(username="oidc:eve", resource="secrets", verb="get"))
    assert kinds(findings) == [("privileged-outside-session", Severity.HIGH, "oidc:eve"),
                               ("privileged-outside-session", Severity.HIGH, SA)]
    assert "secret-read, session s1" in findings[1].message


def test_access_requests_are_unknown_when_no_session_names_one() -> None:
    assert approved_requests_of([SESSION]) is None


def test_legacy_tokens_are_service_accounts_without_a_credential_id() -> None:
    assert is_legacy_token(event(username="system:serviceaccount:a:b"))
    assert not is_legacy_token(event(username="system:serviceaccount:a:b",
                                     credential_id="JTI=x"))
    assert not is_legacy_token(event(username="system:apiserver"))


def test_service_accounts_granted_by_a_mapping_count_without_a_session() -> None:
    found = BypassDetector(SessionIndex(), Allowlist(), service_accounts=[("prod", "app")])
    findings = run(found, event(username="system:serviceaccount:prod:app",
                                credential_id="JTI=pod-token"))
    assert kinds(findings) == [("unbrokered-service-account-token", Severity.HIGH,
                                "system:serviceaccount:prod:app")]


# -- the allowlist ----------------------------------------------------------------------

@pytest.mark.parametrize(("patterns", "username", "groups", "allowed"), [
    ((), "system:node:worker-7", (), True),
    ((), "system:serviceaccount:kube-system:job-controller", (), True),
    ((), "system:serviceaccount:kube-systemx:a", (), False),
    ((), "system:masters-admin", ("system:masters",), False),
    (("argocd-*",), "argocd-server", (), True),
    (("argocd-*",), "my-argocd-server", (), False),
    (("group:monitoring",), "prometheus", ("monitoring", "system:authenticated"), True),
    (("group:team-*",), "x", ("team-ops",), True),
    (("group:monitoring",), "monitoring", (), False),
    (("system:serviceaccount:flux-system:*",), "system:serviceaccount:flux-system:kust",
     (), True),
])
def test_allowlist_globs_users_and_groups(patterns: tuple[str, ...], username: str,
                                          groups: tuple[str, ...], allowed: bool) -> None:
    assert Allowlist(patterns).allows_user(username, groups) is allowed


def test_allowlist_defaults_can_be_left_out_and_bad_patterns_are_refused() -> None:
    assert not Allowlist(defaults=False).allows_user("system:node:a")
    assert Allowlist().patterns[:len(DEFAULT_ALLOWED)] == DEFAULT_ALLOWED
    with pytest.raises(AllowlistError, match="match nothing"):
        Allowlist(["group:"])
    with pytest.raises(AllowlistError):
        Allowlist([" "])


def test_a_configured_pattern_silences_an_unbrokered_user() -> None:
    found = BypassDetector(SessionIndex(), Allowlist(["group:ops"]))
    assert run(found, event(username="oidc:eve", groups=("ops",))) == []


# -- aggregation ------------------------------------------------------------------------

def test_findings_aggregate_per_kind_and_user_with_a_bounded_sample() -> None:
    found = detector(samples=2)
    many = [event(username="bob", credential_id=CERT, audit_id=str(i), time=T0 + i)
            for i in range(1000)]
    findings = run(found, *many, event(username="oidc:eve"))
    assert kinds(findings) == [("client-certificate", Severity.MEDIUM, "bob"),
                               ("unbrokered-user", Severity.LOW, "oidc:eve")]
    assert findings[0].count == 1000
    assert [e.audit_id for e in findings[0].events] == ["0", "1", "998", "999"]
    assert "1000 requests with a client certificate" in findings[0].message
    assert found.counts() == {**dict.fromkeys(KINDS, 0), "client-certificate": 1000,
                              "unbrokered-user": 1}


def test_severity_rises_when_a_later_event_is_privileged() -> None:
    found = detector()
    findings = run(found, event(username="bob", credential_id=CERT),
                   event(username="bob", credential_id=CERT, verb="delete",
                         resource="clusterrolebindings",
                         api_group="rbac.authorization.k8s.io"))
    assert kinds(findings) == [("client-certificate", Severity.HIGH, "bob")]
    assert findings[0].message.endswith("(rbac)")


def test_facts_in_a_message_are_bounded() -> None:
    found = detector()
    findings = run(found, *[event(username=SA, credential_id=f"JTI=pod-{i}")
                            for i in range(50)])
    assert findings[0].count == 50
    assert findings[0].message.count("used JTI=") == 8


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="samples"):
        detector(samples=0)
