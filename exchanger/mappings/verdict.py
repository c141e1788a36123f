"""One TrustMapping resource's verdict, and the `Accepted` condition that shows it: pure
functions of the object (and the file mappings' names, the known issuers and clusters, `now`).

Rules of this module:
- a resource is validated exactly as one document of a mapping file (`parse_mapping`);
  `status` is not part of the document: it is removed before validation;
- a resource whose name a mapping file already uses is refused (Invalid, naming the file):
  files win, so a resource can never shadow or replace a file mapping;
- a status change is None when the object already shows the verdict (status, reason,
  message, observedGeneration); lastTransitionTime moves only when the status flips, and the
  other conditions are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from exchanger.mappings.model import TrustMapping
from exchanger.mappings.validate import parse_mapping, where_of
from kubegate.grammar import shown
from kubegate.kubeconfig import rfc3339

ACCEPTED: Final = "Accepted"
REASON_ACCEPTED: Final = "Accepted"
REASON_INVALID: Final = "Invalid"
MAX_MESSAGE: Final = 4000


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One resource's outcome: its mapping when accepted, else the problems as a message."""

    mapping: TrustMapping | None
    message: str

    @property
    def accepted(self) -> bool:
        return self.mapping is not None


def resource_source(namespace: str, name: str) -> str:
    """How a resource is named in problems and in `TrustMapping.source`."""
    return f"TrustMapping {namespace}/{name}"


def judge(obj: Mapping[str, Any], *, namespace: str, file_sources: Mapping[str, str],
          issuers: frozenset[str] | None, clusters: frozenset[str] | None) -> Verdict:
    """Validate one resource as the loader validates one document of a file."""
    source = resource_source(namespace, object_name(obj))
    document = {key: value for key, value in obj.items() if key != "status"}
    mapping, problems = parse_mapping(document, source=source, issuers=issuers,
                                      clusters=clusters)
    if mapping is not None and mapping.name in file_sources:
        return Verdict(mapping=None, message=f"metadata.name: {mapping.name!r} is already "
                       f"a file mapping ({file_sources[mapping.name]}); files win")
    if mapping is None:
        prefix = f"{where_of(document, source)}: "
        message = "; ".join(problem.removeprefix(prefix).removeprefix(f"{source}: ")
                            for problem in problems)
        return Verdict(mapping=None, message=_truncate(message or "invalid"))
    return Verdict(mapping=mapping, message="in effect")


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def accepted_condition(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == ACCEPTED),
                None)


def status_change(obj: Mapping[str, Any], verdict: Verdict, now: float) -> dict[str, Any] | None:
    """The status to write so the object shows `verdict`, or None when it already does.
    lastTransitionTime moves only when the condition's status flips."""
    desired: dict[str, Any] = {
        "type": ACCEPTED,
        "status": "True" if verdict.accepted else "False",
        "reason": REASON_ACCEPTED if verdict.accepted else REASON_INVALID,
        "message": verdict.message,
        "observedGeneration": int(obj.get("metadata", {}).get("generation") or 0),
    }
    current = accepted_condition(obj)
    if current is not None and all(current.get(key) == value for key, value in desired.items()):
        return None
    same_status = current is not None and current.get("status") == desired["status"]
    previous_time = current.get("lastTransitionTime") if current is not None else None
    desired["lastTransitionTime"] = previous_time if same_status and previous_time \
        else rfc3339(now)
    others = [c for c in (obj.get("status") or {}).get("conditions") or []
              if isinstance(c, dict) and c.get("type") != ACCEPTED]
    return {"conditions": [*others, desired]}


def object_name(obj: Mapping[str, Any]) -> str:
    """metadata.name as the API server guarantees it (a DNS-1123 subdomain); a cut repr of
    anything else, so a hand-made object can still be named in a message."""
    metadata = obj.get("metadata")
    name = metadata.get("name", "") if isinstance(metadata, dict) else ""
    return name if isinstance(name, str) and len(name) <= 253 else shown(name)
