"""Access requests and sessions in one SQLite file: the embedded default's store, safe for
several exchanger processes on one machine (stdlib `sqlite3`).

Rules of this module:
- the file is created 0600 in a folder created 0700; the journal is WAL with a busy timeout,
  so two processes read while one writes and a writer waits for the other instead of failing;
- every write is one `BEGIN IMMEDIATE` transaction that appends a row to `changes` (a global,
  monotonically increasing `seq`) and stamps the written row with that seq as its `version`
  (new relaxed sessions of concurrent exchanges share one transaction, `_GroupCommit`, each
  with a change and a seq of its own; a duplicate id fails only its own row):
  a value's version is therefore also a position in the change log, as a resourceVersion is
  in the API server's, and `watch(since=value.version)` resumes right after that write;
- `replace` is compare-and-swap: the UPDATE names the version it was read at, and an UPDATE
  that touched no row is a ConflictError (nothing changed);
- each row keeps the value's `to_dict()` as JSON, and beside it only the columns the lists
  filter on; JSON is the truth, the columns are an index;
- `changes` keeps a snapshot of every write for `watch` (the last CHANGES_KEPT writes); a
  watch from a position older than that yields every request written since, once, as
  "modified" (like a relist after 410 Gone);
- one connection, guarded by a lock, serves every thread of the process;
- every commit is `synchronous = FULL` (durable when it returns: an approval survives a power
  failure) except the creation of a session that leaves nothing in a cluster to clean up (no
  session Secret, no caller pod: a self-issued credential), which commits at NORMAL
  (`_relaxed`, see there for what a power failure can take and why the audit log still has it)
  and returns only once committed, so the row is readable when the exchange answers;
- the session reaper reads only due sessions (`list_due`, through two partial indexes), never
  every active one;
- sqlite3 errors are translated here: a locked or unreadable file is an UnavailableError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Final, Literal

from exchanger.access.model import AccessRequest, Session, State
from exchanger.access.ports import AlreadyExistsError, ConflictError
from kubegate.errors import InvalidRequestError, UnavailableError

__all__ = ["BUSY_TIMEOUT_SECONDS", "POLL_SECONDS", "SqliteAccessStore", "SqliteSessionStore",
           "SqliteStores"]

BUSY_TIMEOUT_SECONDS: Final = 5.0
"""How long a write waits for another process's write before the store is unavailable."""
POLL_SECONDS: Final = 0.2
"""How often `watch` looks for new changes."""
CHANGES_KEPT: Final = 10_000
Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, store TEXT NOT NULL, kind TEXT NOT NULL,
    id TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, created INTEGER NOT NULL, version INTEGER NOT NULL,
    state TEXT NOT NULL, mapping TEXT NOT NULL, requester_subject TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
CREATE INDEX IF NOT EXISTS requests_mapping ON requests (mapping);
CREATE INDEX IF NOT EXISTS requests_requester ON requests (requester_subject);
CREATE INDEX IF NOT EXISTS requests_version ON requests (version);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created INTEGER NOT NULL, version INTEGER NOT NULL,
    access_request TEXT NOT NULL, cluster TEXT NOT NULL, active INTEGER NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_access_request ON sessions (access_request);
CREATE INDEX IF NOT EXISTS sessions_cluster ON sessions (cluster);
CREATE INDEX IF NOT EXISTS sessions_active ON sessions (active);
CREATE INDEX IF NOT EXISTS sessions_due ON sessions (json_extract(data, '$.not_after'))
    WHERE active = 1;
CREATE INDEX IF NOT EXISTS sessions_pod ON sessions (created)
    WHERE active = 1 AND json_extract(data, '$.caller_pod') != '';
"""


class _Database:
    """The connection, its lock, and the one way to write (`write`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        with _translated(f"open {path}"):
            _create_private(path)
            self.connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                check_same_thread=False)
            self.connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute("PRAGMA synchronous = FULL")  # an approval survives a crash
            self.synchronous: Synchronous = "FULL"
            self.connection.executescript(_SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock, _translated(f"read {self.path}"):
            return list(self.connection.execute(sql, parameters))

    @contextlib.contextmanager
    def write(self, store: str, kind: str, row_id: str, data: str, *,
              synchronous: Synchronous = "FULL") -> Iterator[tuple[sqlite3.Connection, int]]:
        """One transaction: the change (`data`, the value's JSON) is logged, its seq handed to
        the body (the row's new version); the body raises to roll everything back.
        `synchronous` is how this commit reaches the disk: FULL (the default, durable when
        this returns) or NORMAL (only for `_relaxed` rows)."""
        with self.lock, _translated(f"write {self.path}"):
            if synchronous != self.synchronous:  # the pragma applies to the next commit
                self.connection.execute(_SYNCHRONOUS[synchronous])
                self.synchronous = synchronous
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                seq = self.connection.execute(
                    "INSERT INTO changes (store, kind, id, data) VALUES (?, ?, ?, ?)",
                    (store, kind, row_id, data)).lastrowid
                assert seq is not None
                yield self.connection, seq
                self.connection.execute("DELETE FROM changes WHERE seq <= ?",
                                        (seq - CHANGES_KEPT,))
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")


class SqliteAccessStore:
    """AccessStore over the `requests` table (see the module docstring)."""

    def __init__(self, database: _Database) -> None:
        self._db = database

    def create(self, request: AccessRequest) -> AccessRequest:
        data = request.to_dict()
        text = _json(data)
        try:
            with self._db.write("requests", "added", request.id, text) as (db, seq):
                db.execute(
                    "INSERT INTO requests (id, created, version, state, mapping, "
                    "requester_subject, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (request.id, seq, seq, request.state.value, request.mapping,
                     request.requester.subject, text))
        except sqlite3.IntegrityError as error:
            raise AlreadyExistsError(f"access request {request.id}") from error
        return AccessRequest.from_dict(data, version=str(seq))

    def get(self, request_id: str) -> AccessRequest | None:
        rows = self._db.query("SELECT data, version FROM requests WHERE id = ?", (request_id,))
        return AccessRequest.from_dict(json.loads(rows[0][0]), str(rows[0][1])) if rows else None

    def list(self, *, states: frozenset[State] | None = None, mapping: str = "",
             requester_subject: str = "") -> list[AccessRequest]:
        chosen = None if states is None else json.dumps(sorted(state.value for state in states))
        rows = self._db.query(
            "SELECT data, version FROM requests WHERE "
            "(?1 IS NULL OR state IN (SELECT value FROM json_each(?1))) "
            "AND (?2 = '' OR mapping = ?2) AND (?3 = '' OR requester_subject = ?3) "
            "ORDER BY created", (chosen, mapping, requester_subject))
        return [AccessRequest.from_dict(json.loads(data), str(version)) for data, version in rows]

    def replace(self, request: AccessRequest) -> AccessRequest:
        data = request.to_dict()
        text = _json(data)
        with self._db.write("requests", "modified", request.id, text) as (db, seq):
            updated = db.execute(
                "UPDATE requests SET version = ?, state = ?, mapping = ?, requester_subject = ?, "
                "data = ? WHERE id = ? AND version = ?",
                (seq, request.state.value, request.mapping, request.requester.subject,
                 text, request.id, _version(request.version)))
            if updated.rowcount != 1:
                raise ConflictError(f"access request {request.id}")
        return AccessRequest.from_dict(data, version=str(seq))

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, AccessRequest]]:
        """Every write after `since` (a version; "" = from now), polled every POLL_SECONDS,
        until `stop` is set."""
        if since and not since.isdigit():
            raise InvalidRequestError("INVALID_WATCH_POSITION", f"not a version: {since!r}")
        position = int(since) if since else self._last_seq()
        if position < self._first_seq() - 1:  # the log no longer reaches back that far
            position = yield from self._relist(position)
        while not stop.is_set():
            rows = self._db.query(
                "SELECT seq, kind, data FROM changes WHERE seq > ? AND store = 'requests' "
                "ORDER BY seq LIMIT 500", (position,))
            for seq, kind, data in rows:
                position = seq
                yield kind, AccessRequest.from_dict(json.loads(data), str(seq))
            if not rows:
                stop.wait(POLL_SECONDS)

    def _relist(self, position: int) -> Generator[tuple[str, AccessRequest], None, int]:
        rows = self._db.query("SELECT data, version FROM requests WHERE version > ? "
                              "ORDER BY version", (position,))
        for data, version in rows:
            position = version
            yield "modified", AccessRequest.from_dict(json.loads(data), str(version))
        return max(position, self._first_seq() - 1)

    def _last_seq(self) -> int:
        return int(self._db.query("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0])

    def _first_seq(self) -> int:
        return int(self._db.query("SELECT COALESCE(MIN(seq), 0) FROM changes")[0][0])


_INSERT_SESSION: Final = (
    "INSERT INTO sessions (id, created, version, access_request, cluster, active, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)")


@dataclasses.dataclass
class _NewRow:
    """A relaxed session waiting for a group commit: its seq once committed, or its error."""

    session: Session
    text: str
    seq: int = 0
    error: Exception | None = None
    done: bool = False


class _GroupCommit:
    """Commits the relaxed session rows of concurrent exchanges together (the audit log's
    group commit, for the index): each caller queues its row, then whoever holds `_turn`
    commits every row queued so far in one transaction, and a caller whose row an earlier
    commit took returns at once. Every caller returns only once its own row is committed
    (or with its own error), so the row is readable when the exchange answers. One commit
    per batch instead of per row: the COMMIT, which writes every touched page to the WAL,
    is most of a row's cost."""

    def __init__(self, database: _Database) -> None:
        self._db = database
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()
        self._queued: list[_NewRow] = []

    def add(self, session: Session, text: str) -> int:
        row = _NewRow(session=session, text=text)
        with self._queue_lock:
            self._queued.append(row)
        with self._turn:
            if not row.done:
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._commit(batch)
        if row.error is not None:
            raise row.error
        return row.seq

    def _commit(self, batch: list[_NewRow]) -> None:
        """One transaction for the batch; a duplicate id fails only its own row (its change
        is taken back in the same transaction), anything else fails every row."""
        db = self._db
        committed = False
        failure: Exception = UnavailableError("ACCESS_STORE_UNAVAILABLE",
                                              f"write {db.path}: interrupted")
        try:
            with db.lock, _translated(f"write {db.path}"):
                if db.synchronous != "NORMAL":
                    db.connection.execute(_SYNCHRONOUS["NORMAL"])
                    db.synchronous = "NORMAL"
                db.connection.execute("BEGIN IMMEDIATE")
                try:
                    seq = 0
                    for row in batch:
                        seq = max(seq, self._insert(db.connection, row))
                    if seq:
                        db.connection.execute("DELETE FROM changes WHERE seq <= ?",
                                              (seq - CHANGES_KEPT,))
                except BaseException:
                    db.connection.execute("ROLLBACK")
                    raise
                db.connection.execute("COMMIT")
            committed = True
        except Exception as error:  # noqa: BLE001 - handed to every caller of the batch
            failure = error
        finally:
            for row in batch:
                if not committed:  # rolled back: no row of the batch was written
                    row.error = row.error or failure
                row.done = True

    @staticmethod
    def _insert(connection: sqlite3.Connection, row: _NewRow) -> int:
        session = row.session
        seq = connection.execute(
            "INSERT INTO changes (store, kind, id, data) VALUES ('sessions', 'added', ?, ?)",
            (session.id, row.text)).lastrowid
        assert seq is not None
        try:
            connection.execute(_INSERT_SESSION, (session.id, seq, seq, session.access_request,
                                                 session.cluster, int(session.active),
                                                 row.text))
        except sqlite3.IntegrityError:
            connection.execute("DELETE FROM changes WHERE seq = ?", (seq,))
            row.error = AlreadyExistsError(f"session {session.id}")
            return 0
        row.seq = seq
        return seq


class SqliteSessionStore:
    """SessionStore over the `sessions` table (see the module docstring)."""

    def __init__(self, database: _Database) -> None:
        self._db = database
        self._group = _GroupCommit(database)

    def create(self, session: Session) -> Session:
        text = _json(session.to_dict())
        if _relaxed(session):
            seq = self._group.add(session, text)
            return dataclasses.replace(session, version=str(seq))
        try:
            with self._db.write("sessions", "added", session.id, text) as (db, seq):
                db.execute(_INSERT_SESSION, (session.id, seq, seq, session.access_request,
                                             session.cluster, int(session.active), text))
        except sqlite3.IntegrityError as error:
            raise AlreadyExistsError(f"session {session.id}") from error
        return dataclasses.replace(session, version=str(seq))

    def get(self, session_id: str) -> Session | None:
        rows = self._db.query("SELECT data, version FROM sessions WHERE id = ?", (session_id,))
        return Session.from_dict(json.loads(rows[0][0]), str(rows[0][1])) if rows else None

    def list_due(self, now: float) -> list[Session]:
        """Through two partial indexes (active sessions by `not_after`, and active sessions
        with a caller pod), so the reaper's run reads the due rows, not every active one."""
        rows = self._db.query(
            "SELECT created, data, version FROM sessions INDEXED BY sessions_due "
            "WHERE active = 1 AND json_extract(data, '$.not_after') <= ? "
            "UNION SELECT created, data, version FROM sessions INDEXED BY sessions_pod "
            "WHERE active = 1 AND json_extract(data, '$.caller_pod') != '' ORDER BY created",
            (now,))
        return [Session.from_dict(json.loads(data), str(version)) for _, data, version in rows]

    def list(self, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]:
        rows = self._db.query(
            "SELECT data, version FROM sessions WHERE (?1 = 0 OR active = 1) "
            "AND (?2 = '' OR access_request = ?2) AND (?3 = '' OR cluster = ?3) "
            "ORDER BY created", (int(active_only), access_request, cluster))
        return [Session.from_dict(json.loads(data), str(version)) for data, version in rows]

    def replace(self, session: Session) -> Session:
        data = session.to_dict()
        text = _json(data)
        with self._db.write("sessions", "modified", session.id, text) as (db, seq):
            updated = db.execute(
                "UPDATE sessions SET version = ?, access_request = ?, cluster = ?, active = ?, "
                "data = ? WHERE id = ? AND version = ?",
                (seq, session.access_request, session.cluster, int(session.active),
                 text, session.id, _version(session.version)))
            if updated.rowcount != 1:
                raise ConflictError(f"session {session.id}")
        return Session.from_dict(data, version=str(seq))


class SqliteStores:
    """Both stores over one SQLite file: `.requests` and `.sessions`."""

    def __init__(self, path: Path) -> None:
        self._database = _Database(path)
        self.requests = SqliteAccessStore(self._database)
        self.sessions = SqliteSessionStore(self._database)

    def close(self) -> None:
        self._database.close()


def _create_private(path: Path) -> None:
    """The folder 0700 and the file 0600, before SQLite opens it (SQLite gives its -wal and
    -shm files the database file's permissions)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _json(data: dict[str, Any]) -> str:
    """A value's JSON, as its row and its change both keep it."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


_SYNCHRONOUS: Final = {"FULL": "PRAGMA synchronous = FULL",
                       "NORMAL": "PRAGMA synchronous = NORMAL"}


def _relaxed(session: Session) -> bool:
    """Whether a new session's row may commit at `synchronous = NORMAL`: one that names no
    session Secret and no caller pod, so nothing in a cluster waits on the row to be cleaned
    up (a self-issued credential's session).

    What NORMAL risks, and why that is acceptable for this row only. In WAL mode a NORMAL
    commit is written to the WAL but not fsync'd: a crash of the process loses nothing (the
    operating system has the bytes), a power failure or kernel crash can lose the commits
    made since the WAL was last synced (by a FULL commit, which syncs every frame before it,
    or a checkpoint); the database stays consistent either way. Such a lost row is:
    - already recorded durably elsewhere: the exchange writes (and fsyncs) the allow line,
      with the session id, token id, mapping, caller, CI claims and expiry, before it
      creates the row (`exchanger.exchange`), so the audit log still has every such session;
    - already best effort: an exchange whose row cannot be written still succeeds (logged
      and counted), so nothing may depend on the row existing;
    - fail closed where it is read: the gateway refuses a self-issued credential whose row
      it cannot find (UNKNOWN_SESSION), and the credential ends by its own expiry (minutes).
    Access requests, approvals, and every change to an existing session (its end or its
    revocation, which must not come back after a power failure) stay FULL, and so do
    sessions with a Secret or a caller pod, whose rows the reaper needs to clean up."""
    return not session.secret and not session.caller_pod


def _version(version: str) -> int:
    """A stored value's version; a value that was never read from the store has none, and
    can never win a compare-and-swap."""
    return int(version) if version.isdigit() else -1


@contextlib.contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise  # a duplicate id: the caller names it
    except (sqlite3.Error, OSError) as error:
        raise UnavailableError("ACCESS_STORE_UNAVAILABLE",
                               f"{operation}: {type(error).__name__}: {error}") from error
