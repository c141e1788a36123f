"""TrustMapping resources as a mapping source: each is judged with the file loader's rules,
its Accepted condition is written only when it changes (once per resource, never when idle,
never for our own write coming back), conflicts are retried on a fresh read, deletions reach
the accepted set while writes are backlogged, names used by files are refused, and the
informer lists again after any failure. The cluster is a fake with the port's shape."""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exchanger.mapping_sources import merge
from exchanger.mappings import MappingStore, parse_documents
from exchanger.mappings.cluster import ClusterMappings, SourceState, WatchExpired
from exchanger.mappings.verdict import Verdict, accepted_condition, judge, status_change
from exchanger.mappings.writequeue import WriteLimit
from kubegate.errors import PreconditionError, UnavailableError
from tests.support.wait import poll

NOW = 1_800_000_000.0
NAMESPACE = "kubegate"


def resource(name: str, *, issuer: str = "github", generation: int = 1,
             status: dict[str, Any] | None = None, version: str = "7",
             **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": generation,
                     "uid": f"uid-{name}", "resourceVersion": version,
                     "managedFields": [{"manager": "kubectl"}]},
        "spec": {"issuer": issuer, "claims": [{"claim": "repository_id", "equals": "74"}],
                 "grant": {"cluster": "prod", "namespace": "web",
                           "serviceAccount": "deployer"}, **spec},
    }
    if status is not None:
        obj["status"] = status
    return obj


def verdict_of(obj: dict[str, Any], files: dict[str, str] | None = None) -> Verdict:
    return judge(obj, namespace=NAMESPACE, file_sources=files or {},
                 issuers=frozenset({"github"}), clusters=frozenset({"prod"}))


class FakeApi:
    """The TrustMappingApi port: a list, a queue of watch events, recorded status patches
    applied to the stored objects as the API server would (a stale resourceVersion is a
    409 Conflict, each write a new resourceVersion)."""

    namespace = NAMESPACE

    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self.objects = {o["metadata"]["name"]: o for o in objects or []}
        self.events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.list_failures: list[Exception] = []
        self.lists = 0
        self.gets = 0
        self.version = 100
        self.closed = False

    def list(self) -> tuple[list[dict[str, Any]], str]:
        self.lists += 1
        if self.list_failures:
            raise self.list_failures.pop(0)
        return [copy.deepcopy(o) for o in self.objects.values()], "10"

    def watch(self, resource_version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            event = self.events.get()
            if event is None:
                return
            if event[0] == "EXPIRE":
                raise WatchExpired("too old")
            yield event

    def stop_watch(self) -> None:
        self.events.put(None)

    def get(self, name: str) -> dict[str, Any]:
        self.gets += 1
        return copy.deepcopy(self.objects[name])

    def patch_status(self, name: str, status: dict[str, Any],
                     resource_version: str) -> dict[str, Any]:
        self.patches.append((name, status))
        if name not in self.objects:
            raise PreconditionError("OBJECT_NOT_FOUND", "patch: 404")
        stored = self.objects[name]
        if resource_version and resource_version != stored["metadata"]["resourceVersion"]:
            raise PreconditionError("CONFLICT", "patch: 409 Conflict")
        self.bump(name)
        stored["status"] = copy.deepcopy(status)
        return copy.deepcopy(stored)

    def bump(self, name: str) -> dict[str, Any]:
        """A new resourceVersion for a stored object (a write by anyone)."""
        self.version += 1
        self.objects[name]["metadata"]["resourceVersion"] = str(self.version)
        return self.objects[name]

    def close(self) -> None:
        self.closed = True


# -- judging one resource ---------------------------------------------------------------


def test_a_valid_resource_is_accepted_with_its_status_and_server_metadata_ignored() -> None:
    verdict = verdict_of(resource("web", status={"conditions": []}))
    assert verdict.accepted
    assert verdict.mapping is not None and verdict.mapping.name == "web"
    assert verdict.mapping.source == "TrustMapping kubegate/web"


def test_an_unknown_issuer_is_invalid_with_the_loaders_message() -> None:
    verdict = verdict_of(resource("web", issuer="gitlab"))
    assert not verdict.accepted
    assert verdict.message == "spec.issuer: unknown issuer 'gitlab' (configured: github)"


def test_every_problem_is_in_the_message() -> None:
    obj = resource("web", issuer="gitlab")
    obj["spec"]["grant"]["maxLifetime"] = "1m"
    message = verdict_of(obj).message
    assert "spec.issuer: unknown issuer" in message
    assert "spec.grant.maxLifetime: must be between 10m and 24h" in message


def test_a_name_a_file_already_uses_is_refused_and_the_file_named() -> None:
    verdict = verdict_of(resource("web"), files={"web": "web.yaml: document 1"})
    assert not verdict.accepted
    assert verdict.message == ("metadata.name: 'web' is already a file mapping "
                               "(web.yaml: document 1); files win")


# -- the Accepted condition ---------------------------------------------------------------


def test_the_condition_is_written_when_missing() -> None:
    change = status_change(resource("web", generation=3), verdict_of(resource("web")), NOW)
    assert change == {"conditions": [{
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "in effect",
        "observedGeneration": 3, "lastTransitionTime": "2027-01-15T08:00:00Z"}]}


def test_nothing_is_written_when_the_object_already_shows_the_verdict() -> None:
    obj = resource("web")
    obj["status"] = status_change(obj, verdict_of(obj), NOW)
    assert status_change(obj, verdict_of(obj), NOW + 60) is None


def test_a_new_generation_is_written_but_keeps_the_transition_time() -> None:
    obj = resource("web")
    obj["status"] = status_change(obj, verdict_of(obj), NOW)
    obj["metadata"]["generation"] = 2
    change = status_change(obj, verdict_of(obj), NOW + 60)
    assert change is not None
    (condition,) = change["conditions"]
    assert condition["observedGeneration"] == 2
    assert condition["lastTransitionTime"] == "2027-01-15T08:00:00Z"


def test_a_flip_to_invalid_moves_the_transition_time_and_keeps_other_conditions() -> None:
    obj = resource("web")
    obj["status"] = status_change(obj, verdict_of(obj), NOW)
    obj["status"]["conditions"].append({"type": "Reviewed", "status": "True"})
    obj["spec"]["issuer"] = "gitlab"
    change = status_change(obj, verdict_of(obj), NOW + 60)
    assert change is not None
    assert change["conditions"][0] == {"type": "Reviewed", "status": "True"}
    condition = accepted_condition({"status": change})
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "Invalid")
    assert condition["lastTransitionTime"] == "2027-01-15T08:01:00Z"


# -- the source ------------------------------------------------------------------------------


def source(api: FakeApi, files: dict[str, str] | None = None) -> ClusterMappings:
    return ClusterMappings(api, known_issuers={"github"}, known_clusters={"prod"},
                           file_sources=lambda: files or {}, clock=lambda: NOW,
                           retry_seconds=0.05)


def test_a_list_accepts_the_valid_resources_at_once_and_writes_each_status_once() -> None:
    api = FakeApi([resource("web"), resource("bad", issuer="nope")])
    mappings = source(api)
    mappings.replace(api.list()[0])
    assert [m.name for m in mappings.accepted()] == ["web"]
    assert api.patches == []  # the accepted set never waits for a status write
    assert mappings.write_pending() == 2
    assert sorted(name for name, _ in api.patches) == ["bad", "web"]
    mappings.replace(api.list()[0])  # the objects now show their statuses
    assert mappings.write_pending() == 0
    assert len(api.patches) == 2


def test_n_resources_cost_n_writes_and_their_own_events_coming_back_cost_none() -> None:
    names = [f"m{number:03}" for number in range(200)]
    api = FakeApi([resource(name) for name in names])
    mappings = source(api)
    mappings.replace(api.list()[0])
    for name in names[:50]:  # events that arrive while the writes are still queued
        mappings.apply("MODIFIED", copy.deepcopy(api.objects[name]))
    assert mappings.write_pending() == 200
    for name in names:  # each write's own watch event
        mappings.apply("MODIFIED", copy.deepcopy(api.objects[name]))
    assert mappings.pending_writes == 0
    assert mappings.write_pending() == 0
    assert len(api.patches) == 200 and api.gets == 0


def test_an_idle_source_writes_nothing() -> None:
    api = FakeApi([resource("web"), resource("api")])
    mappings = source(api)
    mappings.replace(api.list()[0])
    mappings.write_pending()
    written = len(api.patches)
    mappings.replace(api.list()[0])  # a relist after the watch ends
    mappings.reconcile()  # the files were reloaded
    assert mappings.write_pending() == 0
    assert len(api.patches) == written


def test_our_own_status_write_coming_back_as_an_event_writes_nothing() -> None:
    api = FakeApi([resource("web")])
    mappings = source(api)
    mappings.replace(api.list()[0])
    mappings.write_pending()
    mappings.apply("MODIFIED", copy.deepcopy(api.objects["web"]))
    assert mappings.write_pending() == 0
    assert len(api.patches) == 1


def test_a_conflict_is_retried_on_the_freshly_read_object() -> None:
    api = FakeApi([resource("web")])
    mappings = source(api)
    mappings.replace(api.list()[0])
    api.bump("web")["metadata"]["labels"] = {"team": "web"}  # someone else wrote first
    assert mappings.write_pending() == 2
    assert api.gets == 1
    condition = accepted_condition(api.objects["web"])
    assert condition is not None and condition["status"] == "True"


def test_a_conflict_with_an_object_that_already_shows_the_verdict_is_not_written_again(
        ) -> None:
    api = FakeApi([resource("web")])
    mappings = source(api)
    mappings.replace(api.list()[0])
    api.objects["web"]["status"] = status_change(api.objects["web"],
                                                 verdict_of(api.objects["web"]), NOW)
    api.bump("web")  # another replica wrote the same verdict first
    assert mappings.write_pending() == 1
    assert api.gets == 1


def test_conflicts_give_up_after_a_bounded_number_and_try_again_later(
        caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi([resource("web")])
    mappings = source(api)
    mappings.replace(api.list()[0])
    real_get = api.get

    def get_then_bump(name: str) -> dict[str, Any]:
        got = real_get(name)
        api.bump(name)  # always stale again by the time we write
        return got

    api.get = get_then_bump  # type: ignore[method-assign]
    api.bump("web")
    assert mappings.write_pending() == 4
    assert mappings.pending_writes == 1
    assert "409 Conflict" in caplog.text


def test_a_deletion_reaches_the_accepted_set_while_writes_are_backlogged() -> None:
    names = [f"m{number:04}" for number in range(1000)]
    api = FakeApi([resource(name) for name in names])
    mappings = source(api)
    changes: list[int] = []
    mappings.on_change = lambda: changes.append(len(mappings.accepted()))
    mappings.replace(api.list()[0])
    assert mappings.pending_writes == 1000 and api.patches == []
    mappings.apply("DELETED", api.objects.pop("m0500"))
    modified = resource("m0001", issuer="nope", generation=2, version="8")
    mappings.apply("MODIFIED", modified)
    assert changes == [1000, 999, 998]
    assert "m0500" not in {m.name for m in mappings.accepted()}
    assert mappings.pending_writes == 999
    assert api.patches == []


def test_events_add_change_and_delete_mappings_and_report_each_change() -> None:
    api = FakeApi()
    changes: list[tuple[str, ...]] = []
    mappings = source(api)
    mappings.on_change = lambda: changes.append(tuple(m.name for m in mappings.accepted()))
    mappings.replace([])
    mappings.apply("ADDED", resource("web"))
    mappings.apply("ADDED", resource("api"))
    mappings.apply("BOOKMARK", {"metadata": {"resourceVersion": "12"}})
    mappings.apply("MODIFIED", resource("api", issuer="nope", generation=2, version="8"))
    mappings.apply("DELETED", resource("web"))
    assert changes == [("web",), ("api", "web"), ("web",), ()]


def test_a_file_taking_a_resources_name_refuses_it_on_the_next_reconcile() -> None:
    api = FakeApi([resource("web")])
    files: dict[str, str] = {}
    mappings = ClusterMappings(api, known_issuers={"github"}, known_clusters={"prod"},
                               file_sources=lambda: files, clock=lambda: NOW)
    mappings.replace(api.list()[0])
    mappings.write_pending()
    files["web"] = "team.yaml: document 2"
    mappings.reconcile()
    assert mappings.accepted() == ()
    assert mappings.write_pending() == 1
    condition = accepted_condition(api.objects["web"])
    assert condition is not None and condition["status"] == "False"
    assert "team.yaml: document 2" in condition["message"]


def test_a_failed_status_write_is_logged_and_tried_again_later(
        caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi([resource("web")])
    calls: list[str] = []

    def refuse(name: str, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
        calls.append(name)
        raise UnavailableError("KUBERNETES_UNAVAILABLE", "patch: the API server answered 503")

    api.patch_status = refuse  # type: ignore[method-assign]
    mappings = source(api)
    mappings.replace(api.list()[0])
    mappings.write_pending()
    mappings.reconcile()
    mappings.write_pending()
    assert calls == ["web", "web"]
    assert mappings.pending_writes == 1  # queued again
    assert [m.name for m in mappings.accepted()] == ["web"]
    assert "status not written: patch: the API server answered 503" in caplog.text


def test_the_merged_set_leaves_out_a_resource_named_like_a_file_mapping() -> None:
    files = MappingStore(lambda: parse_documents_set("web"))
    api = FakeApi([resource("web"), resource("api")])
    mappings = source(api)  # not yet told about the file: both resources accepted
    mappings.replace(api.list()[0])
    merged = merge(files, mappings)
    assert sorted(m.name for m in merged.mappings) == ["api", "web"]
    assert merged.get("web") is not None
    assert merged.get("web").source == "team.yaml: document 1"  # type: ignore[union-attr]


def parse_documents_set(name: str) -> Any:
    from exchanger.mappings import MappingSet

    text = (f"apiVersion: kubegate.io/v1alpha1\nkind: TrustMapping\nmetadata: {{name: {name}}}\n"
            "spec:\n  issuer: github\n  claims: [{claim: repository_id, equals: '1'}]\n"
            "  grant: {cluster: prod, namespace: web, serviceAccount: deployer}\n")
    return MappingSet(mappings=parse_documents(text, "team.yaml"))


# -- the watcher thread ---------------------------------------------------------------------


def test_the_watcher_syncs_follows_events_relists_after_failures_and_stops_promptly() -> None:
    api = FakeApi([resource("web")])
    api.list_failures = [UnavailableError("KUBERNETES_UNAVAILABLE", "list: 503")]
    mappings = source(api)
    synced = threading.Event()
    mappings.when_synced(synced.set)
    mappings.start()
    try:
        assert mappings.wait_synced(5)
        assert synced.is_set()
        assert api.lists == 2
        api.events.put(("ADDED", resource("api")))
        assert poll(lambda: len(mappings.accepted()) == 2, 5, 0.01)
        api.events.put(("EXPIRE", {}))  # 410 Gone: list again at once
        assert poll(lambda: api.lists == 3, 5, 0.01)
    finally:
        mappings.stop(timeout=5)
    assert not any(t.name == "kubegate-trustmappings" for t in threading.enumerate())


def test_the_writer_thread_paces_writes_and_stops_promptly() -> None:
    names = [f"m{number:02}" for number in range(30)]
    api = FakeApi([resource(name) for name in names])
    mappings = ClusterMappings(api, known_issuers={"github"}, known_clusters={"prod"},
                               clock=lambda: NOW, write_limit=WriteLimit(rate=50, burst=10))
    mappings.start()
    try:
        assert mappings.wait_synced(5)
        assert poll(lambda: len(api.patches) == 30, 10, 0.01)
        for name in names:  # the echoes of its own writes
            api.events.put(("MODIFIED", copy.deepcopy(api.objects[name])))
        assert poll(lambda: mappings.pending_writes == 0 and api.events.empty(), 5, 0.01)
        assert len(api.patches) == 30
    finally:
        mappings.stop(timeout=5)
    assert not any(t.name.startswith("kubegate-trustmapping") for t in threading.enumerate())


def test_a_burst_of_events_is_published_in_few_rebuilds_the_last_one_complete() -> None:
    api = FakeApi()
    mappings = source(api)
    seen: list[int] = []

    def rebuild() -> None:  # as slow as a matcher rebuild at 10,000 mappings
        seen.append(len(mappings.accepted()))
        time.sleep(0.04)

    mappings.on_change = rebuild
    mappings.start()
    try:
        assert mappings.wait_synced(5)
        for number in range(200):
            api.events.put(("ADDED", resource(f"m{number:03}", version=str(number))))
        assert poll(lambda: seen[-1:] == [200], 10, 0.01)
        assert len(seen) < 50
    finally:
        mappings.stop(timeout=5)


def test_the_source_reports_listing_failing_with_the_error_then_watching() -> None:
    api = FakeApi([resource("web")])
    api.list_failures = [UnavailableError("KUBERNETES_UNAVAILABLE", "list: 503 from the API")]
    mappings = source(api)
    seen: list[SourceState] = []
    mappings.on_state = seen.append
    assert mappings.state().phase == "listing" and not mappings.state().listed
    mappings.start()
    try:
        assert poll(lambda: mappings.state().phase == "watching", 5, 0.01)
    finally:
        mappings.stop(timeout=5)
    failing = [s for s in seen if s.phase == "failing"]
    assert failing and failing[0].last_error == "list: 503 from the API"
    assert not failing[0].listed and failing[0].last_error_at is not None
    assert seen[-1].phase == "watching" and seen[-1].listed
    assert seen[-1].last_error == "list: 503 from the API"  # the last error is kept
