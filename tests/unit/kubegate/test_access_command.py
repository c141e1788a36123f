"""`kubegate access` and `kubegate sessions` as commands, against a small in-process
AccessService and SessionService on loopback: exactly one identity, the bearer token each call
carries, tables and one-line JSON, a denial's code and reason on one stderr line, exit
statuses, and `request --wait` until approved, denied or timed out."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from exchanger.v1 import access_pb2, access_pb2_grpc
from kubegate.cli import main
from kubegate.client.access import AccessEvent, AccessRequest, Principal, State, as_json
from kubegate.commands.access import (
    ended,
    request_row,
    span,
    table,
    wait_for_decision,
)
from kubegate.errors import Code, ExchangeError
from kubegate.login.store import CachedLogin, LoginCache

ROOT = Path(__file__).resolve().parents[3]
ISSUER, CLIENT = "https://id.example.com", "kubegate-cli"
PEOPLE = {"alice-token": ("alice", "alice@example.com"), "bob-token": ("bob", "bob@example.com"),
          "id.token.cached": ("alice", "alice@example.com")}
NOW = 1_767_000_000
PENDING = access_pb2.ACCESS_REQUEST_STATE_PENDING
APPROVED = access_pb2.ACCESS_REQUEST_STATE_APPROVED
DENIED = access_pb2.ACCESS_REQUEST_STATE_DENIED


# -- a fake exchanger ---------------------------------------------------------------------------


def refuse(context: grpc.ServicerContext, code: int, reason: str, message: str) -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="kubegate.io"))
    context.abort_with_status(rpc_status.to_status(status_pb2.Status(
        code=code, message=message, details=[info])))


class FakeExchanger(access_pb2_grpc.AccessServiceServicer, access_pb2_grpc.SessionServiceServicer):
    """Requests in a dict, one approval needed, requesters may not approve themselves; every
    change goes to the watchers. `decide` ("approve" or "deny") decides a new request soon."""

    def __init__(self) -> None:
        self.requests: dict[str, access_pb2.AccessRequest] = {}
        self.calls: list[tuple[str, str, Any]] = []  # (method, bearer token, message)
        self.changed = threading.Condition()
        self.events: list[access_pb2.AccessRequestEvent] = []
        self.decide, self.address = "", ""
        self.session = access_pb2.Session(
            id="s-1", mapping="prod-admin", cluster="prod", namespace="kube-system",
            caller=access_pb2.Principal(issuer="corp", subject="alice", who="alice@example.com"),
            token_id="t-1", revocable=True, access_request="ar-0000000000000001", active=True)
        self.session.issued_at.FromSeconds(NOW)
        self.session.not_after.FromSeconds(NOW + 1800)

    def _caller(self, name: str, message: Any, context: grpc.ServicerContext) -> str:
        bearer = dict(context.invocation_metadata()).get("authorization", "")
        token = bearer.removeprefix("Bearer ")
        self.calls.append((name, token, message))
        if token not in PEOPLE:
            refuse(context, code_pb2.UNAUTHENTICATED, "INVALID_TOKEN", "the token was not "
                   "accepted")
        return PEOPLE[token][0]

    def _change(self, request: access_pb2.AccessRequest) -> None:
        with self.changed:
            request.version = str(int(request.version or "0") + 1)
            self.events.append(access_pb2.AccessRequestEvent(kind="modified", request=request))
            self.changed.notify_all()

    def CreateAccessRequest(self, message: Any, context: Any) -> Any:  # noqa: N802
        who = self._caller("create", message, context)
        if message.role == "nope":
            refuse(context, code_pb2.PERMISSION_DENIED, "NO_MATCHING_MAPPING",
                   "no trust mapping allows this request")
        request = access_pb2.AccessRequest(
            id=f"ar-{len(self.requests) + 1:016x}", mapping=message.role, reason=message.reason,
            ticket=message.ticket, state=PENDING, approvals_required=1, version="1",
            requester=access_pb2.Principal(issuer="corp", subject=who,
                                           who=PEOPLE[who + "-token"][1]))
        request.duration.CopyFrom(message.duration)
        request.created_at.FromSeconds(int(time.time()) - 90)
        self.requests[request.id] = request
        if self.decide:
            threading.Timer(0.3, self._decide, [request.id, self.decide]).start()
        return request

    def _decide(self, request_id: str, how: str) -> None:
        request = self.requests[request_id]
        bob = access_pb2.Principal(issuer="corp", subject="bob", who="bob@example.com")
        if how == "approve":
            request.approvals.add(approver=bob, comment="ok")
            request.state = APPROVED
            request.ends_at.FromSeconds(int(time.time()) + 1800)
        else:
            request.state, request.decision_reason = DENIED, "not during the freeze"
            request.decided_by.CopyFrom(bob)
        self._change(request)

    def GetAccessRequest(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("get", message, context)
        if message.id not in self.requests:
            refuse(context, code_pb2.NOT_FOUND, "NO_SUCH_REQUEST", "no such access request")
        return self.requests[message.id]

    def ListAccessRequests(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("list", message, context)
        return access_pb2.ListAccessRequestsResponse(requests=list(self.requests.values()))

    def WatchAccessRequests(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("watch", message, context)
        sent = len(self.events)
        while context.is_active():
            with self.changed:
                self.changed.wait(timeout=0.1)
                fresh, sent = self.events[sent:], len(self.events)
            yield from fresh

    def ApproveAccessRequest(self, message: Any, context: Any) -> Any:  # noqa: N802
        who = self._caller("approve", message, context)
        request = self.requests[message.id]
        if request.requester.subject == who:
            refuse(context, code_pb2.PERMISSION_DENIED, "SELF_APPROVAL",
                   "you cannot approve your own request")
        self._decide(message.id, "approve")
        return request

    def DenyAccessRequest(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("deny", message, context)
        self._decide(message.id, "deny")
        return self.requests[message.id]

    def RevokeAccessRequest(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("revoke", message, context)
        request = self.requests[message.id]
        request.state, request.decision_reason = (access_pb2.ACCESS_REQUEST_STATE_REVOKED,
                                                  message.reason)
        return access_pb2.RevokeAccessRequestResponse(request=request, sessions=[self.session])

    def ListSessions(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("sessions", message, context)
        return access_pb2.ListSessionsResponse(sessions=[self.session])

    def GetSession(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("session", message, context)
        return self.session

    def RevokeSession(self, message: Any, context: Any) -> Any:  # noqa: N802
        self._caller("revoke-session", message, context)
        self.session.active, self.session.end_reason = False, "revoked"
        self.session.ended_at.FromSeconds(NOW + 60)
        return self.session


@pytest.fixture
def fake() -> Iterator[FakeExchanger]:
    servicer = FakeExchanger()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    access_pb2_grpc.add_AccessServiceServicer_to_server(servicer, server)
    access_pb2_grpc.add_SessionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.address = f"127.0.0.1:{port}"
    yield servicer
    server.stop(grace=None).wait()


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEGATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ALICE", "alice-token")
    monkeypatch.setenv("BOB", "bob-token")


def kubegate(fake: FakeExchanger, *argv: str, token: str = "ALICE") -> int:  # noqa: S107
    command, action, *rest = argv
    return main([command, action, "--server", fake.address, "--plaintext",
                 "--token-env", token, *rest])


def one_line(captured: pytest.CaptureResult[str], prog: str = "kubegate access") -> str:
    assert captured.err.startswith(prog + ": ") and captured.err.count("\n") == 1
    return captured.err.removeprefix(prog + ": ").strip()


def after_waiting(captured: pytest.CaptureResult[str]) -> str:
    """The failure line after the waiting notice."""
    notice, failure = captured.err.splitlines()
    assert notice.startswith("kubegate access: ar-") and "waiting up to" in notice
    return failure.removeprefix("kubegate access: ")


# -- who calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "words"), [
    ([], "give exactly one identity: --issuer and --client-id (a person's sign-in), or one of "
     "--token-file, --token-env, --gitlab-id-token, --github-actions"),
    (["--issuer", ISSUER, "--client-id", CLIENT, "--token-env", "ALICE"],
     "(got a sign-in, --token-env)"),
    (["--token-env", "NOT_SET"], "--token-env NOT_SET: the environment variable is not set"),
    (["--token-env", "ALICE", "--server", "10.0.0.1:443", "--plaintext"],
     "--plaintext is only allowed for a loopback server"),
    (["--issuer", "http://id.example.com", "--client-id", CLIENT], "must be an https URL"),
    (["--issuer", ISSUER], "--client-id: required"),
])
def test_not_exactly_one_good_identity_is_one_line_and_exit_2(
        argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = [] if "--server" in argv else ["--server", "127.0.0.1:1"]
    assert main(["access", "list", *server, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert words in one_line(captured)


def test_two_token_sources_on_the_command_line_are_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sessions", "list", "--token-env", "A", "--token-file", "F"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_every_call_carries_the_callers_own_token_as_a_bearer(fake: FakeExchanger) -> None:
    assert kubegate(fake, "access", "list", "--state", "pending", "--state", "approved",
                    "--role", "prod-admin", "--mine") == 0
    ((method, token, message),) = fake.calls
    assert (method, token) == ("list", "alice-token")
    assert list(message.states) == [PENDING, APPROVED]
    assert (message.role, message.mine_only) == ("prod-admin", True)


def test_kubegate_variables_stand_in_for_the_flags(
        fake: FakeExchanger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("bob-token\n")
    monkeypatch.setenv("KUBEGATE_SERVER", fake.address)
    monkeypatch.setenv("KUBEGATE_PLAINTEXT", "true")
    monkeypatch.setenv("KUBEGATE_TOKEN_FILE", str(tmp_path / "token"))
    assert main(["sessions", "list"]) == 0
    assert fake.calls[0][:2] == ("sessions", "bob-token")


def test_a_persons_cached_sign_in_is_their_identity(
        fake: FakeExchanger, tmp_path: Path) -> None:
    LoginCache(tmp_path / "cache" / "login").store(CachedLogin(
        issuer=ISSUER, client_id=CLIENT, id_token="id.token.cached", refresh_token="r",
        expiry=int(time.time()) + 900, who="alice@example.com"))
    assert main(["access", "show", "--server", fake.address,
                 "--plaintext", "--issuer", ISSUER, "--client-id", CLIENT, "ar-x"]) == 1
    assert fake.calls[0][:2] == ("get", "id.token.cached")


def test_a_missing_token_file_is_exit_2(fake: FakeExchanger, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["access", "list", "--server", fake.address,
                 "--plaintext", "--token-file", str(tmp_path / "none")]) == 2
    assert "no such file" in one_line(capsys.readouterr())
    assert fake.calls == []


# -- requests -----------------------------------------------------------------------------------


def test_a_request_prints_its_row_and_sends_what_was_asked(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    assert kubegate(fake, "access", "request", "--role", "prod-admin", "--reason",
                    "INC-42: API down", "--duration", "30m", "--ticket", "INC-42") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "STATE", "ROLE", "REQUESTER", "REASON", "APPROVALS", "ENDS",
                              "IN", "AGE"]
    assert row.split()[:3] == ["ar-0000000000000001", "pending", "prod-admin"]
    assert "alice@example.com" in row and "0/1" in row and "1m" in row
    message = fake.calls[0][2]
    assert (message.role, message.ticket, message.duration.seconds) == ("prod-admin", "INC-42",
                                                                        1800)


def test_json_is_one_document_per_line_with_rfc3339_times(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    assert kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r",
                    "-o", "json") == 0
    assert kubegate(fake, "access", "list", "-o", "json") == 0
    created, listed = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert created["state"] == "pending" and created["id"] == "ar-0000000000000001"
    assert created["created_at"].endswith("Z") and created["ends_at"] is None
    assert created["duration"] == "0s" and created["decided_by"] is None
    assert created["requester"] == {"issuer": "corp", "subject": "alice",
                                    "who": "alice@example.com"}
    assert listed == {"requests": [created]}


def test_self_approval_is_refused_with_its_reason_on_one_line(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r")
    capsys.readouterr()
    assert kubegate(fake, "access", "approve", "ar-0000000000000001") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured) == ("PERMISSION_DENIED SELF_APPROVAL: you cannot approve your own "
                                  "request")
    assert "alice-token" not in captured.err


def test_a_second_engineer_approves(fake: FakeExchanger,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r")
    capsys.readouterr()
    assert kubegate(fake, "access", "approve", "ar-0000000000000001", "--comment", "ok",
                    token="BOB") == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "approved" in row and "1/1" in row and "29m" in row
    assert fake.calls[-1][2].comment == "ok"


def test_show_lists_the_approvals(fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r", "--ticket", "T")
    kubegate(fake, "access", "approve", "ar-0000000000000001", token="BOB")
    capsys.readouterr()
    assert kubegate(fake, "access", "show", "ar-0000000000000001") == 0
    out = capsys.readouterr().out
    assert "state:" in out and "approved" in out and "ticket:" in out
    assert "bob@example.com (corp/bob) at " in out and ": ok" in out


def test_an_unknown_id_is_exit_1_with_not_found(fake: FakeExchanger,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert kubegate(fake, "access", "show", "ar-nope") == 1
    assert one_line(capsys.readouterr()) == "NOT_FOUND NO_SUCH_REQUEST: no such access request"


def test_an_unknown_token_is_exit_1_unauthenticated(
        fake: FakeExchanger, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EVE", "forged.token.value")
    assert kubegate(fake, "sessions", "list", token="EVE") == 1
    captured = capsys.readouterr()
    assert one_line(captured, "kubegate sessions") == ("UNAUTHENTICATED INVALID_TOKEN: the "
                                                       "token was not accepted")
    assert "forged" not in captured.err


def test_revoke_prints_the_request_and_the_sessions_it_ended(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r")
    capsys.readouterr()
    assert kubegate(fake, "access", "revoke", "ar-0000000000000001", "--reason", "over",
                    "-o", "json", token="BOB") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["request"]["state"] == "revoked"
    assert document["request"]["decision_reason"] == "over"
    assert [s["id"] for s in document["sessions"]] == ["s-1"]


@pytest.mark.parametrize("argv", [
    ["request", "--role", "r", "--reason", "x", "--duration", "0s"],
    ["request", "--role", "r", "--reason", "x", "--duration", "soon"],
    ["request", "--role", "r", "--reason", "x", "--timeout", "1m"],
    ["request", "--role", "r", "--reason", "x", "--wait", "--timeout", "0s"],
    ["watch", "--timeout", "never"],
])
def test_bad_durations_are_exit_2_before_any_call(argv: list[str], fake: FakeExchanger,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert kubegate(fake, "access", *argv) == 2
    assert one_line(capsys.readouterr())
    assert [c for c in fake.calls if c[0] != "list"] == []


def test_a_missing_reason_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["access", "deny", "ar-1", "--token-env", "ALICE"])
    assert exited.value.code == 2
    assert "--reason" in capsys.readouterr().err


# -- waiting ------------------------------------------------------------------------------------


def test_wait_ends_with_the_approval_and_how_to_exchange(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    fake.decide = "approve"
    assert kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r",
                    "--wait", "--timeout", "20s") == 0
    captured = capsys.readouterr()
    last = captured.out.splitlines()[-1]
    assert last.startswith("approved by bob@example.com; exchange with kubegate exchange "
                           f"--server {fake.address} --plaintext --role prod-admin "
                           "--token-env ALICE")
    assert "waiting up to 20s" in captured.err


def test_wait_with_json_prints_the_created_and_the_final_request(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    fake.decide = "approve"
    assert kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r",
                    "--wait", "-o", "json") == 0
    created, final = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (created["state"], final["state"]) == ("pending", "approved")
    assert final["approvals"][0]["approver"]["who"] == "bob@example.com"


def test_wait_ends_with_a_denial_and_its_reason(
        fake: FakeExchanger, capsys: pytest.CaptureFixture[str]) -> None:
    fake.decide = "deny"
    assert kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r",
                    "--wait") == 1
    assert after_waiting(capsys.readouterr()) == ("ar-0000000000000001 was denied by "
                                             "bob@example.com: not during the freeze")


def test_wait_times_out_with_exit_1(fake: FakeExchanger,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r",
                    "--wait", "--timeout", "1s") == 1
    assert time.monotonic() - started < 10
    assert after_waiting(capsys.readouterr()) == ("timed out after 1s: ar-0000000000000001 is "
                                                  "still "
                                             "pending (0/1 approvals)")


def test_a_refused_request_does_not_wait(fake: FakeExchanger,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert kubegate(fake, "access", "request", "--role", "nope", "--reason", "r",
                    "--wait") == 1
    assert one_line(capsys.readouterr()) == ("PERMISSION_DENIED NO_MATCHING_MAPPING: no trust "
                                             "mapping allows this request")


class FlakyClient:
    """A client whose first watch breaks (an exchanger restart) and whose request is approved
    between the read and the second watch: the next round's read sees it."""

    def __init__(self, request: AccessRequest) -> None:
        self.request, self.rounds = request, 0

    def get(self, request_id: str) -> AccessRequest:
        return self.request

    def watch(self, **_: Any) -> Iterator[AccessEvent]:
        self.rounds += 1
        if self.rounds == 1:
            raise ExchangeError(Code.UNAVAILABLE, "", "connection reset")
        self.request = AccessRequest(**{**self.request.__dict__, "state": State.APPROVED})
        return iter(())


def test_wait_survives_a_broken_stream_and_a_missed_event() -> None:
    pending = AccessRequest(id="ar-1", mapping="m", requester=Principal(subject="a"))
    final, decided = wait_for_decision(FlakyClient(pending), pending,  # type: ignore[arg-type]
                                       timeout=60, sleep=lambda _: None)
    assert decided and final.state is State.APPROVED


def test_watch_prints_a_line_per_change(fake: FakeExchanger,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    kubegate(fake, "access", "request", "--role", "prod-admin", "--reason", "r")
    capsys.readouterr()
    threading.Timer(0.5, fake._decide, ["ar-0000000000000001", "approve"]).start()
    assert kubegate(fake, "access", "watch", "--timeout", "2s", "-o", "json") == 0
    (event,) = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert event["kind"] == "modified" and event["request"]["state"] == "approved"


# -- sessions -----------------------------------------------------------------------------------


def test_sessions_list_show_and_revoke(fake: FakeExchanger,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert kubegate(fake, "sessions", "list", "--active", "--request", "ar-1", "--cluster",
                    "prod") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["ID", "ROLE", "CLUSTER"]
    assert row.split()[:7] == ["s-1", "prod-admin", "prod", "kube-system", "alice@example.com",
                               "ar-0000000000000001", "active"]
    message = fake.calls[0][2]
    assert (message.active_only, message.access_request, message.cluster) == (True, "ar-1",
                                                                              "prod")
    assert kubegate(fake, "sessions", "show", "s-1") == 0
    assert "revocable:" in capsys.readouterr().out
    assert kubegate(fake, "sessions", "revoke", "s-1", "--reason", "lost laptop", "-o",
                    "json") == 0
    session = json.loads(capsys.readouterr().out)
    assert (session["active"], session["end_reason"]) == (False, "revoked")
    assert session["ended_at"] == "2025-12-29T09:21:00Z"
    assert fake.calls[-1][2].reason == "lost laptop"


# -- rendering and lightness --------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (5400, "1h30m"),
    (86400, "1d"), (90000, "1d1h"), (-5, "0s")])
def test_spans_read_like_kubectl_ages(seconds: int, text: str) -> None:
    assert span(seconds) == text


def test_a_row_cuts_the_reason_and_counts_approvals() -> None:
    request = AccessRequest(id="ar-1", mapping="m", requester=Principal(issuer="i", subject="s"),
                            reason="x" * 100, state=State.ACTIVE, created_at=NOW - 7200,
                            ends_at=NOW + 600, approvals_required=2)
    row = request_row(request, now=NOW)
    assert row == ("ar-1", "active", "m", "s@i", "x" * 37 + "...", "0/2", "10m", "2h")
    assert table(("A", "B"), [("x", "yy")]) == "A   B\nx   yy"
    assert as_json(request)["duration"] == "0s"


def test_an_ended_request_names_who_and_why() -> None:
    request = AccessRequest(id="ar-1", mapping="m", requester=Principal(subject="a"),
                            state=State.REVOKED, decided_by=Principal(subject="b", who="B"),
                            decision_reason="done")
    assert ended(request) == "ar-1 was revoked by B: done"


def test_a_usage_error_imports_no_grpc() -> None:
    code = ("import sys; from kubegate.cli import main; status = main(['access', 'list', "
            "'--token-env', 'X']); print(status, 'grpc' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.split() == ["2", "False"], result.stderr
