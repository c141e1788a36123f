"""Turn one decoded TrustMapping document into a `TrustMapping`, collecting every problem.

Rules of this module:
- every problem is reported, not just the first, each as `<where> (<name>): <field>: <what>`,
  with fields written as in the document (`spec.claims[1].regex`, lists indexed from 0);
- unknown fields are errors everywhere, except the ObjectMeta fields a custom resource
  carries (namespace, labels, annotations and those the API server sets), which are ignored;
- values keep their YAML types: an expected value must be a string, number or boolean (a
  YAML date or null is refused: quote it), and it is compared with its type;
- only `yaml`-decoded data comes in (dicts, lists, scalars); nothing here reads files;
- a value is never put whole into a message: it is shown cut short (`grammar.shown`), and a
  name that is not a DNS-1123 subdomain is shown so in `<where> (<name>)` too, so a huge,
  deep or multi-line value costs a short message (the document's size is bounded before it
  comes here: `kubegate.yamlread`, or the API server for a resource).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from exchanger.access.policy import MAX_APPROVALS, MAX_DURATION, ApprovalPolicy, Approvers, Reuse
from exchanger.access.windows import DAYS, OneOffWindow, RecurringWindow, Window
from exchanger.mappings.conditions import Condition, Operator, Scalar, json_type, value_key
from exchanger.mappings.model import (
    DEFAULT_LIFETIME_SECONDS,
    MAX_LIFETIME_SECONDS,
    MIN_LIFETIME_SECONDS,
    Grant,
    TrustMapping,
    is_dns_label,
    is_dns_subdomain,
)
from exchanger.mappings.patterns import compile_regex
from exchanger.mappings.schema import API_VERSION, KIND
from exchanger.mappings.subjects import (
    ClaimReference,
    GroupEntry,
    UserName,
    prefix_problem,
)
from kubegate.configread import (
    Report,
    check_fields,
    check_known,
    child,
    object_at,
    string_at,
    strings_at,
)
from kubegate.grammar import parse_whole_seconds, shown

_TOP_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec"})
_IGNORED_METADATA: Final = frozenset({
    "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "managedFields", "finalizers", "ownerReferences", "generateName",
    "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
})
_SPEC_FIELDS: Final = frozenset({"issuer", "description", "claims", "grant", "approval",
                                 "windows"})
_APPROVAL_FIELDS: Final = frozenset({
    "approvers", "count", "allowSelfApproval", "reasonRequired", "ticketPattern", "maxDuration",
    "reuse", "bindTo",
})
_ONE_OFF_FIELDS: Final = frozenset({"start", "end"})
_RECURRING_FIELDS: Final = frozenset({"days", "from", "to", "timeZone"})
_CLOCK: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_CONDITION_FIELDS: Final = frozenset({"claim", *(operator.value for operator in Operator)})
_OPERATORS: Final = ", ".join(operator.value for operator in Operator)
_GRANT_FIELDS: Final = frozenset({
    "cluster", "namespace", "serviceAccount", "user", "groups", "audiences", "maxLifetime",
})
_REFERENCE_FIELDS: Final = frozenset({"claim", "prefix"})
_QUOTE_HINT: Final = frozenset({"null", "date", "datetime"})


def _metadata_name(document: dict[str, Any], report: Report) -> str | None:
    metadata = child(document, "metadata", "", report)
    if metadata is None:
        return None
    check_fields(metadata, _IGNORED_METADATA | {"name"}, "metadata", report)
    name = string_at(metadata, "name", "metadata", report, required=True)
    if name is not None and not is_dns_subdomain(name):
        report.add("metadata.name", f"{shown(name)} is not a DNS-1123 subdomain (lowercase "
                   "letters, digits, '-' and '.')")
        return None
    return name


def _claim_path(obj: dict[str, Any], field: str, report: Report) -> tuple[str, ...] | None:
    where, raw = f"{field}.claim", obj.get("claim")
    if "claim" not in obj:
        report.add(where, "required")
    elif isinstance(raw, str) and raw:
        return (raw,)
    elif (isinstance(raw, list) and raw
          and all(isinstance(name, str) and name for name in raw)):
        return tuple(raw)
    else:
        report.add(where, "expected a claim name or a non-empty list of names (a path)")
    return None


def _scalar(raw: object, field: str, report: Report) -> Scalar | None:
    if value_key(raw) is None:
        kind = json_type(raw)
        hint = " (quote it to mean a string)" if kind in _QUOTE_HINT else ""
        report.add(field, f"expected a string, number or boolean, got {kind}{hint}")
        return None
    return cast(Scalar, raw)


def _operand(operator: Operator, raw: object, field: str,
             report: Report) -> Scalar | tuple[Scalar, ...] | None:
    if operator in (Operator.EQUALS, Operator.CONTAINS):
        return _scalar(raw, field, report)
    if operator is not Operator.ONE_OF:
        if not isinstance(raw, str):
            report.add(field, f"expected a string, got {json_type(raw)}")
            return None
        return raw
    if not isinstance(raw, list) or not raw:
        report.add(field, "expected a non-empty list of values")
        return None
    values = [_scalar(value, f"{field}[{i}]", report) for i, value in enumerate(raw)]
    if any(value is None for value in values):
        return None
    return tuple(value for value in values if value is not None)


def _condition(raw: object, field: str, report: Report) -> Condition | None:
    obj = object_at(raw, field, report)
    if obj is None:
        return None
    check_fields(obj, _CONDITION_FIELDS, field, report)
    path = _claim_path(obj, field, report)
    operators = [operator for operator in Operator if operator.value in obj]
    if len(operators) != 1:
        found = ", ".join(operator.value for operator in operators) or "none"
        report.add(field, f"needs exactly one of {_OPERATORS} (found {found})")
        return None
    operator = operators[0]
    operand_field = f"{field}.{operator.value}"
    expected = _operand(operator, obj[operator.value], operand_field, report)
    if path is None or expected is None:
        return None
    try:
        return Condition(path=path, operator=operator, expected=expected)
    except ValueError as error:
        report.add(operand_field, str(error))
        return None


def _conditions(spec: dict[str, Any], report: Report) -> tuple[Condition, ...] | None:
    raw = spec.get("claims")
    if not isinstance(raw, list) or not raw:
        report.add("spec.claims", "at least one condition is required" if raw in (None, [])
                   else f"expected a list of conditions, got {json_type(raw)}")
        return None
    parsed = [_condition(item, f"spec.claims[{i}]", report) for i, item in enumerate(raw)]
    if any(condition is None for condition in parsed):
        return None
    return tuple(condition for condition in parsed if condition is not None)


def parse_conditions(raw: object, field: str, report: Report) -> tuple[Condition, ...] | None:
    """A non-empty list of claim conditions written as in a mapping's `spec.claims`, outside a
    mapping (an approval's approvers, the config's access admins); problems go to `report`
    under `field`."""
    if not isinstance(raw, list) or not raw:
        report.add(field, "at least one condition is required" if raw in (None, [])
                   else f"expected a list of conditions, got {json_type(raw)}")
        return None
    parsed = [_condition(item, f"{field}[{i}]", report) for i, item in enumerate(raw)]
    if any(condition is None for condition in parsed):
        return None
    return tuple(condition for condition in parsed if condition is not None)


def _lifetime(grant: dict[str, Any], report: Report) -> int | None:
    try:
        seconds = parse_whole_seconds(grant.get("maxLifetime", DEFAULT_LIFETIME_SECONDS))
    except ValueError as error:
        report.add("spec.grant.maxLifetime", str(error))
        return None
    if not MIN_LIFETIME_SECONDS <= seconds <= MAX_LIFETIME_SECONDS:
        report.add("spec.grant.maxLifetime", f"must be between 10m and 24h, got {seconds}s")
        return None
    return seconds


def _grant(spec: dict[str, Any], report: Report,
           clusters: frozenset[str] | None) -> Grant | None:
    where = "spec.grant"
    grant = child(spec, "grant", "spec", report)
    if grant is None:
        return None
    check_fields(grant, _GRANT_FIELDS, where, report)
    cluster = string_at(grant, "cluster", where, report, required=True)
    check_known(cluster, clusters, "cluster", f"{where}.cluster", report)
    namespace = string_at(grant, "namespace", where, report, required=True)
    if namespace is not None and not is_dns_label(namespace):
        report.add(f"{where}.namespace", f"{shown(namespace)} is not a DNS-1123 label")
    account = string_at(grant, "serviceAccount", where, report, required=False)
    if account is not None and not is_dns_subdomain(account):
        report.add(f"{where}.serviceAccount", f"{shown(account)} is not a DNS-1123 subdomain")
    user = _user(grant, report)
    if ("serviceAccount" in grant) == ("user" in grant):
        report.add(where, "needs exactly one of serviceAccount or user")
    groups = _groups(grant, report)
    if groups and "serviceAccount" in grant:
        report.add(f"{where}.groups", "groups go with user, not with serviceAccount (a "
                   "service account's token carries its own groups; names from claims are "
                   "for self-issued user grants only)")
    audiences = strings_at(grant, "audiences", where, report)
    lifetime = _lifetime(grant, report)
    if report.problems or cluster is None or namespace is None or lifetime is None:
        return None
    return Grant(cluster=cluster, namespace=namespace, service_account=account, user=user,
                 groups=groups, audiences=audiences, max_lifetime=lifetime)


def _reference(raw: dict[str, Any], field: str, report: Report) -> ClaimReference | None:
    """`{claim: NAME or [PATH], prefix: "p:"}`: a name taken from a verified claim."""
    check_fields(raw, _REFERENCE_FIELDS, field, report)
    path = _claim_path(raw, field, report)
    prefix = raw.get("prefix")
    problem = prefix_problem(prefix)
    if problem is not None:
        report.add(f"{field}.prefix", problem if prefix is None or isinstance(prefix, str)
                   else f"expected a string, got {json_type(prefix)}")
        return None
    if path is None:
        return None
    return ClaimReference(path=path, prefix=str(prefix))


def _user(grant: dict[str, Any], report: Report) -> UserName | None:
    where, raw = "spec.grant.user", grant.get("user")
    if raw is None:
        if "user" in grant:
            report.add(where, "expected a string or {claim, prefix}, got null")
        return None
    if isinstance(raw, dict):
        if "serviceAccount" in grant:
            report.add(where, "a user from a claim is for self-issued grants, not with "
                       "serviceAccount")
        return _reference(raw, where, report)
    return string_at(grant, "user", "spec.grant", report, required=False)


def _groups(grant: dict[str, Any], report: Report) -> tuple[GroupEntry, ...]:
    where, raw = "spec.grant.groups", grant.get("groups", [])
    if not isinstance(raw, list):
        return strings_at(grant, "groups", "spec.grant", report)  # reports the type
    entries: dict[GroupEntry, None] = {}  # a set in order; `in` stays cheap for long lists
    for position, value in enumerate(raw):
        field = f"{where}[{position}]"
        entry = (_reference(value, field, report) if isinstance(value, dict)
                 else _group_name(value, field, report))
        if entry is not None and entry in entries:
            report.add(field, "duplicate " + (shown(entry) if isinstance(entry, str)
                                              else entry.describe()))
        elif entry is not None:
            entries[entry] = None
    return tuple(entries)


def _group_name(value: object, field: str, report: Report) -> str | None:
    if isinstance(value, str) and value:
        return value
    report.add(field, f"expected a non-empty string or {{claim, prefix}}, got {json_type(value)}")
    return None


def _spec(document: dict[str, Any], report: Report, issuers: frozenset[str] | None,
          clusters: frozenset[str] | None) -> dict[str, Any] | None:
    spec = child(document, "spec", "", report)
    if spec is None:
        return None
    check_fields(spec, _SPEC_FIELDS, "spec", report)
    issuer = string_at(spec, "issuer", "spec", report, required=True)
    check_known(issuer, issuers, "issuer", "spec.issuer", report)
    description = spec.get("description", "")
    if not isinstance(description, str):
        report.add("spec.description", f"expected a string, got {json_type(description)}")
    conditions = _conditions(spec, report)
    grant = _grant(spec, report, clusters)
    approval = _approval(spec, report, issuers) if "approval" in spec else None
    windows = _windows(spec.get("windows", []), report)
    if report.problems:
        return None
    return {"issuer": issuer, "description": description, "conditions": conditions,
            "grant": grant, "approval": approval, "windows": windows}


# -- spec.approval and spec.windows (exchanger.access.policy, exchanger.access.windows) -----


def _flag(obj: dict[str, Any], key: str, field: str, default: bool, report: Report) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        report.add(f"{field}.{key}", f"expected true or false, got {json_type(value)}")
        return default
    return value


def _approval(spec: dict[str, Any], report: Report,
              issuers: frozenset[str] | None) -> ApprovalPolicy | None:
    where, before = "spec.approval", len(report.problems)
    approval = child(spec, "approval", "spec", report)
    if approval is None:
        return None
    check_fields(approval, _APPROVAL_FIELDS, where, report)
    approvers = _approvers(approval, report, issuers)
    count = approval.get("count", 1)
    if type(count) is not int or not 1 <= count <= MAX_APPROVALS:
        report.add(f"{where}.count", f"expected a whole number from 1 to {MAX_APPROVALS}, got "
                   f"{shown(count)}")
    ticket = approval.get("ticketPattern", "")
    if not isinstance(ticket, str):
        report.add(f"{where}.ticketPattern", f"expected a string, got {json_type(ticket)}")
    else:
        _check_pattern(ticket, f"{where}.ticketPattern", report)
    duration = _max_duration(approval, report)
    reuse = approval.get("reuse", Reuse.DURATION.value)
    if reuse not in {r.value for r in Reuse}:
        report.add(f"{where}.reuse", f"expected duration or single, got {shown(reuse)}")
    bind_to = strings_at(approval, "bindTo", where, report)
    flags = (_flag(approval, "allowSelfApproval", where, False, report),
             _flag(approval, "reasonRequired", where, True, report))
    if len(report.problems) > before or approvers is None or duration is None:
        return None
    return ApprovalPolicy(approvers=approvers, count=count, allow_self_approval=flags[0],
                          reason_required=flags[1], ticket_pattern=ticket,
                          max_duration=duration, reuse=Reuse(reuse), bind_to=bind_to)


def _approvers(approval: dict[str, Any], report: Report,
               issuers: frozenset[str] | None) -> Approvers | None:
    where = "spec.approval.approvers"
    approvers = child(approval, "approvers", "spec.approval", report)
    if approvers is None:
        return None
    check_fields(approvers, {"issuer", "claims"}, where, report)
    issuer = string_at(approvers, "issuer", where, report, required=True)
    check_known(issuer, issuers, "issuer", f"{where}.issuer", report)
    conditions = parse_conditions(approvers.get("claims"), f"{where}.claims", report)
    if issuer is None or conditions is None:
        return None
    return Approvers(issuer=issuer, conditions=conditions)


def _check_pattern(ticket: str, field: str, report: Report) -> None:
    if ticket:
        try:
            compile_regex(ticket)
        except ValueError as error:
            report.add(field, str(error))


def _max_duration(approval: dict[str, Any], report: Report) -> int | None:
    field = "spec.approval.maxDuration"
    try:
        seconds = parse_whole_seconds(approval.get("maxDuration", "1h"))
    except ValueError as error:
        report.add(field, str(error))
        return None
    if not 0 < seconds <= MAX_DURATION:
        report.add(field, f"must be more than 0s and at most 24h, got {seconds}s")
        return None
    return seconds


def _windows(raw: object, report: Report) -> tuple[Window, ...]:
    if not isinstance(raw, list):
        report.add("spec.windows", f"expected a list of windows, got {json_type(raw)}")
        return ()
    windows = [_window(item, f"spec.windows[{i}]", report) for i, item in enumerate(raw)]
    return tuple(window for window in windows if window is not None)


def _window(raw: object, field: str, report: Report) -> Window | None:
    obj = object_at(raw, field, report)
    if obj is None:
        return None
    if "start" in obj or "end" in obj:
        check_fields(obj, _ONE_OFF_FIELDS, field, report)
        start, end = _instant(obj, "start", field, report), _instant(obj, "end", field, report)
        if start is None or end is None:
            return None
        if end <= start:
            report.add(f"{field}.end", "must be after start")
            return None
        return OneOffWindow(start=start, end=end)
    check_fields(obj, _RECURRING_FIELDS, field, report)
    days = _days(obj, field, report)
    begin, until = _clock(obj, "from", field, report), _clock(obj, "to", field, report)
    zone = string_at(obj, "timeZone", field, report, required=False) or "UTC"
    try:
        ZoneInfo(zone)
    except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
        report.add(f"{field}.timeZone", f"{shown(zone)} is not an IANA time zone")
        return None
    if days is None or begin is None or until is None:
        return None
    return RecurringWindow(days=days, start=begin, end=until, zone=zone)


def _instant(obj: dict[str, Any], key: str, field: str, report: Report) -> int | None:
    """An RFC 3339 date-time with an offset (Z or ±hh:mm), as a quoted string."""
    raw = obj.get(key)
    try:
        if not isinstance(raw, str):
            raise TypeError
        value = dt.datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        hint = " (quote it)" if isinstance(raw, dt.date) else ""
        report.add(f"{field}.{key}", "required" if key not in obj else
                   f"expected an RFC 3339 date-time such as \"2026-12-05T22:00:00Z\", got "
                   f"{shown(raw) if isinstance(raw, str) else json_type(raw)}{hint}")
        return None
    if value.tzinfo is None or "T" not in raw.upper():
        report.add(f"{field}.{key}", "needs a date, a time and an offset (Z or +01:00)")
        return None
    return int(value.timestamp())


def _days(obj: dict[str, Any], field: str, report: Report) -> tuple[int, ...] | None:
    names = strings_at(obj, "days", field, report) if "days" in obj else DAYS
    unknown = [name for name in names if name not in DAYS]
    if unknown or not names:
        report.add(f"{field}.days", f"expected days among {', '.join(DAYS)}"
                   + (f", got {shown(unknown[0])}" if unknown else ""))
        return None
    return tuple(DAYS.index(name) for name in names)


def _clock(obj: dict[str, Any], key: str, field: str, report: Report) -> dt.time | None:
    raw = obj.get(key)
    found = _CLOCK.fullmatch(raw) if isinstance(raw, str) else None
    if found is None:
        report.add(f"{field}.{key}", "required" if key not in obj else
                   "expected a wall-clock time HH:MM (00:00 to 23:59), got "
                   + (shown(raw) if isinstance(raw, str) else json_type(raw)
                      + " (quote it: YAML reads 22:00 unquoted as a number)"))
        return None
    return dt.time(int(found[1]), int(found[2]))


def _constant(document: dict[str, Any], key: str, expected: str, report: Report) -> None:
    if key not in document:
        report.add(key, "required")
    elif document[key] != expected:
        report.add(key, f"expected {expected!r}, got {shown(document[key])}")


def where_of(raw: object, source: str) -> str:
    """Where a document's problems are: `source (name)` when its metadata.name is a string,
    shown cut short and quoted unless it is a DNS-1123 subdomain; else `source`."""
    metadata = raw.get("metadata") if isinstance(raw, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str):
        return source
    return f"{source} ({name if is_dns_subdomain(name) else shown(name)})"


def parse_mapping(raw: object, *, source: str, issuers: frozenset[str] | None = None,
                  clusters: frozenset[str] | None = None) -> tuple[TrustMapping | None, list[str]]:
    """The mapping in one decoded document, or None and every problem found in it.

    `source` says where the document is (`web.yaml: document 2`); `issuers` and `clusters`,
    when given, are the configured names a mapping may refer to."""
    report = Report(where_of(raw, source))
    document = object_at(raw, "", report)
    if document is None:
        return None, report.problems
    check_fields(document, _TOP_FIELDS, "", report)
    _constant(document, "apiVersion", API_VERSION, report)
    _constant(document, "kind", KIND, report)
    name = _metadata_name(document, report)
    spec = _spec(document, report, issuers, clusters)
    if name is None or spec is None or report.problems:
        return None, report.problems
    try:
        return TrustMapping(name=name, source=source, **spec), []
    except ValueError as error:  # an invariant this module failed to check first
        report.add("", str(error))
        return None, report.problems
