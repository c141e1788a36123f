"""The audit report as one self-contained HTML file (`kubegate audit report -o html`).

`render_html(report_json)` takes the dict of `render.as_json(report)` and returns the page:
a summary header, a timeline per session (a bar from issued to end with a mark at each
privileged action) above the table of its actions, the bypass findings, the least-privilege
difference when the report has one, and the problems met while reading.

Rules of this module:
- every value from the report goes through `html.escape` (`_text`): claim values, reasons,
  user agents, resource names and messages are chosen by whoever made the requests, and the
  page must show a `<script>` in any of them as text;
- the page fetches nothing: inline CSS, inline SVG, no script, and a Content-Security-Policy
  (`default-src 'none'`) that forbids any request should something slip through;
- it is a pure function of its input, tolerant of missing keys (a report of an older or newer
  version still renders what it has);
- a session shows at most `max_rows` of its ordinary actions; privileged and refused rows are
  always shown, and the rest are counted (the JSON output has them all).
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CONTENT_SECURITY_POLICY", "render_html"]

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
MAX_ROWS = 500
_WIDTH = 1000  # the timeline's SVG user units

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:18px 0 6px}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:0;padding:0;list-style:none}
.summary li{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:110px}
.summary b{display:block;font-size:22px}.summary .alert b{color:#b42318}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa}tbody td:first-child{white-space:nowrap}
td.ua{max-width:320px;overflow-wrap:anywhere}
tr.privileged td{background:#fff4e5}tr.refused td{color:#b42318}
.tag{display:inline-block;border-radius:4px;padding:0 5px;font-size:12px;margin-left:4px}
.tag.privileged{background:#f79009;color:#fff}.tag.refused{background:#b42318;color:#fff}
.sev-high{color:#b42318;font-weight:600}.sev-medium{color:#b54708}.sev-low{color:#475467}
.who{margin:0;color:#475467}.session{border-top:2px solid #d0d7de;margin-top:18px}
svg.timeline{width:100%;height:44px;display:block}.muted{color:#667085}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}
"""


def render_html(report_json: Mapping[str, Any], *, max_rows: int = MAX_ROWS) -> str:
    """The whole page for `report_json` (the dict of `render.as_json`)."""
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">",
        "<meta name=\"referrer\" content=\"no-referrer\">",
        "<title>kubegate audit report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>kubegate audit report: what was brokered, what the cluster saw</h1>",
        _summary(report_json),
        _sessions(_list(report_json.get("sessions")), max_rows),
        _findings(_list(report_json.get("findings"))),
        _least_privilege(_least_privilege_section(report_json)),
        _problems(_list(report_json.get("problems"))),
        "</body></html>\n",
    ]
    return "\n".join(part for part in parts if part)


# -- summary ----------------------------------------------------------------------------------

_COUNTS = (("sessions", "sessions", False), ("events", "cluster events", False),
           ("joined", "with a kubegate credential", False),
           ("privileged", "privileged actions", True), ("refused", "refused", True),
           ("findings", "bypass findings", True), ("problems", "problems", True))


def _summary(report: Mapping[str, Any]) -> str:
    sessions = [_mapping(s) for s in _list(report.get("sessions"))]
    counts = {
        "sessions": len(sessions), "findings": len(_list(report.get("findings"))),
        "problems": len(_list(report.get("problems"))),
        "events": sum(_session_count(s, "actions") for s in sessions),
        "privileged": sum(_session_count(s, "privileged") for s in sessions),
        "refused": sum(_session_count(s, "refused") for s in sessions),
        **_mapping(report.get("counts")),
    }
    counts.setdefault("joined", counts["events"])
    items = []
    for key, label, alert in _COUNTS:
        value = counts[key]
        css = " class=\"alert\"" if alert and value else ""
        items.append(f"<li{css} id=\"count-{key}\"><b>{_text(value)}</b>{label}</li>")
    return (f"<ul class=\"summary\">{''.join(items)}</ul>"
            f"{_window(report.get('generated_at'), report.get('filters'))}")


def _session_count(session: Mapping[str, Any], key: str) -> int:
    """A session's count of actions, privileged or refused ones: its `counts` when the report
    has them (they include the rows not kept), else counted from its rows."""
    counted = _mapping(session.get("counts")).get(key)
    if isinstance(counted, int):
        return counted
    actions = [_mapping(a) for a in _list(session.get("actions"))]
    return len(actions) if key == "actions" else sum(1 for a in actions if a.get(key))


def _window(generated_at: Any, filters: Any) -> str:
    shown = {k: v for k, v in _mapping(filters).items() if v}
    text = f"generated {_time(generated_at)}" if generated_at else ""
    if shown:
        text += "; filters: " + ", ".join(f"{k}={_plain(v)}" for k, v in shown.items())
    return f"<p class=\"muted\">{_text(text)}</p>" if text else ""


# -- sessions ---------------------------------------------------------------------------------

_ACTION_HEAD = ("time", "verb", "resource", "namespace/name", "code", "user agent", "")


def _sessions(sessions: Sequence[Any], max_rows: int) -> str:
    if not sessions:
        return "<h2>Sessions</h2><p class=\"muted\">No brokered session in this report.</p>"
    return "<h2>Sessions</h2>" + "".join(_session(_mapping(s), max_rows) for s in sessions)


def _session(session: Mapping[str, Any], max_rows: int) -> str:
    actions = [_mapping(a) for a in _list(session.get("actions"))]
    shown = [a for i, a in enumerate(actions)
             if i < max_rows or a.get("privileged") or a.get("refused")]
    rows = "".join(_action_row(a) for a in shown)
    more = len(actions) - len(shown) + _int(_mapping(session.get("counts")).get("not_kept"))
    note = (f"<p class=\"muted\">{more} more ordinary actions counted, not listed "
            f"(every privileged and refused one is).</p>") if more else ""
    sid = _plain(session.get("session_id"))
    return (f"<section class=\"session\" id=\"session-{_text(sid)}\">"
            f"<h3>Session {_text(sid)} ({_text(session.get('mapping', ''))})</h3>"
            f"{_who(session)}{_timeline(session, actions)}"
            f"{_table(_ACTION_HEAD, rows, 'actions')}{note}</section>")


def _who(session: Mapping[str, Any]) -> str:
    grant = {**session, **_mapping(session.get("grant"))}
    ci = ", ".join(f"{k}={_plain(v)}" for k, v in _mapping(session.get("ci")).items() if v)
    facts = [
        ("who", session.get("who")), ("subject", session.get("subject")),
        ("as", grant.get("service_account") or grant.get("user")),
        ("cluster", grant.get("cluster")), ("namespace", grant.get("namespace")), ("CI", ci),
        ("request", session.get("access_request")), ("reason", session.get("reason")),
        ("approvers", ", ".join(_plain(a) for a in _list(session.get("approvers")))),
        ("issued", _time(session.get("issued_at"))), ("expires", _time(session.get("expires_at"))),
        ("ended", " ".join(x for x in (_time(session.get("ended_at")),
                                        _plain(session.get("end_reason"))) if x)),
    ]
    text = "; ".join(f"<b>{name}</b> {_text(value)}" for name, value in facts if value)
    return f"<p class=\"who\">{text}</p>"


def _action_row(action: Mapping[str, Any]) -> str:
    flag, refused = action.get("privileged"), bool(action.get("refused"))
    privileged = flag if isinstance(flag, str) else "privileged" if flag else ""
    classes = " ".join(c for c, on in (("privileged", privileged), ("refused", refused)) if on)
    resource = "/".join(_plain(action.get(k)) for k in ("resource", "subresource")
                        if action.get(k))
    where = "/".join(_plain(action.get(k)) for k in ("namespace", "name") if action.get(k))
    tags = (f"<span class=\"tag privileged\">{_text(privileged)}</span>" if privileged else "") + (
        "<span class=\"tag refused\">refused</span>" if refused else "")
    cells = (_time(action.get("time")), action.get("verb", ""), resource, where,
             action.get("code", ""))
    return (f"<tr class=\"{classes}\">{''.join(f'<td>{_text(c)}</td>' for c in cells)}"
            f"<td class=\"ua\">{_text(action.get('user_agent', ''))}</td><td>{tags}</td></tr>")


def _timeline(session: Mapping[str, Any], actions: Sequence[Mapping[str, Any]]) -> str:
    """Issued to end as a bar; the axis runs on to the last action when one came after the
    session ended (a use after revocation shows outside the bar)."""
    start = _seconds(session.get("issued_at")) or min(
        (_seconds(a.get("time")) for a in actions), default=0.0)
    end = max(_end(session, []) or _end(session, actions), start + 1.0)
    axis_end = max(_end(session, actions), end)
    span = axis_end - start

    def x(t: float) -> float:
        return round(10 + (_WIDTH - 20) * min(max((t - start) / span, 0.0), 1.0), 1)

    marks = [_mark(x(_seconds(a.get("time"))), a) for a in actions
             if a.get("privileged") or a.get("refused")]
    label = f"{_time(start)} to {_time(end)}"
    return (f"<svg class=\"timeline\" viewBox=\"0 0 {_WIDTH} 44\" preserveAspectRatio=\"none\" "
            f"role=\"img\" aria-label=\"{_text(label)}\"><title>{_text(label)}</title>"
            f"<rect class=\"bar\" x=\"10\" y=\"16\" width=\"{x(end) - 10}\" height=\"12\" "
            f"fill=\"#d0e2ff\"/>{''.join(marks)}</svg>")


def _mark(x: float, action: Mapping[str, Any]) -> str:
    colour = "#b42318" if action.get("refused") else "#f79009"
    what = f"{_time(action.get('time'))} {_plain(action.get('verb'))} " + "/".join(
        _plain(action.get(k)) for k in ("resource", "subresource", "name") if action.get(k))
    return (f"<g class=\"mark\"><title>{_text(what)}</title>"
            f"<rect x=\"{x - 2}\" y=\"6\" width=\"4\" height=\"32\" fill=\"{colour}\"/></g>")


def _end(session: Mapping[str, Any], actions: Sequence[Mapping[str, Any]]) -> float:
    ends = [_seconds(session.get(k)) for k in ("ended_at", "expires_at")]
    end = min((e for e in ends if e), default=0.0)
    last = max((_seconds(a.get("time")) for a in actions), default=0.0)
    return max(end, last)


# -- findings, least privilege, problems ------------------------------------------------------

_FINDING_HEAD = ("kind", "severity", "user", "count", "first seen", "last seen", "message")


def _findings(findings: Sequence[Any]) -> str:
    if not findings:
        return "<h2>Bypass findings</h2><p class=\"muted\">No bypass found.</p>"
    rows = "".join(_finding_row(_mapping(f)) for f in findings)
    return "<h2>Bypass findings</h2>" + _table(_FINDING_HEAD, rows, "findings")


def _finding_row(finding: Mapping[str, Any]) -> str:
    severity = _plain(finding.get("severity"))
    cells = [f"<td class=\"kind\">{_text(finding.get('kind', ''))}</td>",
             f"<td class=\"sev-{_text(severity)}\">{_text(severity)}</td>",
             f"<td class=\"user\">{_text(finding.get('user', ''))}</td>",
             f"<td>{_text(finding.get('count', 1))}</td>"]
    times = sorted(t for t in (_seconds(_mapping(e).get("time"))
                               for e in _list(finding.get("events"))) if t)
    seen = (finding.get("first_seen") or (times[0] if times else ""),
            finding.get("last_seen") or (times[-1] if times else ""))
    cells += [f"<td>{_text(_time(t))}</td>" for t in seen]
    cells.append(f"<td>{_text(finding.get('message', ''))}</td>")
    return f"<tr class=\"finding\">{''.join(cells)}</tr>"


def _least_privilege_section(report: Mapping[str, Any]) -> Any:
    """The command puts it at the top ("least_privilege"); an observer's would be in
    "sections"."""
    return report.get("least_privilege") or _mapping(report.get("sections")).get(
        "least_privilege")


def _least_privilege(section: Any) -> str:
    """`leastpriv.least_privilege_section`: per scope key the Role that would have been
    enough (its manifest) and the diff with today's grant; another shape renders as is."""
    entries = _mapping(section).get("entries")
    if not section or entries == []:
        return ""
    if not isinstance(entries, list):
        return f"<h2>Least privilege</h2><div class=\"leastpriv\">{_value(section)}</div>"
    scope = _plain(_mapping(section).get("scope")) or "session"
    blocks = "".join(_least_privilege_entry(scope, _mapping(e)) for e in entries)
    return f"<h2>Least privilege, per {_text(scope)}</h2><div class=\"leastpriv\">{blocks}</div>"


def _least_privilege_entry(scope: str, entry: Mapping[str, Any]) -> str:
    who = ", ".join(_plain(i) for i in _list(entry.get("identities")))
    parts = [f"<h3>{_text(scope)} {_text(entry.get('key', ''))}: "
             f"{_text(entry.get('role_name', ''))}</h3>",
             f"<p class=\"who\"><b>as</b> {_text(who)}</p>" if who else "",
             f"<pre class=\"manifest\">{_text(entry.get('manifest', ''))}</pre>"]
    diff = _mapping(entry.get("diff"))
    for key, title in (("unused", "granted today, never used"),
                       ("needed", "used without a grant today")):
        if key in diff:
            items = "".join(f"<li>{_text(_right(r))}</li>" for r in _list(diff[key]))
            parts.append(f"<p><b>{title}</b></p><ul class=\"{key}\">"
                         f"{items or '<li class=muted>none</li>'}</ul>")
    if entry.get("diff_error"):
        parts.append(f"<p class=\"muted\">today's rights unknown: "
                     f"{_text(entry['diff_error'])}</p>")
    return "".join(parts)


def _right(right: Any) -> str:
    r = _mapping(right)
    if not r:
        return _plain(right)
    resource = "/".join(x for x in (_plain(r.get("group")), _plain(r.get("resource"))) if x)
    names = ", ".join(_plain(n) for n in _list(r.get("names")))
    where = f"in {_plain(r.get('namespace'))}" if r.get("namespace") else "cluster-wide"
    return f"{_plain(r.get('verb'))} {resource} {where}" + (f" ({names})" if names else "")


def _value(value: Any) -> str:
    """Any JSON value as HTML: multi-line text (the suggested Role's YAML) in <pre>, lists as
    lists, objects as headed blocks: the section's shape belongs to `leastpriv`."""
    if isinstance(value, Mapping):
        return "".join(f"<h3>{_text(str(k).replace('_', ' '))}</h3>{_value(v)}"
                       for k, v in value.items())
    if isinstance(value, list | tuple):
        if not value:
            return "<p class=\"muted\">none</p>"
        return "<ul>" + "".join(f"<li>{_value(v)}</li>" for v in value) + "</ul>"
    text = _plain(value)
    return f"<pre>{_text(text)}</pre>" if "\n" in text else _text(text)


def _problems(problems: Sequence[Any]) -> str:
    if not problems:
        return "<h2>Problems</h2><p class=\"muted\">Every input line was read.</p>"
    items = "".join(f"<li><code>{_text(_mapping(p).get('where', ''))}</code> "
                    f"{_text(_mapping(p).get('message', ''))}</li>" for p in problems)
    return f"<h2>Problems</h2><ul class=\"problems\">{items}</ul>"


# -- values -----------------------------------------------------------------------------------

def _table(head: Iterable[str], rows: str, css: str) -> str:
    cells = "".join(f"<th>{_text(h)}</th>" for h in head)
    return f"<table class=\"{css}\"><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody></table>"


def _text(value: Any) -> str:
    return html.escape(_plain(value), quote=True)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _plain(value: Any) -> str:
    if value is None or value is False:
        return ""
    return value if isinstance(value, str) else str(value)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seconds(value: Any) -> float:
    """Unix seconds from a number or an RFC 3339 string (0.0 when neither)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _time(value: Any) -> str:
    seconds = _seconds(value)
    if not seconds:
        return _plain(value) if isinstance(value, str) else ""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="seconds").removesuffix("+00:00") + "Z"
