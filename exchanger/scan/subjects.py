"""RBAC subjects, and who they are to a SubjectAccessReview.

Rules of this module:
- a ServiceAccount is asked about as Kubernetes authenticates it: user
  `system:serviceaccount:NS:NAME`, groups `system:serviceaccounts`,
  `system:serviceaccounts:NS` and `system:authenticated`; a User as itself with
  `system:authenticated`; a Group as that group alone (plus `system:authenticated`);
- system components (system:masters, the control plane's own users, nodes, kube-system's
  service accounts) are not findings: the cluster cannot run without them;
- the exchanger is the identity the config's cluster credentials authenticate as, else the
  ServiceAccount `deploy/base` creates (`kubegate/kubegate-exchanger`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
AUTHENTICATED: Final = "system:authenticated"

DEPLOY_NAMESPACE: Final = "kubegate"
DEPLOY_SERVICE_ACCOUNT: Final = "kubegate-exchanger"
"""What deploy/base/serviceaccount.yaml creates (a unit test keeps them equal)."""

_SYSTEM_USERS: Final = frozenset({
    "system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy",
    "system:apiserver", "system:volume-scheduler", "system:kube-aggregator",
})
_SYSTEM_USER_PREFIXES: Final = ("system:node:", SERVICE_ACCOUNT_PREFIX + "kube-system:")
_SYSTEM_GROUPS: Final = frozenset({"system:masters", "system:nodes",
                                   "system:serviceaccounts:kube-system"})


@dataclass(frozen=True, kw_only=True, order=True)
class Subject:
    """An RBAC subject: kind User, Group or ServiceAccount (namespace only for the last)."""

    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def from_rbac(cls, entry: dict[str, Any], binding_namespace: str = "") -> Subject:
        kind = str(entry.get("kind", ""))
        namespace = str(entry.get("namespace") or binding_namespace) \
            if kind == "ServiceAccount" else ""
        return cls(kind=kind, name=str(entry.get("name", "")), namespace=namespace)

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Subject:
        return cls(kind="ServiceAccount", name=name, namespace=namespace)

    @property
    def user(self) -> str:
        """The user name a review asks about ("" for a group)."""
        if self.kind == "ServiceAccount":
            return f"{SERVICE_ACCOUNT_PREFIX}{self.namespace}:{self.name}"
        return self.name if self.kind == "User" else ""

    @property
    def groups(self) -> tuple[str, ...]:
        if self.kind == "ServiceAccount":
            return ("system:serviceaccounts", f"system:serviceaccounts:{self.namespace}",
                    AUTHENTICATED)
        if self.kind == "Group":
            return (self.name,) if self.name == AUTHENTICATED else (self.name, AUTHENTICATED)
        return (AUTHENTICATED,)

    @property
    def person(self) -> bool:
        """A User or a Group: people (or whoever the authenticator says), not a workload."""
        return self.kind in ("User", "Group") and not self.user.startswith(
            SERVICE_ACCOUNT_PREFIX)

    def __str__(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


def is_system(subject: Subject) -> bool:
    """Whether `subject` is a component the cluster runs on (never a finding)."""
    if subject.kind == "Group":
        return subject.name in _SYSTEM_GROUPS
    if subject.kind == "ServiceAccount":
        return subject.namespace == "kube-system"
    return subject.name in _SYSTEM_USERS or subject.name.startswith(_SYSTEM_USER_PREFIXES)


@dataclass(frozen=True, kw_only=True)
class Exchanger:
    """The user names the exchanger authenticates as on the scanned cluster."""

    users: frozenset[str]

    @classmethod
    def deployed(cls) -> Exchanger:
        return cls(users=frozenset({Subject.service_account(
            DEPLOY_NAMESPACE, DEPLOY_SERVICE_ACCOUNT).user}))

    def is_exchanger(self, subject: Subject) -> bool:
        return subject.kind != "Group" and subject.user in self.users


def excluded(subject: Subject, exchanger: Exchanger) -> bool:
    """Whether a privilege held by `subject` is expected (the exchanger, a system part)."""
    return is_system(subject) or exchanger.is_exchanger(subject)
