"""Grant user and group names taken from verified claims, behind a fixed prefix.

A self-issued grant's `user`, and any entry of its `groups`, may name a claim instead of a
constant: `{claim: email, prefix: "oidc:"}`. At issue time the claim's value, prefixed,
becomes the Kubernetes user name (or group names) of the credential, so each person a group
mapping admits is a user of their own in the cluster's audit log and RBAC.

Rules of this module:
- a prefix is required and strict: one or more of `[a-z0-9.-]` then a final `:`, at most 64
  characters, and never starting with `system` (Kubernetes reserves `system:`); so every
  resolved name starts with a prefix the mapping's author chose, and no claim value can make
  it a `system:` name or another prefix's name;
- a user claim must be a non-empty string; a groups claim a non-empty string or a list of at
  most 100 non-empty strings (each prefixed on its own); every resolved name is at most 256
  characters and holds no control, format or line-separator character;
- a missing claim, or one of another type, is refused: nothing falls back to a constant;
- resolution is pure (claims in, names out); a refusal is a PermissionDeniedError with reason
  GRANT_CLAIM_UNUSABLE whose public message and audit detail name the claim, its JSON type and
  the rule it broke, never its value.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchanger.mappings.conditions import MISSING, claim_label, json_type, lookup_claim
from kubegate.errors import PermissionDeniedError

GRANT_CLAIM_UNUSABLE: Final = "GRANT_CLAIM_UNUSABLE"
"""The reason of a denial whose grant takes a name from a claim the token cannot supply."""

PREFIX_PATTERN: Final = re.compile(r"[a-z0-9.-]+:")
MAX_PREFIX_LENGTH: Final = 64
RESERVED_PREFIX: Final = "system"
MAX_NAME_LENGTH: Final = 256
"""The longest user or group name a claim may resolve to, prefix included."""
MAX_CLAIM_GROUPS: Final = 100
"""The most groups one list claim may bring."""

_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def prefix_problem(prefix: object) -> str | None:
    """Why `prefix` is not a valid grant prefix, or None when it is."""
    if not isinstance(prefix, str) or not prefix:
        return "required: a non-empty string such as \"oidc:\""
    if len(prefix) > MAX_PREFIX_LENGTH:
        return f"at most {MAX_PREFIX_LENGTH} characters"
    if PREFIX_PATTERN.fullmatch(prefix) is None:
        return "must be lowercase letters, digits, '.' and '-', ending with ':' (e.g. \"oidc:\")"
    if prefix.startswith(RESERVED_PREFIX):
        return "must not start with 'system' (Kubernetes reserves system: names)"
    return None


def has_control_character(text: str) -> bool:
    """Whether `text` holds a control, format (e.g. a bidi override), surrogate or line or
    paragraph separator character."""
    return any(unicodedata.category(character) in _REFUSED_CATEGORIES for character in text)


@dataclass(frozen=True, kw_only=True)
class ClaimReference:
    """A name taken from the claim at `path` (a name, or a path into nested objects), with
    `prefix` put in front of it."""

    path: tuple[str, ...]
    prefix: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, tuple) or not self.path or not all(
                isinstance(name, str) and name for name in self.path):
            raise ValueError("a claim path needs a tuple of one or more non-empty names")
        problem = prefix_problem(self.prefix)
        if problem is not None:
            raise ValueError(f"prefix {problem}")

    @property
    def label(self) -> str:
        """The claim as written in a document: `email`, or `[a, b]`."""
        return claim_label(self.path)

    def describe(self) -> str:
        """The reference as a document writes it: `{claim: email, prefix: "oidc:"}`."""
        return f"{{claim: {self.label}, prefix: {json.dumps(self.prefix)}}}"

    def resolve_user(self, claims: Mapping[str, Any]) -> str:
        """The prefixed user name, or GRANT_CLAIM_UNUSABLE."""
        value = lookup_claim(claims, self.path)
        if value is MISSING:
            raise self._unusable("user", "is missing")
        if not isinstance(value, str):
            raise self._unusable("user", f"is {json_type(value)}, expected a string")
        return self._name("user", value)

    def resolve_groups(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        """The prefixed group names, in the claim's order, or GRANT_CLAIM_UNUSABLE."""
        value = lookup_claim(claims, self.path)
        if value is MISSING:
            raise self._unusable("groups", "is missing")
        if isinstance(value, str):
            return (self._name("groups", value),)
        if not isinstance(value, list | tuple):  # a verified identity holds lists as tuples
            raise self._unusable("groups", f"is {json_type(value)}, expected a string or a "
                                 "list of strings")
        if len(value) > MAX_CLAIM_GROUPS:
            raise self._unusable("groups", f"holds {len(value)} groups, over "
                                 f"{MAX_CLAIM_GROUPS}")
        for item in value:
            if not isinstance(item, str):
                raise self._unusable("groups", f"holds a value of type {json_type(item)}, "
                                     "expected strings")
        return tuple(self._name("groups", item) for item in value)

    def _name(self, field: str, value: str) -> str:
        if not value:
            raise self._unusable(field, "is an empty string")
        name = self.prefix + value
        if len(name) > MAX_NAME_LENGTH:
            raise self._unusable(field, f"gives a name over {MAX_NAME_LENGTH} characters "
                                 "with its prefix")
        if has_control_character(value):
            raise self._unusable(field, "holds a control character")
        return name

    def _unusable(self, field: str, why: str) -> PermissionDeniedError:
        return PermissionDeniedError(
            GRANT_CLAIM_UNUSABLE, f"spec.grant.{field}: claim {self.label} {why}",
            public_message=f"the trust mapping takes the Kubernetes {field} from claim "
            f"{self.label}, and in this token that claim {why}",
        )


UserName = str | ClaimReference
"""A grant's user: a constant name, or a claim with a prefix."""
GroupEntry = str | ClaimReference
"""One entry of a grant's groups: a constant name, or a claim (a string or list) with a prefix."""


def resolve_groups(entries: tuple[GroupEntry, ...],
                   claims: Mapping[str, Any]) -> tuple[str, ...]:
    """Every group name, constants and claims in the order written; a name that comes twice
    is kept once, where it first came."""
    names: dict[str, None] = {}
    for entry in entries:
        found = (entry,) if isinstance(entry, str) else entry.resolve_groups(claims)
        names.update(dict.fromkeys(found))
    return tuple(names)
