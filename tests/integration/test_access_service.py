"""AccessService and SessionService over real gRPC (TLS on loopback) at a real exchanger with
its SQLite store, people from the real Dex: a request made, approved by another person and
used by an exchange whose audit line names it; self-approval and a non-approver refused; two
approvers at once both counted; the watch stream; revocation.

The end-to-end stories against the API server's own checks are elsewhere; this proves the
service: authentication by the caller's own token, the authorisation rules, and the events.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from exchanger.v1 import access_pb2, access_pb2_grpc
from kubegate.client.rpc import channel_for
from kubegate.errors import ExchangeError
from tests.support.controlplane import ControlPlane
from tests.support.dex import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, Dex
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, self_issued_entry

MAPPINGS = """
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: break-glass-admin}
spec:
  issuer: corp
  claims:
  - {claim: groups, contains: engineers}
  grant: {cluster: test, namespace: ops, user: break-glass, maxLifetime: 10m}
  approval:
    approvers: {issuer: corp, claims: [{claim: groups, contains: sre-leads}]}
    count: 1
    maxDuration: 10m
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: db-admin}
spec:
  issuer: corp
  claims:
  - {claim: groups, contains: engineers}
  grant: {cluster: test, namespace: db, user: db-admin, maxLifetime: 10m}
  approval:
    approvers: {issuer: corp, claims: [{claim: groups, contains: sre-leads}]}
    count: 2
    maxDuration: 10m
"""


@dataclass
class Desk:
    dex: Dex
    exchanger: TestExchanger
    access: access_pb2_grpc.AccessServiceStub
    sessions: access_pb2_grpc.SessionServiceStub

    def as_(self, email: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(email)}"),)

    def token(self, email: str) -> str:
        return str(self.dex.password_grant(email)["id_token"])

    def request(self, email: str, role: str = "break-glass-admin") -> access_pb2.AccessRequest:
        message = access_pb2.CreateAccessRequestRequest(role=role, reason="INC-42 db down",
                                                       ticket="INC-42")
        message.duration.FromSeconds(300)
        created: access_pb2.AccessRequest = self.access.CreateAccessRequest(
            message, metadata=self.as_(email), timeout=10)
        return created

    def approve(self, email: str, request_id: str) -> access_pb2.AccessRequest:
        approved: access_pb2.AccessRequest = self.access.ApproveAccessRequest(
            access_pb2.ApproveAccessRequestRequest(id=request_id, comment="go"),
            metadata=self.as_(email), timeout=10)
        return approved


@pytest.fixture
def desk(dex: Dex, control_plane: ControlPlane,
         start_test_exchanger: StartExchanger) -> Iterator[Desk]:
    exchanger = start_test_exchanger(
        issuers=[{"name": "corp", "url": dex.url, "caFile": str(dex.ca_path),
                  "audiences": [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT]}],
        clusters=[{"name": "test", "server": control_plane.url,
                   "caFile": str(control_plane.ca_path), "backend": "selfIssued"}],
        mappings=MAPPINGS, self_issued=self_issued_entry())
    channel = channel_for(exchanger.target, ca_file=exchanger.running.ca_file)
    try:
        yield Desk(dex, exchanger, access_pb2_grpc.AccessServiceStub(channel),
                   access_pb2_grpc.SessionServiceStub(channel))
    finally:
        channel.close()


def refusal(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    error: Any = caught.value
    status = rpc_status.from_call(error)
    reasons = [info.reason for detail in (status.details if status else [])
               if detail.Unpack(info := error_details_pb2.ErrorInfo())]
    return error.code(), reasons[0] if reasons else ""


def access_lines(desk: Desk) -> list[dict[str, Any]]:
    return [line for line in desk.exchanger.audit_lines() if line.get("decision") == "access"]


def test_a_request_approved_by_another_person_opens_the_exchange(desk: Desk) -> None:
    client = desk.exchanger.client()
    with pytest.raises(ExchangeError) as before:
        client.exchange(desk.token("bob@example.com"), role="break-glass-admin")
    assert before.value.reason == "APPROVAL_REQUIRED"
    made = desk.request("bob@example.com")
    assert made.state == access_pb2.ACCESS_REQUEST_STATE_PENDING
    assert made.requester.who == "bob@example.com"
    approved = desk.approve("alice@example.com", made.id)
    assert approved.state == access_pb2.ACCESS_REQUEST_STATE_APPROVED
    credential = client.exchange(desk.token("bob@example.com"), role="break-glass-admin")
    assert credential.expires_at <= approved.ends_at.seconds
    allow = [line for line in desk.exchanger.audit_lines() if line["decision"] == "allow"][-1]
    assert allow["access_request"] == made.id
    assert allow["approvers"] == ["alice@example.com"]
    events = [line["access"]["event"] for line in access_lines(desk)]
    assert events[:3] == ["created", "approved", "activated"]
    sessions = desk.sessions.ListSessions(
        access_pb2.ListSessionsRequest(access_request=made.id),
        metadata=desk.as_("bob@example.com"), timeout=10)
    assert [s.access_request for s in sessions.sessions] == [made.id]


def test_self_approval_and_a_non_approver_are_refused(desk: Desk) -> None:
    own = desk.request("alice@example.com")
    assert refusal(desk.approve, "alice@example.com", own.id) == (
        grpc.StatusCode.PERMISSION_DENIED, "SELF_APPROVAL")
    bobs = desk.request("bob@example.com")
    assert refusal(desk.approve, "carol@example.com", bobs.id) == (
        grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")
    assert refusal(desk.approve, "bob@example.com", bobs.id) == (
        grpc.StatusCode.PERMISSION_DENIED, "SELF_APPROVAL")
    get = access_pb2.GetAccessRequestRequest(id=bobs.id)
    assert refusal(desk.access.GetAccessRequest, get,
                   metadata=desk.as_("carol@example.com")) == (
        grpc.StatusCode.PERMISSION_DENIED, "NOT_VISIBLE")
    assert refusal(desk.access.GetAccessRequest, get,
                   metadata=(("authorization", "Bearer not-a-token"),))[0] == (
        grpc.StatusCode.UNAUTHENTICATED)


def test_two_approvers_at_once_both_count(desk: Desk) -> None:
    made = desk.request("bob@example.com", role="db-admin")
    assert made.approvals_required == 2
    tokens = {email: desk.as_(email) for email in ("alice@example.com", "mallory@example.com")}

    def approve(email: str) -> None:
        desk.access.ApproveAccessRequest(access_pb2.ApproveAccessRequestRequest(id=made.id),
                                         metadata=tokens[email], timeout=10)

    with futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(approve, tokens))
    final = desk.access.GetAccessRequest(access_pb2.GetAccessRequestRequest(id=made.id),
                                         metadata=desk.as_("bob@example.com"), timeout=10)
    assert final.state == access_pb2.ACCESS_REQUEST_STATE_APPROVED
    assert sorted(a.approver.subject for a in final.approvals) == sorted(
        {a.approver.subject for a in final.approvals})
    assert len(final.approvals) == 2


def test_the_watch_stream_sees_created_and_approved(desk: Desk) -> None:
    made = desk.request("bob@example.com")
    # from that request's version: what changes after it arrives however late the stream opens
    stream = desk.access.WatchAccessRequests(
        access_pb2.WatchAccessRequestsRequest(since=made.version),
        metadata=desk.as_("alice@example.com"))
    seen: list[tuple[str, int]] = []
    done = threading.Event()

    def read() -> None:
        try:
            for event in stream:
                seen.append((event.kind, event.request.state))
                if len(seen) == 2:
                    done.set()
                    return
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    desk.approve("alice@example.com", made.id)
    desk.request("bob@example.com")
    assert done.wait(15), seen
    stream.cancel()
    reader.join(5)
    assert seen == [("modified", access_pb2.ACCESS_REQUEST_STATE_APPROVED),
                    ("added", access_pb2.ACCESS_REQUEST_STATE_PENDING)]


def test_revoking_a_request_ends_it_for_the_exchange(desk: Desk) -> None:
    made = desk.request("bob@example.com")
    desk.approve("alice@example.com", made.id)
    client = desk.exchanger.client()
    client.exchange(desk.token("bob@example.com"), role="break-glass-admin")
    answer = desk.access.RevokeAccessRequest(
        access_pb2.RevokeAccessRequestRequest(id=made.id, reason="incident over"),
        metadata=desk.as_("bob@example.com"), timeout=10)
    assert answer.request.state == access_pb2.ACCESS_REQUEST_STATE_REVOKED
    assert answer.request.decided_by.who == "bob@example.com"
    assert all(not s.active for s in answer.sessions)
    with pytest.raises(ExchangeError) as after:
        client.exchange(desk.token("bob@example.com"), role="break-glass-admin")
    assert after.value.reason == "APPROVAL_REQUIRED"
    revoked = [line for line in access_lines(desk) if line["access"]["event"] == "revoked"]
    assert len(revoked) == 1 and revoked[0]["access"]["text"] == "incident over"
