"""The report for people (`summary`, a terminal text) and for programs (`as_json`).

The JSON shape (`as_json`; version 1, keys stable, added to only):
{
  "version": 1,
  "filters": {"since", "until", "session", "identity", "mapping", "run"},
  "counts": {"events": events in the time range, "joined": of them with a kubegate
             credential, "unauthenticated_refusals": 401s (no identity recorded),
             "sessions": sessions shown, "findings", "problems"},
  "sessions": [{
     "session_id", "token_id", "credential_id" ("JTI=..."), "mapping", "issuer", "subject",
     "who", "ci": {run_id, run_attempt, sha, repository_id, project_id, pipeline_id, job_id,
     ref: those the token named}, "grant": {"cluster", "namespace", "service_account", "user",
     "groups"}, "issued_at", "expires_at", "ended_at", "end_reason", "access_request",
     "reason", "approvers", "where" (kubegate log "file:line"),
     "counts": {"actions", "refused", "privileged", "not_kept"},
     "first_seen", "last_seen",
     "actions": [row...]  (the kept rows, in log order)}],
  "findings": [{"kind", "severity", "user", "message", "count", "events": [row...]}],
  "problems": [{"where", "message"}]
}
`kubegate audit report` adds "generated_at" (RFC 3339) and "least_privilege" (the section of
`leastpriv.least_privilege_section`).
A row: {"time", "audit_id", "verb", "api_group", "resource", "subresource", "namespace",
"name", "request_uri", "code", "user", "credential_id", "impersonated_user", "user_agent",
"source_ips", "privileged" ("" or a category), "refused" (bool), "attributed" (bool: a 401
tied to an ended session by client address and user agent), "session_id" ("" when
none), "where" (cluster log "file:line")}. Times are RFC 3339 UTC with microseconds, ""
when unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exchanger.auditreport.join import Report, SessionActions
from exchanger.auditreport.model import BrokeredSession, Filters, Finding, JoinedAction

__all__ = ["JSON_VERSION", "as_json", "format_time", "row", "summary"]

JSON_VERSION = 1
MAX_SUMMARY_ROWS = 50  # privileged or refused actions shown per session in the summary


def format_time(t: float) -> str:
    """RFC 3339 UTC with microseconds; "" for 0 (unknown)."""
    if not t:
        return ""
    text = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


def row(action: JoinedAction) -> dict[str, Any]:
    """One action as the JSON shows it."""
    event = action.event
    return {
        "time": format_time(event.time), "audit_id": event.audit_id, "verb": event.verb,
        "api_group": event.api_group, "resource": event.resource,
        "subresource": event.subresource, "namespace": event.namespace, "name": event.name,
        "request_uri": event.request_uri, "code": event.code, "user": event.username,
        "credential_id": event.credential_id, "impersonated_user": event.impersonated_user,
        "user_agent": event.user_agent, "source_ips": list(event.source_ips),
        "privileged": action.privileged, "refused": event.refused,
        "attributed": action.attributed,
        "session_id": action.session.session_id if action.session else "",
        "where": event.where,
    }


def _session(session: BrokeredSession) -> dict[str, Any]:
    return {
        "session_id": session.session_id, "token_id": session.token_id,
        "credential_id": session.credential_id, "mapping": session.mapping,
        "issuer": session.issuer, "subject": session.subject, "who": session.who,
        "ci": dict(session.ci),
        "grant": {"cluster": session.cluster, "namespace": session.namespace,
                  "service_account": session.service_account, "user": session.user,
                  "groups": list(session.groups)},
        "issued_at": format_time(session.issued_at),
        "expires_at": format_time(session.expires_at),
        "ended_at": format_time(session.ended_at), "end_reason": session.end_reason,
        "access_request": session.access_request, "reason": session.reason,
        "approvers": list(session.approvers), "where": session.where,
    }


def _session_actions(item: SessionActions) -> dict[str, Any]:
    return {
        **_session(item.session),
        "counts": {"actions": item.action_count, "refused": item.refused_count,
                   "privileged": item.privileged_count, "not_kept": item.not_kept},
        "first_seen": format_time(item.first_seen), "last_seen": format_time(item.last_seen),
        "actions": [row(a) for a in item.actions],
    }


def _finding(finding: Finding) -> dict[str, Any]:
    return {"kind": finding.kind, "severity": str(finding.severity), "user": finding.user,
            "message": finding.message, "count": finding.count,
            "events": [row(JoinedAction(event=e, session=None)) for e in finding.events]}


def _filters(filters: Filters) -> dict[str, str]:
    return {"since": format_time(filters.since), "until": format_time(filters.until),
            "session": filters.session, "identity": filters.identity,
            "mapping": filters.mapping, "run": filters.run}


def as_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON values (the shape in this module's docstring)."""
    return {
        "version": JSON_VERSION, "filters": _filters(report.filters),
        "counts": {"events": report.events_read, "joined": report.events_joined,
                   "unauthenticated_refusals": report.unauthenticated_refusals,
                   "sessions": len(report.sessions), "findings": len(report.findings),
                   "problems": len(report.problems)},
        "sessions": [_session_actions(s) for s in report.sessions],
        "findings": [_finding(f) for f in report.findings],
        "problems": [{"where": p.where, "message": p.message} for p in report.problems],
    }


def _who(session: BrokeredSession) -> str:
    who = session.who or session.subject
    ci = session.ci
    run = ci.get("run_id") or ci.get("pipeline_id")
    parts = [who]
    if run:
        attempt = f"#{ci['run_attempt']}" if ci.get("run_attempt") else ""
        parts.append(f"run {run}{attempt}")
    if ci.get("sha"):
        parts.append(f"commit {ci['sha'][:12]}")
    return ", ".join(parts)


def _header(item: SessionActions) -> list[str]:
    session = item.session
    grant = session.service_account and f"{session.namespace}/{session.service_account}" or (
        session.user)
    lines = [f"session {session.session_id} ({session.mapping}) {_who(session)} -> "
             f"{session.cluster} {grant}",
             f"  issued {format_time(session.issued_at)}, expires "
             f"{format_time(session.expires_at)}"
             + (f", ended {format_time(session.ended_at)} ({session.end_reason})"
                if session.ended_at else "")]
    if session.access_request:
        approvers = ", ".join(session.approvers) or "none"
        lines.append(f"  request {session.access_request}: {session.reason or '(no reason)'}"
                     f"; approved by {approvers}")
    lines.append(f"  {item.action_count} actions, {item.privileged_count} privileged, "
                 f"{item.refused_count} refused"
                 + (f" ({item.not_kept} not kept)" if item.not_kept else ""))
    return lines


def _line(action: JoinedAction) -> str:
    event = action.event
    what = event.resource + (f"/{event.subresource}" if event.subresource else "")
    where = "/".join(part for part in (event.namespace, event.name) if part)
    marks = [action.privileged.upper(), "refused" if event.refused else "",
             "(after its end: same client)" if action.attributed else ""]
    mark = " ".join(m for m in marks if m)
    return (f"    {format_time(event.time)} {mark:<24} {event.verb} {what} {where} "
            f"-> {event.code} ({event.user_agent})")


def _session_lines(item: SessionActions) -> list[str]:
    notable = [a for a in item.actions if a.privileged or a.event.refused]
    lines = _header(item) + [_line(a) for a in notable[:MAX_SUMMARY_ROWS]]
    if len(notable) > MAX_SUMMARY_ROWS:
        lines.append(f"    ... {len(notable) - MAX_SUMMARY_ROWS} more (see -o json)")
    return lines


def _findings_lines(findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return ["bypass findings: none"]
    lines = ["bypass findings:", f"  {'SEVERITY':<8} {'KIND':<32} {'COUNT':>6} USER"]
    for finding in findings:
        lines.append(f"  {finding.severity!s:<8} {finding.kind:<32} {finding.count:>6} "
                     f"{finding.user}")
        lines.append(f"    {finding.message}")
    return lines


def summary(report: Report) -> str:
    """The terminal text: a header and the privileged or refused actions per session, then
    the bypass findings, then the input that could not be read."""
    noun = "session" if len(report.sessions) == 1 else "sessions"
    lines = [f"{len(report.sessions)} {noun}, {report.events_read} cluster events "
             f"({report.events_joined} with a kubegate credential)", ""]
    for item in report.sessions:
        lines += [*_session_lines(item), ""]
    lines += _findings_lines(report.findings)
    if report.problems:
        lines += ["", f"problems ({len(report.problems)}): input that could not be read"]
        lines += [f"  {p.where}: {p.message}" for p in report.problems]
    return "\n".join(lines) + "\n"
