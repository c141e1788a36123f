"""What trust mappings grant, as the scan needs it: the namespaces, service accounts, users
and groups a credential from the broker can be, and the file each mapping came from.

Rules of this module:
- mappings are read with the exchanger's own loader (`exchanger.mappings.load`): what the
  exchanger would refuse is a problem, never a target;
- a `user` taken from a claim is per person: the scan cannot ask about every person, so it
  asks about the grant's constant groups (with `system:authenticated`) and says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from exchanger.mappings.load import each_valid, mapping_files, read_text
from exchanger.mappings.model import TrustMapping
from exchanger.mappings.subjects import ClaimReference
from exchanger.scan.model import ObjectRef
from exchanger.scan.subjects import AUTHENTICATED, Subject


@dataclass(frozen=True, kw_only=True)
class Target:
    """One mapping's grant. Exactly one of `service_account` and a user (`user`, or
    `user_claim` when it is per person)."""

    mapping: str
    file: str  # "" for a TrustMapping resource
    namespace: str
    service_account: str = ""
    user: str = ""
    user_claim: str = ""
    groups: tuple[str, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind="TrustMapping", name=self.mapping)

    @property
    def subject(self) -> Subject | None:
        """The ServiceAccount subject of a tokenRequest grant."""
        if not self.service_account:
            return None
        return Subject.service_account(self.namespace, self.service_account)

    @property
    def asked_user(self) -> str:
        return self.subject.user if self.subject else self.user

    @property
    def asked_groups(self) -> tuple[str, ...]:
        if self.subject is not None:
            return self.subject.groups
        return tuple(dict.fromkeys((*self.groups, AUTHENTICATED)))

    def describe(self) -> str:
        if self.subject is not None:
            return str(self.subject)
        who = (f"User {self.user}" if self.user else
               f"a per-person user (from claim {self.user_claim})")
        return who + (f" with groups {', '.join(self.groups)}" if self.groups else "")


def target_of(mapping: TrustMapping, file: str) -> Target:
    grant = mapping.grant
    user, claim = "", ""
    if isinstance(grant.user, ClaimReference):
        claim = grant.user.label
    elif grant.user is not None:
        user = grant.user
    return Target(mapping=mapping.name, file=file, namespace=grant.namespace,
                  service_account=grant.service_account or "", user=user, user_claim=claim,
                  groups=tuple(g for g in grant.groups if isinstance(g, str)))


def load_targets(path: Path, known_issuers: set[str] | None = None,
                 known_clusters: set[str] | None = None) -> tuple[list[Target], list[str]]:
    """The targets of a mapping file or folder, and the problems of the documents left out.
    Raises OSError when `path` cannot be read."""
    files = mapping_files(path) if path.is_dir() else [path]
    targets: list[Target] = []
    problems: list[str] = []
    for file in files:
        mappings, found = each_valid([(str(file), read_text(file))], known_issuers,
                                     known_clusters)
        targets.extend(target_of(m, str(file)) for m in mappings)
        problems.extend(found)
    return targets, problems


def pipeline_namespaces(targets: Iterable[Target]) -> list[str]:
    """The namespaces mappings grant into."""
    return sorted({t.namespace for t in targets})
