"""An immutable index that finds the few items (trust mappings) that could match some claims,
with dictionary lookups instead of a scan over every item's patterns.

How: each item that has an `equals` or `oneOf` condition is filed under one of them, as
claim path -> type-strict value key -> items. Among an item's candidates, the path most items
share is chosen, so the index has few paths and a lookup costs one dictionary get per path,
whatever the number of items. Items without such a condition go to a fallback bucket that is
always a candidate. `contains` conditions are never indexed: their claim is a list, which has
no value key, so filing an item under one element could hide it from a token whose matching
element is another; such an item is filed by another condition or goes to the fallback.

Invariants:
- every item is in exactly one place: one path's buckets (once per distinct value), or the
  fallback; a claims value resolves to at most one bucket per path, so `candidates` never
  returns an item twice;
- `candidates` over-approximates: it never leaves out an item whose conditions all hold (the
  chosen condition must hold, so the item is in the bucket of the claim's value); the caller
  still evaluates every condition.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from exchanger.mappings.conditions import Condition, Operator, ValueKey, lookup_claim, value_key

Item = TypeVar("Item")

Path = tuple[str, ...]

_INDEXABLE = (Operator.EQUALS, Operator.ONE_OF)


@dataclass(frozen=True, kw_only=True)
class ClaimIndex(Generic[Item]):
    """Items filed by one exact-value condition each; see the module docstring."""

    buckets: Mapping[Path, Mapping[ValueKey, tuple[Item, ...]]]
    fallback: tuple[Item, ...]

    def candidates(self, claims: Mapping[str, Any]) -> list[Item]:
        """The items that could match `claims`: the fallback plus one bucket per path."""
        found = list(self.fallback)
        for path, by_value in self.buckets.items():
            key = value_key(lookup_claim(claims, path))
            if key is not None:
                found.extend(by_value.get(key, ()))
        return found


def build_index(
    items: Iterable[Item], conditions_of: Callable[[Item], Sequence[Condition]]
) -> ClaimIndex[Item]:
    """File each item under its most shared exact-value condition (see the module docstring)."""
    listed = list(items)
    shared = Counter(path for item in listed for path in _indexable_paths(conditions_of(item)))
    buckets: defaultdict[Path, defaultdict[ValueKey, list[Item]]] = defaultdict(
        lambda: defaultdict(list)
    )
    fallback: list[Item] = []
    for item in listed:
        chosen = _choose(conditions_of(item), shared)
        if chosen is None:
            fallback.append(item)
            continue
        for key in chosen.keys:
            buckets[chosen.path][key].append(item)
    return ClaimIndex(buckets=_freeze(buckets), fallback=tuple(fallback))


def _indexable_paths(conditions: Sequence[Condition]) -> set[Path]:
    return {c.path for c in conditions if c.operator in _INDEXABLE}


def _choose(conditions: Sequence[Condition], shared: Counter[Path]) -> Condition | None:
    """The exact-value condition on the most shared path; `equals` before `oneOf`, then the
    first written, on ties."""
    indexable = [c for c in conditions if c.operator in _INDEXABLE]
    if not indexable:
        return None
    return max(indexable, key=lambda c: (shared[c.path], c.operator is Operator.EQUALS))


def _freeze(
    buckets: Mapping[Path, Mapping[ValueKey, list[Item]]],
) -> Mapping[Path, Mapping[ValueKey, tuple[Item, ...]]]:
    return MappingProxyType({
        path: MappingProxyType({key: tuple(items) for key, items in by_value.items()})
        for path, by_value in buckets.items()
    })
