"""What each trust mapping lets its identities do (its radius), and what changes between two
sets of mappings: which identities gain or lose which rights.

Rules of this module:
- pure: mappings and their rights in (the caller reads rights through `rights.RightsFinder`),
  values out;
- a mapping is known by its name; a removed and an added mapping with the same issuer and
  the same conditions (in any order) are one mapping renamed, and their rights are compared;
- added: every right gained; removed: every right lost; a mapping kept: its rights compared,
  and when its issuer or conditions changed, "who" changed: the rights it keeps go to
  other identities, so a change of who with rights kept counts as a gain;
- a mapping whose who and rights are both the same is not a change (a grant may name another
  service account with the same rights);
- changes come sorted by mapping name; rights by namespace, resource, group and verb.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from exchanger.blast.identities import describe_identity
from exchanger.blast.rights import Right, Rights, RightsFinder, subject_of
from exchanger.mappings.conditions import Condition
from exchanger.mappings.model import TrustMapping


@dataclass(frozen=True, kw_only=True)
class Radius:
    """Who one mapping admits (in words) and what they may do on its cluster."""

    mapping: TrustMapping
    who: str
    rights: frozenset[Right]
    per_person: bool = False
    notes: tuple[str, ...] = ()


def radius_of(mapping: TrustMapping, finder: RightsFinder) -> Radius:
    """A mapping's radius, its rights read from the API server through `finder`."""
    subject = subject_of(mapping.grant)
    found: Rights = finder.rights(subject, mapping.grant.namespace)
    return Radius(mapping=mapping, who=describe_identity(mapping), rights=found.rights,
                  per_person=subject.per_person, notes=found.notes)


def radii(mappings: Iterable[TrustMapping],
          rights_of: Callable[[TrustMapping], Radius]) -> list[Radius]:
    return sorted((rights_of(mapping) for mapping in mappings), key=lambda r: r.mapping.name)


class ChangeKind(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    RENAMED = "renamed"


@dataclass(frozen=True, kw_only=True)
class MappingChange:
    """One mapping's change: `who` admits (now, or before for a removed mapping),
    `who_before` when who changed, and the rights gained, lost and kept."""

    kind: ChangeKind
    name: str
    who: str
    cluster: str
    gained: frozenset[Right] = frozenset()
    lost: frozenset[Right] = frozenset()
    kept: frozenset[Right] = frozenset()
    who_before: str | None = None
    old_name: str | None = None
    per_person: bool = False
    notes: tuple[str, ...] = ()

    @property
    def gains(self) -> bool:
        """Whether anyone can do something they could not before."""
        return bool(self.gained) or (self.who_before is not None and bool(self.kept))


def _identity(mapping: TrustMapping) -> tuple[str, frozenset[Condition]]:
    return mapping.issuer, frozenset(mapping.conditions)


def diff_radii(old: Sequence[Radius], new: Sequence[Radius]) -> list[MappingChange]:
    """The changes from the `old` radii to the `new` ones."""
    before = {radius.mapping.name: radius for radius in old}
    after = {radius.mapping.name: radius for radius in new}
    removed = [before[name] for name in sorted(before.keys() - after.keys())]
    added = [after[name] for name in sorted(after.keys() - before.keys())]
    changes = [change for name in sorted(before.keys() & after.keys())
               if (change := _compare(before[name], after[name])) is not None]
    for radius in added:
        twin = next((r for r in removed if _identity(r.mapping) == _identity(radius.mapping)),
                    None)
        if twin is None:
            changes.append(_whole(ChangeKind.ADDED, radius))
            continue
        removed.remove(twin)
        changes.append(_between(ChangeKind.RENAMED, twin, radius))
    changes += [_whole(ChangeKind.REMOVED, radius) for radius in removed]
    return sorted(changes, key=lambda change: change.name)


def _whole(kind: ChangeKind, radius: Radius) -> MappingChange:
    added = kind is ChangeKind.ADDED
    return MappingChange(kind=kind, name=radius.mapping.name, who=radius.who,
                         cluster=radius.mapping.grant.cluster, per_person=radius.per_person,
                         notes=radius.notes, gained=radius.rights if added else frozenset(),
                         lost=frozenset() if added else radius.rights)


def _between(kind: ChangeKind, old: Radius, new: Radius) -> MappingChange:
    who_changed = _identity(old.mapping) != _identity(new.mapping)
    return MappingChange(
        kind=kind, name=new.mapping.name, who=new.who, cluster=new.mapping.grant.cluster,
        gained=new.rights - old.rights, lost=old.rights - new.rights,
        kept=new.rights & old.rights, who_before=old.who if who_changed else None,
        old_name=old.mapping.name if kind is ChangeKind.RENAMED else None,
        per_person=new.per_person, notes=tuple(dict.fromkeys(old.notes + new.notes)))


def _compare(old: Radius, new: Radius) -> MappingChange | None:
    change = _between(ChangeKind.CHANGED, old, new)
    if change.who_before is None and not change.gained and not change.lost:
        return None
    return change
