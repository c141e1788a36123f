"""Trust mappings as values, and the pure decision of which one a verified identity gets.

A `TrustMapping` says: tokens of this issuer whose claims meet every condition may receive
this `Grant`. A `MappingSet` is an immutable, indexed collection of them with one question:
`match(identity, role)`.

Rules of this module:
- deny by default: without a mapping whose issuer is the identity's and whose conditions all
  hold, `match` raises; it never returns a "closest" mapping;
- a token whose `event_name` is `pull_request_target` meets only mappings with a condition on
  `event_name`: GitHub runs such a workflow with the base repository's `sub` and `ref` although a
  fork's pull request triggered it, so a mapping must say it admits that event;
- a named role is looked up by name only; the public message of a refused role is the same
  whether the role exists, belongs to another issuer, or a condition failed (the audit detail
  says which, naming the claim and the expected value, never the claim's value);
- without a role exactly one mapping must match; several is the caller's ambiguity to resolve
  by naming one (their names are listed: each is a role this identity may ask for);
- matching costs dictionary lookups, not a scan of every mapping (see `index.py`);
- values are immutable once built; invariants are checked in `__post_init__`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from exchanger.access.policy import ApprovalPolicy
from exchanger.access.windows import Window, WindowSet
from exchanger.identity import Identity
from exchanger.mappings.conditions import (
    MISSING,
    Condition,
    ConditionResult,
    Operator,
    describe,
    describe_failure,
    evaluate,
)
from exchanger.mappings.index import ClaimIndex, build_index
from exchanger.mappings.subjects import ClaimReference, GroupEntry, UserName, resolve_groups
from kubegate.errors import InvalidRequestError, PermissionDeniedError

__all__ = [
    "AMBIGUOUS_MAPPING", "MISSING", "NO_MATCHING_MAPPING", "ROLE_NOT_ALLOWED", "ClaimReference",
    "Condition", "ConditionResult", "Grant", "MappingSet", "Operator", "TrustMapping",
    "evaluate",
]

ROLE_NOT_ALLOWED: Final = "ROLE_NOT_ALLOWED"
NO_MATCHING_MAPPING: Final = "NO_MATCHING_MAPPING"
AMBIGUOUS_MAPPING: Final = "AMBIGUOUS_MAPPING"

FORK_TRIGGERED_EVENT: Final = "pull_request_target"
"""The GitHub event that runs fork-triggered workflows with the base repository's identity."""

MIN_LIFETIME_SECONDS: Final = 600
"""TokenRequest's minimum; a mapping may not cap lifetimes below it."""
MAX_LIFETIME_SECONDS: Final = 24 * 3600
DEFAULT_LIFETIME_SECONDS: Final = 15 * 60

_DNS_LABEL: Final = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS_LABEL_PATTERN: Final = re.compile(_DNS_LABEL)
DNS_SUBDOMAIN_PATTERN: Final = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")


def is_dns_label(value: str) -> bool:
    """A DNS-1123 label (a namespace name): lowercase alphanumerics and '-', at most 63."""
    return len(value) <= 63 and DNS_LABEL_PATTERN.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """A DNS-1123 subdomain (a mapping or service-account name): labels joined by '.'."""
    return len(value) <= 253 and DNS_SUBDOMAIN_PATTERN.fullmatch(value) is not None


def _check_strings(what: str, values: tuple[object, ...]) -> None:
    if not all((isinstance(v, str) and v) or isinstance(v, ClaimReference) for v in values):
        raise ValueError(f"{what} must be non-empty strings" + (
            " or claim references" if what == "groups" else ""))
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")


@dataclass(frozen=True, kw_only=True)
class Grant:
    """What a mapping hands out. Exactly one of `service_account` (TokenRequest backend) or
    `user` (self-issued backend, optionally with `groups`). Empty `audiences` means the
    cluster's API audience. `max_lifetime` caps the issued lifetime, in seconds.

    `user` and entries of `groups` may be ClaimReferences (`subjects.py`): such a grant is a
    template, and `resolve(claims)` gives the grant to issue, with names only. Backends and
    audit records take resolved grants (`user_name`, `group_names`)."""

    cluster: str
    namespace: str
    service_account: str | None = None
    user: UserName | None = None
    groups: tuple[GroupEntry, ...] = ()
    audiences: tuple[str, ...] = ()
    max_lifetime: int = DEFAULT_LIFETIME_SECONDS

    def __post_init__(self) -> None:
        if not self.cluster:
            raise ValueError("a grant needs a cluster")
        if not is_dns_label(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if (self.service_account is None) == (self.user is None):
            raise ValueError("a grant needs exactly one of serviceAccount or user")
        if self.service_account is not None and not is_dns_subdomain(self.service_account):
            raise ValueError(f"serviceAccount {self.service_account!r} is not a DNS-1123 name")
        if self.user is not None and not (
                isinstance(self.user, ClaimReference) or (isinstance(self.user, str)
                                                          and self.user)):
            raise ValueError("user must be a non-empty string or a claim reference")
        if self.groups and self.user is None:
            raise ValueError("groups go with user, not with serviceAccount")
        _check_strings("groups", self.groups)
        _check_strings("audiences", self.audiences)
        self._check_lifetime()

    @property
    def templated(self) -> bool:
        """Whether the user or a group is taken from a claim (the grant needs `resolve`)."""
        return isinstance(self.user, ClaimReference) or any(
            isinstance(group, ClaimReference) for group in self.groups)

    def resolve(self, claims: Mapping[str, Any]) -> Grant:
        """This grant with names taken from verified `claims` (itself when it names no claim).
        Raises PermissionDeniedError GRANT_CLAIM_UNUSABLE (see `subjects.py`)."""
        if not self.templated:
            return self
        user = self.user.resolve_user(claims) if isinstance(
            self.user, ClaimReference) else self.user
        return replace(self, user=user, groups=resolve_groups(self.groups, claims))

    @property
    def user_name(self) -> str | None:
        """The user name of a resolved grant (None with a service account)."""
        if isinstance(self.user, ClaimReference):
            raise ValueError("the grant takes its user from a claim: resolve it first")
        return self.user

    @property
    def group_names(self) -> tuple[str, ...]:
        """The group names of a resolved grant."""
        names = tuple(group for group in self.groups if isinstance(group, str))
        if len(names) != len(self.groups):
            raise ValueError("the grant takes groups from a claim: resolve it first")
        return names

    def _check_lifetime(self) -> None:
        lifetime = self.max_lifetime
        if type(lifetime) is not int:
            raise ValueError("maxLifetime must be a whole number of seconds")
        if not MIN_LIFETIME_SECONDS <= lifetime <= MAX_LIFETIME_SECONDS:
            raise ValueError(
                f"maxLifetime must be between {MIN_LIFETIME_SECONDS}s (10m) and "
                f"{MAX_LIFETIME_SECONDS}s (24h), got {lifetime}s"
            )


@dataclass(frozen=True, kw_only=True)
class TrustMapping:
    """Tokens of `issuer` (a configured issuer name) whose claims meet every condition may
    receive `grant`. `name` is the role callers may ask for; `source` says where it was
    defined (e.g. `web.yaml: document 2`).

    `approval`, when set, means a match is not enough: the exchange also needs an approved
    access request (`exchanger.access.gate`); `windows`, when not empty, are the only times
    the mapping may be used at all (`exchanger.access.windows`)."""

    name: str
    issuer: str
    conditions: tuple[Condition, ...]
    grant: Grant
    description: str = ""
    source: str = ""
    approval: ApprovalPolicy | None = None
    windows: tuple[Window, ...] = ()

    def __post_init__(self) -> None:
        if not is_dns_subdomain(self.name):
            raise ValueError(f"mapping name {self.name!r} is not a DNS-1123 subdomain")
        if not self.issuer:
            raise ValueError("a mapping needs an issuer")
        if not self.conditions:
            raise ValueError("a mapping needs at least one claim condition")

    @property
    def window_set(self) -> WindowSet:
        return WindowSet(windows=self.windows)

    def results(self, claims: Mapping[str, Any]) -> tuple[ConditionResult, ...]:
        """Every condition's outcome, in order (for an explain view)."""
        return tuple(evaluate(condition, claims) for condition in self.conditions)

    def matches(self, claims: Mapping[str, Any]) -> bool:
        """Whether every condition holds (and the pull_request_target rule above)."""
        return self._admits_event(claims) and all(
            condition.holds(claims) for condition in self.conditions)

    def _admits_event(self, claims: Mapping[str, Any]) -> bool:
        """False for a pull_request_target token unless a condition names `event_name`."""
        return claims.get("event_name") != FORK_TRIGGERED_EVENT or any(
            condition.path == ("event_name",) for condition in self.conditions)

    def first_failure(self, claims: Mapping[str, Any]) -> str | None:
        """An audit-detail description of the first failing condition, or None."""
        if not self._admits_event(claims):
            return (f"event_name is {FORK_TRIGGERED_EVENT} and no condition names event_name "
                    "(a fork's pull request would act as the base repository)")
        for position, condition in enumerate(self.conditions):
            result = evaluate(condition, claims)
            if not result.passed:
                why = describe_failure(condition, result)
                return f"spec.claims[{position}] ({describe(condition)}): {why}"
        return None


def _conditions_of(mapping: TrustMapping) -> tuple[Condition, ...]:
    return mapping.conditions


@dataclass(frozen=True, kw_only=True)
class MappingSet:
    """An immutable, indexed set of trust mappings with unique names."""

    mappings: tuple[TrustMapping, ...] = ()
    _by_name: Mapping[str, TrustMapping] = field(init=False, repr=False, compare=False)
    _by_issuer: Mapping[str, tuple[TrustMapping, ...]] = field(
        init=False, repr=False, compare=False
    )
    _indexes: Mapping[str, ClaimIndex[TrustMapping]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        by_name = {mapping.name: mapping for mapping in self.mappings}
        if len(by_name) != len(self.mappings):
            raise ValueError("mapping names must be unique")
        grouped: dict[str, list[TrustMapping]] = {}
        for mapping in self.mappings:
            grouped.setdefault(mapping.issuer, []).append(mapping)
        indexes = {issuer: build_index(group, _conditions_of) for issuer, group in grouped.items()}
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        object.__setattr__(self, "_by_issuer", {i: tuple(g) for i, g in grouped.items()})
        object.__setattr__(self, "_indexes", MappingProxyType(indexes))

    def __len__(self) -> int:
        return len(self.mappings)

    def get(self, name: str) -> TrustMapping | None:
        return self._by_name.get(name)

    def for_issuer(self, issuer: str) -> tuple[TrustMapping, ...]:
        """The mappings of one issuer, in definition order."""
        return self._by_issuer.get(issuer, ())

    def match(self, identity: Identity, role: str | None = None) -> TrustMapping:
        """The mapping that grants `identity` what it asked for, or a denial.

        `role` names a mapping (an empty string counts as no role, as proto3 sends it).
        Raises PermissionDeniedError (ROLE_NOT_ALLOWED, NO_MATCHING_MAPPING) or
        InvalidRequestError (AMBIGUOUS_MAPPING)."""
        if role:
            return self._match_role(identity, role)
        return self._match_any(identity)

    def candidates(self, identity: Identity) -> list[TrustMapping]:
        """The issuer's mappings that could match, found by index (conditions unchecked)."""
        index = self._indexes.get(identity.issuer)
        return [] if index is None else index.candidates(identity.claims)

    def _match_role(self, identity: Identity, role: str) -> TrustMapping:
        mapping = self._by_name.get(role)
        if mapping is None:
            raise _role_not_allowed(role, "unknown role")
        if mapping.issuer != identity.issuer:
            raise _role_not_allowed(
                role, f"mapping is for issuer {mapping.issuer!r}, not {identity.issuer!r}"
            )
        failure = mapping.first_failure(identity.claims)
        if failure is not None:
            raise _role_not_allowed(role, failure)
        return mapping

    def _match_any(self, identity: Identity) -> TrustMapping:
        candidates = self.candidates(identity)
        matched = sorted(
            (m for m in candidates if m.matches(identity.claims)), key=lambda m: m.name
        )
        if len(matched) == 1:
            return matched[0]
        if not matched:
            raise PermissionDeniedError(
                NO_MATCHING_MAPPING,
                f"issuer {identity.issuer!r}: no mapping matched "
                f"({len(candidates)} candidate(s) evaluated)",
            )
        names = ", ".join(m.name for m in matched)
        raise InvalidRequestError(
            AMBIGUOUS_MAPPING,
            f"issuer {identity.issuer!r}: mappings {names} all match",
            public_message=f"several trust mappings match this identity ({names}); "
            "name the one you want as the role",
        )


def _role_not_allowed(role: str, why: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        ROLE_NOT_ALLOWED,
        f"role {role!r}: {why}",
        public_message="the requested role is not allowed for this identity",
    )
