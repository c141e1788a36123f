"""AccessService and SessionService: who may see and do what (authentication, the authz
matrix, never telling an outsider whether an id exists), compare-and-swap on conflicts, and
the lifecycle events (one audit line each, a webhook payload, metrics), over real gRPC on
loopback with small fakes for the verifier, the stores and the revoker."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from exchanger.access.authz import Viewer, is_admin
from exchanger.access.events import AccessEvents, ActivationReporter, describe_duration
from exchanger.access.expirer import Expirer
from exchanger.access.model import AccessRequest, Requester, Session, SessionEnd, State
from exchanger.access.operations import AccessOperations, SessionOperations
from exchanger.access.policy import ApprovalPolicy, Approvers
from exchanger.access.ports import AlreadyExistsError, ConflictError
from exchanger.access.service import (
    AccessServicer,
    Authenticator,
    SessionServicer,
    add_access_services,
)
from exchanger.access.settings import AccessAdmin
from exchanger.audit.chain import verify_chain
from exchanger.audit.log import AuditLog
from exchanger.audit.record import AuditRecord
from exchanger.identity import Identity
from exchanger.mappings.conditions import Condition, Operator
from exchanger.mappings.model import Grant, MappingSet, TrustMapping
from exchanger.metrics import ExchangerMetrics
from exchanger.v1 import access_pb2, access_pb2_grpc
from kubegate.errors import InvalidTokenError

NOW = 1_800_000_000


def person(sub: str, *groups: str, email: str = "") -> Identity:
    return Identity(issuer="corp", issuer_url="https://idp.example", subject=sub,
                    token_id=f"jti-{sub}", audiences=("kubegate",), issued_at=NOW - 10,
                    expires_at=NOW + 600,
                    claims={"sub": sub, "groups": list(groups), "email_verified": True,
                            "email": email or f"{sub}@example.com"})


PEOPLE = {
    "alice": person("alice", "engineers", "sre-leads"),
    "bob": person("bob", "engineers", "sre-leads"),
    "dave": person("dave", "engineers", "sre-leads"),
    "carol": person("carol", "engineers"),
    "root": person("root", "platform-admins"),
    "eve": person("eve"),
}
ADMINS = (AccessAdmin(issuer="corp", conditions=(
    Condition(path=("groups",), operator=Operator.CONTAINS, expected="platform-admins"),)),)


def mapping(name: str = "break-glass-admin", count: int = 1) -> TrustMapping:
    return TrustMapping(
        name=name, issuer="corp",
        conditions=(Condition(path=("groups",), operator=Operator.CONTAINS,
                              expected="engineers"),),
        grant=Grant(cluster="prod", namespace="kube-system", service_account="admin"),
        approval=ApprovalPolicy(
            approvers=Approvers(issuer="corp", conditions=(
                Condition(path=("groups",), operator=Operator.CONTAINS,
                          expected="sre-leads"),)),
            count=count, max_duration=3600))


class FakeVerifier:
    def verify(self, token: str) -> Identity:
        if token not in PEOPLE:
            raise InvalidTokenError("BAD_SIGNATURE", public_message="the token's signature "
                                    "does not verify")
        return PEOPLE[token]


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class Requests:
    """An in-memory AccessStore: versions and compare-and-swap; `conflicts` makes the next
    replaces lose as if another replica had written first."""

    def __init__(self) -> None:
        self.values: dict[str, AccessRequest] = {}
        self.seq = 0
        self.conflicts = 0
        self.changes: list[tuple[str, AccessRequest]] = []
        self.lock = threading.Lock()

    def _put(self, kind: str, request: AccessRequest) -> AccessRequest:
        self.seq += 1
        stored = dataclasses.replace(request, version=str(self.seq))
        self.values[request.id] = stored
        self.changes.append((kind, stored))
        return stored

    def create(self, request: AccessRequest) -> AccessRequest:
        with self.lock:
            if request.id in self.values:
                raise AlreadyExistsError(request.id)
            return self._put("added", request)

    def get(self, request_id: str) -> AccessRequest | None:
        return self.values.get(request_id)

    def list(self, *, states: frozenset[State] | None = None, mapping: str = "",
             requester_subject: str = "") -> list[AccessRequest]:
        return [r for r in self.values.values()
                if (states is None or r.state in states) and (not mapping or r.mapping == mapping)
                and (not requester_subject or r.requester.subject == requester_subject)]

    def replace(self, request: AccessRequest) -> AccessRequest:
        with self.lock:
            if self.conflicts:
                self.conflicts -= 1
                self._put("modified", dataclasses.replace(self.values[request.id]))
                raise ConflictError(f"access request {request.id}")
            if self.values[request.id].version != request.version:
                raise ConflictError(f"access request {request.id}")
            return self._put("modified", request)

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, AccessRequest]]:
        position = int(since) if since else self.seq
        while not stop.is_set():
            fresh = [c for c in list(self.changes) if int(c[1].version) > position]
            for kind, request in fresh:
                position = int(request.version)
                yield kind, request
            stop.wait(0.02)


class Sessions:
    def __init__(self, *sessions: Session) -> None:
        self.values = {s.id: s for s in sessions}

    def create(self, session: Session) -> Session:
        self.values[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self.values.get(session_id)

    def list(self, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]:
        return [s for s in self.values.values() if (not active_only or s.active)
                and (not access_request or s.access_request == access_request)
                and (not cluster or s.cluster == cluster)]

    def list_due(self, now: float) -> list[Session]:
        return [s for s in self.list(active_only=True) if s.not_after <= now or s.caller_pod]

    def replace(self, session: Session) -> Session:
        self.values[session.id] = session
        return session


@dataclass
class FakeRevoker:
    sessions: Sessions
    clock: Clock

    def _end(self, session: Session, by: Requester | None, reason: SessionEnd) -> Session:
        ended = dataclasses.replace(session, ended_at=int(self.clock()), end_reason=reason,
                                    ended_by=by)
        return self.sessions.replace(ended)

    def revoke_session(self, session_id: str, *, by: Requester | None,
                       reason: SessionEnd) -> Session:
        return self._end(self.sessions.values[session_id], by, reason)

    def revoke_request(self, request_id: str, *, by: Requester | None,
                       reason: SessionEnd = SessionEnd.REVOKED) -> list[Session]:
        return [self._end(s, by, reason)
                for s in self.sessions.list(active_only=True, access_request=request_id)]


@dataclass
class Audit:
    records: list[AuditRecord] = field(default_factory=list)

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)


@dataclass
class Notifier:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send(self, event: str, payload: Mapping[str, Any]) -> None:
        self.sent.append((event, dict(payload)))


@dataclass
class CurrentMappings:
    current: MappingSet


def session(session_id: str, caller: str, *, request: str = "") -> Session:
    return Session(id=session_id, mapping="break-glass-admin", cluster="prod",
                   namespace="kube-system",
                   caller=Requester(issuer="corp", subject=caller, who=caller),
                   token_id=f"t-{session_id}", issued_at=NOW, expires_at=NOW + 600,
                   not_after=NOW + 600, secret=f"kube-system/kubegate-{session_id}",
                   access_request=request)


@dataclass
class World:
    clock: Clock
    requests: Requests
    sessions: Sessions
    audit: Audit
    notifier: Notifier
    metrics: ExchangerMetrics
    events: AccessEvents
    access: access_pb2_grpc.AccessServiceStub
    session_stub: access_pb2_grpc.SessionServiceStub


@pytest.fixture
def world() -> Iterator[World]:
    clock, requests, audit, notifier = Clock(), Requests(), Audit(), Notifier()
    sessions = Sessions(session("s-alice", "alice"), session("s-carol", "carol"))
    metrics = ExchangerMetrics()
    events = AccessEvents(audit, notifier, metrics, clock)
    mappings = CurrentMappings(MappingSet(mappings=(mapping(), mapping("db-admin", count=2))))
    revoker = FakeRevoker(sessions, clock)
    ids = iter(f"ar-{n:016x}" for n in range(1, 100))
    operations = AccessOperations.build(store=requests, mappings=mappings, admins=ADMINS,
                                        events=events, clock=clock, revoker=revoker,
                                        new_id=lambda: next(ids))
    auth = Authenticator(FakeVerifier(), None)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    add_access_services(
        AccessServicer(operations, auth),
        SessionServicer(SessionOperations(sessions=sessions, rights=operations.rights,
                                          revoker=revoker, requests=requests), auth), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield World(clock, requests, sessions, audit, notifier, metrics, events,
                    access_pb2_grpc.AccessServiceStub(channel),
                    access_pb2_grpc.SessionServiceStub(channel))
    finally:
        channel.close()
        server.stop(0).wait()


def as_(who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {who}"),)


def create(world: World, who: str = "alice", role: str = "break-glass-admin",
           reason: str = "INC-42 db down") -> access_pb2.AccessRequest:
    message = access_pb2.CreateAccessRequestRequest(role=role, reason=reason, ticket="INC-42")
    message.duration.FromSeconds(1800)
    response: access_pb2.AccessRequest = world.access.CreateAccessRequest(message,
                                                                         metadata=as_(who))
    return response


def refusal(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    error: Any = caught.value
    status = rpc_status.from_call(error)
    reason = ""
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
    return error.code(), reason


# --- authentication ---------------------------------------------------------------------------

def test_a_call_without_a_bearer_token_is_unauthenticated(world: World) -> None:
    code, reason = refusal(world.access.ListAccessRequests,
                           access_pb2.ListAccessRequestsRequest())
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "MISSING_TOKEN")


def test_a_token_the_verifier_refuses_is_unauthenticated_with_its_reason(world: World) -> None:
    code, reason = refusal(world.session_stub.ListSessions, access_pb2.ListSessionsRequest(),
                           metadata=as_("forged"))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_SIGNATURE")


def test_calls_are_rate_limited_per_identity() -> None:
    class Limiter:
        def check(self, identity: Identity) -> None:
            from kubegate.errors import RateLimitedError
            raise RateLimitedError("RATE_LIMITED", identity.subject)

    class Context:
        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return as_("alice")

    from kubegate.errors import RateLimitedError
    with pytest.raises(RateLimitedError):
        Authenticator(FakeVerifier(), Limiter()).identify(Context())  # type: ignore[arg-type]


# --- who may do what --------------------------------------------------------------------------

def test_create_needs_a_match_of_the_mappings_claims(world: World) -> None:
    code, reason = refusal(create, world, "eve")
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    code, reason = refusal(create, world, "alice", "no-such-role")
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")


@pytest.mark.parametrize(("who", "sees"), [
    ("alice", True),  # the requester
    ("bob", True),  # an approver of the mapping
    ("root", True),  # an admin
    ("carol", False),  # neither
    ("eve", False),
])
def test_get_shows_a_request_to_its_requester_approvers_and_admins(
        world: World, who: str, sees: bool) -> None:
    made = create(world)
    get = access_pb2.GetAccessRequestRequest(id=made.id)
    if sees:
        assert world.access.GetAccessRequest(get, metadata=as_(who)).id == made.id
    else:
        assert refusal(world.access.GetAccessRequest, get, metadata=as_(who)) == (
            grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")


def test_an_unknown_id_looks_the_same_as_a_hidden_one_except_to_an_admin(world: World) -> None:
    made = create(world)
    hidden = refusal(world.access.GetAccessRequest,
                     access_pb2.GetAccessRequestRequest(id=made.id), metadata=as_("carol"))
    unknown = refusal(world.access.GetAccessRequest,
                      access_pb2.GetAccessRequestRequest(id="ar-ffffffffffffffff"),
                      metadata=as_("carol"))
    assert hidden == unknown == (grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")
    assert refusal(world.access.GetAccessRequest,
                   access_pb2.GetAccessRequestRequest(id="ar-ffffffffffffffff"),
                   metadata=as_("root"))[0] == grpc.StatusCode.NOT_FOUND


def test_list_shows_only_what_the_caller_may_see(world: World) -> None:
    create(world, "carol")
    create(world, "alice")

    def ids(who: str, mine: bool = False) -> list[str]:
        found = world.access.ListAccessRequests(
            access_pb2.ListAccessRequestsRequest(mine_only=mine), metadata=as_(who))
        return [r.requester.subject for r in found.requests]

    assert ids("carol") == ["carol"]
    assert ids("bob") == ["carol", "alice"]
    assert ids("root") == ["carol", "alice"]
    assert ids("alice", mine=True) == ["alice"]
    assert ids("eve") == []


@pytest.mark.parametrize(("who", "code", "reason"), [
    ("alice", grpc.StatusCode.PERMISSION_DENIED, "SELF_APPROVAL"),
    ("carol", grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE"),
    ("eve", grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE"),
])
def test_approval_is_refused_to_the_requester_and_outsiders(
        world: World, who: str, code: grpc.StatusCode, reason: str) -> None:
    made = create(world)
    approve = access_pb2.ApproveAccessRequestRequest(id=made.id)
    assert refusal(world.access.ApproveAccessRequest, approve, metadata=as_(who)) == (
        code, reason)
    assert world.requests.values[made.id].state is State.PENDING


def test_an_approver_or_an_admin_approves(world: World) -> None:
    made = create(world)
    approved = world.access.ApproveAccessRequest(
        access_pb2.ApproveAccessRequestRequest(id=made.id, comment="ok"), metadata=as_("root"))
    assert approved.state == access_pb2.ACCESS_REQUEST_STATE_APPROVED
    assert [a.approver.subject for a in approved.approvals] == ["root"]
    assert approved.ends_at.seconds == NOW + 1800


def test_deny_is_for_approvers_and_admins_only(world: World) -> None:
    made = create(world, "carol")
    deny = access_pb2.DenyAccessRequestRequest(id=made.id, reason="not now")
    assert refusal(world.access.DenyAccessRequest, deny, metadata=as_("carol")) == (
        grpc.StatusCode.PERMISSION_DENIED, "NOT_AN_APPROVER")
    denied = world.access.DenyAccessRequest(deny, metadata=as_("bob"))
    assert (denied.state, denied.decided_by.subject, denied.decision_reason) == (
        access_pb2.ACCESS_REQUEST_STATE_DENIED, "bob", "not now")


def test_the_requester_may_revoke_and_its_sessions_end(world: World) -> None:
    made = create(world)
    world.access.ApproveAccessRequest(access_pb2.ApproveAccessRequestRequest(id=made.id),
                                      metadata=as_("bob"))
    world.sessions.create(session("s-used", "alice", request=made.id))
    revoke = access_pb2.RevokeAccessRequestRequest(id=made.id, reason="done")
    assert refusal(world.access.RevokeAccessRequest, revoke, metadata=as_("carol")) == (
        grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")
    answer = world.access.RevokeAccessRequest(revoke, metadata=as_("alice"))
    assert answer.request.state == access_pb2.ACCESS_REQUEST_STATE_REVOKED
    assert [s.id for s in answer.sessions] == ["s-used"]
    assert not world.sessions.values["s-used"].active


@pytest.mark.parametrize(("who", "visible"), [
    ("carol", ["s-carol"]), ("bob", ["s-alice", "s-carol"]),
    ("root", ["s-alice", "s-carol"]), ("eve", [])])
def test_sessions_are_shown_to_their_caller_approvers_and_admins(
        world: World, who: str, visible: list[str]) -> None:
    found = world.session_stub.ListSessions(access_pb2.ListSessionsRequest(),
                                            metadata=as_(who))
    assert [s.id for s in found.sessions] == visible
    assert all(s.revocable and not s.HasField("ended_at") for s in found.sessions)


def test_a_session_is_revoked_by_its_caller_but_hidden_from_others(world: World) -> None:
    revoke = access_pb2.RevokeSessionRequest(id="s-alice", reason="done")
    assert refusal(world.session_stub.RevokeSession, revoke, metadata=as_("carol")) == (
        grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")
    assert refusal(world.session_stub.GetSession, access_pb2.GetSessionRequest(id="s-nope"),
                   metadata=as_("carol")) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")
    ended = world.session_stub.RevokeSession(revoke, metadata=as_("alice"))
    assert (ended.active, ended.end_reason, ended.ended_by.subject) == (False, "revoked",
                                                                         "alice")
    line = world.audit.records[-1].to_dict()
    assert (line["reason"], line["session_id"], line["access"]["text"]) == (
        "ACCESS_SESSION_REVOKED", "s-alice", "done")


# --- compare-and-swap -------------------------------------------------------------------------

def test_an_approval_that_loses_a_race_is_read_again_and_applied(world: World) -> None:
    made = create(world, role="db-admin")
    world.requests.conflicts = 3
    approved = world.access.ApproveAccessRequest(
        access_pb2.ApproveAccessRequestRequest(id=made.id), metadata=as_("bob"))
    assert [a.approver.subject for a in approved.approvals] == ["bob"]
    assert approved.approvals_required == 2


def test_two_approvers_at_once_both_count(world: World) -> None:
    made = create(world, role="db-admin")

    def approve(who: str) -> None:
        world.access.ApproveAccessRequest(access_pb2.ApproveAccessRequestRequest(id=made.id),
                                          metadata=as_(who))

    for _ in range(5):
        with futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(approve, ["bob", "dave"]))
        stored = world.requests.values[made.id]
        assert stored.state is State.APPROVED
        assert sorted(a.approver.subject for a in stored.approvals) == ["bob", "dave"]
        made = create(world, role="db-admin")


def test_endless_conflicts_end_in_aborted(world: World) -> None:
    made = create(world)
    world.requests.conflicts = 10
    assert refusal(world.access.ApproveAccessRequest,
                   access_pb2.ApproveAccessRequestRequest(id=made.id),
                   metadata=as_("bob")) == (grpc.StatusCode.ABORTED, "CONFLICT")


# --- events -----------------------------------------------------------------------------------

def test_each_event_is_one_audit_line_one_webhook_and_a_count(world: World) -> None:
    made = create(world)
    world.access.ApproveAccessRequest(
        access_pb2.ApproveAccessRequestRequest(id=made.id, comment="go"), metadata=as_("bob"))
    assert [r.reason for r in world.audit.records] == ["ACCESS_CREATED", "ACCESS_APPROVED"]
    created, approved = (r.to_dict() for r in world.audit.records)
    assert created["decision"] == "access" and created["status"] == ""
    assert created["mapping"] == "break-glass-admin"
    assert created["caller"] == {"iss": "https://idp.example", "sub": "alice",
                                 "jti": "jti-alice"}
    assert created["access"]["requester"]["who"] == "alice@example.com"
    assert created["access"]["text"] == "INC-42 db down"
    assert approved["access"]["approvers"][0]["subject"] == "bob"
    assert approved["access"]["state"] == "approved"
    events = [event for event, _ in world.notifier.sent]
    assert events == ["created", "approved"]
    payload = world.notifier.sent[0][1]
    assert payload["text"] == (
        "alice@example.com asked for break-glass-admin for 30m: INC-42 INC-42 db down")
    assert payload["request"]["id"] == made.id and payload["actor"]["subject"] == "alice"
    json.dumps(payload)  # JSON-ready
    assert world.metrics.registry.get_sample_value(
        "kubegate_access_events_total", {"event": "approved"}) == 1
    assert world.metrics.registry.get_sample_value(
        "kubegate_access_approval_seconds_count") == 1


def test_a_persons_text_is_bounded_and_cannot_ping_a_slack_channel(world: World) -> None:
    made = create(world, reason="<!channel> " + "x" * 1000)
    line = world.audit.records[-1].to_dict()
    assert len(line["access"]["text"]) < 600
    text = world.notifier.sent[-1][1]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert made.reason.startswith("<!channel>")


def test_access_lines_chain_and_verify(tmp_path: Any, world: World) -> None:
    log = AuditLog(tmp_path / "audit.log", clock=world.clock, fsync=False)
    events = AccessEvents(log, None, None, world.clock)
    request = AccessRequest(id="ar-0000000000000001", mapping="m", duration=60,
                            created_at=NOW, requester=Requester(issuer="corp", subject="a"))
    for event in ("created", "approved", "activated", "expired"):
        events.emit(event, request, request.requester, words="why\nnot")
    log.close()
    lines = (tmp_path / "audit.log").read_bytes().splitlines()
    assert verify_chain(lines).ok and len(lines) == 4
    reopened = AuditLog(tmp_path / "audit.log", clock=world.clock, fsync=False)
    assert reopened.head.seq == 4
    reopened.close()


def test_the_first_use_through_the_gate_store_is_activated(world: World) -> None:
    made = create(world)
    world.access.ApproveAccessRequest(access_pb2.ApproveAccessRequestRequest(id=made.id),
                                      metadata=as_("bob"))
    store = ActivationReporter(world.requests, world.events)
    current = world.requests.values[made.id]
    store.replace(dataclasses.replace(current, state=State.ACTIVE, uses=1))
    store.replace(dataclasses.replace(world.requests.values[made.id], uses=2))
    assert [r.reason for r in world.audit.records].count("ACCESS_ACTIVATED") == 1


def test_the_expirer_expires_due_requests_once_and_counts_states(world: World) -> None:
    made = create(world)
    mappings = CurrentMappings(MappingSet(mappings=(mapping(),)))
    expirer = Expirer(world.requests, mappings, world.events, world.clock,
                      gauge=world.metrics)
    assert expirer.run_once() == []
    world.clock.now += 3601
    world.requests.conflicts = 1  # another replica got there first: skipped this round
    assert expirer.run_once() == []
    assert [r.id for r in expirer.run_once()] == [made.id]
    assert expirer.run_once() == []
    assert [r.reason for r in world.audit.records].count("ACCESS_EXPIRED") == 1
    assert world.metrics.registry.get_sample_value(
        "kubegate_access_requests", {"state": "expired"}) == 1


def test_watch_streams_the_changes_the_caller_may_see(world: World) -> None:
    made = create(world)
    # from that request's version: changes after it arrive whenever the stream is set up
    stream = world.access.WatchAccessRequests(
        access_pb2.WatchAccessRequestsRequest(since=made.version), metadata=as_("bob"))
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def read() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled at the end
            for event in stream:
                seen.append((event.kind, event.request.state))
                if len(seen) == 2:
                    done.set()
                    return

    reader = threading.Thread(target=read)
    reader.start()
    world.access.ApproveAccessRequest(access_pb2.ApproveAccessRequestRequest(id=made.id),
                                      metadata=as_("bob"))
    create(world)
    assert done.wait(10), seen
    stream.cancel()
    reader.join(5)
    assert seen == [("modified", access_pb2.ACCESS_REQUEST_STATE_APPROVED),
                    ("added", access_pb2.ACCESS_REQUEST_STATE_PENDING)]


def test_admin_rules_and_viewer_rights() -> None:
    assert is_admin(PEOPLE["root"], ADMINS) and not is_admin(PEOPLE["bob"], ADMINS)
    viewer = Viewer(identity=PEOPLE["carol"], admin=False, mapping_of=lambda name: None)
    request = AccessRequest(id="ar-1", mapping="gone", duration=60, created_at=NOW,
                            requester=Requester(issuer="corp", subject="carol"))
    assert viewer.sees_request(request) and not viewer.approves("gone")


def test_durations_read_like_people_write_them() -> None:
    assert [describe_duration(s) for s in (45, 1800, 3600, 5400, 0)] == [
        "45s", "30m", "1h", "1h30m", "0s"]
