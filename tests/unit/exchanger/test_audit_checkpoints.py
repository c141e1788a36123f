"""Signed checkpoints of the audit chain: a log file must extend every published head, so the
rewrite that the unkeyed chain cannot see (edit a line, recompute every hash after it) is
caught; the checkpointer publishes changed heads only, survives a failing store, and never
signs a head over one its own log does not extend."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

from exchanger.audit.chain import ChainHead, verify_chain
from exchanger.audit.checkpoint import (
    Checkpoint,
    Published,
    check_log,
    open_checkpoint,
    sign_checkpoint,
)
from exchanger.audit.note import NoteSigner
from exchanger.audit.publish import Checkpointer, CheckpointWorker, file_head_at
from exchanger.audit.stores import (
    CheckpointPublishError,
    ConfigMapStore,
    WitnessStore,
    config_map_key,
)
from exchanger.config import build_config, load_config
from kubegate.errors import ConfigError, PreconditionError, UnavailableError
from tests.support.auditlogs import append_lines, lines_of, rewrite_from, write_log
from tests.support.pki import TestCA
from tests.support.wait import poll
from tests.support.witness import Witness

ORIGIN = "kubegate.io/audit/exchanger-0"
SIGNER = NoteSigner("kubegate.io/audit", ed25519.Ed25519PrivateKey.generate())


def head_of(path: Path, size: int) -> ChainHead:
    head = file_head_at(path, size)
    assert head is not None
    return head


def published(path: Path, size: int, source: str = "cp") -> Published:
    note = sign_checkpoint(Checkpoint.of(ORIGIN, head_of(path, size)), SIGNER)
    return Published(source=source, checkpoint=open_checkpoint(note.encode(), [SIGNER.verifier]))


def check(path: Path, *items: Published) -> tuple[bool, str]:
    with path.open("rb") as lines:
        report = check_log(lines, items)
    return report.ok, report.problem or report.chain.problem


def test_a_log_extends_its_checkpoints_also_after_it_grew(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log", 6)
    items = (published(path, 3, "first"), published(path, 6, "second"))
    append_lines(path, 2)
    assert check(path, *items) == (True, "")


def test_a_rewrite_with_recomputed_hashes_passes_the_chain_but_not_a_checkpoint(
    tmp_path: Path,
) -> None:
    path = write_log(tmp_path / "audit.log", 6)
    item = published(path, 5, "configmap kubegate/cp key x")
    rewrite_from(path, 3)
    with path.open("rb") as lines:
        assert verify_chain(lines).ok  # the chain alone cannot tell
    ok, problem = check(path, item)
    assert not ok
    assert problem.startswith(f"checkpoint configmap kubegate/cp key x ({ORIGIN} at size 5): "
                              "line 5 has hash ")
    assert "rewritten at or before line 5" in problem


def test_deleted_trailing_lines_fail_a_later_checkpoint(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log", 6)
    item = published(path, 6)
    path.write_bytes(b"".join(lines_of(path)[:4]))
    ok, problem = check(path, item)
    assert not ok and "the file has 4 intact lines, fewer than the 6" in problem


def test_a_rewrite_after_the_checkpoint_is_the_chain_s_to_prove_not_the_checkpoint_s(
    tmp_path: Path,
) -> None:
    """Lines after the last checkpoint are only as good as the unkeyed chain: publish often."""
    path = write_log(tmp_path / "audit.log", 6)
    item = published(path, 4)
    rewrite_from(path, 5)
    assert check(path, item) == (True, "")


# -- the checkpointer --------------------------------------------------------------------------


class MemoryStore:
    def __init__(self, name: str = "memory", *, readable: bool = True) -> None:
        self.name, self._readable = name, readable
        self.notes: dict[str, str] = {}
        self.failing = False

    def latest(self, origin: str) -> bytes | None:
        note = self.notes.get(origin)
        return note.encode() if self._readable and note is not None else None

    def publish(self, origin: str, note: str) -> None:
        if self.failing:
            raise CheckpointPublishError(f"{self.name}: down")
        self.notes[origin] = note


def checkpointer(path: Path, *stores: MemoryStore,
                 seen: list[tuple[str, int]] | None = None) -> Checkpointer:
    def head() -> ChainHead:
        with path.open("rb") as lines:
            return verify_chain(lines).head

    return Checkpointer(origin=ORIGIN, signer=SIGNER, head=head,
                        head_at=lambda size: file_head_at(path, size), stores=stores,
                        observer=(lambda result, seq: seen.append((result, seq)))
                        if seen is not None else None)


def stored_head(store: MemoryStore) -> ChainHead:
    return open_checkpoint(store.notes[ORIGIN].encode(), [SIGNER.verifier]).head


def test_it_publishes_a_signed_head_and_only_when_it_changed(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log", 3)
    store, seen = MemoryStore(), []
    publisher = checkpointer(path, store, seen=seen)
    publisher.publish()
    assert stored_head(store) == head_of(path, 3)
    publisher.publish()
    assert seen == [("ok", 3)]
    append_lines(path, 2)
    publisher.publish()
    assert stored_head(store) == head_of(path, 5) and seen == [("ok", 3), ("ok", 5)]


def test_an_empty_log_publishes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    store = MemoryStore()
    checkpointer(path, store).publish()
    assert store.notes == {}


def test_a_failing_store_is_logged_retried_and_does_not_hold_up_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_log(tmp_path / "audit.log", 3)
    down, up, seen = MemoryStore("down"), MemoryStore("up"), []
    down.failing = True
    publisher = checkpointer(path, down, up, seen=seen)
    publisher.publish()
    assert ORIGIN in up.notes and down.notes == {}
    assert "audit checkpoint not published to down: down: down" in caplog.text
    down.failing = False
    publisher.publish()
    assert stored_head(down) == head_of(path, 3)
    assert seen == [("error", 3), ("ok", 3), ("ok", 3)]


def test_a_restart_on_a_rewritten_log_never_signs_over_the_published_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_log(tmp_path / "audit.log", 6)
    store = MemoryStore()
    checkpointer(path, store).publish()
    rewrite_from(path, 3)
    append_lines(path, 1)
    with caplog.at_level(logging.ERROR):
        checkpointer(path, store).publish()  # a new process: it knows only the store
    assert stored_head(store).seq == 6, "the evidence was overwritten"
    assert "does not extend the checkpoint memory keeps" in caplog.text
    assert f"({ORIGIN} at size 6)" in caplog.text


def test_a_restart_on_a_truncated_log_never_signs_over_the_published_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_log(tmp_path / "audit.log", 6)
    store = MemoryStore()
    checkpointer(path, store).publish()
    path.write_bytes(b"".join(lines_of(path)[:4]))
    checkpointer(path, store).publish()
    assert stored_head(store).seq == 6
    assert "lines were deleted or rewritten" in caplog.text


def test_a_restart_on_an_intact_log_goes_on_publishing(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log", 3)
    store = MemoryStore()
    checkpointer(path, store).publish()
    append_lines(path, 1)
    checkpointer(path, store).publish()
    assert stored_head(store).seq == 4


def test_the_worker_publishes_at_start_and_once_more_when_stopped(tmp_path: Path) -> None:
    path = write_log(tmp_path / "audit.log", 2)
    store = MemoryStore()
    worker = CheckpointWorker(checkpointer(path, store), interval=3600)
    worker.start()
    try:
        assert poll(lambda: ORIGIN in store.notes, 5, 0.02)
        append_lines(path, 1)
    finally:
        worker.stop()
    assert stored_head(store).seq == 3


# -- the stores --------------------------------------------------------------------------------


class FakeConfigMaps:
    """ConfigMapApi in memory, answering as the API server does (404, 409)."""

    def __init__(self) -> None:
        self.maps: dict[tuple[str, str], dict[str, str]] = {}
        self.labels: dict[tuple[str, str], dict[str, str]] = {}

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        found = self.maps.get((namespace, name))
        return dict(found) if found is not None else None

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str],
                          labels: Mapping[str, str]) -> None:
        if (namespace, name) in self.maps:
            raise PreconditionError("CONFLICT", "exists")
        self.maps[(namespace, name)] = dict(data)
        self.labels[(namespace, name)] = dict(labels)

    def patch_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        if (namespace, name) not in self.maps:
            raise PreconditionError("OBJECT_NOT_FOUND", f"configmap {namespace}/{name}")
        self.maps[(namespace, name)].update(data)


def test_the_config_map_store_creates_then_patches_one_key_per_log() -> None:
    api = FakeConfigMaps()
    store = ConfigMapStore(api, cluster="prod", namespace="kubegate", name="checkpoints")
    assert store.latest(ORIGIN) is None
    store.publish(ORIGIN, "first\n")
    store.publish("kubegate.io/audit/exchanger-1", "other\n")
    store.publish(ORIGIN, "second\n")
    assert api.maps[("kubegate", "checkpoints")] == {
        "kubegate.io_audit_exchanger-0": "second\n", "kubegate.io_audit_exchanger-1": "other\n"}
    assert api.labels[("kubegate", "checkpoints")] == {"app.kubernetes.io/managed-by": "kubegate"}
    assert store.latest(ORIGIN) == b"second\n"
    assert store.name == "configmap kubegate/checkpoints on cluster prod"


def test_a_config_map_key_holds_only_characters_a_key_may_hold() -> None:
    assert config_map_key("kubegate.io/audit/pod-7d9f:x y") == "kubegate.io_audit_pod-7d9f_x_y"


def test_a_config_map_failure_is_a_publish_error_naming_the_store() -> None:
    class Forbidden(FakeConfigMaps):
        def patch_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
            raise PreconditionError("KUBEGATE_FORBIDDEN", "patch configmap: answered 403")

    store = ConfigMapStore(Forbidden(), cluster="prod", namespace="kubegate", name="cp")
    with pytest.raises(CheckpointPublishError, match="configmap kubegate/cp on cluster prod: "
                       "patch configmap: answered 403") as raised:
        store.publish(ORIGIN, "note\n")
    assert isinstance(raised.value, UnavailableError)


def test_the_witness_store_posts_each_checkpoint_over_https(tmp_path: Path) -> None:
    with Witness(TestCA("witness CA"), tmp_path) as witness:
        store = WitnessStore(witness.url, ca_file=witness.ca_file)
        store.publish(ORIGIN, "a checkpoint\n")
        assert witness.received == ["a checkpoint\n"]
        witness.status = 503
        with pytest.raises(CheckpointPublishError, match="answered HTTP 503"):
            store.publish(ORIGIN, "another\n")
        untrusted = WitnessStore(witness.url)
        with pytest.raises(CheckpointPublishError, match="failed: "):
            untrusted.publish(ORIGIN, "x\n")
    assert store.latest(ORIGIN) is None
    with pytest.raises(ValueError, match="https"):
        WitnessStore("http://127.0.0.1/checkpoints")


# -- configuration -----------------------------------------------------------------------------

CLUSTER = {"name": "prod", "server": "https://10.0.0.1:6443", "caFile": "/ca.crt",
           "credentials": {"tokenFile": "/token"}}


def config_with(audit: object, clusters: list[dict[str, object]] | None = None,
                ) -> object:
    return build_config({"stateDir": "/state", "audit": audit,
                         "clusters": [CLUSTER] if clusters is None else clusters},
                        base=Path("/etc/kubegate"), environ={}, source="config.yaml")


def test_checkpoints_are_off_without_the_section() -> None:
    assert build_config({}, base=Path("/"), environ={}, source="x").checkpoints is None


def test_checkpoint_settings_have_defaults_that_fit_one_cluster() -> None:
    config = config_with({"checkpoints": {"configMap": {}}})
    settings = config.checkpoints  # type: ignore[attr-defined]
    assert settings.key_file == Path("/state/audit-checkpoint-key.pem") and settings.create_key
    assert settings.key_name == "kubegate.io/audit"
    assert settings.origin.startswith("kubegate.io/audit/") and settings.interval == 300
    assert (settings.config_map.cluster, settings.config_map.namespace,
            settings.config_map.name) == ("prod", "kubegate", "kubegate-audit-checkpoints")
    assert settings.witness is None


def test_a_configured_key_is_never_created() -> None:
    config = config_with({"checkpoints": {"key": "keys/audit.pem", "interval": "30s",
                                          "origin": "prod/exchanger-a",
                                          "witness": {"url": "https://w.example/cp"}}})
    settings = config.checkpoints  # type: ignore[attr-defined]
    assert settings.key_file == Path("/etc/kubegate/keys/audit.pem")
    assert not settings.create_key and settings.interval == 30
    assert settings.origin == "prod/exchanger-a" and settings.config_map is None


def test_every_checkpoint_setting_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        config_with({"checkpoints": {"keyName": "has space", "origin": "a+b", "interval": "0",
                                     "witness": {"url": "http://w.example"},
                                     "configMap": {"cluster": "nope"}, "extra": 1}})
    problems = "\n".join(refused.value.problems)
    for expected in ("audit.checkpoints: keyName: must be non-empty, without spaces or '+'",
                     "audit.checkpoints: origin: must be non-empty",
                     "audit.checkpoints: interval: must be at least 1s",
                     "audit.checkpoints.witness: url: must be an https URL",
                     "audit.checkpoints.configMap: cluster: 'nope' is not a configured",
                     "audit.checkpoints.extra: unknown field"):
        assert expected in problems


def test_checkpoints_need_a_place_off_the_host() -> None:
    with pytest.raises(ConfigError, match="needs configMap or witness"):
        config_with({"checkpoints": {}})


def test_a_config_map_needs_its_cluster_named_among_several() -> None:
    second = {**CLUSTER, "name": "staging"}
    with pytest.raises(ConfigError, match=r"audit.checkpoints.configMap.cluster: required"):
        config_with({"checkpoints": {"configMap": {}}}, clusters=[CLUSTER, second])


DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "base"


def test_deploy_base_publishes_where_it_ships_the_config_map_and_grants_just_that() -> None:
    settings = load_config(DEPLOY / "config.yaml", environ={}).checkpoints
    assert settings is not None and settings.config_map is not None
    assert settings.key_file == Path("/etc/kubegate/audit-key/key.pem")
    assert not settings.create_key  # an emptyDir state folder would make a key per pod
    shipped = yaml.safe_load((DEPLOY / "audit-checkpoints.yaml").read_text())["metadata"]
    assert (settings.config_map.namespace, settings.config_map.name) == (
        shipped["namespace"], shipped["name"])
    documents = [d for d in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if d]
    rules = [(d["metadata"].get("namespace"), rule) for d in documents
             if d["kind"] in ("Role", "ClusterRole") for rule in d["rules"]
             if "configmaps" in rule["resources"]]
    assert rules == [(shipped["namespace"], {
        "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [shipped["name"]],
        "verbs": ["get", "patch"]})]
    pod = yaml.safe_load((DEPLOY / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "audit-key"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "audit-key"]
    assert Path(mount["mountPath"]) == settings.key_file.parent and mount["readOnly"]
    assert volume["secret"]["secretName"] == "kubegate-audit-key"
