"""The gateway's request records: one hash-chained line per request it relayed or refused, in a
log of its own (`gateway.audit.path`) written by the exchanger's `AuditLog`, so
`kubegate audit verify FILE` verifies it like the exchanger's.

    {"decision": "gateway", "reason": "OK", "status": "200", "session_id": "s-1",
     "peer": "10.0.0.7:51234", "gateway": {"verb": "watch", "method": "GET",
     "path": "/api/v1/namespaces/demo/pods?watch=1", "status": 200, "user": "vendor:ann",
     "groups": ["vendors"], "subject": "corp ann", "bytes_in": 0, "bytes_out": 5321,
     "duration_seconds": 12.5, "upgraded": false, "ended_by": "revoked"}, ...}

Rules of this module:
- a line never holds a token or a header's value: the path (Kubernetes API paths carry no
  secrets), the session's names, counts and reason codes only (and `AuditRecord` redacts
  anything shaped like a JWT as defence in depth);
- a relayed request is `reason: OK` whatever the API server answered (its status says that);
  a refusal is the gateway's reason code (`IMPERSONATION_REFUSED`, `TOKEN_EXPIRED`, ...), with
  the session when one was known and the client's address always;
- the record is built by a pure function of its facts and `now`; writing is the `AuditSink`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchanger.audit.log import AuditSink
from exchanger.audit.record import ALLOW_REASON, AuditRecord, Caller, format_time
from exchanger.gateway.session import GatewaySession


@dataclass(frozen=True, kw_only=True)
class GatewayRequest:
    """What happened to one request at the gateway (holds no secret)."""

    method: str
    path: str
    verb: str
    status: int  # as answered to the client (499: the client left before an answer)
    bytes_in: int  # from the client after the head: body, or tunnelled bytes
    bytes_out: int  # to the client: head, body, tunnelled bytes
    duration_seconds: float
    peer: str
    session: GatewaySession | None = None
    upgraded: bool = False
    refused: str = ""  # the gateway's reason code when it answered itself
    ended_by: str = ""  # why the gateway cut it: revoked, expired, request-ended, stopping


def gateway_record(request: GatewayRequest, *, now: float) -> AuditRecord:
    """The audit line of request."""
    session = request.session
    facts: dict[str, Any] = {
        "verb": request.verb, "method": request.method, "path": request.path,
        "status": request.status, "bytes_in": request.bytes_in,
        "bytes_out": request.bytes_out,
        "duration_seconds": round(request.duration_seconds, 6),
        "upgraded": request.upgraded,
        "user": session.user if session else "",
        "groups": list(session.groups) if session else [],
        "subject": session.subject if session else "",
        "ended_by": request.ended_by,
    }
    issuer, _, subject = (session.subject if session else "").partition(" ")
    return AuditRecord(
        time=format_time(datetime.fromtimestamp(now, UTC)), decision="gateway",
        reason=request.refused or ALLOW_REASON, status=str(request.status),
        caller=Caller(iss=issuer, sub=subject), mapping=session.mapping if session else "",
        session_id=session.id if session else "", peer=request.peer,
        access_request=session.access_request if session else "",
        detail=f"{request.verb} {request.path}" if not request.refused else request.refused,
        gateway=facts)


class GatewayAudit:
    """Writes request records to a sink; a failure is logged by the caller, never raised
    into a connection."""

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink

    def record(self, request: GatewayRequest, *, now: float) -> None:
        self._sink.append(gateway_record(request, now=now))
