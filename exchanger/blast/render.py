"""Changes and radii as text (one line per change, the default), markdown (a pull-request
comment) and JSON.

Rules of this module:
- pure: values in, a string out;
- every change has at least one line: a gained or lost right each, and a line for a change
  of who or a rename; an added or removed mapping without rights beyond what any
  authenticated user has says so;
- sensitive rights (`rights.sensitivity`) carry their reason in every format;
- a radius taken "per person" says so next to who.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from exchanger.blast.diff import ChangeKind, MappingChange, Radius
from exchanger.blast.rights import Right, sensitivity

FORMATS: Final = ("text", "markdown", "json")
HEADING: Final = "kubegate: blast radius of trust mappings"
NOTHING: Final = "nothing beyond what any authenticated user may do"
_MARKS: Final = {True: "➕", False: "➖"}
_WHY: Final = {ChangeKind.ADDED: "new mapping", ChangeKind.REMOVED: "mapping removed",
               ChangeKind.CHANGED: "mapping changed", ChangeKind.RENAMED: "mapping renamed"}


def describe_right(right: Right) -> str:
    """`create pods/exec in namespace web`, `list nodes cluster-wide`, `get /metrics`."""
    verb = "do anything to" if right.verb == "*" else right.verb
    if right.resource.startswith("/"):
        return f"{verb} {right.resource}"
    resource = "any resource" if right.resource == "*" else right.resource
    if right.group == "*":
        resource += " of any API group"
    elif right.group:
        resource += f".{right.group}"
    named = f" named {', '.join(right.names)}" if right.names else ""
    where = f"in namespace {right.namespace}" if right.namespace else "cluster-wide"
    return f"{verb} {resource}{named} {where}"


def _sorted(rights: frozenset[Right]) -> list[Right]:
    return sorted(rights, key=Right.sort_key)


def _who(who: str, per_person: bool) -> str:
    return f"{who} (per person)" if per_person else who


def _flag(right: Right) -> str:
    why = sensitivity(right)
    return f" [sensitive: {why}]" if why else ""


# -- text ----------------------------------------------------------------------------------


def changes_text(changes: Sequence[MappingChange]) -> str:
    """One line per change."""
    if not changes:
        return "no change in who may do what\n"
    return "".join(line + "\n" for change in changes for line in _change_lines(change))


def _change_lines(change: MappingChange) -> list[str]:
    who = _who(change.who, change.per_person)
    tail = f" (mapping {change.name}, {_WHY[change.kind]})"
    lines = []
    if change.old_name is not None:
        lines.append(f"~ {change.name}: renamed from {change.old_name}")
    if change.who_before is not None:
        lines.append(f"~ {change.name}: who changed: was {change.who_before}; now {who}"
                     f" ({len(change.kept)} right(s) kept go to them)")
    lines += [f"+ {who} can now {describe_right(r)}{tail}{_flag(r)}"
              for r in _sorted(change.gained)]
    lines += [f"- {who} can no longer {describe_right(r)}{tail}{_flag(r)}"
              for r in _sorted(change.lost)]
    if not lines:
        sign = "-" if change.kind is ChangeKind.REMOVED else "+"
        lines.append(f"{sign} {who}: {NOTHING}{tail}")
    lines += [f"! {change.name}: {note}" for note in change.notes]
    return lines


def radii_text(radii: Sequence[Radius]) -> str:
    """One line per right of each mapping."""
    lines = []
    for radius in radii:
        who = _who(radius.who, radius.per_person)
        tail = f" (mapping {radius.mapping.name}, cluster {radius.mapping.grant.cluster})"
        rights = _sorted(radius.rights)
        lines += [f"{who} can {describe_right(r)}{tail}{_flag(r)}" for r in rights]
        if not rights:
            lines.append(f"{who} can do {NOTHING}{tail}")
        lines += [f"! {radius.mapping.name}: {note}" for note in radius.notes]
    return "".join(line + "\n" for line in lines) or "no mappings\n"


# -- markdown ------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(rights: frozenset[Right], gained: bool) -> list[str]:
    rows = []
    for right in _sorted(rights):
        why = sensitivity(right)
        rows.append(f"| {_MARKS[gained]} | {_cell(describe_right(right))} | "
                    f"{'⚠️ **' + why + '**' if why else ''} |")
    return rows


def changes_markdown(changes: Sequence[MappingChange]) -> str:
    """A heading, then per mapping what changed and a table of rights gained and lost."""
    gained = sum(len(c.gained) for c in changes)
    flagged = sum(1 for c in changes for r in c.gained if sensitivity(r))
    lines = [f"## {HEADING}", ""]
    if not changes:
        return "\n".join([*lines, "No change in who may do what.", ""])
    lines += [f"{len(changes)} mapping(s) changed: {gained} right(s) gained "
              f"({flagged} sensitive), {sum(len(c.lost) for c in changes)} lost.", ""]
    for change in changes:
        lines += _change_markdown(change)
    return "\n".join(lines)


def _change_markdown(change: MappingChange) -> list[str]:
    lines = [f"### `{change.name}`: {_WHY[change.kind]}", ""]
    if change.old_name is not None:
        lines.append(f"Renamed from `{change.old_name}`.")
    if change.who_before is not None:
        lines.append(f"**Who changed:** was {_cell(change.who_before)}; now "
                     f"{_cell(_who(change.who, change.per_person))} "
                     f"({len(change.kept)} right(s) kept go to them).")
    else:
        lines.append(f"**Who:** {_cell(_who(change.who, change.per_person))} "
                     f"(cluster `{change.cluster}`)")
    lines.append("")
    rows = _rows(change.gained, True) + _rows(change.lost, False)
    if rows:
        lines += ["| | right | sensitive |", "|---|---|---|", *rows]
    elif change.kind in (ChangeKind.ADDED, ChangeKind.REMOVED):
        lines.append(f"Rights: {NOTHING}.")
    lines += [f"> {_cell(note)}" for note in change.notes]
    return [*lines, ""]


def radii_markdown(radii: Sequence[Radius]) -> str:
    """A heading, then per mapping who and a table of its rights."""
    lines = [f"## {HEADING}", ""]
    for radius in radii:
        lines += [f"### `{radius.mapping.name}`", "",
                  f"**Who:** {_cell(_who(radius.who, radius.per_person))} "
                  f"(cluster `{radius.mapping.grant.cluster}`)", ""]
        rows = _rows(radius.rights, True)
        lines += (["| | right | sensitive |", "|---|---|---|", *rows] if rows
                  else [f"Rights: {NOTHING}."])
        lines += [f"> {_cell(note)}" for note in radius.notes] + [""]
    return "\n".join(lines)


# -- JSON ----------------------------------------------------------------------------------


def right_json(right: Right) -> dict[str, Any]:
    return {"verb": right.verb, "group": right.group, "resource": right.resource,
            "namespace": right.namespace, "names": list(right.names),
            "sensitive": sensitivity(right), "words": describe_right(right)}


def changes_json(changes: Sequence[MappingChange]) -> str:
    document = {"gains": any(c.gains for c in changes), "changes": [{
        "mapping": c.name, "change": c.kind.value, "oldName": c.old_name,
        "who": c.who, "whoBefore": c.who_before, "perPerson": c.per_person,
        "cluster": c.cluster, "gained": [right_json(r) for r in _sorted(c.gained)],
        "lost": [right_json(r) for r in _sorted(c.lost)], "kept": len(c.kept),
        "notes": list(c.notes)} for c in changes]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def radii_json(radii: Sequence[Radius]) -> str:
    document = {"mappings": [{
        "mapping": r.mapping.name, "who": r.who, "perPerson": r.per_person,
        "cluster": r.mapping.grant.cluster, "namespace": r.mapping.grant.namespace,
        "rights": [right_json(right) for right in _sorted(r.rights)],
        "notes": list(r.notes)} for r in radii]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_changes(changes: Sequence[MappingChange], form: str) -> str:
    return {"text": changes_text, "markdown": changes_markdown,
            "json": changes_json}[form](changes)


def render_radii(radii: Sequence[Radius], form: str) -> str:
    return {"text": radii_text, "markdown": radii_markdown, "json": radii_json}[form](radii)
