"""Outgoing webhooks for access lifecycle events: a signed JSON POST to every configured
receiver whose `events` include the event, delivered by one worker thread.

    notifier = Notifier(config.access.webhooks, metrics=WebhookMetrics(registry))
    notifier.start()                  # reads the secret files: a bad one is a ConfigError
    notifier.send("approved", {"text": "...", "request": request.to_dict()})
    notifier.stop(5.0)

The body is the payload plus `event`, `id` (one uuid per delivery, the same on every retry)
and `time` (RFC 3339, UTC: when `send` was called); `text` stays top-level so a Slack
incoming webhook takes the body as is. Headers: `Content-Type: application/json`,
`User-Agent: kubegate`, `X-Kubegate-Event`, `X-Kubegate-Delivery` (the id) and, with a
secretFile, `X-Kubegate-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes>`.

Rules of this module:
- `send` never blocks and never raises: the queue is bounded (`QUEUE_SIZE`); an event that
  does not fit is dropped, logged and counted (a failing receiver never holds up an approval);
- a delivery is retried on connection errors, timeouts (`TIMEOUT`), 5xx and 429, with
  exponential back-off and jitter, at most `ATTEMPTS` times within `RETRY_WITHIN` seconds;
  any other answer is final; redirects are not followed (3xx is a failure);
- https uses `caFile` or the system roots; plain http is allowed to loopback only;
- logs name a receiver by its origin only (`https://host:port`): a Slack URL carries its
  secret in the path, others in the query; the secret itself is never logged;
- on `stop`, back-off waits end at once, and events still queued are dropped and counted;
  `send` before `start` (or with no receiver for the event) does nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import tenacity

from exchanger.access.settings import Webhook
from exchanger.metrics import WebhookMetrics
from kubegate.addresses import HostPort
from kubegate.errors import ConfigError, KubegateError
from kubegate.workers import BackgroundWorker

__all__ = ["Notifier", "Transport", "WebhookDeliveryError", "post", "signature"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
TIMEOUT = 5.0  # seconds, per attempt (connect and answer)
ATTEMPTS = 5
RETRY_WITHIN = 60.0  # seconds: no attempt starts later than this after the first
FIRST_WAIT, MAX_WAIT, JITTER = 1.0, 20.0, 1.0  # back-off: 1, 2, 4, 8 s (+ up to 1 s)
# Worth another try: the receiver is down, overloaded or asks us to slow down.
RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))
SIGNATURE_HEADER = "X-Kubegate-Signature-256"


class Transport(Protocol):
    """POST `body` to `url` and return the answer's status; OSError when no answer came."""

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], *,
                 context: ssl.SSLContext | None, timeout: float) -> int: ...


class WebhookDeliveryError(KubegateError):
    """A receiver answered with a status other than 2xx; `retryable` for 5xx and 429."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.retryable = status in RETRYABLE_STATUS
        super().__init__("WEBHOOK_DELIVERY_FAILED", f"answered HTTP {status}")


class _StoppedError(KubegateError):
    """The notifier stopped during a back-off wait."""

    def __init__(self) -> None:
        super().__init__("WEBHOOK_NOTIFIER_STOPPED", "stopped before the delivery ended")


@dataclass(frozen=True, kw_only=True)
class _Item:
    event: str
    payload: Mapping[str, Any]
    at: float  # when it was sent: the body's `time`


@dataclass(frozen=True, kw_only=True)
class _Receiver:
    url: str
    origin: str  # what logs show
    events: frozenset[str]
    secret: bytes = field(default=b"", repr=False)
    context: ssl.SSLContext | None = None


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Kubegate-Signature-256` value: `sha256=` + hex HMAC-SHA256 of body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: Mapping[str, str], *,
         context: ssl.SSLContext | None, timeout: float) -> int:
    """The default transport: one POST on a new connection, no redirects, no proxies."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                 timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                timeout=timeout)
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read(64 * 1024)  # the answer itself is not used
        return response.status
    except http.client.HTTPException as error:  # a garbled answer counts as no answer
        raise OSError(f"bad HTTP answer: {type(error).__name__}") from error
    finally:
        connection.close()


class Notifier:
    """Delivers lifecycle events to `webhooks`; see the module rules."""

    def __init__(self, webhooks: tuple[Webhook, ...], clock: Callable[[], float] = time.time,
                 metrics: WebhookMetrics | None = None, opener: Transport | None = None, *,
                 sleep: Callable[[float], None] | None = None,
                 queue_size: int = QUEUE_SIZE) -> None:
        self._webhooks, self._clock, self._metrics = webhooks, clock, metrics
        self._post: Transport = opener or post
        self._sleep = sleep  # None: wait on the stopping event (tests pass a fast one)
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_size)
        self._receivers: tuple[_Receiver, ...] = ()
        self._worker = BackgroundWorker("webhook-notifier", self._run,
                                        on_stop=self._wake)

    def start(self) -> None:
        """Read every secret and CA file (ConfigError naming each problem) and start."""
        problems: list[str] = []
        self._receivers = tuple(
            receiver for index, hook in enumerate(self._webhooks)
            if (receiver := _receiver(hook, f"access.notifications.webhooks[{index}]",
                                      problems)) is not None)
        if problems:
            raise ConfigError(problems)
        if self._receivers:
            self._worker.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._worker.stop(timeout)
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                dropped += 1
                self._count_dropped(item.event)
        if dropped:
            log.warning("webhooks: %d queued event(s) dropped at stop", dropped)

    def send(self, event: str, payload: Mapping[str, Any]) -> None:
        """Queue event for delivery; never blocks (a full queue drops it, logged)."""
        if not any(event in receiver.events for receiver in self._receivers):
            return
        try:
            self._queue.put_nowait(_Item(event=event, payload=dict(payload), at=self._clock()))
        except queue.Full:
            log.warning("webhooks: queue full (%d); %s event dropped", self._queue.maxsize,
                        event)
            self._count_dropped(event)

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None or stopping.is_set():
                if item is not None:
                    self._count_dropped(item.event)
                continue
            for receiver in self._receivers:
                if item.event in receiver.events and not stopping.is_set():
                    self._deliver_safely(receiver, item, stopping)

    def _deliver_safely(self, receiver: _Receiver, item: _Item,
                        stopping: threading.Event) -> None:
        try:
            self._deliver(receiver, item, stopping)
        except Exception:  # the worker must outlive a bug (a payload json cannot take)
            log.exception("webhook %s: %s delivery failed unexpectedly", receiver.origin,
                          item.event)
            self._count(item.event, "failed", 0.0)

    def _deliver(self, receiver: _Receiver, item: _Item, stopping: threading.Event) -> None:
        event, delivery = item.event, str(uuid.uuid4())
        body = document_bytes(event, item.payload, delivery=delivery, now=item.at)
        headers = {"Content-Type": "application/json", "User-Agent": "kubegate",
                   "X-Kubegate-Event": event, "X-Kubegate-Delivery": delivery}
        if receiver.secret:
            headers[SIGNATURE_HEADER] = signature(receiver.secret, body)
        started = time.monotonic()
        try:
            self._retrying(stopping)(self._attempt, receiver, body, headers)
        except _StoppedError:
            self._count_dropped(event)
            return
        except (OSError, WebhookDeliveryError) as error:
            log.warning("webhook %s: %s delivery %s failed: %s", receiver.origin, event,
                        delivery, _describe(error))
            self._count(event, "failed", time.monotonic() - started)
            return
        self._count(event, "ok", time.monotonic() - started)

    def _attempt(self, receiver: _Receiver, body: bytes, headers: Mapping[str, str]) -> None:
        status = self._post(receiver.url, body, headers, context=receiver.context,
                            timeout=TIMEOUT)
        if not 200 <= status < 300:
            raise WebhookDeliveryError(status)

    def _retrying(self, stopping: threading.Event) -> tenacity.Retrying:
        def wait(seconds: float) -> None:
            if self._sleep is not None:
                self._sleep(seconds)
            if stopping.wait(0 if self._sleep is not None else seconds):
                raise _StoppedError

        return tenacity.Retrying(
            stop=tenacity.stop_any(tenacity.stop_after_attempt(ATTEMPTS),
                                   tenacity.stop_after_delay(RETRY_WITHIN)),
            wait=tenacity.wait_exponential_jitter(initial=FIRST_WAIT, max=MAX_WAIT,
                                                  jitter=JITTER),
            retry=tenacity.retry_if_exception(_retryable), sleep=wait, reraise=True)

    def _wake(self) -> None:
        with contextlib.suppress(queue.Full):  # full: the worker polls the stopping event
            self._queue.put_nowait(None)

    def _count(self, event: str, result: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.on_delivery(event=event, result=result, seconds=seconds)

    def _count_dropped(self, event: str) -> None:
        if self._metrics is not None:
            self._metrics.on_delivery_dropped(event=event)


def document_bytes(event: str, payload: Mapping[str, Any], *, delivery: str,
                   now: float) -> bytes:
    """The exact body: the payload with `event`, `id`, `time` and a top-level `text`."""
    document = dict(payload)
    if not isinstance(document.get("text"), str) or not document["text"]:
        document["text"] = default_text(event, payload)
    document.update(event=event, id=delivery, time=_rfc3339(now))
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                      default=str).encode("utf-8")


def default_text(event: str, payload: Mapping[str, Any]) -> str:
    """`<event>: <mapping> for <who>`, from the payload or its `request`."""
    request = payload.get("request")
    request = request if isinstance(request, Mapping) else {}
    mapping = payload.get("mapping") or request.get("mapping") or "?"
    requester = payload.get("requester") or request.get("requester") or {}
    who = (requester.get("who") or requester.get("subject") or "?"
           if isinstance(requester, Mapping) else str(requester))
    return f"{event}: {mapping} for {who}"


def _receiver(hook: Webhook, where: str, problems: list[str]) -> _Receiver | None:
    parts = urlsplit(hook.url)
    origin = f"{parts.scheme}://{HostPort(host=parts.hostname or '', port=parts.port or 0)}"
    origin = origin.removesuffix(":0")
    if parts.scheme == "http" and not HostPort(host=parts.hostname or "", port=0).is_local:
        problems.append(f"{where}.url: plain http only to loopback; use https")
        return None
    if parts.scheme not in ("http", "https"):
        problems.append(f"{where}.url: expected an https URL")
        return None
    secret = _read_secret(hook, where, problems)
    context = _context(hook, where, problems) if parts.scheme == "https" else None
    return _Receiver(url=hook.url, origin=origin, events=frozenset(hook.events),
                     secret=secret, context=context)


def _read_secret(hook: Webhook, where: str, problems: list[str]) -> bytes:
    if hook.secret_file is None:
        return b""
    try:
        secret = hook.secret_file.read_bytes().strip()
    except OSError as error:
        problems.append(f"{where}.secretFile: cannot read {hook.secret_file}: "
                        f"{error.strerror or type(error).__name__}")
        return b""
    if not secret:
        problems.append(f"{where}.secretFile: {hook.secret_file} is empty")
    return secret


def _context(hook: Webhook, where: str, problems: list[str]) -> ssl.SSLContext | None:
    try:
        context = ssl.create_default_context(
            cafile=str(hook.ca_file) if hook.ca_file else None)
    except (OSError, ssl.SSLError) as error:
        problems.append(f"{where}.caFile: cannot load {hook.ca_file}: "
                        f"{getattr(error, 'strerror', None) or type(error).__name__}")
        return None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _retryable(error: BaseException) -> bool:
    """Connection errors and timeouts (OSError), 5xx and 429; never another answer."""
    return isinstance(error, OSError) or (
        isinstance(error, WebhookDeliveryError) and error.retryable)


def _describe(error: BaseException) -> str:
    if isinstance(error, WebhookDeliveryError):
        return f"HTTP {error.status}"
    return type(error).__name__  # an OSError's text may quote the URL with its secret


def _rfc3339(now: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(now), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
