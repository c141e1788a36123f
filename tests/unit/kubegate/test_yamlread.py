"""The bounded YAML reader: a document's cost (size, documents, nesting, aliases and what
they expand to) is refused before any value is built from it, quickly and in little memory,
with the document, line, column and field named; nothing else escapes it."""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kubegate import yamlread
from kubegate.yamlread import YamlError, documents, single_document


def laughs(levels: int = 9, *, at: str = "bomb", indent: str = "") -> str:
    """A billion laughs: each level an anchored list of nine aliases to the one before."""
    lines = [f"{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + f"\n{indent}{at}: *l{levels - 1}\n"


def flow_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def flow_object(depth: int) -> str:
    return "{a: " * depth + "1" + "}" * depth


def block_list(depth: int) -> str:
    return "".join("  " * i + "-\n" for i in range(depth)) + "  " * depth + "- x\n"


def block_object(depth: int) -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "leaf\n"


PARSERS = [pytest.param(True, id="libyaml", marks=pytest.mark.skipif(
    not yamlread.LIBYAML, reason="PyYAML without libyaml")), pytest.param(False, id="python")]


def refusal(text: str, **options: Any) -> YamlError:
    with pytest.raises(YamlError) as refused:
        list(documents(text, **options))
    return refused.value


def timed_refusal(text: str, libyaml: bool) -> tuple[YamlError, float]:
    started = time.perf_counter()
    error = refusal(text, libyaml=libyaml)
    return error, time.perf_counter() - started


def peak_mebibytes(read: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()


HOSTILE: dict[str, tuple[str, str]] = {
    "billion laughs": (laughs(), "expands to more than 100000 values through aliases"),
    "laughs in a nested field": ("metadata:\n" + laughs(at="name", indent="  "),
                                 "expands to more than 100000 values"),
    "a merge-key bomb": (
        "m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8, k9: 9}\n"
        + "".join(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}\n"
                  for i in range(1, 8)), "expands to more than 100000 values"),
    "an alias cycle": ("a: &a [x, *a]\n", "an alias refers to a node that contains it"),
    "too many aliases": ("a: &a x\nb: [" + ", ".join(["*a"] * 300) + "]\n",
                         "more than 256 aliases in one document"),
    "a 5,000-level flow list": ("x: " + flow_list(5000), "nested more than 64 levels deep"),
    "a 5,000-level flow object": ("x: " + flow_object(5000), "nested more than 64 levels"),
    "a 1,000-level block list": (block_list(1000), "nested more than 64 levels deep"),
    "a 1,000-level block object": (block_object(1000), "nested more than 64 levels deep"),
    "deep through aliases": ("a: &a " + flow_list(40) + "\nb: " + "[" * 40 + "*a" + "]" * 40,
                             "nested more than 64 levels deep through aliases"),
    "a text over 1 MiB": ("x: " + "y" * (10 << 20), "longer than 1048576 characters"),
    "a flow list of a million": ("x: " + flow_list(1 << 19)[:(1 << 20) - 8],
                                 "nested more than 64 levels deep"),
    "too many values": ("[" + "1," * 110_000 + "]", "more than 100000 values"),
    "too many documents": ("--- {}\n" * 2100, "more than 2000 documents in one text"),
    "a base-60 number": ("x: 1" + ":1" * 200_000, "a number longer than 100 characters"),
    "a 5,000-digit number": ("x: " + "9" * 5000, "a number longer than 100 characters"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("libyaml", PARSERS)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_document_is_refused_quickly_in_little_memory(name: str,
                                                                libyaml: bool) -> None:
    text, problem = HOSTILE[name]
    error, seconds = timed_refusal(text, libyaml)
    assert problem in str(error)
    assert error.document >= 1 and error.bound
    assert len(str(error)) < 300  # never a value
    assert seconds < (2.0 if libyaml else 8.0), f"took {seconds:.2f}s"


EXPANDING = ["billion laughs", "laughs in a nested field", "a merge-key bomb",
             "an alias cycle", "too many aliases", "deep through aliases",
             "a 5,000-level flow list", "a 5,000-level flow object", "a text over 1 MiB"]


@pytest.mark.parametrize("libyaml", PARSERS)
@pytest.mark.parametrize("name", EXPANDING)
def test_a_refusal_costs_the_memory_of_the_text_not_of_its_expansion(name: str,
                                                                      libyaml: bool) -> None:
    text, _ = HOSTILE[name]
    assert peak_mebibytes(lambda: refusal(text, libyaml=libyaml)) < 4


@pytest.mark.parametrize("libyaml", PARSERS)
@pytest.mark.parametrize(("text", "field"), [
    ("metadata:\n" + laughs(at="name", indent="  "), "metadata.l5"),
    ("spec:\n  claims:\n  - claim: sub\n    equals: " + "[ " * 100 + "]" * 100,
     "spec.claims[0].equals"),
    ("a: &a x\nspec: {claims: [" + ", ".join(["*a"] * 300) + "]}\n", "spec.claims[256]"),
    ("x: &x [*x]\n", "x[0]"),
])
def test_a_refusal_names_the_field_where_the_bound_is_crossed(text: str, field: str,
                                                              libyaml: bool) -> None:
    assert refusal(text, libyaml=libyaml).field.startswith(field)


def test_a_refusal_names_document_line_and_column() -> None:
    error = refusal("a: 1\n---\nb: 2\n---\nc: " + flow_list(100) + "\n")
    assert (error.document, error.line) == (3, 5)
    assert error.field.startswith("c[0][0]")
    assert str(error) == (f"line 5, column {error.column}: {error.field}: nested more than 64 "
                          "levels deep")
    assert error.described() == (f"{error.field}: nested more than 64 levels deep "
                                 f"(line 5, column {error.column})")


def test_documents_before_a_refused_one_are_read() -> None:
    read: list[tuple[int, Any]] = []
    with pytest.raises(YamlError) as refused:
        read.extend(documents("a: 1\n---\n---\nb: 2\n---\n" + laughs()))
    assert read == [(1, {"a": 1}), (2, None), (3, {"b": 2})]
    assert refused.value.document == 4


def test_a_long_field_path_keeps_its_start_and_end() -> None:
    field = refusal("x: " + flow_object(100)).field
    assert field.startswith("x.a.a") and "..." in field and len(field) < 100


def test_a_huge_key_is_never_shown_whole() -> None:
    key = "k" * 100_000
    error = refusal(f"{key}: " + flow_list(100))
    assert len(error.field) < 100
    assert len(refusal(f"{key}: 1\n{key}: 2\n").problem) < 100


def test_what_is_within_the_bounds_is_read_as_plain_values() -> None:
    text = laughs(levels=4) + "deep: " + flow_list(60) + "\nn: 12\nf: 1.5\nb: true\n"
    (number, value), = documents(text)
    assert number == 1
    assert len(value["bomb"]) == 9 and value["bomb"][0][0][0][0] == "lol"
    assert (value["n"], value["f"], value["b"]) == (12, 1.5, True)
    assert single_document("base: &b {x: 1}\nmerged: {<<: *b, y: 2}\n")["merged"] == {
        "x": 1, "y": 2}


def test_aliases_are_shared_not_copied() -> None:
    value = single_document("a: &a [1, 2]\nb: *a\n")
    assert value["a"] is value["b"]


def test_duplicate_keys_are_refused_unless_asked_not_to() -> None:
    assert "found duplicate key 'a'" in str(refusal("a: 1\na: 2\n"))
    assert single_document("a: 1\na: 2\n", unique_keys=False) == {"a": 2}


def test_a_single_document_is_one_document_or_none() -> None:
    assert single_document("a: 1\n") == {"a": 1}
    assert single_document("") is None
    with pytest.raises(YamlError, match="expected a single document"):
        single_document("a: 1\n---\nb: 2\n")


def test_invalid_yaml_is_a_yaml_error_with_its_position() -> None:
    error = refusal("a: [unclosed\n")
    assert (error.document, error.line, error.bound) == (1, 2, False)
    assert error.described().startswith("invalid YAML: line 2, column 1: ")


def test_a_value_its_type_cannot_hold_is_a_yaml_error() -> None:
    error = refusal("x: 2024-13-01\n")
    assert (error.document, error.bound) == (1, False)
    assert error.problem == "a value cannot be read: month must be in 1..12"


def test_unsafe_tags_are_refused() -> None:
    assert "could not determine a constructor" in str(
        refusal("x: !!python/object/apply:os.system [echo]\n"))


@contextmanager
def recursion_limit(frames: int) -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(frames)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


@pytest.mark.parametrize("read", [lambda t: list(documents(t)), single_document],
                         ids=["documents", "single_document"])
def test_a_recursion_error_never_escapes(read: Callable[[str], object]) -> None:
    """PyYAML composes recursively: with little stack left even a document within the
    bounds runs out of it, and that is a YamlError, not a RecursionError."""
    with recursion_limit(stack_depth() + 60), pytest.raises(YamlError) as refused:
        read("x: " + flow_list(60))
    assert "nested too deeply" in refused.value.problem


def test_the_bounds_are_what_the_module_says() -> None:
    assert (yamlread.MAX_DEPTH, yamlread.MAX_ALIASES, yamlread.MAX_NODES) == (64, 256, 100_000)
    assert yamlread.MAX_TEXT_CHARACTERS == 1 << 20
