"""`kubegate audit sink`: the API server's audit webhook backend, joined live with kubegate's
sessions. `POST /audit` takes an `audit.k8s.io/v1` `EventList`; every event becomes one joined
record (a JSON line) in the output file; `GET /metrics` shows the counts.

Rules of this module:
- an event is acknowledged only once its record is durable: the records of one POST are one
  `os.write` on an `O_APPEND` descriptor, then `os.fsync`, then 200. A write or fsync that
  fails answers 503 (the API server retries or counts the loss itself) and leaves the file as
  it was: a short write is cut back; if even that fails, or an fsync failed (the state of the
  file is then unknown), every later POST is 503 until the sink is restarted; an incomplete
  last line found when the file is opened (a crash between write and fsync, so never
  acknowledged) is cut off;
- a body that is not an `EventList` of `audit.k8s.io/v1` is 400 and nothing is written; the
  body is bounded (`MAX_BODY`: over it, 413 before a byte of the body is kept); an item the
  reader cannot read is still written, as a `problem` record holding the item;
- kubegate's own audit logs are tailed: each POST reads only what the files gained since the
  last one (whole lines; a file that shrank or was replaced is read from its start again);
- the same event delivered twice (an answer lost, a retry after a 503) is written once and
  counted once: the last `SEEN` (auditID, stage) keys are remembered, with what they triggered;
- records hold what the API server sent at its policy's level and kubegate's ids; never a
  token (the exchanger never logs one, and a Metadata-level policy sends none);
- without a client CA anyone who reaches the port can write records: give one (`client_ca`,
  the CA of the API server's `users[].user.client-certificate`) outside a test.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest

from exchanger.auditreport import kubegate_log
from exchanger.auditreport.bypass import Allowlist, BypassDetector, approved_requests_of
from exchanger.auditreport.cluster_log import EventFormatError, parse_event
from exchanger.auditreport.join import join_event
from exchanger.auditreport.kubegate_log import SessionIndex
from exchanger.auditreport.model import BrokeredSession, JoinedAction
from exchanger.oauth.errors import BodyTooLargeError, RequestTimeoutError
from exchanger.oauth.server import TokenServer, tls_context
from exchanger.oauth.wire import Answer, Request
from kubegate.addresses import HostPort, parse_host_port
from kubegate.errors import ConfigError, KubegateError, UnavailableError
from kubegate.http.errors import HeadTooLargeError, HttpError

__all__ = ["AUDIT_PATH", "MAX_BODY", "AuditSink", "BadEventListError", "DurableFile", "LogTail",
           "SinkEndpoint", "SinkMetrics", "SinkWriteError", "TailedSessions", "joined_record"]

log = logging.getLogger(__name__)

AUDIT_PATH: Final = "/audit"
METRICS_PATH: Final = "/metrics"
MAX_BODY: Final = 16 * 1024 * 1024  # the API server splits batches at 10 MiB by default
SEEN: Final = 20_000  # (auditID, stage) keys: far more than a batch (400) and its retries
TAIL_CHUNK: Final = 64 * 1024
API_VERSION: Final = "audit.k8s.io/v1"


class SinkWriteError(UnavailableError):
    """The output file did not take the records: the POST is refused (503)."""

    def __init__(self, detail: str) -> None:
        super().__init__("AUDIT_SINK_UNAVAILABLE", detail)


class BadEventListError(KubegateError):
    """The body is no EventList (400)."""

    def __init__(self, message: str) -> None:
        super().__init__("AUDIT_SINK_BAD_BODY", message, public_message=message)


# -- ports ----------------------------------------------------------------------------------

class Sessions(Protocol):
    """kubegate's sessions as far as its logs go: `refresh` reads what they gained."""

    def refresh(self) -> SessionIndex: ...


class Detector(Protocol):
    """What the sink needs of the bypass detector (`bypass.BypassDetector`)."""

    def observe(self, action: JoinedAction) -> None: ...

    def counts(self) -> Mapping[str, int]: ...


DetectorFactory = Callable[[SessionIndex], Detector]
"""A detector for the sessions known so far; the sink makes a new one when they change (it
keeps no findings: its per-kind counts are the metrics, counted per event)."""


class Appender(Protocol):
    def append(self, data: bytes) -> None: ...  # durable on return, else SinkWriteError


# -- the output file ------------------------------------------------------------------------

class DurableFile:
    """An append-only file (0600): `append` returns once the bytes are on disk. An incomplete
    last line found at open (a crash between write and fsync: never acknowledged) is cut off,
    so the next record starts on a line of its own. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._broken = ""
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise SinkWriteError(f"cannot open {path}: {error.strerror}") from error
        try:
            _cut_torn_tail(self._fd, path)
        except OSError as error:
            os.close(self._fd)
            raise SinkWriteError(f"cannot repair {path}: {error.strerror}") from error

    def append(self, data: bytes) -> None:
        with self._lock:
            if self._broken:
                raise SinkWriteError(f"{self.path} is unusable: {self._broken}")
            size = -1
            try:
                size = _size(self._fd)
                written = os.write(self._fd, data)
                if written != len(data):
                    raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
            except OSError as error:
                self._undo(size, error)
                raise SinkWriteError(f"cannot write {self.path}: {error.strerror}") from error
            try:
                os.fsync(self._fd)
            except OSError as error:
                self._broken = f"fsync failed: {error.strerror}"
                raise SinkWriteError(f"cannot write {self.path}: {error.strerror}") from error

    def _undo(self, size: int, cause: OSError) -> None:
        if size < 0:
            return  # not a regular file (or unknown size): nothing to cut back
        try:
            os.ftruncate(self._fd, size)
        except OSError as error:
            self._broken = f"{cause.strerror}, then could not truncate: {error.strerror}"
            log.error("audit sink output %s: %s; restart after checking it", self.path,
                      self._broken)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _size(fd: int) -> int:
    info = os.fstat(fd)
    return info.st_size if stat.S_ISREG(info.st_mode) else -1


def _cut_torn_tail(fd: int, path: Path) -> None:
    size = end = _size(fd)
    while end > 0:
        chunk = os.pread(fd, min(end, TAIL_CHUNK), end - min(end, TAIL_CHUNK))
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = end - len(chunk) + newline + 1
            break
        end -= len(chunk)
    if end >= 0 and end != size:
        os.ftruncate(fd, end)
        os.fsync(fd)
        log.warning("audit sink output %s ended in an incomplete line (%d bytes, never "
                    "acknowledged): cut off", path, size - end)


# -- kubegate's logs, tailed ----------------------------------------------------------------

@dataclasses.dataclass
class _Position:
    inode: int = -1
    offset: int = 0
    line: int = 0


class LogTail:
    """The whole lines files gained since the last call, as (object, "file:line")."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._positions = {path: _Position() for path in paths}

    def new_lines(self, problems: list[str]) -> Iterator[tuple[Mapping[str, Any], str]]:
        for path, position in self._positions.items():
            yield from self._read(path, position, problems)

    def _read(self, path: Path, at: _Position, problems: list[str]
              ) -> Iterator[tuple[Mapping[str, Any], str]]:
        try:
            with path.open("rb") as file:
                info = os.fstat(file.fileno())
                if info.st_ino != at.inode or info.st_size < at.offset:
                    at.inode, at.offset, at.line = info.st_ino, 0, 0  # new or cut: restart
                file.seek(at.offset)
                for raw in file:
                    if not raw.endswith(b"\n"):
                        return  # being written: read it whole next time
                    at.offset += len(raw)
                    at.line += 1
                    value = _json_object(raw)
                    if value is None:
                        problems.append(f"{path}:{at.line}: not a JSON object")
                    else:
                        yield value, f"{path}:{at.line}"
        except FileNotFoundError:
            return  # not written yet
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror}")


def _json_object(raw: bytes) -> Mapping[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class TailedSessions:
    """kubegate's sessions from its live audit logs (plain files, not rotated ones): each
    `refresh` reads only the lines they gained, and rebuilds the index when there were."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._tail = LogTail(paths)
        # kubegate_log's own reading state, fed line by line (see read_sessions)
        self._reading = kubegate_log._Reading(sessions={}, reasons={}, ended={})
        self._index = SessionIndex()

    def refresh(self) -> SessionIndex:
        problems: list[str] = []
        lines = 0
        for value, where in self._tail.new_lines(problems):
            lines += 1
            try:
                kubegate_log._take(value, where, self._reading)
            except ValueError as error:
                problems.append(f"{where}: not a kubegate audit line: {error}")
        if lines:
            self._index = SessionIndex(list(kubegate_log._complete(self._reading)))
        for problem in problems:
            log.warning("audit sink: %s", problem)
        return self._index


# -- records --------------------------------------------------------------------------------

def joined_record(action: JoinedAction, bypass: Sequence[str]) -> dict[str, Any]:
    """One output line: the event's fields, its session (or None), privileged, bypass."""
    event = {key: list(value) if isinstance(value, tuple) else value
             for key, value in dataclasses.asdict(action.event).items() if key != "where"}
    session = action.session
    return {**event, "joined": session is not None,
            "session": None if session is None else _session_fields(session),
            "privileged": action.privileged, "bypass": sorted(bypass)}


def _session_fields(session: BrokeredSession) -> dict[str, Any]:
    return {"session_id": session.session_id, "token_id": session.token_id,
            "mapping": session.mapping, "issuer": session.issuer, "subject": session.subject,
            "who": session.who, "cluster": session.cluster, "namespace": session.namespace,
            "service_account": session.service_account, "user": session.user,
            "access_request": session.access_request, "ci": dict(session.ci)}


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
            + "\n").encode("ascii")


# -- metrics --------------------------------------------------------------------------------

class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events = Counter(
            "kubegate_audit_sink_events_total", "Audit events written by the sink, by whether "
            "they joined a kubegate session.", ["joined"], registry=self.registry)
        self.bypass = Counter(
            "kubegate_audit_bypass_events_total", "Audit events that triggered a bypass "
            "finding, by kind.", ["kind"], registry=self.registry)
        self.write_failures = Counter(
            "kubegate_audit_sink_write_failures_total", "POSTs refused (503) because the "
            "output file did not take their records.", registry=self.registry)
        self.unreadable = Counter(
            "kubegate_audit_sink_unreadable_events_total", "Events written as problem records "
            "(the reader could not read them).", registry=self.registry)
        for joined in ("true", "false"):
            self.events.labels(joined=joined)


# -- the endpoint ---------------------------------------------------------------------------

@dataclasses.dataclass
class _Pending:
    line: bytes
    joined: bool | None  # None: a problem record
    bypass: tuple[str, ...]
    acknowledged: bool = False


class SinkEndpoint:
    """The routes: a whole `Request` in, an `Answer` out. One POST at a time."""

    def __init__(self, *, out: Appender, sessions: Sessions, detector_for: DetectorFactory,
                 metrics: SinkMetrics) -> None:
        self._out, self._sessions, self._metrics = out, sessions, metrics
        self._detector_for = detector_for
        self._index = SessionIndex()
        self._detector = detector_for(self._index)
        self._seen: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._lock = threading.Lock()

    def handle(self, request: Request, peer: str = "") -> Answer:
        if request.path == METRICS_PATH and request.method == "GET":
            return Answer(status=200, body=generate_latest(self._metrics.registry),
                          content_type="text/plain; version=0.0.4; charset=utf-8")
        if request.path != AUDIT_PATH:
            return _json(404, {"error": "no such endpoint"})
        if request.method != "POST":
            return _json(405, {"error": "POST only"}, (("Allow", "POST"),))
        try:
            items = _event_list(request.body)
            with self._lock:
                written = self._take(items)
        except BadEventListError as error:
            return _json(400, {"error": error.public_message})
        except SinkWriteError as error:
            log.error("audit sink: events from %s refused: %s", peer, error.detail)
            self._metrics.write_failures.inc()
            return _json(503, {"error": "the events could not be recorded; retry"})
        return _json(200, {"written": written})

    def _take(self, items: Sequence[Any]) -> int:
        """Write the records of `items` not yet acknowledged, durably; how many were."""
        index = self._sessions.refresh()
        if index is not self._index:  # new sessions, maybe new granted accounts
            self._index, self._detector = index, self._detector_for(index)
        pending = [self._pending(index, item, number) for number, item in enumerate(items)]
        fresh = list({id(p): p for p in pending if p is not None and not p.acknowledged}
                     .values())
        if fresh:
            self._out.append(b"".join(p.line for p in fresh))
        for entry in fresh:
            entry.acknowledged, entry.line = True, b""  # only its key is remembered now
            self._count(entry)
        return len(fresh)

    def _pending(self, index: SessionIndex, item: Any, number: int) -> _Pending | None:
        key = _key(item)
        if key is not None and key in self._seen:
            self._seen.move_to_end(key)
            return self._seen[key]
        entry = self._record(index, item, number)
        if key is not None and entry is not None:
            self._seen[key] = entry
            while len(self._seen) > SEEN:
                self._seen.popitem(last=False)
        return entry

    def _record(self, index: SessionIndex, item: Any, number: int) -> _Pending | None:
        """The record of one item; None for an earlier stage of a request (its
        ResponseComplete is the record)."""
        try:
            event = parse_event(item, f"items[{number}]")
        except EventFormatError as error:
            problem = {"problem": f"not an audit event: {error}", "event": item}
            return _Pending(line=_line(problem), joined=None, bypass=())
        if event is None:
            return None
        action = join_event(index, event)
        bypass = self._observe(action)
        return _Pending(line=_line(joined_record(action, bypass)),
                        joined=action.session is not None, bypass=bypass)

    def _observe(self, action: JoinedAction) -> tuple[str, ...]:
        """The bypass kinds this action added to the detector's counts."""
        before = dict(self._detector.counts())
        self._detector.observe(action)
        return tuple(sorted(kind for kind, count in self._detector.counts().items()
                            if count > before.get(kind, 0)))

    def _count(self, entry: _Pending) -> None:
        if entry.joined is None:
            self._metrics.unreadable.inc()
            return
        self._metrics.events.labels(joined="true" if entry.joined else "false").inc()
        for kind in entry.bypass:
            self._metrics.bypass.labels(kind=kind).inc()


def _key(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    audit_id, stage = item.get("auditID"), item.get("stage")
    if isinstance(audit_id, str) and audit_id and isinstance(stage, str):
        return audit_id, stage
    return None


def _event_list(body: bytes) -> list[Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadEventListError("the body is not JSON") from None
    if not isinstance(value, dict) or value.get("kind") != "EventList":
        raise BadEventListError("the body is not an EventList")
    if value.get("apiVersion") != API_VERSION:
        raise BadEventListError(f"the EventList is not {API_VERSION}")
    items = value.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadEventListError("items: expected a list")
    return items


def _json(status: int, body: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()
          ) -> Answer:
    return Answer(status=status, body=json.dumps(body).encode(), headers=headers)


# -- the listener ---------------------------------------------------------------------------

def _http_error(error: HttpError) -> Answer:
    if isinstance(error, BodyTooLargeError):
        return _json(413, {"error": "the body is over 16 MiB"})
    if isinstance(error, RequestTimeoutError):
        return _json(408, {"error": "no whole request in time"})
    if isinstance(error, HeadTooLargeError):
        return _json(431, {"error": "the request head is too large"})
    return _json(400, {"error": "malformed HTTP request"})


class AuditSink:
    """The sink on `listen` (HOST:PORT; port 0 picks one: see `port`), writing to `out`:
    HTTPS with `tls` (cert, key files), demanding a client certificate signed by `client_ca`
    when given; `tls` None is plaintext, on loopback only (tests). Binds at construction;
    `start()` serves, `stop()` closes the listener and the file."""

    def __init__(self, out: Path, *, kubegate_logs: Sequence[Path], listen: str,
                 tls: tuple[Path, Path] | None, client_ca: Path | None = None,
                 allowlist: Allowlist, exchanger_users: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        address = _address(listen)
        if tls is None and not address.is_local:
            raise ConfigError([f"--listen {listen}: TLS files are needed (plaintext on "
                               "loopback only)"])
        context = tls_context(tls[0], tls[1], client_ca) if tls is not None else None
        self.metrics = SinkMetrics(registry)
        self._out = DurableFile(out)
        self.endpoint = SinkEndpoint(out=self._out, sessions=TailedSessions(kubegate_logs),
                                     detector_for=_bypass_detector(allowlist, exchanger_users),
                                     metrics=self.metrics)
        try:
            self._listener = TokenServer(host=address.bind_host, port=address.port,
                                         context=context, max_body=MAX_BODY,
                                         http_error=_http_error)
        except OSError as error:
            self._out.close()
            raise ConfigError([f"--listen {listen}: cannot listen: {error.strerror}"]) \
                from error
        self.scheme = self._listener.scheme

    @property
    def port(self) -> int:
        return self._listener.port

    def start(self) -> AuditSink:
        self._listener.start(self.endpoint)
        return self

    def stop(self) -> None:
        self._listener.stop()
        self._out.close()


def _bypass_detector(allowlist: Allowlist, exchanger_users: Sequence[str]) -> DetectorFactory:
    def detector_for(index: SessionIndex) -> Detector:
        return BypassDetector(index, allowlist, exchanger_users=exchanger_users,
                              approved_requests=approved_requests_of(index.sessions()))

    return detector_for


def _address(listen: str) -> HostPort:
    try:
        return parse_host_port(listen)
    except ValueError as error:
        raise ConfigError([f"--listen: {error}"]) from None
