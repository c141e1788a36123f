"""Findings about a mapping's approval rules and windows for `mappings validate`, and their
lines in `mappings explain`.

- error: an approval or window mapping on the selfIssued backend with a maxLifetime over 10
  minutes. A self-issued token cannot be revoked: when its request is revoked or its window
  closes it stays valid until it expires, so its lifetime must stay short (TokenRequest
  tokens are bound to a session Secret that is deleted at the end);
- warning: approvers who may also match the mapping's own claims, with allowSelfApproval;
- warning: a one-off window that ended (it never opens again).

Pure: the mapping, the backend when known, and `now` in; texts out. The backend is the
configured cluster's (`mappings validate --config`), else selfIssued for a grant to a user
(only that backend issues user grants), else unknown: then nothing is said about it.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo

from exchanger.access.windows import OneOffWindow, RecurringWindow, WindowSet, format_utc
from exchanger.mappings.conditions import Condition, Operator
from exchanger.mappings.model import TrustMapping

__all__ = ["REVOCABLE_LIFETIME", "access_errors", "access_warnings", "describe_access",
           "backend_of"]

REVOCABLE_LIFETIME: Final = 600
SELF_ISSUED: Final = "selfIssued"


def backend_of(mapping: TrustMapping, backends: dict[str, str] | None = None) -> str | None:
    """The backend of the mapping's cluster: from the config's clusters when given, else
    selfIssued for a user grant, else None (unknown)."""
    if backends is not None and mapping.grant.cluster in backends:
        return backends[mapping.grant.cluster]
    return SELF_ISSUED if mapping.grant.user is not None else None


def access_errors(mapping: TrustMapping, backend: str | None) -> list[str]:
    if not (mapping.approval or mapping.windows) or backend != SELF_ISSUED:
        return []
    lifetime = mapping.grant.max_lifetime
    if lifetime <= REVOCABLE_LIFETIME:
        return []
    what = "approval" if mapping.approval else "windows"
    return [f"spec.grant.maxLifetime: {lifetime}s with spec.{what} on the selfIssued "
            "backend: a self-issued token cannot be revoked, so it would outlive a revoked "
            "request or a closed window by up to that long; use at most 10m (or a "
            "tokenRequest cluster, whose tokens end with their session Secret)"]


def access_warnings(mapping: TrustMapping, now: float) -> list[str]:
    warnings: list[str] = []
    policy = mapping.approval
    if policy is not None and policy.allow_self_approval and (
            policy.approvers.issuer == mapping.issuer
            and _may_overlap(mapping.conditions, policy.approvers.conditions)):
        warnings.append(
            "spec.approval: allowSelfApproval with approvers who may also match the mapping's "
            "claims: a requester who is an approver can approve their own request"
            + (" alone (count 1)" if policy.count == 1 else ""))
    for position, window in enumerate(mapping.windows):
        if isinstance(window, OneOffWindow) and window.end <= now:
            warnings.append(f"spec.windows[{position}]: ended {format_utc(window.end)}; it "
                            "never opens again")
    if mapping.windows and WindowSet(windows=mapping.windows).next_open(now) is None:
        warnings.append("spec.windows: no window opens again: the mapping can never be used")
    return warnings


def _may_overlap(ours: tuple[Condition, ...], theirs: tuple[Condition, ...]) -> bool:
    """False only when one claim must equal two different values (a cheap, sound check:
    True means a token might meet both sets of conditions)."""
    wanted: dict[tuple[str, ...], object] = {}
    for condition in (*ours, *theirs):
        if condition.operator is not Operator.EQUALS:
            continue
        if condition.path in wanted and wanted[condition.path] != condition.expected:
            return False
        wanted[condition.path] = condition.expected
    return True


def describe_access(mapping: TrustMapping, now: float) -> list[str]:
    """`mappings explain` lines: the approval rules, and the window open now or next."""
    lines = []
    if mapping.approval is not None:
        lines += [f"  approval: {line}" for line in mapping.approval.summary()]
        lines.append(f"  approval: an exchange needs an approved request: kubegate access "
                     f"request --role {mapping.name}")
    if not mapping.windows:
        return lines
    lines += [f"  window: {window.describe()}" for window in mapping.windows]
    span = WindowSet(windows=mapping.windows).next_open(now)
    if span is None:
        return [*lines, "  windows: none opens again"]
    state = "open now" if span[0] <= now else "next opens"
    local = _local(mapping, span[0])
    return [*lines, f"  windows: {state}: {format_utc(span[0])} to {format_utc(span[1])}"
            + (f" ({local})" if local else "")]


def _local(mapping: TrustMapping, start: int) -> str:
    for window in mapping.windows:
        if isinstance(window, RecurringWindow) and any(
                begin == start for begin, _ in window.occurrences(start, start)):
            when = dt.datetime.fromtimestamp(start, ZoneInfo(window.zone))
            return f"{when:%a %Y-%m-%d %H:%M %Z} {window.zone}"
    return ""
