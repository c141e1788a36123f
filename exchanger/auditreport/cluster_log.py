"""Kubernetes audit events (audit.k8s.io/v1 JSON lines) read as `ClusterEvent`s, streamed.

Rules of this module:
- reading is line by line, never a whole file: memory stays constant however large the log;
- files are read in the order given (pass a rotated set oldest first: `audit.log.2`,
  `audit.log.1`, `audit.log`); a file whose first bytes are gzip's magic (`1f 8b`) is read
  through gzip whatever its name (`audit-2026-01-02T03-04-05.000.log.gz`);
- a line is one `Event` (the log backend) or one `EventList` (what the webhook backend
  sends, and what a sink may store one per line);
- only the `ResponseComplete` and `Panic` stages are kept: `RequestReceived` and
  `ResponseStarted` are earlier stages of the same request (same `auditID`), without its
  final response code, and keeping them would count each request twice; except a request
  refused before authentication (401): the API server records only its `ResponseStarted`
  stage, with an empty user, and it is kept as such (`username` "");
- a line that is not JSON, is cut short (a crash mid-write, a truncated gzip member) or lacks
  the fields of an event becomes a `Problem` naming "file:line" and reading goes on; a file
  that cannot be opened is a `Problem` naming the file;
- `parse_event` is pure and shared with the live sink: it raises `EventFormatError` for an
  object that is no usable event and returns None for a stage the report does not keep.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from exchanger.auditreport.model import ClusterEvent, Problem
from kubegate.errors import Code, MessageError

__all__ = ["KEPT_STAGES", "EventFormatError", "iter_events", "iter_lines", "parse_event",
           "parse_events", "parse_time"]

KEPT_STAGES = frozenset({"ResponseComplete", "Panic"})
GZIP_MAGIC = b"\x1f\x8b"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
ISSUED_CREDENTIAL_ID = "authentication.kubernetes.io/issued-credential-id"
AUTHORIZATION_DECISION = "authorization.k8s.io/decision"
MAX_PROBLEM_CHARS = 200  # of a line quoted in a problem


class EventFormatError(MessageError, ValueError):
    """An object that is not a usable audit event; the message says what is wrong (for the
    live sink: the body it was in is a bad request)."""

    reason_name = "MALFORMED_AUDIT_EVENT"

    def __init__(self, message: str) -> None:
        super().__init__(message, code=Code.INVALID_ARGUMENT)


def parse_time(text: object) -> float:
    """Unix seconds of an RFC 3339 time (`2026-01-02T03:04:05.123456Z`, any fraction)."""
    if not isinstance(text, str) or not text:
        raise EventFormatError(f"expected an RFC 3339 time, got {str(text)[:40]!r}")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    head, dot, rest = text.partition(".")  # more fraction digits than fromisoformat takes
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits):]
    try:
        return datetime.fromisoformat(head + zone).timestamp() + (
            float("0." + digits) if dot and digits else 0.0)
    except ValueError as error:
        raise EventFormatError(f"expected an RFC 3339 time, got {text[:40]!r}") from error


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _first(value: object) -> str:
    found = _strings(value)
    return found[0] if found else ""


def _code(obj: Mapping[str, Any]) -> int:
    code = _mapping(obj, "responseStatus").get("code")
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def parse_event(obj: object, where: str = "") -> ClusterEvent | None:
    """The event in one audit.k8s.io `Event` object; None for a stage the report does not
    keep (RequestReceived, ResponseStarted). Raises `EventFormatError` for anything else
    that is not an event with a stage, a verb, a user and a received time."""
    if not isinstance(obj, Mapping):
        raise EventFormatError("not a JSON object")
    if obj.get("kind", "Event") != "Event":
        raise EventFormatError(f"kind {str(obj.get('kind'))[:40]!r} is not Event")
    stage = _text(obj, "stage")
    if not stage:
        raise EventFormatError("no stage")
    unauthenticated = stage == "ResponseStarted" and _code(obj) == 401
    if stage not in KEPT_STAGES and not unauthenticated:
        return None
    user = _mapping(obj, "user")
    verb, username = _text(obj, "verb"), _text(user, "username")
    if not verb or not (username or unauthenticated):
        raise EventFormatError("no verb or no user.username")
    ref, annotations = _mapping(obj, "objectRef"), _mapping(obj, "annotations")
    api_version = _text(ref, "apiVersion")
    return ClusterEvent(
        time=parse_time(obj.get("requestReceivedTimestamp")), audit_id=_text(obj, "auditID"),
        stage=stage, verb=verb, username=username, groups=_strings(user.get("groups")),
        credential_id=_first(_mapping(user, "extra").get(CREDENTIAL_ID)),
        api_group=_text(ref, "apiGroup") or (api_version.rpartition("/")[0]),
        resource=_text(ref, "resource"), subresource=_text(ref, "subresource"),
        namespace=_text(ref, "namespace"), name=_text(ref, "name"),
        request_uri=_text(obj, "requestURI"), code=_code(obj),
        user_agent=_text(obj, "userAgent"), source_ips=_strings(obj.get("sourceIPs")),
        impersonated_user=_text(_mapping(obj, "impersonatedUser"), "username"),
        issued_credential_id=_text(annotations, ISSUED_CREDENTIAL_ID),
        authorization=_text(annotations, AUTHORIZATION_DECISION), where=where)


def parse_events(obj: object, where: str = "") -> Iterator[ClusterEvent]:
    """The kept events of one `Event` or `EventList` object (the webhook backend's body);
    raises `EventFormatError` at the first item that is no event."""
    if isinstance(obj, Mapping) and obj.get("kind") == "EventList":
        items = obj.get("items")
        if not isinstance(items, list):
            raise EventFormatError("an EventList without items")
        for item in items:
            event = parse_event(item, where)
            if event is not None:
                yield event
        return
    event = parse_event(obj, where)
    if event is not None:
        yield event


def iter_lines(paths: Sequence[Path], problems: list[Problem]) -> Iterator[tuple[str, bytes]]:
    """("file:line", line without its end) for every line of `paths` in order, gzip or
    plain; an unreadable file or a cut gzip stream adds a `Problem` and reading goes on."""
    for path in paths:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            problems.append(Problem(where=str(path), message=f"cannot read: {error.strerror}"))
            continue
        number = 0
        try:
            magic = raw.read(2)
            raw.seek(0)
            stream: Iterable[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if (
                magic == GZIP_MAGIC) else raw
            for number, line in enumerate(stream, start=1):  # noqa: B007 - used after
                yield f"{path}:{number}", line.rstrip(b"\r\n")
        except (OSError, EOFError, zlib.error) as error:
            problems.append(Problem(where=f"{path}:{number + 1}",
                                    message=f"the file is cut short or corrupt: {error}"))
        finally:
            raw.close()


def _quote(line: bytes) -> str:
    text = line[:MAX_PROBLEM_CHARS].decode("utf-8", "replace")
    return text + ("..." if len(line) > MAX_PROBLEM_CHARS else "")


def iter_events(paths: Sequence[Path], problems: list[Problem]) -> Iterator[ClusterEvent]:
    """The kept events of Kubernetes audit logs, streamed in file order; every malformed or
    truncated line adds a `Problem` with its file and line."""
    for where, line in iter_lines(paths, problems):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            problems.append(Problem(where=where, message=f"not JSON (cut short?): "
                                                         f"{_quote(line)}"))
            continue
        items = obj.get("items") if isinstance(obj, dict) and obj.get(
            "kind") == "EventList" else None
        for item in items if isinstance(items, list) else [obj]:
            try:
                event = parse_event(item, where)
            except EventFormatError as error:
                problems.append(Problem(where=where, message=f"not an audit event: {error}"))
                continue
            if event is not None:
                yield event
