"""Where access requests and sessions are kept: the ports, and the errors every store raises.

Both stores (`sqlite_store`, `kube_store`) pass the same contract tests
(tests/unit/exchanger/test_access_store_contract.py and, against the real API server,
tests/integration/test_access_store_kube.py).

Rules:
- `create` stores a new value and returns it with its `version`; an existing id is
  `AlreadyExistsError`;
- `replace(value)` is compare-and-swap on `value.version`: if the stored one changed since
  that version was read, it raises `ConflictError` and changes nothing (two approvers racing
  never lose an approval: the loser reads again and re-applies its change);
- `get` returns None for an unknown id; `list` returns values in creation order;
- `watch(since)` yields (kind, value) for every change after `since` (a version; "" = from
  now), until `stop` is set; kinds: "added", "modified", "deleted";
- failures to reach the store are `UnavailableError` (kubegate.errors), never library errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

from exchanger.access.model import AccessRequest, Session, State
from kubegate.errors import Code, KubegateError

__all__ = ["AccessStore", "AlreadyExistsError", "ConflictError", "SessionStore"]


class ConflictError(KubegateError):
    """The stored value changed since it was read (compare-and-swap lost)."""

    def __init__(self, what: str) -> None:
        super().__init__("CONFLICT", f"{what} changed since it was read",
                         public_message="changed by someone else at the same time; try again",
                         code=Code.ABORTED)


class AlreadyExistsError(KubegateError):
    def __init__(self, what: str) -> None:
        super().__init__("ALREADY_EXISTS", f"{what} exists already",
                         public_message=f"{what} exists already",
                         code=Code.ALREADY_EXISTS)


class AccessStore(Protocol):
    def create(self, request: AccessRequest) -> AccessRequest: ...

    def get(self, request_id: str) -> AccessRequest | None: ...

    def list(self, *, states: frozenset[State] | None = None, mapping: str = "",
             requester_subject: str = "") -> list[AccessRequest]: ...

    def replace(self, request: AccessRequest) -> AccessRequest: ...

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, AccessRequest]]:
        ...


class SessionStore(Protocol):
    def create(self, session: Session) -> Session: ...

    def get(self, session_id: str) -> Session | None: ...

    def list_due(self, now: float) -> list[Session]:
        """The active sessions the reaper must look at by `now`: those whose `not_after` has
        come (`not_after <= now`) and those with a caller pod (which may be gone), in
        creation order. Never every active session: there are rate x lifetime of them."""
        ...

    def list(self, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]: ...

    def replace(self, session: Session) -> Session: ...
