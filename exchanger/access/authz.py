"""Who may see and act on access requests and sessions: pure decisions over a verified
identity, the mapping named by the request or session, and the config's admins.

| who                                    | requests                      | sessions          |
|----------------------------------------|-------------------------------|-------------------|
| the requester / the session's caller   | see, revoke their own         | see, revoke own   |
| an approver of the mapping             | see, approve, deny, revoke    | see, revoke       |
| an admin (`access.admins`)             | everything                    | everything        |

Rules of this module:
- an identity is named by (configured issuer name, `sub`); `who` never decides anything;
- an approver is one whose token meets the mapping's `approval.approvers` *now*: a mapping
  that is gone or has no approval section has no approvers (only the requester and admins
  still see its requests);
- approve and deny are decided by `lifecycle` (self-approval, counts); this module only says
  who may see a value and who may revoke it;
- a refusal never says whether the id exists: `hidden` is the one error for "no such id"
  and "not yours to see", and only a caller who could see every id (an admin) is told
  NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exchanger.access.model import AccessRequest, Requester, Session
from exchanger.access.settings import AccessAdmin
from exchanger.identity import Identity
from exchanger.mappings.model import TrustMapping
from kubegate.errors import Code, KubegateError, PermissionDeniedError

__all__ = ["NOT_VISIBLE", "Viewer", "hidden", "is_admin", "is_approver", "not_found"]

NOT_VISIBLE = "NOT_VISIBLE"
MappingLookup = Callable[[str], TrustMapping | None]


def is_admin(identity: Identity, admins: tuple[AccessAdmin, ...]) -> bool:
    """Whether `identity` meets one of the configured admin rules."""
    return any(admin.issuer == identity.issuer
               and all(c.holds(identity.claims) for c in admin.conditions) for admin in admins)


def is_approver(identity: Identity, mapping: TrustMapping | None) -> bool:
    """Whether `identity` meets `mapping`'s approval.approvers (False without one)."""
    if mapping is None or mapping.approval is None:
        return False
    return mapping.approval.approvers.admit(identity.issuer, identity.claims)


def _same(identity: Identity, person: Requester) -> bool:
    return (identity.issuer, identity.subject) == (person.issuer, person.subject)


def hidden(kind: str, value_id: str) -> PermissionDeniedError:
    """The refusal for an id the caller may not see, or that does not exist."""
    return PermissionDeniedError(
        NOT_VISIBLE, f"{kind} {value_id}: not visible to this identity (or no such id)",
        public_message=f"no {kind} {value_id} that you may see")


def not_found(kind: str, value_id: str) -> KubegateError:
    """For a caller who could see it: the id does not exist."""
    return KubegateError("NOT_FOUND", f"no {kind} {value_id}",
                         public_message=f"no {kind} {value_id}", code=Code.NOT_FOUND)


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """One caller's rights, decided once per call."""

    identity: Identity
    admin: bool
    mapping_of: MappingLookup

    def approves(self, mapping: str) -> bool:
        return self.admin or is_approver(self.identity, self.mapping_of(mapping))

    def sees_request(self, request: AccessRequest) -> bool:
        """Its requester, approvers of its mapping, admins (and so may revoke it)."""
        return _same(self.identity, request.requester) or self.approves(request.mapping)

    def sees_session(self, session: Session) -> bool:
        """Its caller, approvers of its mapping, admins (and so may revoke it)."""
        return _same(self.identity, session.caller) or self.approves(session.mapping)

    def owns(self, request: AccessRequest) -> bool:
        return _same(self.identity, request.requester)

    def missing(self, kind: str, value_id: str) -> KubegateError:
        """The error for an id that does not exist: NOT_FOUND only for an admin."""
        return not_found(kind, value_id) if self.admin else hidden(kind, value_id)
