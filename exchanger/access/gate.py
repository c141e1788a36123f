"""The check an exchange of a mapping with approval rules or windows passes, and the use it
records once the credential exists.

Rules of this module:
- fail closed: a closed window is OUTSIDE_WINDOW, a missing request APPROVAL_REQUIRED, and a
  store that cannot be read is UnavailableError; nothing here ever admits by default;
- a request admits only the identity that made it (configured issuer name and `sub`) and
  only a token whose claims equal the request's `bound` values (another CI run, attempt or
  commit of the same repository does not match), while approved or active and before
  `ends_at`;
- `not_after` is the latest instant a credential may live: the request's end or the
  window's end, whichever is first (0: no limit from here);
- `consume` is compare-and-swap with re-read and re-check (ConflictError: at most
  `ATTEMPTS` tries), so two exchanges racing on a single-use request never both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchanger.access.lifecycle import requester_of, use
from exchanger.access.model import AccessRequest, Requester, State
from exchanger.access.policy import ApprovalPolicy
from exchanger.access.ports import AccessStore, ConflictError
from exchanger.access.windows import format_utc
from exchanger.identity import Identity
from exchanger.mappings.model import TrustMapping
from kubegate.errors import PermissionDeniedError

__all__ = ["APPROVAL_REQUIRED", "ATTEMPTS", "OUTSIDE_WINDOW", "AccessGate", "Admission",
           "bound_values_match"]

OUTSIDE_WINDOW: Final = "OUTSIDE_WINDOW"
APPROVAL_REQUIRED: Final = "APPROVAL_REQUIRED"
ATTEMPTS: Final = 5
_USABLE: Final = frozenset({State.APPROVED, State.ACTIVE})

Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class Admission:
    """What let an exchange through: the request used (None: a window-only mapping), the
    latest instant its credential may live (0: none), and who approved."""

    request: AccessRequest | None
    not_after: int
    approvers: tuple[Requester, ...] = ()
    policy: ApprovalPolicy | None = None


def bound_values_match(bound: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """Whether the token carries each bound claim with the same value (as text: a CI system
    may send run_attempt as "1" or 1; booleans and objects never match)."""
    def text(value: object) -> str | None:
        return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    return all(text(value) is not None and text(value) == text(claims.get(name))
               for name, value in bound.items())


class AccessGate:
    def __init__(self, store: AccessStore, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def check(self, identity: Identity, mapping: TrustMapping,
              now: float | None = None) -> Admission | None:
        """None when the mapping has neither approval rules nor windows; else the admission,
        or PermissionDeniedError OUTSIDE_WINDOW / APPROVAL_REQUIRED."""
        if mapping.approval is None and not mapping.windows:
            return None
        at = int(self._clock() if now is None else now)
        window_end = self._window_end(mapping, at)
        if mapping.approval is None:
            return Admission(request=None, not_after=window_end)
        request = self._request_for(identity, mapping, mapping.approval, at)
        ends = [end for end in (request.ends_at, window_end) if end]
        return Admission(request=request, not_after=min(ends, default=0),
                         approvers=tuple(a.approver for a in request.approvals),
                         policy=mapping.approval)

    def consume(self, admission: Admission, now: float | None = None) -> AccessRequest | None:
        """Record one use of the admission's request (None without one). Call it only after
        the credential was issued and audited. Raises PermissionDeniedError NOT_USABLE when
        the request ended meanwhile (revoked, or a racing exchange used a single-use one),
        ConflictError after ATTEMPTS lost compare-and-swaps."""
        request, policy = admission.request, admission.policy
        if request is None or policy is None:
            return None
        at = int(self._clock() if now is None else now)
        for _ in range(ATTEMPTS - 1):
            try:
                return self._store.replace(use(request, at, policy))
            except ConflictError:
                fresh = self._store.get(request.id)
                request = fresh if fresh is not None else request
        return self._store.replace(use(request, at, policy))

    def _window_end(self, mapping: TrustMapping, at: int) -> int:
        if not mapping.windows:
            return 0
        windows = mapping.window_set
        span = windows.open_at(at)
        if span is not None:
            return span[1]
        upcoming = windows.next_open(at)
        when = (f"the next window opens at {format_utc(upcoming[0])}" if upcoming
                else "no window of this role opens again")
        raise PermissionDeniedError(
            OUTSIDE_WINDOW, f"mapping {mapping.name}: outside its windows",
            public_message=f"this role may be used only inside its time windows; {when}")

    def _request_for(self, identity: Identity, mapping: TrustMapping, policy: ApprovalPolicy,
                     at: int) -> AccessRequest:
        who = requester_of(identity)
        found = [request for request in self._store.list(
                     states=_USABLE, mapping=mapping.name, requester_subject=identity.subject)
                 if request.mapping == mapping.name and request.state in _USABLE
                 and request.requester.same_as(who) and at < request.ends_at
                 and all(name in request.bound for name in policy.bind_to)
                 and bound_values_match(request.bound, identity.claims)]
        if not found:
            raise PermissionDeniedError(
                APPROVAL_REQUIRED, f"mapping {mapping.name}: no approved, unexpired request "
                "of this identity with these bound claims",
                public_message="this role needs an approved access request: request access "
                f"with kubegate access request --role {mapping.name}")
        return max(found, key=lambda request: request.ends_at)
