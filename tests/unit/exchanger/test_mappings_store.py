"""The mapping store and folder watcher: reloads swap in a new set, a bad reload keeps the last
good one, and the watcher thread reloads on change and starts and stops cleanly."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from exchanger.mappings import FolderWatcher, MappingStore, ReloadResult, load_folder
from exchanger.mappings.store import fingerprint_folder, store_for_folder
from kubegate.errors import ConfigError


def document(name: str, repository_id: str = "1") -> str:
    return f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata:
  name: {name}
spec:
  issuer: github
  claims:
  - claim: repository_id
    equals: "{repository_id}"
  grant:
    cluster: default
    namespace: web
    serviceAccount: deployer
"""


BROKEN = document("broken").replace("equals:", "glob: '**'\n    equals:")


def replace(path: Path, text: str) -> None:
    """Write atomically (as a ConfigMap update does), so a poll never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def names(store: MappingStore) -> list[str]:
    return [mapping.name for mapping in store.current.mappings]


def folder_store(folder: Path) -> MappingStore:
    return MappingStore(lambda: load_folder(folder))


def test_the_first_load_failing_raises_config_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BROKEN)
    with pytest.raises(ConfigError, match="a.yaml: document 1 \\(broken\\)"):
        folder_store(tmp_path)


def test_reload_swaps_in_the_changed_set(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    store = folder_store(tmp_path)
    before = store.current
    (tmp_path / "b.yaml").write_text(document("second", "2"))
    assert store.reload() == ReloadResult(ok=True, mapping_count=2)
    assert names(store) == ["first", "second"]
    assert [m.name for m in before.mappings] == ["first"]


def test_a_bad_reload_keeps_the_last_good_set_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    store = folder_store(tmp_path)
    (tmp_path / "a.yaml").write_text(BROKEN)
    with caplog.at_level(logging.WARNING, logger="exchanger.mappings.store"):
        result = store.reload()
    assert (result.ok, result.mapping_count) == (False, 1)
    assert result.problems[0].startswith("a.yaml: document 1 (broken): spec.claims[0]")
    assert names(store) == ["first"]
    assert "keeping the last good set of 1" in caplog.text
    assert "a.yaml: document 1 (broken)" in caplog.text


def test_a_reload_result_is_ok_exactly_without_problems() -> None:
    with pytest.raises(ValueError, match="exactly"):
        ReloadResult(ok=True, problems=("x",), mapping_count=0)
    with pytest.raises(ValueError, match="exactly"):
        ReloadResult(ok=False, mapping_count=0)


def test_poll_reloads_only_when_the_files_change(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    store = folder_store(tmp_path)
    seen: list[ReloadResult] = []
    watcher = FolderWatcher(store, tmp_path, on_reload=seen.append,
                            baseline=fingerprint_folder(tmp_path))
    assert watcher.poll() is None
    (tmp_path / "a.yaml").write_text(document("renamed"))
    assert watcher.poll() == ReloadResult(ok=True, mapping_count=1)
    assert watcher.poll() is None
    assert seen == [ReloadResult(ok=True, mapping_count=1)]
    assert names(store) == ["renamed"]


def test_touching_a_file_without_changing_it_does_not_reload(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(document("first"))
    before = fingerprint_folder(tmp_path)
    os.utime(path, (1, 1))
    (tmp_path / "notes.txt").write_text("ignored")
    assert fingerprint_folder(tmp_path) == before


@pytest.mark.parametrize("change", ["add", "remove", "edit"])
def test_fingerprint_changes_on_add_remove_and_edit(tmp_path: Path, change: str) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    before = fingerprint_folder(tmp_path)
    if change == "add":
        (tmp_path / "b.yml").write_text(document("second"))
    elif change == "remove":
        (tmp_path / "a.yaml").unlink()
    else:
        (tmp_path / "a.yaml").write_text(document("first", "2"))
    assert fingerprint_folder(tmp_path) != before


def test_a_missing_folder_has_a_fingerprint_and_reloads_keep_the_last_good_set(
        tmp_path: Path) -> None:
    folder = tmp_path / "mappings"
    folder.mkdir()
    (folder / "a.yaml").write_text(document("first"))
    store = folder_store(folder)
    watcher = FolderWatcher(store, folder, baseline=fingerprint_folder(folder))
    (folder / "a.yaml").unlink()
    folder.rmdir()
    result = watcher.poll()
    assert result is not None and not result.ok
    assert names(store) == ["first"]


def test_store_for_folder_misses_no_change_made_before_the_watcher_starts(
        tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    store, watcher = store_for_folder(tmp_path)
    (tmp_path / "b.yaml").write_text(document("second", "2"))
    assert watcher.poll() == ReloadResult(ok=True, mapping_count=2)


def wait_for(results: list[ReloadResult], count: int, done: threading.Event) -> None:
    """Wait (returning as soon as it happens) for the watcher's next reload."""
    assert done.wait(timeout=5.0), f"the watcher reloaded {len(results)} time(s), not {count}"


def test_the_watcher_thread_reloads_on_change_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    results: list[ReloadResult] = []
    reloaded = threading.Event()

    def on_reload(result: ReloadResult) -> None:
        results.append(result)
        reloaded.set()

    store, watcher = store_for_folder(tmp_path, interval=0.02, on_reload=on_reload)
    watcher.start()
    try:
        assert watcher.running
        with pytest.raises(RuntimeError, match="already running"):
            watcher.start()
        replace(tmp_path / "a.yaml", document("second"))
        wait_for(results, 1, reloaded)
        assert names(store) == ["second"]
        reloaded.clear()
        replace(tmp_path / "a.yaml", BROKEN)
        wait_for(results, 2, reloaded)
        assert names(store) == ["second"]
        assert [r.ok for r in results] == [True, False]
    finally:
        watcher.stop()
    assert not watcher.running


def test_the_watcher_survives_a_failing_callback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a.yaml").write_text(document("first"))
    calls = [threading.Event(), threading.Event()]

    def on_reload(result: ReloadResult) -> None:
        first = not calls[0].is_set()
        calls[0 if first else 1].set()
        if first:
            raise RuntimeError("metrics exporter is broken")

    store = folder_store(tmp_path)
    with caplog.at_level(logging.ERROR, logger="exchanger.mappings.store"), \
            FolderWatcher(store, tmp_path, interval=0.02, on_reload=on_reload) as watcher:
        replace(tmp_path / "a.yaml", document("second"))
        assert calls[0].wait(timeout=5.0)
        replace(tmp_path / "a.yaml", document("third"))
        assert calls[1].wait(timeout=5.0)
        assert watcher.running
    assert "poll failed" in caplog.text
    assert names(store) == ["third"]
    assert not watcher.running


def test_the_watcher_refuses_a_non_positive_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        FolderWatcher(folder_store(tmp_path), tmp_path, interval=0)


def test_stopping_a_watcher_that_never_started_is_harmless(tmp_path: Path) -> None:
    watcher = FolderWatcher(folder_store(tmp_path), tmp_path)
    watcher.stop()
    assert not watcher.running
