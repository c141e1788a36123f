"""The exchange use case with small fakes: every decision audited, nothing issued unrecorded,
lifetimes and audiences clamped to the mapping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from exchanger.audit.log import AuditWriteError
from exchanger.audit.record import AuditRecord
from exchanger.backends.base import IssuedCredential, IssueRequest
from exchanger.exchange import ExchangeInput, Exchanger, granted_lifetime
from exchanger.identity import Identity
from exchanger.mappings import Condition, Grant, MappingSet, Operator, TrustMapping
from exchanger.mappings.subjects import ClaimReference
from kubegate.credential import ClusterInfo
from kubegate.errors import (
    InvalidRequestError,
    InvalidTokenError,
    KubegateError,
    PermissionDeniedError,
    UnavailableError,
)

NOW = 1_900_000_000


def identity(subject: str = "repo:octo-org/web:ref:refs/heads/main") -> Identity:
    return Identity(issuer="github", issuer_url="https://token.actions.example",
                    subject=subject, token_id="caller-jti", audiences=("kubegate",),
                    issued_at=NOW - 10, expires_at=NOW + 290,
                    claims={"sub": subject, "repository_id": "42"})


class FakeVerifier:
    def __init__(self, error: KubegateError | None = None) -> None:
        self.error = error

    def verify(self, token: str) -> Identity:
        if self.error:
            raise self.error
        return identity()


@dataclass
class FakeAudit:
    records: list[AuditRecord] = field(default_factory=list)
    fail: bool = False

    def append(self, record: AuditRecord) -> None:
        if self.fail:
            raise AuditWriteError("disk full")
        self.records.append(record)


@dataclass
class FakeBackend:
    issued: list[IssueRequest] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    error: KubegateError | None = None

    def issue(self, request: IssueRequest) -> IssuedCredential:
        if self.error:
            raise self.error
        self.issued.append(request)
        return IssuedCredential(
            token="issued.token.value", token_type="t", token_id="issued-jti",
            expires_at=NOW + request.lifetime, session_id=request.session_id,
            cluster=ClusterInfo(name="prod", server="https://k8s", namespace="web",
                                  certificate_authority_data=b""),
            bound_to="Secret web/kubegate-session-1",
        )

    def revoke(self, credential: IssuedCredential) -> None:
        self.revoked.append(credential.session_id)


def mappings(**grant: Any) -> MappingSet:
    fields: dict[str, Any] = {"cluster": "prod", "namespace": "web",
                              "service_account": "deployer", "max_lifetime": 1200} | grant
    return MappingSet(mappings=(TrustMapping(
        name="web", issuer="github", grant=Grant(**fields),
        conditions=(Condition(path=("repository_id",), operator=Operator.EQUALS,
                              expected="42"),),
    ),))


def exchanger(*, verifier: FakeVerifier | None = None, audit: FakeAudit | None = None,
              backend: FakeBackend | None = None, mapping_set: MappingSet | None = None,
              ) -> tuple[Exchanger, FakeAudit, FakeBackend]:
    audit, backend = audit or FakeAudit(), backend or FakeBackend()
    return Exchanger(
        verifier=verifier or FakeVerifier(),
        mappings=mappings() if mapping_set is None else mapping_set,
        backends={"prod": backend}, audit=audit, clock=lambda: NOW,
        new_session_id=lambda: "session-1",
    ), audit, backend


def test_allowed_exchange_is_audited_with_caller_mapping_and_issued_jti() -> None:
    use_case, audit, backend = exchanger()
    credential, mapping = use_case.exchange(ExchangeInput(subject_token="a.b.c", peer="ipv4:1"))
    assert (credential.token_id, mapping.name) == ("issued-jti", "web")
    [record] = audit.records
    assert (record.decision, record.mapping, record.token_id, record.session_id) == (
        "allow", "web", "issued-jti", "session-1")
    assert (record.caller.sub, record.caller.jti, record.peer) == (
        identity().subject, "caller-jti", "ipv4:1")
    assert "issued.token.value" not in record.to_json()


def test_failed_audit_write_refuses_the_exchange_and_revokes_what_was_issued() -> None:
    use_case, _, backend = exchanger(audit=FakeAudit(fail=True))
    with pytest.raises(AuditWriteError) as refused:
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert refused.value.reason == "AUDIT_UNAVAILABLE"
    assert backend.revoked == ["session-1"]


@pytest.mark.parametrize(("error", "reason"), [
    (InvalidTokenError("TOKEN_EXPIRED", "exp passed"), "TOKEN_EXPIRED"),
    (UnavailableError("KEYS_UNAVAILABLE", "jwks down"), "KEYS_UNAVAILABLE"),
])
def test_refused_token_is_audited_as_a_denial_and_nothing_is_issued(
    error: KubegateError, reason: str,
) -> None:
    use_case, audit, backend = exchanger(verifier=FakeVerifier(error))
    with pytest.raises(KubegateError):
        use_case.exchange(ExchangeInput(subject_token="x.y.z"))
    [record] = audit.records
    assert (record.decision, record.reason, record.status) == ("deny", reason, error.code.name)
    assert backend.issued == []


def test_no_matching_mapping_is_denied_with_the_callers_identity_in_the_audit_line() -> None:
    use_case, audit, backend = exchanger(mapping_set=MappingSet(mappings=()))
    with pytest.raises(PermissionDeniedError):
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert audit.records[0].caller.sub == identity().subject
    assert audit.records[0].reason == "NO_MATCHING_MAPPING"
    assert backend.issued == []


def test_backend_failure_is_denied_with_the_grant_recorded() -> None:
    failing = FakeBackend(error=UnavailableError("KUBERNETES_UNAVAILABLE", "503"))
    use_case, audit, _ = exchanger(backend=failing)
    with pytest.raises(UnavailableError):
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    [record] = audit.records
    assert record.reason == "KUBERNETES_UNAVAILABLE"
    assert record.grant is not None and record.grant.namespace == "web"


@pytest.mark.parametrize(("requested", "maximum", "granted"), [
    (0, 1200, 1200),      # nothing asked: the mapping's maximum
    (60, 1200, 600),      # below TokenRequest's floor: 10 minutes
    (900, 1200, 900),     # within bounds: as asked
    (86400, 1200, 1200),  # above the mapping: clamped
])
def test_lifetime_is_clamped_between_ten_minutes_and_the_mapping(
    requested: int, maximum: int, granted: int,
) -> None:
    grant = Grant(cluster="c", namespace="n", service_account="s", max_lifetime=maximum)
    assert granted_lifetime(requested, grant) == granted


def test_requested_audiences_must_be_granted_by_the_mapping() -> None:
    use_case, audit, backend = exchanger(mapping_set=mappings(audiences=("vault",)))
    with pytest.raises(PermissionDeniedError) as denied:
        use_case.exchange(ExchangeInput(subject_token="a.b.c", audiences=("kubernetes",)))
    assert denied.value.reason == "AUDIENCE_NOT_ALLOWED"
    use_case.exchange(ExchangeInput(subject_token="a.b.c", audiences=("vault",)))
    assert backend.issued[-1].audiences == ("vault",)


@pytest.mark.parametrize(("request_fields", "reason"), [
    ({"subject_token": ""}, "MISSING_SUBJECT_TOKEN"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
     "UNSUPPORTED_TOKEN_TYPE"),
    ({"requested_lifetime": -1}, "INVALID_LIFETIME"),
    ({"audiences": ("",)}, "INVALID_AUDIENCES"),
    ({"role": "r" * 300}, "INVALID_ROLE"),
])
def test_malformed_requests_are_refused_before_verification(
    request_fields: dict[str, Any], reason: str,
) -> None:
    use_case, audit, _ = exchanger(verifier=FakeVerifier(AssertionError("not reached")))  # type: ignore[arg-type]
    fields = {"subject_token": "a.b.c"} | request_fields
    with pytest.raises(InvalidRequestError) as refused:
        use_case.exchange(ExchangeInput(**fields))
    assert refused.value.reason == reason
    assert audit.records[0].decision == "deny"


# -- grants that name the person -------------------------------------------------------------

PERSON_EMAIL = "ada.private@corp.example"


def person(**claims: Any) -> Identity:
    values = {"sub": "Cg1hZGE", "email": PERSON_EMAIL, "email_verified": True,
              "groups": ["sre", "sre-leads"]} | claims
    return Identity(issuer="corp", issuer_url="https://dex.corp.example", subject="Cg1hZGE",
                    token_id="id-jti", audiences=("kubegate",), issued_at=NOW - 10,
                    expires_at=NOW + 290, claims={k: v for k, v in values.items()
                                                  if v is not None})


class PersonVerifier(FakeVerifier):
    def __init__(self, identity: Identity) -> None:
        super().__init__()
        self.identity = identity

    def verify(self, token: str) -> Identity:
        return self.identity


def people_exchanger(identity: Identity) -> tuple[Exchanger, FakeAudit, FakeBackend]:
    grant = Grant(cluster="prod", namespace="ops",
                  user=ClaimReference(path=("email",), prefix="oidc:"),
                  groups=("kubegate:people", ClaimReference(path=("groups",), prefix="oidc:")))
    mapping_set = MappingSet(mappings=(TrustMapping(
        name="sre-break-glass", issuer="corp", grant=grant,
        conditions=(Condition(path=("groups",), operator=Operator.CONTAINS,
                              expected="sre-leads"),
                    Condition(path=("email_verified",), operator=Operator.EQUALS,
                              expected=True))),))
    return exchanger(verifier=PersonVerifier(identity), mapping_set=mapping_set)


def test_a_claim_user_is_resolved_before_the_backend_and_audited_as_issued() -> None:
    use_case, audit, backend = people_exchanger(person())
    use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    [request] = backend.issued
    assert request.grant.user == f"oidc:{PERSON_EMAIL}"
    assert request.grant.groups == ("kubegate:people", "oidc:sre", "oidc:sre-leads")
    [record] = audit.records
    assert record.grant is not None
    assert (record.grant.user, record.grant.groups) == (
        f"oidc:{PERSON_EMAIL}", ("kubegate:people", "oidc:sre", "oidc:sre-leads"))


@pytest.mark.parametrize("email", [None, 42, "", "x" * 300, "ada\r\nforged: line"])
def test_an_unusable_claim_is_a_denial_audited_without_its_value(email: object) -> None:
    use_case, audit, backend = people_exchanger(person(email=email))
    with pytest.raises(PermissionDeniedError) as refused:
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    error = refused.value
    assert error.reason == "GRANT_CLAIM_UNUSABLE"
    assert "claim email" in error.public_message
    assert backend.issued == []
    [record] = audit.records
    assert (record.decision, record.reason, record.mapping) == (
        "deny", "GRANT_CLAIM_UNUSABLE", "sre-break-glass")
    assert "claim email" in record.to_json()
    for text in (record.to_json(), str(error), error.public_message):
        assert "forged" not in text and "xxxxxxxxxx" not in text and "42" not in text


def test_the_self_issued_backend_signs_the_resolved_names_and_refuses_a_template() -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from exchanger.backends.selfissued import SelfIssuedBackend, SelfIssuedSigner

    signer = SelfIssuedSigner(key=ec.generate_private_key(ec.SECP256R1()),
                              issuer_url="https://kubegate.example", audience="k8s",
                              clock=lambda: NOW)
    backend = SelfIssuedBackend(signer, ClusterInfo(name="prod", server="https://k8s",
                                                    certificate_authority_data=b"",
                                                    namespace="ops"))
    template = Grant(cluster="prod", namespace="ops",
                     user=ClaimReference(path=("email",), prefix="oidc:"))
    request = IssueRequest(identity=person(), mapping="m", grant=template, lifetime=600,
                           audiences=(), session_id="s-1")
    with pytest.raises(ValueError, match="resolve it first"):
        backend.issue(request)
    resolved = template.resolve(person().claims)
    credential = backend.issue(IssueRequest(identity=person(), mapping="m", grant=resolved,
                                            lifetime=600, audiences=(), session_id="s-1"))
    claims = jwt.decode(credential.token, options={"verify_signature": False})
    assert (claims["sub"], claims["groups"]) == (f"oidc:{PERSON_EMAIL}", [])
    assert credential.token_id == "s-1"
    assert credential.cluster.user == f"oidc:{PERSON_EMAIL}"


# -- approval mappings: the access gate, the audit line, the session ----------------------


def approval_set(**policy: Any) -> MappingSet:
    from exchanger.access.policy import ApprovalPolicy, Approvers

    [plain] = mappings().mappings
    leads = (Condition(path=("groups",), operator=Operator.CONTAINS, expected="leads"),)
    return MappingSet(mappings=(dataclasses.replace(plain, approval=ApprovalPolicy(
        approvers=Approvers(issuer="github", conditions=leads), **policy)),))


def gated_exchanger(mapping_set: MappingSet, store: Any, sessions: Any = None,
                    backend: FakeBackend | None = None,
                    ) -> tuple[Exchanger, FakeAudit, FakeBackend]:
    from exchanger.access.gate import AccessGate

    audit, backend = FakeAudit(), backend or FakeBackend()
    return Exchanger(
        verifier=FakeVerifier(), mappings=mapping_set, backends={"prod": backend}, audit=audit,
        clock=lambda: NOW, new_session_id=lambda: "session-1",
        gate=AccessGate(store, clock=lambda: NOW), sessions=sessions,
    ), audit, backend


def approved(store: Any, mapping_set: MappingSet, duration: int = 1800) -> Any:
    from exchanger.access.lifecycle import approve, new_request

    [mapping] = mapping_set.mappings
    lead = Identity(issuer="github", issuer_url="https://token.actions.example", subject="lead",
                    token_id=None, audiences=(), issued_at=NOW - 10, expires_at=NOW + 10,
                    claims={"groups": ["leads"], "email": "lead@example.com",
                            "email_verified": True})
    request = store.create(new_request(mapping=mapping, identity=identity(), reason="deploy",
                                       ticket="", duration=duration, now=NOW - 60,
                                       request_id="ar-0123456789abcdef"))
    return store.replace(approve(request, mapping=mapping, approver=lead, now=NOW - 30))


class MemorySessions:
    def __init__(self, error: KubegateError | None = None) -> None:
        self.sessions: list[Any] = []
        self.error = error

    def create(self, session: Any) -> Any:
        if self.error:
            raise self.error
        self.sessions.append(session)
        return session


def test_an_approval_mapping_without_a_request_is_denied_and_audited() -> None:
    from tests.unit.exchanger.test_access_gate import MemoryAccessStore

    use_case, audit, backend = gated_exchanger(approval_set(), MemoryAccessStore())
    with pytest.raises(PermissionDeniedError) as refused:
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert refused.value.reason == "APPROVAL_REQUIRED"
    assert backend.issued == []
    [record] = audit.records
    assert (record.decision, record.reason, record.mapping) == ("deny", "APPROVAL_REQUIRED",
                                                                "web")


def test_an_approval_mapping_without_a_gate_is_refused() -> None:
    use_case, audit, backend = exchanger(mapping_set=approval_set())
    with pytest.raises(PermissionDeniedError) as refused:
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert refused.value.reason == "APPROVAL_REQUIRED" and backend.issued == []


def test_an_approved_request_admits_names_request_and_approvers_and_records_a_session() -> None:
    from exchanger.access.model import State
    from tests.unit.exchanger.test_access_gate import MemoryAccessStore

    store, sessions, mapping_set = MemoryAccessStore(), MemorySessions(), approval_set()
    request = approved(store, mapping_set)
    use_case, audit, backend = gated_exchanger(mapping_set, store, sessions)
    use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    [issued] = backend.issued
    assert (issued.lifetime, issued.not_after) == (1200, request.ends_at)  # 1770s left
    [record] = audit.records
    line = record.to_dict()
    assert (line["access_request"], line["approvers"]) == ("ar-0123456789abcdef",
                                                           ["lead@example.com"])
    assert store.requests[request.id].state is State.ACTIVE
    [session] = sessions.sessions
    assert (session.id, session.mapping, session.cluster, session.namespace,
            session.secret, session.access_request, session.ci, session.caller.subject) == (
        "session-1", "web", "prod", "web", "web/kubegate-session-1", request.id,
        {"repository_id": "42"}, identity().subject)
    assert session.not_after == min(NOW + 1200, request.ends_at)


def test_the_request_end_cuts_the_lifetime_below_ten_minutes_and_refuses_under_a_minute(
) -> None:
    from tests.unit.exchanger.test_access_gate import MemoryAccessStore

    store, mapping_set = MemoryAccessStore(), approval_set()
    request = approved(store, mapping_set, duration=330)  # ends 300s from NOW
    use_case, _, backend = gated_exchanger(mapping_set, store)
    use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert (backend.issued[0].lifetime, backend.issued[0].not_after) == (300, request.ends_at)
    store.requests.clear()
    approved(store, mapping_set, duration=60)  # ends 30s from NOW
    use_case, audit, backend = gated_exchanger(mapping_set, store)
    with pytest.raises(PermissionDeniedError) as refused:
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert refused.value.reason == "REQUEST_ENDING" and backend.issued == []


def test_allow_lines_without_a_request_keep_their_shape() -> None:
    use_case, audit, _ = exchanger()
    use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert "access_request" not in audit.records[0].to_dict()


def test_a_session_store_failure_does_not_fail_the_exchange() -> None:
    from tests.unit.exchanger.test_access_gate import MemoryAccessStore

    store, mapping_set = MemoryAccessStore(), approval_set()
    approved(store, mapping_set)
    failing = MemorySessions(error=UnavailableError("SESSIONS_UNAVAILABLE"))
    use_case, audit, backend = gated_exchanger(mapping_set, store, failing)
    credential, _ = use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert credential.session_id == "session-1" and backend.revoked == []


def test_a_single_use_request_used_meanwhile_revokes_the_fresh_credential() -> None:
    from exchanger.access.policy import Reuse
    from tests.unit.exchanger.test_access_gate import MemoryAccessStore

    store, mapping_set = MemoryAccessStore(), approval_set(reuse=Reuse.SINGLE)
    approved(store, mapping_set)

    class RacingBackend(FakeBackend):
        def issue(self, request: IssueRequest) -> IssuedCredential:  # another replica wins
            from exchanger.access.lifecycle import use

            [stored] = store.requests.values()
            store.replace(use(stored, NOW, mapping_set.mappings[0].approval))  # type: ignore[arg-type]
            return super().issue(request)

    use_case, audit, backend = gated_exchanger(mapping_set, store, backend=RacingBackend())
    with pytest.raises(PermissionDeniedError) as refused:
        use_case.exchange(ExchangeInput(subject_token="a.b.c"))
    assert refused.value.reason == "NOT_USABLE" and backend.revoked == ["session-1"]
    assert [r.decision for r in audit.records] == ["allow", "deny"]


class RecordingKubeApi:
    """KubeApi: session Secrets and TokenRequests recorded; the API server's 600s floor."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, str]] = {}
        self.bound_to: list[str] = []
        self.seconds: list[int] = []

    def create_session_secret(self, namespace: str, name: str, labels: Any,
                              annotations: Any) -> Any:
        from exchanger.kube.port import ObjectRef

        self.secrets[f"{namespace}/{name}"] = dict(annotations)
        return ObjectRef(kind="Secret", name=name, uid="uid-s", namespace=namespace)

    def request_token(self, namespace: str, service_account: str, *, audiences: Any,
                      seconds: int, bound_to: Any) -> Any:
        import base64
        import json

        from exchanger.kube.port import GrantedToken

        assert seconds >= 600
        self.bound_to.append(bound_to.kind)
        self.seconds.append(seconds)
        payload = base64.urlsafe_b64encode(json.dumps({"jti": "j-1"}).encode()).decode()
        return GrantedToken(token=f"e30.{payload.rstrip('=')}.c2ln", expires_at=NOW + seconds)

    def delete_secret(self, namespace: str, name: str) -> None:
        self.secrets.pop(f"{namespace}/{name}", None)


def pod_caller() -> Identity:
    return Identity(issuer="prod-sa", issuer_url="https://kubernetes.default.svc",
                    subject="system:serviceaccount:web:deployer", token_id=None,
                    audiences=("kubegate",), issued_at=NOW - 10, expires_at=NOW + 300,
                    claims={"kubernetes.io": {"namespace": "web",
                                              "serviceaccount": {"name": "deployer"},
                                              "pod": {"name": "p", "uid": "u"}}})


def test_token_request_with_not_after_binds_to_a_secret_that_ends_at_not_after() -> None:
    from exchanger.backends.tokenrequest import TokenRequestBackend

    api = RecordingKubeApi()
    cluster = ClusterInfo(name="prod", server="https://k", certificate_authority_data=b"",
                          namespace="")
    backend = TokenRequestBackend(api=api, cluster=cluster,  # type: ignore[arg-type]
                                  cluster_issuers=frozenset({"prod-sa"}), clock=lambda: NOW)
    grant = Grant(cluster="prod", namespace="web", service_account="deployer")
    plain = backend.issue(IssueRequest(identity=pod_caller(), mapping="web", grant=grant,
                                       lifetime=900, audiences=(), session_id="s1"))
    assert (plain.bound_to, plain.secret, plain.caller_pod) == ("Pod web/p", "", "web/p/u")
    limited = backend.issue(IssueRequest(identity=pod_caller(), mapping="web", grant=grant,
                                         lifetime=120, audiences=(), session_id="s2",
                                         not_after=NOW + 120))
    assert (limited.bound_to, limited.secret) == ("Secret web/kubegate-session-s2",
                                                  "web/kubegate-session-s2")
    assert api.seconds == [900, 600]  # TokenRequest's floor; the Secret ends it sooner
    from exchanger.kube.port import EXPIRES_ANNOTATION

    assert api.secrets["web/kubegate-session-s2"][EXPIRES_ANNOTATION] == str(NOW + 120)


def test_issue_requests_below_ten_minutes_need_a_not_after() -> None:
    grant = Grant(cluster="prod", namespace="web", service_account="deployer")
    with pytest.raises(ValueError, match="at least 600s"):
        IssueRequest(identity=identity(), mapping="web", grant=grant, lifetime=300,
                     audiences=(), session_id="s")
    with pytest.raises(ValueError, match="at least 60s"):
        IssueRequest(identity=identity(), mapping="web", grant=grant, lifetime=59,
                     audiences=(), session_id="s", not_after=NOW + 59)


def test_a_self_issued_token_expires_at_not_after_at_the_latest() -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from exchanger.backends.selfissued import SelfIssuedBackend, SelfIssuedSigner

    signer = SelfIssuedSigner(key=ec.generate_private_key(ec.SECP256R1()),
                              issuer_url="https://kubegate.example", audience="k8s",
                              clock=lambda: NOW)
    backend = SelfIssuedBackend(signer, ClusterInfo(name="prod", server="https://k8s",
                                                    certificate_authority_data=b"",
                                                    namespace="ops"))
    grant = Grant(cluster="prod", namespace="ops", user="oncall")
    credential = backend.issue(IssueRequest(identity=person(), mapping="m", grant=grant,
                                            lifetime=300, audiences=(), session_id="s-1",
                                            not_after=NOW + 200))
    claims = jwt.decode(credential.token, options={"verify_signature": False})
    assert claims["exp"] == credential.expires_at == NOW + 200
