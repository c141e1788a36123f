"""One audit record: what kubegate decided about one exchange, and why. Pure: no I/O, no clock.

Rules of this module:
- a record never holds a token. Callers pass claims (`iss`, `sub`, `jti`), names and ids only;
  as defence in depth every string that looks like a compact JWT (or JWE) is replaced by
  `[redacted]` when a record is built, and overlong strings are cut to `MAX_FIELD_CHARS`
  (unverified claims of a rejected token are attacker-controlled);
- an allow has reason and status `OK`; a deny has a stable reason (the error's) and its code
  name (gRPC's status names: the status the caller received);
- a note is no decision but a fact about the log itself (`NOTE_REASONS`: denials refused while
  it could not be written, a torn tail moved aside at start); it has status `""` and its
  facts in `note`, a key only notes carry, so allow and deny lines keep their shape;
- times are RFC 3339 in UTC (`2025-01-02T03:04:05.000006Z`), computed from an injected `now`;
- `trace_id` is the exchange's trace (32 lowercase hex digits) when tracing is on, else "";
  lines written before the field existed lack the key, and still verify (the chain hashes
  whatever a line holds);
- an access line is no exchange but an access request's lifecycle event (`access_record`):
  decision `access`, reason `ACCESS_<EVENT>`, status `""`, its facts in `access` (a key only
  access lines carry); the person's own text (reason, comment) is cut to `MAX_TEXT_CHARS`;
- a gateway line is no exchange but one request the gateway relayed or refused
  (`exchanger.gateway.audit`): decision `gateway`, reason `OK` or the refusal's, status the
  HTTP status as text, its facts in `gateway` (a key only gateway lines carry);
- an allow line names the caller as people read it (`who`) and, for a CI caller, the run and
  commit its verified token named (`ci`), so the audit report can answer "what did this
  pipeline do"; both keys are absent when empty;
- `to_json()` is deterministic: sorted keys, compact separators, ASCII only.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal

from kubegate.errors import KubegateError
from kubegate.logformat import TOKEN_SHAPE

Decision = Literal["allow", "deny", "note", "access", "gateway"]

ALLOW_REASON = "OK"
UNRECORDED_DENIALS = "UNRECORDED_DENIALS"
TORN_TAIL_RECOVERED = "TORN_TAIL_RECOVERED"
NOTE_REASONS = frozenset({UNRECORDED_DENIALS, TORN_TAIL_RECOVERED})
REDACTED = "[redacted]"
MAX_FIELD_CHARS = 1024
MAX_TEXT_CHARS = 512  # a person's reason or comment in an access line
ACCESS_REASON_PREFIX = "ACCESS_"
TRACE_ID_DIGITS = 32

# A compact JWS (three segments) or JWE (five), the shape logs redact too (kubegate.logformat):
# generous on purpose, a false positive only hides a value from the audit log.
_TOKEN_SHAPE = TOKEN_SHAPE
COMPACT_JWT_START = "ey"  # every match of TOKEN_SHAPE starts with it (base64url of `{`)


def looks_like_token(text: str) -> bool:
    """Whether `text` contains something shaped like a compact JWT."""
    return _TOKEN_SHAPE.search(text) is not None


def sanitize(text: str) -> str:
    """`text` with every JWT-shaped part replaced by `[redacted]`, cut to `MAX_FIELD_CHARS`.

    Every match of the token shape begins with `ey` (`COMPACT_JWT_START`, pinned by a test),
    so a short text without it is returned as it is, without running the pattern."""
    if len(text) <= MAX_FIELD_CHARS and COMPACT_JWT_START not in text:
        return text
    cleaned = _TOKEN_SHAPE.sub(REDACTED, text)
    if len(cleaned) > MAX_FIELD_CHARS:
        return cleaned[:MAX_FIELD_CHARS] + "...[truncated]"
    return cleaned


def _is_trace_id(text: str) -> bool:
    return len(text) == TRACE_ID_DIGITS and all(c in "0123456789abcdef" for c in text)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as the Kubernetes audit log writes it."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


_FieldReader = tuple[tuple[str, ...], Callable[[object], tuple[Any, ...]]]
_READERS: dict[type, _FieldReader] = {}


def _field_reader(kind: type) -> _FieldReader:
    """A dataclass's field names, and one call that reads all their values (made once per
    class; a race only makes the same pair twice)."""
    found = _READERS.get(kind)
    if found is None:
        names = tuple(field.name for field in fields(kind))
        read: operator.attrgetter[Any] = operator.attrgetter(*names)
        # attrgetter of one name returns the bare value, of several a tuple
        found = (names, (lambda instance: (read(instance),)) if len(names) == 1 else read)
        _READERS[kind] = found
    return found


def _sanitize_strings(instance: object) -> None:
    """Replace, in a frozen dataclass, every str and tuple-of-str field by its sanitized form
    (a field already clean is left as it is: most are, and this runs for every record)."""
    names, read = _field_reader(type(instance))
    for name, value in zip(names, read(instance), strict=True):
        if isinstance(value, str):
            if len(value) <= MAX_FIELD_CHARS and COMPACT_JWT_START not in value:
                continue  # sanitize's own fast path, without the call
            object.__setattr__(instance, name, sanitize(value))
        elif isinstance(value, tuple):
            items = tuple(sanitize(str(v)) for v in value)
            if items != value:
                object.__setattr__(instance, name, items)


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who asked: claims of the subject token. Empty when the token could not be parsed; for a
    token that failed verification these are the unverified claims, recorded for forensics."""

    iss: str = ""
    sub: str = ""
    jti: str = ""

    def __post_init__(self) -> None:
        _sanitize_strings(self)

    def to_dict(self) -> dict[str, Any]:
        return {"iss": self.iss, "sub": self.sub, "jti": self.jti}


@dataclass(frozen=True, kw_only=True)
class GrantRecord:
    """What a mapping handed out (or would have): the audit view of a grant.

    `service_account` is set for the TokenRequest backend, `user` and `groups` for the
    self-issued one. `lifetime_seconds` is the lifetime actually granted (0 if none was).
    """

    cluster: str
    namespace: str
    service_account: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    lifetime_seconds: int = 0

    def __post_init__(self) -> None:
        if self.lifetime_seconds < 0:
            raise ValueError("a granted lifetime cannot be negative")
        _sanitize_strings(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "service_account": self.service_account,
            "user": self.user,
            "groups": list(self.groups),
            "audiences": list(self.audiences),
            "lifetime_seconds": self.lifetime_seconds,
        }


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One decision. Build it with `allow_record` or `deny_record`.

    `issuer` is the configured issuer's name; `role` is the mapping the caller asked for (may be
    empty); `mapping` is the mapping that matched (may be empty for a deny); `token_id` is the
    issued credential's `jti`; `peer` is the caller's network address; `detail` explains the
    decision for auditors only (never sent to the caller).
    """

    time: str
    decision: Decision
    reason: str
    status: str
    caller: Caller = Caller()
    issuer: str = ""
    role: str = ""
    mapping: str = ""
    grant: GrantRecord | None = None
    token_id: str = ""
    session_id: str = ""
    expires_at: str = ""
    peer: str = ""
    detail: str = ""
    note: Mapping[str, str | int] | None = None
    trace_id: str = ""
    access: Mapping[str, Any] | None = None
    access_request: str = ""  # allow: the access request the exchange used ("" = none)
    approvers: tuple[str, ...] = ()  # allow: who approved that request (`who` names)
    who: str = ""  # allow: the caller as people read it (verified email, username or sub)
    ci: Mapping[str, str] | None = None  # allow: the CI run and commit the token named
    gateway: Mapping[str, Any] | None = None  # gateway: the request's facts

    def __post_init__(self) -> None:
        if not self.time:
            raise ValueError("an audit record needs a time")
        if self.trace_id and not _is_trace_id(self.trace_id):
            raise ValueError("a trace id is 32 lowercase hex digits")
        if self.decision not in ("allow", "deny", "note", "access", "gateway"):
            raise ValueError(f"decision must be 'allow', 'deny', 'note', 'access' or "
                             f"'gateway', not {self.decision!r}")
        if (self.decision == "gateway") != (self.gateway is not None):
            raise ValueError("a gateway line, and only one, has facts in 'gateway'")
        if (self.decision == "access") != (self.access is not None):
            raise ValueError("an access line, and only one, has facts in 'access'")
        if self.decision == "access" and (
                not self.reason.startswith(ACCESS_REASON_PREFIX) or self.status):
            raise ValueError(f"an access line has a reason {ACCESS_REASON_PREFIX}... and no status")
        if (self.decision == "note") != (self.note is not None):
            raise ValueError("a note, and only a note, has facts in 'note'")
        if self.decision == "note" and (self.reason not in NOTE_REASONS or self.status):
            raise ValueError(f"a note has a reason of {sorted(NOTE_REASONS)} and no status")
        is_ok = (self.reason == ALLOW_REASON, self.status == "OK")
        if self.decision == "allow" and is_ok != (True, True):
            raise ValueError("an allow has reason OK and status OK")
        if self.decision == "deny" and (any(is_ok) or not self.reason or not self.status):
            raise ValueError("a deny needs a reason and a status other than OK")
        if self.ci is not None:
            object.__setattr__(self, "ci", {sanitize(str(k)): sanitize(str(v))
                                            for k, v in self.ci.items()})
        _sanitize_strings(self)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (nested objects for caller and grant)."""
        fields = self._decision_fields()
        if self.note is not None:
            fields["note"] = dict(self.note)
        if self.access is not None:
            fields["access"] = dict(self.access)
        if self.gateway is not None:
            fields["gateway"] = _clean_facts(dict(self.gateway))
        if self.access_request:  # keys only lines of approval mappings carry
            fields["access_request"] = self.access_request
            fields["approvers"] = list(self.approvers)
        if self.who:  # keys only allow lines written since the audit report carry
            fields["who"] = self.who
        if self.ci:
            fields["ci"] = dict(self.ci)
        return fields

    def _decision_fields(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "decision": self.decision,
            "reason": self.reason,
            "status": self.status,
            "caller": self.caller.to_dict(),
            "issuer": self.issuer,
            "role": self.role,
            "mapping": self.mapping,
            "grant": self.grant.to_dict() if self.grant else None,
            "token_id": self.token_id,
            "session_id": self.session_id,
            "expires_at": self.expires_at,
            "peer": self.peer,
            "detail": self.detail,
            "trace_id": self.trace_id,
        }

    def to_json(self) -> str:
        """One line of JSON: sorted keys, compact separators, ASCII only."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, allow_nan=False)


def allow_record(
    *,
    now: datetime,
    caller: Caller,
    issuer: str,
    mapping: str,
    grant: GrantRecord,
    token_id: str,
    session_id: str,
    expires_at: datetime,
    role: str = "",
    peer: str = "",
    detail: str = "",
    trace_id: str = "",
    access_request: str = "",
    approvers: tuple[str, ...] = (),
    who: str = "",
    ci: Mapping[str, str] | None = None,
) -> AuditRecord:
    """The record of a successful exchange; `access_request` and `approvers` name the
    approved access request it used (lines without one lack both keys); `who` is the caller
    as people read it and `ci` the CI run and commit its verified token named (run_id,
    run_attempt, sha, ...; lines without them lack the keys, and older lines still verify:
    the chain hashes whatever a line holds)."""
    return AuditRecord(
        time=format_time(now), decision="allow", reason=ALLOW_REASON, status="OK",
        caller=caller, issuer=issuer, role=role, mapping=mapping, grant=grant,
        token_id=token_id, session_id=session_id, expires_at=format_time(expires_at),
        peer=peer, detail=detail, trace_id=trace_id, access_request=access_request,
        approvers=approvers, who=who, ci=dict(ci) if ci else None,
    )


def deny_record(
    *,
    now: datetime,
    error: KubegateError,
    caller: Caller | None = None,
    issuer: str = "",
    role: str = "",
    mapping: str = "",
    grant: GrantRecord | None = None,
    peer: str = "",
    trace_id: str = "",
) -> AuditRecord:
    """The record of a refused exchange: reason, status and detail come from `error`."""
    return AuditRecord(
        time=format_time(now), decision="deny", reason=error.reason, status=error.code.name,
        caller=caller or Caller(), issuer=issuer, role=role, mapping=mapping, grant=grant,
        peer=peer, detail=error.detail, trace_id=trace_id,
    )


def unrecorded_denials_record(*, now: datetime, count: int, since: datetime,
                              until: datetime) -> AuditRecord:
    """The note written once the log takes lines again: how many denials it missed, and the
    time it could not be written (from the first failed line to the last)."""
    return AuditRecord(
        time=format_time(now), decision="note", reason=UNRECORDED_DENIALS, status="",
        detail=f"{count} denials refused while the audit log could not be written",
        note={"count": count, "since": format_time(since), "until": format_time(until)},
    )


def torn_tail_record(*, now: datetime, kept_file: str, sha256: str, size: int) -> AuditRecord:
    """The note written at start after an incomplete last line (a crash mid-write) was moved
    aside to `kept_file` (a name beside the log) instead of being extended."""
    return AuditRecord(
        time=format_time(now), decision="note", reason=TORN_TAIL_RECOVERED, status="",
        detail=f"an incomplete last line of {size} bytes was moved to {kept_file}",
        note={"file": kept_file, "sha256": sha256, "bytes": size},
    )


def explain_note(value: Mapping[str, Any]) -> str:
    """What a note line (as parsed from the log) records, in one sentence for an auditor."""
    reason, facts = value.get("reason"), value.get("note")
    if not isinstance(facts, Mapping):
        return f"note {reason}: {value.get('detail', '')}"
    if reason == UNRECORDED_DENIALS:
        return (f"note {reason}: the log could not be written from {facts.get('since')} to "
                f"{facts.get('until')}; {facts.get('count')} denials were refused unrecorded "
                "then (every exchange was refused: nothing was issued unrecorded)")
    if reason == TORN_TAIL_RECOVERED:
        return (f"note {reason}: at start the log ended in an incomplete line (a crash "
                f"mid-write) of {facts.get('bytes')} bytes, moved to {facts.get('file')} "
                f"beside the log (sha256 {facts.get('sha256')}); the chain goes on after it")
    return f"note {reason}: {value.get('detail', '')}"


def _clean_text(text: str) -> str:
    """A person's text for an access line: control characters as spaces, JWT shapes
    redacted, cut to `MAX_TEXT_CHARS`."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    cleaned = sanitize(printable)
    if len(cleaned) > MAX_TEXT_CHARS:
        return cleaned[:MAX_TEXT_CHARS] + "...[truncated]"
    return cleaned


def _clean_facts(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, Mapping):
        return {str(k): _clean_facts(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_facts(v) for v in value]
    return value


def access_record(*, now: datetime, event: str, request_id: str, mapping: str,
                  requester: Mapping[str, str], actor: Mapping[str, str] | None,
                  caller: Caller | None = None, issuer: str = "", text: str = "",
                  facts: Mapping[str, Any] | None = None, session_id: str = "",
                  peer: str = "") -> AuditRecord:
    """The line of one access request lifecycle event (`event`: created, approved, denied,
    revoked, expired, activated, session-revoked). `requester` and `actor` are
    {issuer, subject, who} (actor None: kubegate itself, such as the expirer); `caller` and
    `issuer` are the actor's verified token claims and issuer name when a person acted;
    `text` is the person's reason or comment; `facts` any further values (state, approvals,
    ...)."""
    access = {**_clean_facts(dict(facts or {})), "event": event, "request": request_id,
              "requester": _clean_facts(dict(requester)),
              "actor": _clean_facts(dict(actor)) if actor is not None else None,
              "text": _clean_text(text)}
    return AuditRecord(
        time=format_time(now), decision="access",
        reason=ACCESS_REASON_PREFIX + event.upper().replace("-", "_"), status="",
        caller=caller or Caller(), issuer=issuer, mapping=mapping, session_id=session_id,
        peer=peer, access=access)
