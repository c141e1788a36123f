"""The live audit sink: an EventList POSTed by the API server becomes one durable joined
record per event before the 200; a write that fails is a 503 and acknowledges nothing; garbage
is a 400; the body is bounded; kubegate's logs are tailed as they grow."""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from exchanger.audit.log import AuditLog
from exchanger.audit.record import Caller, GrantRecord, allow_record
from exchanger.auditreport.bypass import Allowlist
from exchanger.auditreport.kubegate_log import SessionIndex
from exchanger.auditreport.model import JoinedAction
from exchanger.auditreport.sink import (
    MAX_BODY,
    Appender,
    AuditSink,
    Detector,
    DurableFile,
    LogTail,
    SinkEndpoint,
    SinkMetrics,
    SinkWriteError,
)
from exchanger.localtls import LocalCA
from exchanger.oauth.wire import Request
from kubegate.commands import audit_sink

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
TOKEN_ID = "5b7c1f0e-0000-4000-8000-00000000abcd"
ADMIN_CERT = "X509SHA256=" + "ab" * 32


class UserDetector:
    """A bypass detector for these tests: events by users under `admin` are client-cert."""

    def __init__(self) -> None:
        self.seen: list[JoinedAction] = []
        self._counts: dict[str, int] = {}

    def observe(self, action: JoinedAction) -> None:
        self.seen.append(action)
        if action.event.username.startswith("admin"):
            self._counts["client-certificate"] = self._counts.get("client-certificate", 0) + 1

    def counts(self) -> Mapping[str, int]:
        return dict(self._counts)


class FlakyFile:
    """An appender that fails the first `failures` appends, then keeps what it is given."""

    def __init__(self, failures: int) -> None:
        self.failures, self.data = failures, b""

    def append(self, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise SinkWriteError("disk full")
        self.data += data


class NoSessions:
    index = SessionIndex()

    def refresh(self) -> SessionIndex:
        return self.index


def endpoint_on(out: Appender, metrics: SinkMetrics, detector: Detector) -> SinkEndpoint:
    return SinkEndpoint(out=out, sessions=NoSessions(), detector_for=lambda _: detector,
                        metrics=metrics)


def event(audit_id: str, *, user: str = "admin", credential: str = ADMIN_CERT, verb: str = "get",
          resource: str = "pods", stage: str = "ResponseComplete", code: int = 200
          ) -> dict[str, Any]:
    extra = {"authentication.kubernetes.io/credential-id": [credential]} if credential else {}
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": audit_id, "stage": stage, "verb": verb,
            "requestURI": f"/api/v1/namespaces/web/{resource}",
            "user": {"username": user, "groups": ["system:authenticated"], "extra": extra},
            "sourceIPs": ["127.0.0.1"], "userAgent": "kubectl/v1.37.2",
            "objectRef": {"resource": resource, "namespace": "web", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": "2026-12-02T10:00:05.123456Z",
            "stageTimestamp": "2026-12-02T10:00:05.200000Z"}


def event_list(*items: dict[str, Any]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                       "metadata": {}, "items": list(items)}).encode()


def post(body: bytes, path: str = "/audit") -> Request:
    return Request(method="POST", target=path, headers=(("content-type", "application/json"),),
                   body=body)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_allow(log: Path, *, session_id: str, token_id: str) -> None:
    with AuditLog(log, fsync=False) as audit:
        audit.append(allow_record(
            now=NOW, caller=Caller(iss="https://token.actions.githubusercontent.com",
                                   sub="repo:acme/web:ref:refs/heads/main"),
            issuer="github", mapping="web-deploy",
            grant=GrantRecord(cluster="test", namespace="web", service_account="deployer",
                              lifetime_seconds=900),
            token_id=token_id, session_id=session_id, expires_at=NOW + timedelta(minutes=15),
            ci={"run_id": "123456", "sha": "0" * 40}))


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[AuditSink]:
    running = AuditSink(tmp_path / "joined.jsonl", kubegate_logs=[tmp_path / "kubegate.log"],
                        listen="127.0.0.1:0", tls=None, allowlist=Allowlist()).start()
    try:
        yield running
    finally:
        running.stop()


def send(sink: AuditSink, body: bytes, *, method: str = "POST", path: str = "/audit"
         ) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{sink.port}{path}", method=method,
                                     data=body if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_every_event_is_one_record_on_disk_before_the_200(sink: AuditSink, tmp_path: Path
                                                          ) -> None:
    status, body = send(sink, event_list(event("a1"), event("a2", user="jane", credential="")))
    assert (status, json.loads(body)) == (200, {"written": 2})
    written = records(tmp_path / "joined.jsonl")
    assert [(r["audit_id"], r["username"], r["joined"]) for r in written] == [
        ("a1", "admin", False), ("a2", "jane", False)]
    assert written[0]["bypass"] == ["client-certificate"]
    assert written[1]["bypass"] == ["unbrokered-user"]
    assert written[0]["session"] is None and written[0]["resource"] == "pods"


def test_an_event_joins_the_session_of_a_kubegate_log_that_grew_while_the_sink_ran(
        sink: AuditSink, tmp_path: Path) -> None:
    kubegate_log = tmp_path / "kubegate.log"
    assert send(sink, event_list(event("b1", credential=f"JTI={TOKEN_ID}")))[0] == 200
    write_allow(kubegate_log, session_id="s-1", token_id=TOKEN_ID)
    with kubegate_log.open("ab") as half:
        half.write(b'{"decision":"allow","session_')  # a line being written: not read yet
    assert send(sink, event_list(event("b2", user="system:serviceaccount:web:deployer",
                                       credential=f"JTI={TOKEN_ID}", verb="list")))[0] == 200
    first, second = records(tmp_path / "joined.jsonl")
    assert (first["joined"], first["session"]) == (False, None)  # not brokered yet then
    assert second["joined"] is True
    assert second["session"]["session_id"] == "s-1"
    assert second["session"]["mapping"] == "web-deploy"
    assert second["session"]["ci"]["run_id"] == "123456"
    assert second["credential_id"] == f"JTI={TOKEN_ID}"


def test_a_failed_write_is_a_503_that_acknowledges_nothing_and_the_retry_is_counted_once(
        ) -> None:
    out, metrics, detector = FlakyFile(failures=1), SinkMetrics(), UserDetector()
    endpoint = endpoint_on(out, metrics, detector)
    body = event_list(event("c1"), event("c2", user="jane"))
    refused = endpoint.handle(post(body))
    assert refused.status == 503 and out.data == b""
    assert metric(metrics, "kubegate_audit_sink_write_failures_total") == 1
    assert metric(metrics, "kubegate_audit_sink_events_total", joined="false") == 0
    assert endpoint.handle(post(body)).status == 200  # the API server's retry
    assert [r["audit_id"] for r in map(json.loads, out.data.splitlines())] == ["c1", "c2"]
    assert metric(metrics, "kubegate_audit_sink_events_total", joined="false") == 2
    assert metric(metrics, "kubegate_audit_bypass_events_total", kind="client-certificate") == 1
    assert len(detector.seen) == 2  # the retry did not observe the events again


def test_a_full_disk_is_a_503(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    metrics = SinkMetrics()
    endpoint = endpoint_on(DurableFile(full), metrics, UserDetector())
    assert endpoint.handle(post(event_list(event("d1")))).status == 503
    assert metric(metrics, "kubegate_audit_sink_write_failures_total") == 1


def test_an_incomplete_last_line_never_acknowledged_is_cut_off_when_the_file_is_opened(
        tmp_path: Path) -> None:
    path = tmp_path / "joined.jsonl"
    path.write_bytes(b'{"audit_id":"kept"}\n{"audit_id":"cut sh')
    out = DurableFile(path)
    out.append(b'{"audit_id":"next"}\n')
    out.close()
    assert [r["audit_id"] for r in records(path)] == ["kept", "next"]


def test_the_output_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    DurableFile(tmp_path / "new.jsonl").close()
    assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o600


def test_an_event_delivered_twice_is_written_once() -> None:
    out = FlakyFile(failures=0)
    endpoint = endpoint_on(out, SinkMetrics(), UserDetector())
    assert endpoint.handle(post(event_list(event("e1")))).status == 200
    again = endpoint.handle(post(event_list(event("e1"), event("e2"))))
    assert json.loads(again.body) == {"written": 1}
    assert [r["audit_id"] for r in map(json.loads, out.data.splitlines())] == ["e1", "e2"]


@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400),
    (b"[1, 2]", 400),
    (json.dumps({"kind": "Event"}).encode(), 400),
    (json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1beta1",
                 "items": []}).encode(), 400),
    (json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                 "items": {}}).encode(), 400),
    (json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}).encode(), 200),
])
def test_a_body_that_is_no_event_list_is_a_400_and_writes_nothing(body: bytes, status: int
                                                                  ) -> None:
    out = FlakyFile(failures=0)
    endpoint = endpoint_on(out, SinkMetrics(), UserDetector())
    assert endpoint.handle(post(body)).status == status
    assert out.data == b""


def test_an_item_that_is_no_event_is_kept_as_a_problem_record_and_earlier_stages_are_not(
        ) -> None:
    out, metrics = FlakyFile(failures=0), SinkMetrics()
    endpoint = endpoint_on(out, metrics, UserDetector())
    body = event_list({"kind": "Event", "stage": "ResponseComplete"},
                      event("f1", stage="RequestReceived"), event("f1"))
    assert json.loads(endpoint.handle(post(body)).body) == {"written": 2}
    problem, kept = map(json.loads, out.data.splitlines())
    assert problem["problem"].startswith("not an audit event")
    assert problem["event"] == {"kind": "Event", "stage": "ResponseComplete"}
    assert (kept["audit_id"], kept["stage"]) == ("f1", "ResponseComplete")
    assert metric(metrics, "kubegate_audit_sink_unreadable_events_total") == 1


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/audit", 405), ("POST", "/elsewhere", 404), ("PUT", "/audit", 405)])
def test_only_post_audit_and_get_metrics_are_served(method: str, path: str, status: int
                                                    ) -> None:
    endpoint = endpoint_on(FlakyFile(failures=0), SinkMetrics(), UserDetector())
    request = Request(method=method, target=path, headers=(), body=b"")
    assert endpoint.handle(request).status == status


def test_metrics_count_joined_and_bypass_events(sink: AuditSink) -> None:
    assert send(sink, event_list(event("g1"), event("g2", user="jane", credential="")))[0] == 200
    status, text = send(sink, b"", method="GET", path="/metrics")
    assert status == 200
    assert 'kubegate_audit_sink_events_total{joined="false"} 2.0' in text.decode()
    assert 'kubegate_audit_bypass_events_total{kind="client-certificate"} 1.0' in text.decode()


def test_a_body_over_the_bound_is_refused_before_it_is_read(sink: AuditSink) -> None:
    with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as connection:
        connection.sendall(b"POST /audit HTTP/1.1\r\nHost: sink\r\nContent-Type: "
                           b"application/json\r\nContent-Length: "
                           + str(MAX_BODY + 1).encode() + b"\r\n\r\n")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_with_a_client_ca_the_sink_refuses_a_client_without_a_certificate(tmp_path: Path
                                                                          ) -> None:
    ca = LocalCA("test-sink-ca")
    ca_file = ca.write(tmp_path / "ca.crt")
    cert, key = ca.issue_server().write(tmp_path, "sink")
    client_cert, client_key = ca.issue_client("kube-apiserver").write(tmp_path, "apiserver")
    running = AuditSink(tmp_path / "out.jsonl", kubegate_logs=[], listen="127.0.0.1:0",
                        tls=(cert, key), client_ca=ca_file, allowlist=Allowlist()).start()
    try:
        url = f"https://127.0.0.1:{running.port}/audit"
        anonymous = ssl.create_default_context(cafile=str(ca_file))
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            urllib.request.urlopen(url, data=event_list(), context=anonymous,  # noqa: S310
                                   timeout=5).read()
        with_cert = ssl.create_default_context(cafile=str(ca_file))
        with_cert.load_cert_chain(str(client_cert), str(client_key))
        with urllib.request.urlopen(url, data=event_list(event("h1")),  # noqa: S310
                                    context=with_cert, timeout=5) as answer:
            assert answer.status == 200
    finally:
        running.stop()
    assert [r["audit_id"] for r in records(tmp_path / "out.jsonl")] == ["h1"]


def test_the_tail_reads_whole_new_lines_only_and_restarts_a_file_that_was_replaced(
        tmp_path: Path) -> None:
    path = tmp_path / "kubegate.log"
    tail = LogTail([path])
    problems: list[str] = []
    assert list(tail.new_lines(problems)) == []  # not there yet
    path.write_bytes(b'{"n": 1}\n{"n": 2')
    assert list(tail.new_lines(problems)) == [({"n": 1}, f"{path}:1")]
    with path.open("ab") as more:
        more.write(b'}\nnot json\n')
    assert list(tail.new_lines(problems)) == [({"n": 2}, f"{path}:2")]
    assert problems == [f"{path}:3: not a JSON object"]
    replaced = tmp_path / "new.log"
    replaced.write_bytes(b'{"n": 9}\n')
    replaced.replace(path)
    assert list(tail.new_lines(problems)) == [({"n": 9}, f"{path}:1")]


def metric(metrics: SinkMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def sink_command(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    audit_sink.add_arguments(parser)
    return audit_sink.run(parser.parse_args(argv))


def test_the_command_prints_the_api_servers_webhook_kubeconfig(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert sink_command("--print-webhook-config", "--url", "https://sink:8447/audit",
                        "--ca-file", "/etc/kubernetes/sink-ca.crt", "--client-cert",
                        "/etc/kubernetes/audit.crt", "--client-key",
                        "/etc/kubernetes/audit.key") == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["clusters"][0]["cluster"] == {
        "server": "https://sink:8447/audit",
        "certificate-authority": "/etc/kubernetes/sink-ca.crt"}
    assert config["users"][0]["user"] == {"client-certificate": "/etc/kubernetes/audit.crt",
                                          "client-key": "/etc/kubernetes/audit.key"}
    assert config["current-context"] == config["contexts"][0]["name"]


@pytest.mark.parametrize("argv", [
    ("--print-webhook-config", "--url", "http://sink/audit", "--ca-file", "ca.crt"),
    ("--print-webhook-config", "--url", "https://sink/audit"),
    ("--print-webhook-config", "--url", "https://sink/audit", "--ca-file", "ca.crt",
     "--client-cert", "a.crt"),
    ("--listen", "127.0.0.1:0", "--out", "joined.jsonl", "--kubegate-log", "audit.log"),
    ("--listen", "127.0.0.1:0", "--tls-cert", "s.crt", "--tls-key", "s.key"),
])
def test_the_command_refuses_missing_or_wrong_flags(argv: tuple[str, ...],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert sink_command(*argv) == 2
    assert capsys.readouterr().err.startswith("kubegate audit sink: ")
