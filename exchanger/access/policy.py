"""A trust mapping's approval rules (`spec.approval`): who may approve, how many distinct
approvals a request needs, and what a request must carry (a reason, a ticket, bound claims).

```yaml
approval:
  approvers: {issuer: corp, claims: [{claim: groups, contains: sre-leads}]}
  count: 1                   # distinct approvals needed (1 to 5)
  allowSelfApproval: false   # the requester's own approval never counts
  reasonRequired: true
  ticketPattern: 'INC-[0-9]+'   # optional; must match the whole ticket (RE2)
  maxDuration: 1h            # the longest duration a request may ask for (at most 24h)
  reuse: duration            # duration: any exchanges until the request ends; single: one
  bindTo: [run_id, run_attempt, sha]   # claims an approval is bound to
```

Rules of this module:
- values are frozen and checked in `__post_init__`; `exchanger.mappings.validate` parses the
  document and reports problems by field before building them;
- this module imports nothing of `exchanger.mappings` at import time (`mappings.model` holds
  an ApprovalPolicy, so importing it here would be a cycle): conditions are only called
  (`Condition.holds`), and the ticket pattern is compiled on first construction;
- an approver matches on the verified token's configured issuer name and every condition;
  the readable name (`who`) never decides anything.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from exchanger.mappings.conditions import Condition
    from exchanger.mappings.patterns import LinearPattern

__all__ = ["DEFAULT_MAX_DURATION", "MAX_APPROVALS", "MAX_DURATION", "ApprovalPolicy",
           "Approvers", "Reuse"]

MAX_APPROVALS: Final = 5
DEFAULT_MAX_DURATION: Final = 3600
MAX_DURATION: Final = 24 * 3600


class Reuse(enum.StrEnum):
    DURATION = "duration"  # any number of exchanges until the request ends
    SINGLE = "single"  # one exchange; the request is then consumed


@dataclass(frozen=True, kw_only=True)
class Approvers:
    """Tokens of `issuer` (a configured issuer name) meeting every condition may approve."""

    issuer: str
    conditions: tuple[Condition, ...]

    def __post_init__(self) -> None:
        if not self.issuer:
            raise ValueError("approvers need an issuer")
        if not self.conditions:
            raise ValueError("approvers need at least one claim condition")

    def admit(self, issuer: str, claims: Mapping[str, Any]) -> bool:
        return issuer == self.issuer and all(c.holds(claims) for c in self.conditions)


@dataclass(frozen=True, kw_only=True)
class ApprovalPolicy:
    approvers: Approvers
    count: int = 1
    allow_self_approval: bool = False
    reason_required: bool = True
    ticket_pattern: str = ""  # "" = any ticket (or none)
    max_duration: int = DEFAULT_MAX_DURATION
    reuse: Reuse = Reuse.DURATION
    bind_to: tuple[str, ...] = ()
    _ticket: LinearPattern | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_APPROVALS:
            raise ValueError(f"count must be between 1 and {MAX_APPROVALS}")
        if not 0 < self.max_duration <= MAX_DURATION:
            raise ValueError("maxDuration must be more than 0s and at most 24h")
        if not all(isinstance(name, str) and name for name in self.bind_to) or len(
                set(self.bind_to)) != len(self.bind_to):
            raise ValueError("bindTo must be distinct, non-empty claim names")
        if self.ticket_pattern:
            from exchanger.mappings.patterns import compile_regex  # noqa: PLC0415 - see rules
            object.__setattr__(self, "_ticket", compile_regex(self.ticket_pattern))

    def ticket_matches(self, ticket: str) -> bool:
        """Whether `ticket` is acceptable: any ticket without a pattern, else a whole match."""
        return self._ticket is None or self._ticket.fullmatch(ticket)

    def summary(self) -> list[str]:
        """The policy as short lines for people (`mappings explain`)."""
        approvals = f"{self.count} distinct approval{'s' if self.count > 1 else ''}"
        conditions = ", ".join(_describe(c) for c in self.approvers.conditions)
        lines = [f"{approvals} from issuer {self.approvers.issuer} where {conditions}",
                 "the requester may approve their own request" if self.allow_self_approval
                 else "the requester's own approval does not count",
                 f"reason {'required' if self.reason_required else 'optional'}"
                 + (f", ticket matching {self.ticket_pattern}" if self.ticket_pattern else ""),
                 f"duration up to {self.max_duration}s, "
                 + ("one exchange per request" if self.reuse is Reuse.SINGLE
                    else "any exchanges until the request ends")]
        if self.bind_to:
            lines.append(f"bound to the requester's {', '.join(self.bind_to)}")
        return lines


def _describe(condition: Condition) -> str:
    from exchanger.mappings.conditions import describe  # noqa: PLC0415 - see rules

    return describe(condition)
