"""Outgoing lifecycle webhooks against a real HTTP receiver on loopback that verifies the
signature as a receiver would: the HMAC covers the exact body, `text` is top-level (Slack),
5xx is retried with the same delivery id, 4xx is final, a dead receiver or a full queue never
blocks `send`, and every outcome is counted."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exchanger.access.notify import Notifier, default_text, document_bytes, signature
from exchanger.access.settings import Webhook
from exchanger.metrics import WebhookMetrics
from kubegate.errors import ConfigError
from tests.support.leakcheck import SecretRegistry


@dataclass
class Receiver:
    """A webhook receiver: verifies `X-Kubegate-Signature-256` with `secret` like a real
    one (HMAC of the raw body, constant-time compare) and answers `statuses` in turn."""

    secret: bytes
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def verified(self, headers: dict[str, str], body: bytes) -> bool:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        given = headers.get("x-kubegate-signature-256", "")
        return hmac.compare_digest(expected, given)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver(secret=secrets.token_hex(24).encode())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.received.append((headers, body, state.verified(headers, body)))
            status = state.statuses.pop(0) if state.statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            state.arrived.set()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks/kubegate?key=abc"
    server.shutdown()
    server.server_close()


def _secret_file(tmp_path: Path, secret: bytes) -> Path:
    path = tmp_path / "webhook-secret"
    path.write_bytes(secret + b"\n")  # a trailing newline is not part of the key
    return path


def _notifier(hooks: tuple[Webhook, ...], metrics: WebhookMetrics, **kwargs: Any) -> Notifier:
    return Notifier(hooks, clock=lambda: 1_700_000_000, metrics=metrics,
                    sleep=lambda _seconds: None, **kwargs)


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _count(metrics: WebhookMetrics, event: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "kubegate_webhook_deliveries_total", {"event": event, "result": result})
    return value or 0.0


@pytest.fixture
def metrics() -> WebhookMetrics:
    return WebhookMetrics(CollectorRegistry())


def test_webhook_signature_verified_by_the_test_receiver(
        receiver: tuple[Receiver, str], metrics: WebhookMetrics, tmp_path: Path,
        secret_registry: SecretRegistry, caplog: pytest.LogCaptureFixture) -> None:
    state, url = receiver
    secret_registry.add_token("webhook secret", state.secret.decode())
    hook = Webhook(url=url, secret_file=_secret_file(tmp_path, state.secret))
    notifier = _notifier((hook,), metrics)
    notifier.start()
    try:
        notifier.send("approved", {"text": "approved: prod-admin for alice",
                                   "request": {"id": "ar-1", "mapping": "prod-admin"}})
        _wait_for(lambda: _count(metrics, "approved", "ok") == 1)
    finally:
        notifier.stop(5)
    (headers, body, verified), = state.received
    assert verified
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "kubegate"
    assert headers["x-kubegate-event"] == "approved"
    document = json.loads(body)
    assert document["text"] == "approved: prod-admin for alice"  # top-level: Slack takes it
    assert document["event"] == "approved"
    assert document["id"] == headers["x-kubegate-delivery"]
    assert document["time"] == "2023-11-14T22:13:20Z"
    assert document["request"] == {"id": "ar-1", "mapping": "prod-admin"}
    assert state.secret.decode() not in caplog.text


def test_signature_is_over_the_exact_body_bytes() -> None:
    body = document_bytes("created", {"text": "x"}, delivery="d-1", now=0)
    tampered = body.replace(b'"x"', b'"y"')
    assert signature(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature(b"k", body) != signature(b"k", tampered)


@pytest.mark.parametrize(("payload", "text"), [
    ({"request": {"mapping": "prod-admin", "requester": {"who": "alice@example.com",
                                                         "subject": "u1"}}},
     "created: prod-admin for alice@example.com"),
    ({"mapping": "deploy", "requester": {"subject": "repo:octo/web"}},
     "created: deploy for repo:octo/web"),
    ({}, "created: ? for ?"),
])
def test_a_missing_text_is_built_from_the_payload(payload: dict[str, Any], text: str) -> None:
    assert default_text("created", payload) == text
    assert json.loads(document_bytes("created", payload, delivery="d", now=0))["text"] == text


def test_a_5xx_is_retried_with_the_same_delivery_id_then_succeeds(
        receiver: tuple[Receiver, str], metrics: WebhookMetrics) -> None:
    state, url = receiver
    state.statuses = [500, 503, 429]
    notifier = _notifier((Webhook(url=url),), metrics)
    notifier.start()
    try:
        notifier.send("revoked", {"text": "revoked"})
        _wait_for(lambda: _count(metrics, "revoked", "ok") == 1)
    finally:
        notifier.stop(5)
    ids = {headers["x-kubegate-delivery"] for headers, _, _ in state.received}
    assert len(state.received) == 4 and len(ids) == 1
    assert len({body for _, body, _ in state.received}) == 1  # the same bytes every time


def test_a_4xx_is_final_logged_and_counted(
        receiver: tuple[Receiver, str], metrics: WebhookMetrics,
        caplog: pytest.LogCaptureFixture) -> None:
    state, url = receiver
    state.statuses = [400]
    notifier = _notifier((Webhook(url=url),), metrics)
    notifier.start()
    with caplog.at_level(logging.WARNING, logger="exchanger.access.notify"):
        try:
            notifier.send("denied", {"text": "denied"})
            _wait_for(lambda: _count(metrics, "denied", "failed") == 1)
        finally:
            notifier.stop(5)
    assert len(state.received) == 1
    assert "HTTP 400" in caplog.text
    assert "hooks/kubegate" not in caplog.text and "key=abc" not in caplog.text  # origin only


def test_a_dead_receiver_never_blocks_send_and_fails_after_five_attempts(
        metrics: WebhookMetrics) -> None:
    attempts: list[str] = []

    def refuse(url: str, *_: Any, **__: Any) -> int:
        attempts.append(url)
        raise ConnectionRefusedError

    notifier = _notifier((Webhook(url="https://hooks.example.com/x"),), metrics, opener=refuse)
    notifier.start()
    try:
        started = time.monotonic()
        for _ in range(50):
            notifier.send("expired", {"text": "expired"})
        assert time.monotonic() - started < 0.1
        _wait_for(lambda: _count(metrics, "expired", "failed") == 50)
    finally:
        notifier.stop(5)
    assert len(attempts) == 50 * 5


def test_send_returns_at_once_while_a_real_receiver_is_unreachable(
        metrics: WebhookMetrics) -> None:
    notifier = Notifier((Webhook(url="http://127.0.0.1:9/hook"),), metrics=metrics)
    notifier.start()  # real back-off waits
    try:
        started = time.monotonic()
        notifier.send("created", {"text": "created"})
        notifier.send("created", {"text": "created"})
        assert time.monotonic() - started < 0.05
    finally:
        started = time.monotonic()
        notifier.stop(5)
    assert time.monotonic() - started < 2  # stop ends the back-off wait


def test_a_full_queue_drops_and_counts(metrics: WebhookMetrics) -> None:
    release, entered = threading.Event(), threading.Event()

    def slow(*_: Any, **__: Any) -> int:
        entered.set()
        release.wait(5)
        return 200

    notifier = _notifier((Webhook(url="https://hooks.example.com/x"),), metrics,
                         opener=slow, queue_size=2)
    notifier.start()
    try:
        notifier.send("created", {"text": "first"})  # taken by the worker, which waits
        assert entered.wait(5)
        for _ in range(5):
            notifier.send("created", {"text": "more"})
        assert _count(metrics, "created", "dropped") == 3
        release.set()
        _wait_for(lambda: _count(metrics, "created", "ok") == 3)
    finally:
        release.set()
        notifier.stop(5)


def test_only_webhooks_subscribed_to_the_event_receive_it(
        receiver: tuple[Receiver, str], metrics: WebhookMetrics) -> None:
    state, url = receiver
    approvals = Webhook(url=url + "&hook=approvals", events=("approved",))
    everything = Webhook(url=url + "&hook=all")
    notifier = _notifier((approvals, everything), metrics)
    notifier.start()
    try:
        notifier.send("created", {"text": "created"})
        notifier.send("approved", {"text": "approved"})
        _wait_for(lambda: len(state.received) == 3)
    finally:
        notifier.stop(5)
    events = sorted(document["event"] for document in state.bodies())
    assert events == ["approved", "approved", "created"]


@pytest.mark.parametrize(("hook", "problem"), [
    (Webhook(url="https://h.example.com/", secret_file=Path("/nonexistent/secret")),
     "secretFile: cannot read /nonexistent/secret"),
    (Webhook(url="http://hooks.example.com/"), "plain http only to loopback"),
    (Webhook(url="https://h.example.com/", ca_file=Path("/nonexistent/ca.pem")),
     "caFile: cannot load"),
])
def test_a_bad_webhook_is_a_clear_start_error(hook: Webhook, problem: str) -> None:
    notifier = Notifier((hook,))
    with pytest.raises(ConfigError) as raised:
        notifier.start()
    assert problem in str(raised.value)
    assert "access.notifications.webhooks[0]" in str(raised.value)


def test_an_empty_secret_file_is_a_start_error(tmp_path: Path) -> None:
    empty = tmp_path / "secret"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        Notifier((Webhook(url="https://h.example.com/", secret_file=empty),)).start()


def test_the_worker_outlives_an_unexpected_error(metrics: WebhookMetrics) -> None:
    calls: list[bytes] = []

    def flaky(_url: str, body: bytes, *_: Any, **__: Any) -> int:
        calls.append(body)
        if len(calls) == 1:
            raise ValueError("a bug")
        return 200

    notifier = _notifier((Webhook(url="https://hooks.example.com/x"),), metrics, opener=flaky)
    notifier.start()
    try:
        notifier.send("created", {"text": "first"})
        notifier.send("created", {"text": "second", "odd": {1, 2}})  # not JSON: shown as text
        _wait_for(lambda: _count(metrics, "created", "ok") == 1)
    finally:
        notifier.stop(5)
    assert _count(metrics, "created", "failed") == 1
    assert json.loads(calls[1])["odd"] == "{1, 2}"
