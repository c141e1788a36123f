"""The verified identity of one subject token: what verification hands to matching."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

_SCALARS = (str, int, float, bool, type(None))


def freeze(value: Any) -> Any:
    """A read-only deep copy of decoded JSON: dicts become mapping proxies, lists tuples.
    (Scalars are checked inline: most claims are strings, and this runs on every token.)"""
    if isinstance(value, Mapping):
        return MappingProxyType({k: v if isinstance(v, _SCALARS) else freeze(v)
                                 for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(v if isinstance(v, _SCALARS) else freeze(v) for v in value)
    return value


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Claims of a subject token that passed verification.

    `issuer` is the configured issuer's name (what mappings refer to); `issuer_url` is the
    token's exact `iss`. `claims` is the whole verified payload, read-only.
    """

    issuer: str
    issuer_url: str
    subject: str
    token_id: str | None
    audiences: tuple[str, ...]
    issued_at: int
    expires_at: int
    claims: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not self.subject:
            raise ValueError("an identity needs a subject")
        if self.expires_at <= self.issued_at:
            raise ValueError("an identity must expire after it was issued")
        object.__setattr__(self, "claims", freeze(self.claims))
