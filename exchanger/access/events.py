"""Lifecycle events of access requests: each one becomes one hash-chained audit line, one
webhook (through the notifier) and a count in the metrics.

Events: created, approved (each approval; `complete` says whether it was the last one
needed), denied, revoked, expired, activated (the first exchange that used the request) and
session-revoked (one session ended by a person).

Rules of this module:
- an event is emitted after the change it reports was stored (the line records a fact);
  a caller that must not change anything it cannot record asks `writable()` first;
- the audit line is written before the webhook is queued, and a webhook never blocks
  (`Notifier.send` queues); a line that cannot be written is logged as an error and the
  webhook and metrics still happen: the change is already made;
- the person's own words (reason, comment) are user input: the audit record bounds and
  sanitises them, and the webhook `text` escapes them for Slack (`&`, `<`, `>`), so a reason
  cannot mention a channel or forge a link;
- no token is in any event: requests and sessions hold none.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from exchanger.access.model import AccessRequest, Requester, Session, State
from exchanger.access.ports import AccessStore
from exchanger.audit.log import AuditSink
from exchanger.audit.record import Caller, access_record
from exchanger.identity import Identity
from kubegate.errors import KubegateError

__all__ = ["AccessEvents", "ActivationReporter", "EventMetrics", "EventNotifier",
           "describe_duration", "payload", "slack_text"]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 300  # of the person's words in a webhook's text line


class EventNotifier(Protocol):
    def send(self, event: str, payload: Mapping[str, Any]) -> None: ...


class EventMetrics(Protocol):
    def on_access_event(self, event: str) -> None: ...

    def on_access_approved(self, seconds: float) -> None: ...


def describe_duration(seconds: int) -> str:
    """30m, 1h, 1h30m, 45s."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def _escape(text: str) -> str:
    printable = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(printable) > MAX_TEXT_CHARS:
        printable = printable[:MAX_TEXT_CHARS] + "..."
    return printable.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _name(person: Requester | None) -> str:
    if person is None:
        return "kubegate"
    return _escape(person.who or person.subject)


def slack_text(event: str, request: AccessRequest, actor: Requester | None, *,
               words: str = "", required: int = 0, session: Session | None = None) -> str:
    """One line for people, such as "alice@example.com asked for break-glass-admin for 30m:
    INC-42 db down"."""
    who, role = _name(request.requester), _escape(request.mapping)
    said = _escape(" ".join(part for part in (request.ticket, words) if part))
    because = f": {said}" if said else ""
    if event == "created":
        return f"{who} asked for {role} for {describe_duration(request.duration)}{because}"
    if event == "approved":
        count = f" ({len(request.approvals)} of {required})" if required else ""
        if request.state is State.PENDING:
            return f"{_name(actor)} approved {who}'s request for {role}{count}"
        return (f"{_name(actor)} approved {who}'s request for {role}{count}: access for "
                f"{describe_duration(request.duration)}")
    if event == "denied":
        return f"{_name(actor)} denied {who}'s request for {role}{_reason(words)}"
    if event == "revoked":
        return f"{_name(actor)} revoked {who}'s access to {role}{_reason(words)}"
    if event == "expired":
        return f"{who}'s request for {role} expired"
    if event == "activated":
        return f"{who} started using {role} (request {request.id})"
    session_id = session.id if session else ""
    return f"{_name(actor)} ended session {session_id} of {who} ({role}){_reason(words)}"


def _reason(words: str) -> str:
    return f": {_escape(words)}" if words else ""


def payload(event: str, request: AccessRequest, actor: Requester | None, *, text: str,
            now: float, session: Session | None = None, words: str = "") -> dict[str, Any]:
    """The webhook body (the notifier adds `event`, `id` and `time`)."""
    body: dict[str, Any] = {
        "request": request.to_dict(), "mapping": request.mapping,
        "requester": request.requester.to_dict(),
        "actor": actor.to_dict() if actor else None, "text": text, "reason": words,
        "at": int(now)}
    if session is not None:
        body["session"] = {k: v for k, v in session.to_dict().items() if k != "secret"}
    return body


class AccessEvents:
    """Emits lifecycle events to the audit log, the notifier and the metrics."""

    def __init__(self, audit: AuditSink, notifier: EventNotifier | None,
                 metrics: EventMetrics | None, clock: Callable[[], float]) -> None:
        self._audit, self._notifier, self._metrics, self._clock = (
            audit, notifier, metrics, clock)

    def writable(self) -> bool:
        """False while the audit log is in an outage (a guarded log says so)."""
        return getattr(self._audit, "outage", None) is None

    def emit(self, event: str, request: AccessRequest, actor: Requester | None, *,
             identity: Identity | None = None, words: str = "", required: int = 0,
             session: Session | None = None, peer: str = "",
             facts: Mapping[str, Any] | None = None) -> None:
        """Record `event` about `request` done by `actor` (None: kubegate itself);
        `identity` is the actor's verified token, `words` their reason or comment."""
        now = self._clock()
        self._record(event, request, actor, identity=identity, words=words, required=required,
                     session=session, peer=peer, facts=facts, now=now)
        if self._notifier is not None:
            text = slack_text(event, request, actor, words=words, required=required,
                              session=session)
            self._notifier.send(event, payload(event, request, actor, text=text, now=now,
                                               session=session, words=words))
        if self._metrics is not None:
            self._metrics.on_access_event(event)
            if event == "approved" and request.state is State.APPROVED:
                self._metrics.on_access_approved(now - request.created_at)

    def _record(self, event: str, request: AccessRequest, actor: Requester | None, *,
                identity: Identity | None, words: str, required: int,
                session: Session | None, peer: str, facts: Mapping[str, Any] | None,
                now: float) -> None:
        record = access_record(
            now=datetime.datetime.fromtimestamp(now, datetime.UTC), event=event,
            request_id=request.id, mapping=request.mapping,
            requester=request.requester.to_dict(), actor=actor.to_dict() if actor else None,
            caller=_caller(identity), issuer=identity.issuer if identity else "",
            text=words, session_id=session.id if session else "", peer=peer,
            facts={**_facts(request, required), **(facts or {})})
        try:
            self._audit.append(record)
        except KubegateError as error:
            log.error("access request %s: %s event not recorded in the audit log: %s",
                      request.id, event, error.detail or error.reason)


def _caller(identity: Identity | None) -> Caller | None:
    if identity is None:
        return None
    return Caller(iss=identity.issuer_url, sub=identity.subject, jti=identity.token_id or "")


def _facts(request: AccessRequest, required: int) -> dict[str, Any]:
    return {"state": request.state.value, "ticket": request.ticket,
            "duration": request.duration, "approvals_required": required,
            "approvers": [a.approver.to_dict() for a in request.approvals],
            "starts_at": request.starts_at, "ends_at": request.ends_at,
            "uses": request.uses}


class ActivationReporter:
    """The access store as the exchange's gate sees it: a write that records a request's first
    use (`uses` 1, written by `AccessGate.consume`, compare-and-swap so one replica wins) emits
    `activated`. Only the gate writes through it."""

    def __init__(self, store: AccessStore, events: AccessEvents) -> None:
        self._store, self._events = store, events

    def create(self, request: AccessRequest) -> AccessRequest:
        return self._store.create(request)

    def get(self, request_id: str) -> AccessRequest | None:
        return self._store.get(request_id)

    def list(self, *, states: frozenset[State] | None = None, mapping: str = "",
             requester_subject: str = "") -> list[AccessRequest]:
        return self._store.list(states=states, mapping=mapping,
                                requester_subject=requester_subject)

    def replace(self, request: AccessRequest) -> AccessRequest:
        stored = self._store.replace(request)
        if stored.uses == 1:
            self._events.emit("activated", stored, stored.requester)
        return stored

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, AccessRequest]]:
        return self._store.watch(since, stop)
