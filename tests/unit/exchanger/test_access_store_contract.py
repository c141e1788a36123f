"""The SQLite access store keeps the store contract (tests/support/access_contract.py, also run
against custom resources in tests/integration/test_access_store_kube.py); its file is private;
two processes sharing it never lose an approval; the access CRDs are what gen-crd writes."""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exchanger.access.crds import render_access_crds
from exchanger.access.model import State
from exchanger.access.ports import AlreadyExistsError
from exchanger.access.settings import AccessConfig
from exchanger.access.sqlite_store import (
    SqliteAccessStore,
    SqliteSessionStore,
    SqliteStores,
    _GroupCommit,
    _json,
    _NewRow,
)
from exchanger.access.stores import open_stores
from kubegate.errors import UnavailableError
from tests.support.access_contract import (
    BOB,
    CONTRACT,
    Contract,
    approve,
    new_request,
    new_session,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[SqliteStores]:
    opened = SqliteStores(tmp_path / "state" / "access.db")
    yield opened
    opened.close()


@pytest.mark.parametrize("contract", CONTRACT, ids=[c.__name__ for c in CONTRACT])
def test_the_sqlite_store_keeps_the_contract(contract: Contract, stores: SqliteStores) -> None:
    contract(stores.requests, stores.sessions)


def test_the_file_is_private_in_a_private_folder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "access.db"
    SqliteStores(path).close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_requests_and_sessions_outlive_the_process_that_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    first = SqliteStores(path)
    request = first.requests.create(new_request())
    first.close()
    again = SqliteStores(path)
    assert again.requests.get(request.id) == request
    assert again.requests.list() == [request]
    again.close()


def test_a_watch_from_a_position_the_log_no_longer_holds_yields_each_request_since(
        stores: SqliteStores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exchanger.access.sqlite_store.CHANGES_KEPT", 2)
    old = stores.requests.create(new_request())
    changed = stores.requests.replace(approve(old, BOB))
    fresh = [stores.requests.create(new_request()) for _ in range(3)]
    stop = threading.Event()
    seen = []
    for kind, value in stores.requests.watch(old.version, stop):
        seen.append((kind, value))
        if len(seen) == 4:
            stop.set()
    assert [(kind, value.id, value.version) for kind, value in seen] == [
        ("modified", value.id, value.version) for value in [changed, *fresh]]


def _synchronous(stores: SqliteStores) -> str:
    """The connection's synchronous setting now (SQLite answers 1 for NORMAL, 2 for FULL)."""
    level = stores._database.connection.execute("PRAGMA synchronous").fetchone()[0]
    return {1: "NORMAL", 2: "FULL"}[level]


def test_only_new_sessions_with_nothing_to_clean_up_commit_at_normal(
        stores: SqliteStores) -> None:
    """A self-issued session's row (no Secret, no caller pod) commits at NORMAL; requests,
    sessions with cluster objects, and every change to a session stay FULL."""
    assert _synchronous(stores) == "FULL"
    stores.sessions.create(new_session())
    assert _synchronous(stores) == "NORMAL"
    request = stores.requests.create(new_request())
    assert _synchronous(stores) == "FULL"
    session = stores.sessions.create(new_session())
    assert _synchronous(stores) == "NORMAL"
    stores.requests.replace(approve(request, BOB))
    assert _synchronous(stores) == "FULL"
    stores.sessions.create(new_session())
    stores.sessions.replace(dataclasses.replace(session, ended_at=session.issued_at + 1))
    assert _synchronous(stores) == "FULL"
    for cluster_object in ({"secret": "web/kubegate-session-1"},
                           {"caller_pod": "ci/build-1/uid"}):
        stores.sessions.create(new_session())
        stores.sessions.create(new_session(**cluster_object))
        assert _synchronous(stores) == "FULL"


def test_sessions_created_from_many_threads_are_each_readable_when_create_returns(
        stores: SqliteStores) -> None:
    """Group commit: every create returns only once its own row is committed (the gateway
    reads it right after the exchange answers), each with a version of its own."""
    created: list[str] = []
    missing: list[str] = []

    def create(count: int) -> None:
        for _ in range(count):
            session = stores.sessions.create(new_session())
            if stores.sessions.get(session.id) != session:
                missing.append(session.id)
            created.append(session.version)

    threads = [threading.Thread(target=create, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert missing == []
    assert len(created) == len(set(created)) == 200
    assert len(stores.sessions.list()) == 200


def test_in_a_group_commit_a_duplicate_fails_alone_and_a_broken_store_fails_all(
        stores: SqliteStores) -> None:
    group: _GroupCommit = stores.sessions._group
    first = stores.sessions.create(new_session())
    rows = [_NewRow(session=s, text=_json(s.to_dict()))
            for s in (new_session(), first, new_session())]
    group._commit(rows)
    assert [row.done for row in rows] == [True, True, True]
    assert isinstance(rows[1].error, AlreadyExistsError)
    assert rows[0].error is None and rows[2].error is None
    assert all(stores.sessions.get(row.session.id) is not None for row in rows)
    assert [change[0] for change in stores._database.query(
        "SELECT id FROM changes WHERE store = 'sessions' ORDER BY seq")] == [
        first.id, rows[0].session.id, rows[2].session.id]  # the duplicate's change undone

    stores.close()
    broken = [_NewRow(session=s, text=_json(s.to_dict())) for s in (new_session(),) * 2]
    group._commit(broken)
    assert all(isinstance(row.error, UnavailableError) for row in broken)
    with pytest.raises(UnavailableError):
        stores.sessions.create(new_session())


def test_a_created_session_is_what_the_store_reads_back(stores: SqliteStores) -> None:
    created = stores.sessions.create(new_session(ci={"run_id": "7"}))
    assert created.version
    assert stores.sessions.get(created.id) == created


def test_a_position_that_is_no_version_is_refused(stores: SqliteStores) -> None:
    with pytest.raises(Exception, match="not a version"):
        next(stores.requests.watch("abc", threading.Event()))


def test_an_unreadable_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UnavailableError):
        SqliteStores(path)


def test_open_stores_takes_the_configured_sqlite_file(tmp_path: Path) -> None:
    def no_cluster(name: str) -> object:
        raise AssertionError(name)

    requests, sessions = open_stores(AccessConfig(store="sqlite",
                                                  sqlite_file=tmp_path / "a.db"), no_cluster)  # type: ignore[arg-type]
    assert isinstance(requests, SqliteAccessStore)
    assert isinstance(sessions, SqliteSessionStore)
    assert (tmp_path / "a.db").exists()


# -- two processes on one file -----------------------------------------------------------------

_APPROVER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from exchanger.access.model import Requester
    from exchanger.access.ports import ConflictError
    from exchanger.access.sqlite_store import SqliteStores
    from tests.support.access_contract import approve

    path, request_id, name, rounds, ready, go = sys.argv[1:]
    stores = SqliteStores(Path(path))
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    me = Requester(issuer="corp", subject=name)
    won, conflicts = [], 0
    for index in range(int(rounds)):
        while True:
            current = stores.requests.get(request_id)
            try:
                written = stores.requests.replace(approve(current, me, f"{name}-{index}"))
            except ConflictError:
                conflicts += 1
                continue
            won.append([current.version, written.version])
            break
    print(json.dumps({"won": won, "conflicts": conflicts}))
""")


def test_two_processes_racing_on_one_request_never_lose_an_approval(tmp_path: Path) -> None:
    path, rounds = tmp_path / "access.db", 40
    stores = SqliteStores(path)
    request = stores.requests.create(new_request())
    go = tmp_path / "go"
    processes, readies = [], []
    for name in ("one", "two"):
        ready = tmp_path / f"ready-{name}"
        readies.append(ready)
        processes.append(subprocess.Popen(  # noqa: S603 - this interpreter, our own script
            [sys.executable, "-c", _APPROVER, str(path), request.id, name, str(rounds),
             str(ready), str(go)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    while not all(ready.exists() for ready in readies):
        assert all(process.poll() is None for process in processes), [
            process.communicate() for process in processes]
        threading.Event().wait(0.01)
    go.touch()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    final = stores.requests.get(request.id)
    stores.close()
    assert final is not None
    comments = sorted(approval.comment for approval in final.approvals)
    assert comments == sorted(f"{name}-{i}" for name in ("one", "two") for i in range(rounds))
    read_versions = [read for result in results for read, _ in result["won"]]
    assert len(read_versions) == len(set(read_versions)) == 2 * rounds, (
        "two writes won from the same version")
    assert final.state is State.APPROVED


def test_a_stale_copy_in_another_process_conflicts(tmp_path: Path) -> None:
    """Two SqliteStores on one file are two processes' views: the CAS holds across them."""
    one, two = SqliteStores(tmp_path / "a.db"), SqliteStores(tmp_path / "a.db")
    request = one.requests.create(new_request())
    stale = two.requests.get(request.id)
    assert stale is not None
    one.requests.replace(approve(request, BOB))
    with pytest.raises(Exception, match="changed since it was read"):
        two.requests.replace(dataclasses.replace(stale, reason="x"))
    one.close()
    two.close()


# -- the custom resource definitions ----------------------------------------------------------


def test_the_committed_access_crds_are_what_gen_crd_writes() -> None:
    for name, text in render_access_crds().items():
        for folder in (ROOT / "deploy" / "base", ROOT / "deploy" / "helm" / "kubegate" / "crds"):
            assert (folder / name).read_text() == text, (
                f"run scripts/gen-crd and commit {folder / name}")


def test_the_access_crds_are_namespaced_with_short_names_and_columns() -> None:
    crds = {name: yaml.safe_load(text) for name, text in render_access_crds().items()}
    request, session = crds["crd-accessrequest.yaml"], crds["crd-kubegatesession.yaml"]
    assert request["metadata"]["name"] == "accessrequests.kubegate.io"
    assert session["metadata"]["name"] == "kubegatesessions.kubegate.io"
    for crd in (request, session):
        assert crd["spec"]["scope"] == "Namespaced"
        (version,) = crd["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == (
            "v1alpha1", True, True)
    assert request["spec"]["names"]["shortNames"] == ["ar"]
    assert session["spec"]["names"]["shortNames"] == ["kgs"]
    columns = [c["name"] for c in request["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["State", "Mapping", "Requester", "Age"]
    columns = [c["name"] for c in session["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Cluster", "Namespace", "Active", "Caller", "Age"]
