"""The sessions kubegate brokered, read from its audit logs (one file or more per replica,
rotated and gzipped too, and each worker's file beside a named log: `audit.w<I>.log` of
`serve --workers N`, `exchanger.audit.workerfiles`).

Rules of this module:
- every `decision: allow` line is one `BrokeredSession`: the issued credential (`token_id`,
  which the API server records as `JTI=<token_id>`), who asked (issuer, verified `sub`,
  `who`, and the CI run and commit in `ci` when the token named them), the grant, when it was
  issued and until when it was valid, and the access request with its approvers;
- `access` lines complete them, whatever the order of the files: `created` gives a request's
  reason (the person's words, with the ticket), `revoked` ends the sessions it lists,
  `session-revoked` ends the one it names (earliest end wins);
- deny and note lines are no session and are skipped; the hash chain is not checked here
  (`kubegate audit verify` does that);
- a line that is not JSON or lacks a session's fields becomes a `Problem` naming "file:line"
  and reading goes on; the same session read twice (a log copied beside its rotation) is
  kept once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from exchanger.audit.workerfiles import with_worker_logs
from exchanger.auditreport.cluster_log import EventFormatError, iter_lines, parse_time
from exchanger.auditreport.model import BrokeredSession, Problem
from kubegate.errors import MessageError

__all__ = ["SessionIndex", "read_sessions", "session_from_allow"]

JTI_PREFIX = "JTI="
ENDING_EVENTS = frozenset({"revoked", "session-revoked"})


class SessionIndex:
    """The brokered sessions, found by credential id, token id or session id."""

    def __init__(self, sessions: Sequence[BrokeredSession] = ()) -> None:
        self._by_token = {s.token_id: s for s in sessions}
        self._by_session = {s.session_id: s for s in sessions}

    def by_credential(self, credential_id: str) -> BrokeredSession | None:
        """The session of an API server credential id (`JTI=<token_id>`), if kubegate's."""
        if not credential_id.startswith(JTI_PREFIX):
            return None
        return self._by_token.get(credential_id[len(JTI_PREFIX):])

    def by_token_id(self, token_id: str) -> BrokeredSession | None:
        return self._by_token.get(token_id)

    def by_session_id(self, session_id: str) -> BrokeredSession | None:
        return self._by_session.get(session_id)

    def sessions(self) -> list[BrokeredSession]:
        """Every session, in the order they were issued."""
        return sorted(self._by_token.values(), key=lambda s: (s.issued_at, s.session_id))

    def service_accounts(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of every ServiceAccount kubegate issued tokens for."""
        return frozenset((s.namespace, s.service_account) for s in self._by_token.values()
                         if s.service_account)

    def users(self) -> frozenset[str]:
        """Every user name kubegate issued credentials as (self-issued backend)."""
        return frozenset(s.user for s in self._by_token.values() if s.user)

    def __len__(self) -> int:
        return len(self._by_token)


class _LineError(MessageError):
    """A kubegate audit line that holds no session fact the report can use."""

    reason_name = "MALFORMED_AUDIT_LINE"


def _text(obj: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise _LineError(f"no {key}")
    return value


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _time(obj: Mapping[str, Any], key: str) -> float:
    if not obj.get(key):
        return 0.0
    try:
        return parse_time(obj.get(key))
    except EventFormatError as error:
        raise _LineError(f"{key}: {error}") from error


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def session_from_allow(line: Mapping[str, Any], where: str = "") -> BrokeredSession:
    """The session an allow line records; raises a `MessageError` when it lacks a field."""
    caller, grant = _mapping(line, "caller"), _mapping(line, "grant")
    if not grant:
        raise _LineError("no grant")
    issued_at = _time(line, "time")
    if not issued_at:
        raise _LineError("no time")
    ci = _mapping(line, "ci")
    return BrokeredSession(
        session_id=_text(line, "session_id", required=True),
        token_id=_text(line, "token_id", required=True), mapping=_text(line, "mapping"),
        issuer=_text(line, "issuer"), subject=_text(caller, "sub"), who=_text(line, "who"),
        cluster=_text(grant, "cluster"), namespace=_text(grant, "namespace"),
        service_account=_text(grant, "service_account"), user=_text(grant, "user"),
        groups=_strings(grant.get("groups")), issued_at=issued_at,
        expires_at=_time(line, "expires_at"), access_request=_text(line, "access_request"),
        approvers=_strings(line.get("approvers")),
        ci={str(k): str(v) for k, v in ci.items()}, where=where)


@dataclass
class _Reading:
    """What the lines said, gathered before sessions are completed."""

    sessions: dict[str, BrokeredSession]
    reasons: dict[str, str]  # access request id -> its reason
    ended: dict[str, tuple[float, str]]  # session id -> (time, event)


def _reason(access: Mapping[str, Any]) -> str:
    ticket, text = _text(access, "ticket"), _text(access, "text")
    return " ".join(part for part in (ticket, text) if part)


def _take_access(line: Mapping[str, Any], reading: _Reading) -> None:
    access = _mapping(line, "access")
    event, request = _text(access, "event", required=True), _text(access, "request")
    if event == "created" and request:
        reading.reasons[request] = _reason(access)
    if event not in ENDING_EVENTS:
        return
    when = _time(line, "time")
    named = [*_strings(access.get("sessions")), _text(line, "session_id")]
    for session_id in filter(None, named):
        earlier = reading.ended.get(session_id)
        if earlier is None or when < earlier[0]:
            reading.ended[session_id] = (when, event)


def _take(line: object, where: str, reading: _Reading) -> None:
    if not isinstance(line, Mapping):
        raise _LineError("not a JSON object")
    decision = line.get("decision")
    if decision == "allow":
        session = session_from_allow(line, where)
        reading.sessions.setdefault(session.session_id, session)
    elif decision == "access":
        _take_access(line, reading)
    elif decision not in ("deny", "note", "gateway"):  # gateway: one relayed request
        raise _LineError(f"decision {str(decision)[:20]!r} is none of kubegate's")


def _complete(reading: _Reading) -> Iterator[BrokeredSession]:
    for session in reading.sessions.values():
        end = reading.ended.get(session.session_id)
        yield replace(session, reason=reading.reasons.get(session.access_request,
                                                          session.reason),
                      ended_at=end[0] if end else session.ended_at,
                      end_reason=end[1] if end else session.end_reason)


def read_sessions(paths: Sequence[Path], problems: list[Problem]) -> SessionIndex:
    """The sessions of kubegate audit logs (several replicas' files, gzip or plain, in any
    order); every unreadable line adds a `Problem` and reading goes on."""
    reading = _Reading(sessions={}, reasons={}, ended={})
    for where, raw in iter_lines(with_worker_logs(paths), problems):
        if not raw.strip():
            continue
        try:
            _take(json.loads(raw), where, reading)
        except _LineError as error:
            problems.append(Problem(where=where, message=f"not a kubegate audit line: {error}"))
        except ValueError:
            problems.append(Problem(where=where, message="not JSON (cut short?)"))
    return SessionIndex(list(_complete(reading)))
