"""A mapping file that would cost the exchanger more than a mapping can (an alias bomb, deep
nesting, a huge scalar, endless documents) is a mapping problem like any other: named by
file, document and field, reported quickly, by the folder loader, the running store (which
keeps serving its last good set) and `kubegate mappings validate`, with no traceback. No
value is ever put whole into a message, whether it came from a file or from the cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchanger.config import load_config
from exchanger.mappings import MappingSet, MappingStore, load_folder
from exchanger.mappings.store import FolderWatcher
from exchanger.mappings.validate import parse_mapping
from exchanger.mappings.verdict import judge
from kubegate.cli import main
from kubegate.errors import ConfigError

GOOD = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: web}
spec:
  issuer: github
  claims: [{claim: repository_id, equals: "74"}, {claim: event_name, equals: push}]
  grant: {cluster: prod, namespace: web, serviceAccount: deployer}
"""
LAUGHS = "".join(
    ["x-l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    + [f"x-l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9)])


def bomb_in(field: str) -> str:
    """A mapping whose `field` is a billion laughs (the anchors come first, as extra keys)."""
    return {
        "apiVersion": LAUGHS + GOOD.replace("apiVersion: kubegate.io/v1alpha1", "apiVersion: *l8"),
        "metadata.name": LAUGHS + GOOD.replace("{name: web}", "{name: *l8}"),
        "spec.claims": LAUGHS + GOOD.replace("claims: [", "claims: *l8\n  x: ["),
        "spec.claims[0].equals": LAUGHS + GOOD.replace('equals: "74"', "equals: *l8"),
        "a key": LAUGHS + GOOD + "? *l8\n: x\n",
    }[field]


def deep_flow_list(depth: int) -> str:
    return GOOD.replace('equals: "74"', 'equals: ' + "[" * depth + "]" * depth)


def deep_flow_object(depth: int) -> str:
    return GOOD.replace('equals: "74"', 'equals: ' + "{a: " * depth + "1" + "}" * depth)


def deep_block_list(depth: int) -> str:
    return GOOD + "extra:\n" + "- " * depth + "x\n"


def deep_block_object(depth: int) -> str:
    return GOOD + "extra:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth))


HOSTILE: dict[str, tuple[str, str]] = {
    "laughs in apiVersion": (bomb_in("apiVersion"), "expands to more than 100000 values"),
    "laughs in metadata.name": (bomb_in("metadata.name"), "expands to more than 100000"),
    "laughs in spec.claims": (bomb_in("spec.claims"), "expands to more than 100000 values"),
    "laughs in a condition value": (bomb_in("spec.claims[0].equals"),
                                    "expands to more than 100000 values"),
    "laughs as a top-level key": (bomb_in("a key"), "expands to more than 100000 values"),
    "a 5,000-level flow list": (deep_flow_list(5000), "nested more than 64 levels deep"),
    "a 5,000-level flow object": (deep_flow_object(5000), "nested more than 64 levels deep"),
    "a 5,000-level block list": (deep_block_list(5000), "nested more than 64 levels deep"),
    "a 1,000-level block object": (deep_block_object(1000), "nested more than 64 levels"),
    "a 5,000-level block object": (deep_block_object(5000), "longer than 1048576 characters"),
    "a 10 MB scalar": (GOOD.replace('"74"', '"' + "7" * (10 << 20) + '"'),
                       "longer than 1048576 characters"),
    "a cycle": (GOOD.replace('equals: "74"', "equals: &c [*c]"), "a cycle"),
    "many documents": (GOOD + "---\n{}\n" * 3000, "more than 2000 documents in one text"),
}
IDS = list(HOSTILE)


def hostile_folder(folder: Path, name: str) -> Path:
    (folder / "good.yaml").write_text(GOOD.replace("{name: web}", "{name: good}"))
    (folder / "bad.yaml").write_text(HOSTILE[name][0])
    return folder


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@pytest.mark.timeout(60)  # what these replace froze, or died of recursion
@pytest.mark.parametrize("name", IDS)
def test_the_folder_loader_reports_a_hostile_file_with_file_document_and_field(
        tmp_path: Path, name: str) -> None:
    hostile_folder(tmp_path, name)
    problems: list[str] = []

    def load() -> None:
        with pytest.raises(ConfigError) as invalid:
            load_folder(tmp_path)
        problems.extend(invalid.value.problems)

    assert timed(load) < 3.0
    (problem,) = problems
    assert problem.startswith("bad.yaml: document ")
    assert HOSTILE[name][1] in problem
    assert len(problem) < 300


@pytest.mark.parametrize(("name", "field"), [
    ("laughs in apiVersion", "x-l5"), ("laughs in a condition value", "x-l5"),
    ("a 5,000-level flow object", "spec.claims[0].equals.a.a"),
    ("a 5,000-level block list", "extra[0][0][0]"), ("a cycle", "spec.claims[0].equals[0]"),
])
def test_the_problem_names_the_field_where_the_bound_is_crossed(
        tmp_path: Path, name: str, field: str) -> None:
    hostile_folder(tmp_path, name)
    with pytest.raises(ConfigError) as invalid:
        load_folder(tmp_path)
    assert invalid.value.problems[0].startswith(f"bad.yaml: document 1: {field}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", IDS)
def test_a_hostile_file_added_to_a_watched_folder_is_reported_and_the_last_set_kept(
        tmp_path: Path, name: str) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    store = MappingStore(lambda: load_folder(tmp_path))
    reloads = []
    watcher = FolderWatcher(store, tmp_path, interval=3600, on_reload=reloads.append)
    watcher.start()
    try:
        (tmp_path / "bad.yaml").write_text(HOSTILE[name][0])
        result = watcher.poll()
    finally:
        watcher.stop()
    assert result is not None and not result.ok
    assert reloads == [result]
    assert result.problems[0].startswith("bad.yaml: document ")
    assert HOSTILE[name][1] in result.problems[0]
    assert [m.name for m in store.current.mappings] == ["web"]


@pytest.mark.parametrize("error", [RecursionError, MemoryError])
def test_a_recursion_or_memory_error_while_loading_is_a_bad_load_not_a_traceback(
        error: type[BaseException]) -> None:
    first = MappingSet(mappings=())
    loads = iter([first])

    def loader() -> Any:
        for loaded in loads:
            return loaded
        raise error()

    store = MappingStore(loader)
    result = store.reload()
    assert not result.ok
    assert result.problems == (f"trust mappings not loaded: {error.__name__} (a document too "
                               "deep or too large)",)
    assert store.current is first
    with pytest.raises(ConfigError, match=error.__name__):
        MappingStore(loader)


# -- kubegate mappings validate ------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", IDS)
def test_validate_reports_a_hostile_file_on_one_line_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    hostile_folder(tmp_path, name)
    status = main(["mappings", "validate", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 1
    (line,) = out.splitlines()
    assert line.startswith(f"{tmp_path / 'bad.yaml'}: document ")
    assert ": error: " in line and HOSTILE[name][1] in line
    assert len(line) < 300 + len(str(tmp_path))
    assert "Traceback" not in out + err


def test_validate_still_reports_the_documents_before_a_hostile_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text(GOOD.replace("prod", "") + "---\n" + bomb_in("a key"))
    status = main(["mappings", "validate", str(tmp_path / "bad.yaml")])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    assert lines[0].startswith(f"{tmp_path / 'bad.yaml'}: document 1 (web): error: "
                               "spec.grant.cluster")
    assert lines[1].startswith(f"{tmp_path / 'bad.yaml'}: document 2: error: x-l5: expands")


def test_explain_refuses_a_hostile_claims_file_as_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "claims.yaml").write_text(LAUGHS + "iss: x\nsub: *l8\n")
    status = main(["mappings", "explain", "--claims", str(tmp_path / "claims.yaml"),
                   "--issuer", "github", "--mappings", str(tmp_path / "good.yaml")])
    _, err = capsys.readouterr()
    assert status == 2
    assert "expands to more than 100000 values" in err and "Traceback" not in err


@pytest.mark.timeout(60)
def test_a_hostile_config_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(LAUGHS + "listen: 127.0.0.1:0\nissuers: *l8\n")
    with pytest.raises(ConfigError) as invalid:
        load_config(path, environ={})
    assert invalid.value.problems == [
        f"{path}: x-l5: expands to more than 100000 values through aliases (line 6, column 7)"]


# -- values from the cluster (JSON: no aliases, but any depth and size) ----------------------


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def resource(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping",
        "metadata": {"name": "web", "namespace": "kubegate"},
        "spec": {"issuer": "github", "claims": [{"claim": "repository_id", "equals": "74"}],
                 "grant": {"cluster": "prod", "namespace": "web",
                           "serviceAccount": "deployer"}},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = document
        for part in parents:
            target = target[part] if not part.isdigit() else target[int(part)]
        target[last if not last.isdigit() else int(last)] = value
    return document


HUGE = "x" * (10 << 20)
DEEP = nested(100_000)
FIELDS = ["apiVersion", "kind", "metadata__name", "spec__issuer", "spec__description",
          "spec__claims", "spec__claims__0", "spec__claims__0__claim",
          "spec__claims__0__equals", "spec__grant__namespace", "spec__grant__serviceAccount",
          "spec__grant__maxLifetime", "spec__grant__groups", "spec__grant__audiences"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", [HUGE, DEEP, {HUGE: 1}, [HUGE, HUGE]],
                         ids=["10 MB string", "100,000-deep list", "10 MB key", "10 MB items"])
@pytest.mark.parametrize("field", FIELDS)
def test_a_huge_or_deep_value_in_any_field_makes_a_short_message(field: str, value: Any) -> None:
    def judge_it() -> None:  # some are valid (a 10 MB description): then no message at all
        _, problems = parse_mapping(resource(**{field: value}), source="web.yaml: document 1",
                                    issuers=frozenset({"github"}))
        assert all(len(problem) < 300 for problem in problems), problems
        verdict = judge(resource(**{field: value}), namespace="kubegate", file_sources={},
                        issuers=None, clusters=None)
        assert len(verdict.message) < 1000

    assert timed(judge_it) < 3.0


def test_an_unknown_field_with_a_huge_name_is_named_short() -> None:
    _, problems = parse_mapping(resource(**{f"spec__{HUGE}": 1}), source="s")
    (problem,) = problems
    assert problem.startswith("s (web): spec.xxxxx") and problem.endswith(": unknown field")
    assert len(problem) < 200
