"""The report: each cluster event joined to the kubegate session whose credential made it,
built in one streaming pass with bounded memory.

Rules of this module:
- the join rule: an event belongs to the session whose `token_id` the API server recorded as
  the event's credential id (`user.extra["authentication.kubernetes.io/credential-id"]` is
  `JTI=<token_id>`); nothing else (user names, times) joins, so a name that looks like a
  kubegate user is not enough;
- events outside the time range (`--since`, `--until`) are dropped before anything sees
  them; the session filters (session, identity, mapping, CI run) narrow the report's sessions
  and their rows, never what the observers see: a bypass is a bypass whatever session was
  asked about;
- every event in the time range is handed, joined or not, to every observer
  (`EventObserver`: the bypass detector, the least-privilege recorder), in log order;
- memory is bounded by the sessions, never by the events: per session at most
  `MAX_ROWS_PER_SESSION` actions are kept as rows (the first ones), then at most as many
  privileged or refused ones again; every action beyond is only counted (`not_kept`);
- the same request read twice (a file log and a webhook copy; `auditID` repeated) is kept
  once per session while its rows are kept;
- a request refused before authentication (401) carries no identity in the audit log. When
  it comes after a session ended (revoked or run out, within `AFTER_END_SECONDS`) from the
  same client address and user agent that session used, no other ended session used that
  client, and no session live at that moment used it or has not been seen at all (its
  revocation may be one the log does not show), it
  is shown among that session's refused actions, marked `attributed` (by address, not by
  credential id); otherwise it only counts in `unauthenticated_refusals`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exchanger.auditreport.kubegate_log import SessionIndex
from exchanger.auditreport.model import (
    BrokeredSession,
    ClusterEvent,
    Filters,
    Finding,
    JoinedAction,
    Problem,
)
from exchanger.auditreport.privileged import classify

__all__ = ["MAX_ROWS_PER_SESSION", "EventObserver", "Report", "SessionActions",
           "build_report", "join_event"]

NO_FILTERS = Filters()
AFTER_END_SECONDS = 3600.0
"""How long after a session's end a 401 from its client may be attributed to it."""
MAX_CLIENTS_PER_SESSION = 8
MAX_ROWS_PER_SESSION = 10_000
"""Actions kept as rows per session (and as many privileged or refused ones after them)."""


class EventObserver(Protocol):
    """Sees every event of the time range, joined or not, in log order."""

    def observe(self, action: JoinedAction) -> None: ...

    def findings(self) -> list[Finding]: ...


@dataclass(frozen=True, kw_only=True)
class SessionActions:
    """One brokered session and what the cluster saw it do."""

    session: BrokeredSession
    actions: tuple[JoinedAction, ...] = ()  # kept rows, in log order
    action_count: int = 0
    refused_count: int = 0
    privileged_count: int = 0
    not_kept: int = 0  # counted, not kept as rows (beyond the bound)
    first_seen: float = 0.0
    last_seen: float = 0.0

    @property
    def privileged(self) -> tuple[JoinedAction, ...]:
        return tuple(a for a in self.actions if a.privileged)

    @property
    def refused(self) -> tuple[JoinedAction, ...]:
        return tuple(a for a in self.actions if a.event.refused)


@dataclass(frozen=True, kw_only=True)
class Report:
    """Sessions (in issue order) with their actions, observers' findings, unread input."""

    sessions: tuple[SessionActions, ...]
    findings: tuple[Finding, ...] = ()
    problems: tuple[Problem, ...] = ()
    filters: Filters = NO_FILTERS
    events_read: int = 0  # kept-stage events in the time range
    events_joined: int = 0  # of those, made with a kubegate credential (any session)
    unauthenticated_refusals: int = 0  # 401s (no identity recorded), attributed or not
    observers: tuple[Any, ...] = ()  # for renderers that show more than findings


@dataclass
class _Tally:
    """A session's counters and rows while the events stream by."""

    session: BrokeredSession
    rows: list[JoinedAction] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # audit ids of the kept rows
    actions: int = 0
    refused: int = 0
    privileged: int = 0
    notable_extra: int = 0
    not_kept: int = 0
    first: float = 0.0
    last: float = 0.0
    clients: set[tuple[tuple[str, ...], str]] = field(default_factory=set)

    def add(self, action: JoinedAction, limit: int) -> None:
        event = action.event
        if event.audit_id and event.audit_id in self.seen:
            return
        self.actions += 1
        self.refused += event.refused
        self.privileged += bool(action.privileged)
        self.first = min(self.first or event.time, event.time)
        self.last = max(self.last, event.time)
        if not action.attributed and len(self.clients) < MAX_CLIENTS_PER_SESSION:
            self.clients.add((event.source_ips, event.user_agent))
        if len(self.rows) < limit:
            self._keep(action)
        elif (action.privileged or event.refused) and self.notable_extra < limit:
            self.notable_extra += 1
            self._keep(action)
        else:
            self.not_kept += 1

    def _keep(self, action: JoinedAction) -> None:
        self.rows.append(action)
        if action.event.audit_id:
            self.seen.add(action.event.audit_id)

    def freeze(self) -> SessionActions:
        return SessionActions(
            session=self.session, actions=tuple(self.rows), action_count=self.actions,
            refused_count=self.refused, privileged_count=self.privileged,
            not_kept=self.not_kept, first_seen=self.first, last_seen=self.last)


def join_event(sessions: SessionIndex, event: ClusterEvent) -> JoinedAction:
    """The event with its session (by credential id) and privileged category."""
    session = sessions.by_credential(event.credential_id) if event.credential_id else None
    return JoinedAction(event=event, session=session, privileged=classify(event))


def _session_in_range(session: BrokeredSession, filters: Filters) -> bool:
    end = session.ended_at or session.expires_at
    return (not filters.until or session.issued_at <= filters.until) and (
        not filters.since or not end or end >= filters.since)


def build_report(sessions: SessionIndex, events: Iterable[ClusterEvent], *,
                 filters: Filters = NO_FILTERS, observers: Sequence[EventObserver] = (),
                 problems: Sequence[Problem] = (),
                 max_rows: int = MAX_ROWS_PER_SESSION) -> Report:
    """Join `events` to `sessions` in one pass. `problems` is read once the events are
    consumed (a reader fills it while streaming) and travels in the report."""
    tallies = {s.session_id: _Tally(s) for s in sessions.sessions()
               if filters.admits_session(s) and _session_in_range(s, filters)}
    read = joined = unauthenticated = 0
    for event in events:
        if not filters.admits_time(event.time):
            continue
        read += 1
        action = join_event(sessions, event)
        if not event.username and event.code == 401:
            unauthenticated += 1
            action = _attribute(action, tallies.values())
        if action.session is not None and not action.attributed:
            joined += 1
        if action.session is not None:
            tally = tallies.get(action.session.session_id)
            if tally is None and filters.admits_session(action.session):
                tally = tallies[action.session.session_id] = _Tally(action.session)
            if tally is not None:
                tally.add(action, max_rows)
        for observer in observers:
            observer.observe(action)
    ordered = sorted(tallies.values(), key=lambda t: (t.session.issued_at,
                                                      t.session.session_id))
    return Report(
        sessions=tuple(t.freeze() for t in ordered),
        findings=tuple(f for o in observers for f in o.findings()),
        problems=tuple(problems), filters=filters, events_read=read, events_joined=joined,
        unauthenticated_refusals=unauthenticated, observers=tuple(observers))


def _attribute(action: JoinedAction, tallies: Iterable[_Tally]) -> JoinedAction:
    """A 401 tied to the one ended session whose client sent it, else left unjoined."""
    event = action.event
    client = (event.source_ips, event.user_agent)
    candidates = []
    for tally in tallies:
        session = tally.session
        end = session.ended_at or session.expires_at
        live = session.issued_at <= event.time and (not end or event.time < end)
        if live and (client in tally.clients or not tally.clients):
            return action  # a live session from that client (or unseen) may be the one
        if client in tally.clients and end and end <= event.time <= end + AFTER_END_SECONDS:
            candidates.append(session)
    if len(candidates) != 1:
        return action
    return JoinedAction(event=event, session=candidates[0], privileged=action.privileged,
                        attributed=True)
