"""A dry run of matching (`kubegate mappings explain`): for each candidate mapping, every
condition with pass or fail and the claim value it saw, and the decision the exchanger would
make. Pure: claims and mappings in, lines of text out; nothing is issued or contacted.

Rules of this module:
- the decision is `MappingSet.match` itself, then `Grant.resolve` as the exchange does, so
  explain can never disagree with the exchanger about which mapping wins, why none does, or
  which user and groups a grant taken from claims names;
- candidates are every mapping of the issuer (or only the named role), not just the ones
  the index would pick, so a near miss is visible;
- claim values are shown (this runs on the operator's machine, with a token they hold),
  shortened to one line;
- a mapping with approval rules or windows also shows them, and the window open at `now` or
  the next one (in UTC and in the window's zone); `now` is passed in, never read here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchanger.identity import Identity
from exchanger.mappings.access_lints import describe_access
from exchanger.mappings.conditions import MISSING, ConditionResult, describe
from exchanger.mappings.model import Grant, MappingSet, TrustMapping
from exchanger.mappings.subjects import ClaimReference
from kubegate.errors import KubegateError

VALUE_LIMIT: Final = 80


@dataclass(frozen=True, kw_only=True)
class MappingReport:
    """One candidate: each condition's result, whether it matches as a whole, and why not
    when every condition passed but a rule of the matcher refused it."""

    mapping: TrustMapping
    results: tuple[ConditionResult, ...]
    matched: bool
    refusal: str | None


@dataclass(frozen=True, kw_only=True)
class Explanation:
    issuer: str
    role: str | None
    candidates: tuple[MappingReport, ...]
    granted: TrustMapping | None
    denial: str | None  # "REASON: detail" when nothing would be granted
    grant: Grant | None = None  # the granted mapping's grant, resolved from the claims
    now: float = 0.0  # when windows are judged (0: windows are listed, not judged)


def identity_for(issuer: str, claims: Mapping[str, Any]) -> Identity:
    """An Identity from unverified claims (times and subject defaulted when absent)."""
    issued = _integer(claims.get("iat"), 0)
    expires = _integer(claims.get("exp"), issued + 1)
    audiences = claims.get("aud", ())
    return Identity(
        issuer=issuer, issuer_url=str(claims.get("iss", "")),
        subject=str(claims.get("sub") or "(no sub)"), token_id=None,
        audiences=(audiences,) if isinstance(audiences, str) else tuple(audiences or ()),
        issued_at=issued, expires_at=max(expires, issued + 1), claims=dict(claims))


def _integer(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def explain(mappings: MappingSet, identity: Identity, role: str | None = None,
            now: float = 0.0) -> Explanation:
    """Evaluate every candidate and decide as the exchanger would (before its access gate:
    approvals and windows are shown, not checked)."""
    if role:
        named = mappings.get(role)
        pool = [named] if named is not None else []
    else:
        pool = list(mappings.for_issuer(identity.issuer))
    reports = tuple(_report(mapping, identity) for mapping in pool)
    granted: TrustMapping | None = None
    grant: Grant | None = None
    try:
        granted = mappings.match(identity, role or None)
        grant = granted.grant.resolve(identity.claims)
        denial = None
    except KubegateError as error:
        granted, denial = None, f"{error.reason}: {error.detail or error.public_message}"
    return Explanation(issuer=identity.issuer, role=role or None, candidates=reports,
                       granted=granted, denial=denial, grant=grant, now=now)


def _report(mapping: TrustMapping, identity: Identity) -> MappingReport:
    results = mapping.results(identity.claims)
    matched = mapping.issuer == identity.issuer and mapping.matches(identity.claims)
    refusal = None
    if not matched and all(r.passed for r in results):
        refusal = (f"for issuer {mapping.issuer!r}, not {identity.issuer!r}"
                   if mapping.issuer != identity.issuer else mapping.first_failure(
                       identity.claims))
    return MappingReport(mapping=mapping, results=results, matched=matched, refusal=refusal)


def show_value(value: object) -> str:
    if value is MISSING:
        return "(missing)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 3] + "..."


def describe_grant(grant: Grant) -> str:
    groups = ", ".join(_entry(group) for group in grant.groups)
    who = (f"service account {grant.service_account}" if grant.service_account
           else f"user {_entry(grant.user)}" + (f" groups {groups}" if groups else ""))
    audiences = f", audiences {', '.join(grant.audiences)}" if grant.audiences else ""
    return (f"cluster {grant.cluster}, namespace {grant.namespace}, {who}{audiences}, "
            f"lifetime up to {_duration(grant.max_lifetime)}")


def _entry(entry: str | ClaimReference | None) -> str:
    """A constant name, or `{claim: email, prefix: "oidc:"}` for a name taken from a claim."""
    return entry.describe() if isinstance(entry, ClaimReference) else str(entry)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{seconds}s" if seconds else ""]
    return "".join(parts) or "0s"


def render(explanation: Explanation) -> list[str]:
    """The explanation as lines of text."""
    lines: list[str] = []
    if not explanation.candidates:
        lines.append(f"no mapping {'named ' + repr(explanation.role) if explanation.role else ''}"
                     f"{' ' if explanation.role else ''}for issuer {explanation.issuer!r}")
    for report in explanation.candidates:
        mapping = report.mapping
        verdict = "MATCH" if report.matched else "no match"
        lines.append(f"mapping {mapping.name} ({mapping.source or 'no source'}): {verdict}")
        width = max(len(describe(c)) for c in mapping.conditions)
        for condition, result in zip(mapping.conditions, report.results, strict=True):
            mark = "pass" if result.passed else "FAIL"
            lines.append(f"  {mark}  {describe(condition):<{width}}  saw {show_value(result.seen)}")
        if report.refusal:
            lines.append(f"  refused: {report.refusal}")
        lines.append(f"  grants: {describe_grant(mapping.grant)}")
        lines += describe_access(mapping, explanation.now) if explanation.now else [
            f"  approval: {line}" for line in (mapping.approval.summary()
                                               if mapping.approval else ())]
    lines.append("")
    if explanation.granted is not None:
        grant = explanation.grant or explanation.granted.grant
        needs = [what for what, needed in (("an approved access request",
                                             explanation.granted.approval is not None),
                                            ("an open window", bool(explanation.granted.windows)))
                 if needed]
        lines.append(f"decision: would grant {explanation.granted.name}: "
                     f"{describe_grant(grant)} (nothing was issued)"
                     + (f"; it also needs {' and '.join(needs)}" if needs else ""))
    else:
        lines.append(f"decision: denied: {explanation.denial}")
    return lines
