r"""Mapping regexes and globs match in time linear in the claim value (RE2), whatever the
pattern: a branch name chosen by whoever pushes can no longer hold the exchanger. What only a
backtracking engine can do (backreferences, lookaround, atomic groups, possessive
quantifiers) is refused where a mapping is loaded and by `kubegate mappings validate`, and
every pattern still means what `re.fullmatch(pattern, value, re.ASCII)` means."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanger.identity import Identity
from exchanger.mappings import Condition, MappingSet, Operator, parse_documents
from kubegate.cli import main
from kubegate.errors import ConfigError, PermissionDeniedError
from tests.support.hypothesis_profiles import FUZZ

GENEROUS_SECONDS = 0.5  # a linear match of 100 characters takes microseconds

# (pattern, a hostile value, whether it matches): each takes Python's backtracking `re`
# seconds to forever.
PATHOLOGICAL_REGEXES = [
    (r"(a+)+$", "a" * 60 + "!", False),
    (r"(a|a)*$", "a" * 60 + "!", False),
    (r"(a|aa)+$", "a" * 90 + "!", False),
    (r"(.*a){12}", "a" * 60 + "!", False),
    (r"([a-z]+)*$", "a" * 60 + "!", False),
    (r"(\w+\s?)+$", "a" * 60 + "!", False),
    (r"^(a?){25}a{25}$", "a" * 25, True),
    (r"^(a?){40}a{40}$", "a" * 40 + "!", False),
    (r"(a*)*b", "a" * 80, False),
    (r"refs/heads/(\w+-?)+/release", "refs/heads/" + "a" * 40 + "!", False),
    (r"(?i)(x+x+)+y", "X" * 70, False),
    (r"(\d+|[0-9]+)+\.", "1" * 70, False),
]
PATHOLOGICAL_GLOBS = [
    ("*a*a*a*a*a*a*a*a*a*a*!", "a" * 100, False),
    ("refs/heads/*-*-*-*-*-*-*-*-*-*-!", "refs/heads/" + "-" * 90, False),
]


def regex(pattern: str) -> Condition:
    return Condition(path=("ref",), operator=Operator.REGEX, expected=pattern)


def glob(pattern: str) -> Condition:
    return Condition(path=("ref",), operator=Operator.GLOB, expected=pattern)


def elapsed(condition: Condition, value: str) -> tuple[bool, float]:
    started = time.perf_counter()
    accepted = condition.accepts(value)
    return accepted, time.perf_counter() - started


# -- linear time ----------------------------------------------------------------------------


@pytest.mark.timeout(60)  # the backtracking matcher this replaces never finishes these
@pytest.mark.parametrize(("pattern", "value", "matches"), PATHOLOGICAL_REGEXES,
                         ids=[pattern for pattern, _, _ in PATHOLOGICAL_REGEXES])
def test_a_catastrophic_regex_judges_a_hostile_value_quickly(pattern: str, value: str,
                                                             matches: bool) -> None:
    accepted, seconds = elapsed(regex(pattern), value)
    assert accepted is matches
    assert seconds < GENEROUS_SECONDS, f"{pattern} took {seconds:.2f}s on {len(value)} chars"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("pattern", "value", "matches"), PATHOLOGICAL_GLOBS,
                         ids=[pattern for pattern, _, _ in PATHOLOGICAL_GLOBS])
def test_a_glob_with_many_wildcards_judges_a_hostile_value_quickly(pattern: str, value: str,
                                                                    matches: bool) -> None:
    accepted, seconds = elapsed(glob(pattern), value)
    assert accepted is matches
    assert seconds < GENEROUS_SECONDS, f"{pattern} took {seconds:.2f}s on {len(value)} chars"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", [pattern for pattern, _, _ in PATHOLOGICAL_REGEXES])
def test_matching_time_grows_no_faster_than_the_value(pattern: str) -> None:
    """The largest claim a 16 KiB token can carry costs about what a short one does."""
    condition = regex(pattern)
    for length in (100, 1_000, 15_000):
        _, seconds = elapsed(condition, "a" * length + "!")
        assert seconds < GENEROUS_SECONDS, f"{pattern}: {seconds:.2f}s on {length} chars"


def test_a_catastrophic_pattern_still_matches_what_it_describes() -> None:
    assert regex(r"(a+)+$").accepts("a" * 5_000)
    assert regex(r"(\w+\s?)+$").accepts("release candidate 7")
    assert regex(r"^(a?){25}a{25}$").accepts("a" * 40)
    assert glob("*a*a*a*a*a*a*a*a*a*a*!").accepts("a" * 50 + "!")


CLAIMS: dict[str, Any] = {"repository_id": "74", "event_name": "push"}
HOSTILE_MAPPING = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: releases}
spec:
  issuer: github
  claims:
  - {claim: repository_id, equals: "74"}
  - {claim: event_name, equals: push}
  - {claim: ref, regex: '(refs/heads/(\\w+-?)+)+/release'}
  grant: {cluster: prod, namespace: web, serviceAccount: deployer}
"""


def identity(ref: str) -> Identity:
    return Identity(issuer="github", issuer_url="https://issuer.example", subject="someone",
                    token_id="jti-1", audiences=("kubegate",), issued_at=0, expires_at=300,
                    claims={**CLAIMS, "ref": ref})


@pytest.mark.timeout(60)
def test_a_loaded_mapping_with_a_catastrophic_regex_denies_a_hostile_ref_quickly() -> None:
    mappings = MappingSet(mappings=parse_documents(HOSTILE_MAPPING, "releases.yaml"))
    started = time.perf_counter()
    with pytest.raises(PermissionDeniedError):
        mappings.match(identity("refs/heads/" + "a" * 40 + "!"))
    with pytest.raises(PermissionDeniedError):
        mappings.match(identity("refs/heads/" + "a" * 40 + "!"), "releases")
    assert time.perf_counter() - started < 2 * GENEROUS_SECONDS
    assert mappings.match(identity("refs/heads/hot-fix/release")).name == "releases"


# -- what RE2 cannot do is refused ----------------------------------------------------------

REFUSED = [
    (r"(a)\1", "backreferences"),
    (r"(?P<x>a)(?P=x)", "backreferences"),
    (r"refs/heads/(?=main)\w+", "lookahead and lookbehind"),
    (r"refs/heads/(?!main)\w+", "lookahead and lookbehind"),
    (r"(?<=refs/)heads/main", "lookahead and lookbehind"),
    (r"(?<!x)main", "lookahead and lookbehind"),
    (r"(a)(?(1)b|c)", "conditionals"),
    (r"(?>a+)b", "atomic groups"),
    (r"a++b", "possessive quantifiers"),
    (r"a*+b", "possessive quantifiers"),
    (r"a{1,3}+b", "possessive quantifiers"),
    (r"\C", "invalid regex: bad escape \\C"),
    (r"a{1001}", "counts go up to 1000"),
    (r"(?:(?:a{40}){40})", "counts go up to 1000"),
    ("a{1000}" * 6, "pattern too big"),
    ("(" * 40 + "a" + ")" * 40, "nested deeper than 32"),
    ("(" * 500 + "a" + ")" * 500, "nested deeper than 32"),
    ("a" * 1025, "longer than 1024"),
]


@pytest.mark.parametrize(("pattern", "message"), REFUSED, ids=[p[:30] for p, _ in REFUSED])
def test_what_only_backtracking_can_match_is_refused_when_the_condition_is_built(
        pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        regex(pattern)
    assert len(str(refused.value)) < 200  # never the pattern itself


def test_a_glob_is_limited_by_its_own_length_not_by_that_of_its_translation() -> None:
    dotted = "." * 1024  # each '.' becomes '\\.' for the regex engine
    assert glob(dotted).accepts(dotted)
    with pytest.raises(ValueError, match="longer than 1024"):
        glob(dotted + ".")


def test_the_refusal_says_why() -> None:
    with pytest.raises(ValueError) as refused:
        regex(r"(a)\1")
    assert str(refused.value) == ("backreferences (\\1, (?P=name)) are not supported: regexes "
                                  "are matched by RE2, in linear time")


def mapping_with(pattern: str) -> str:
    escaped = pattern.replace("'", "''")
    return HOSTILE_MAPPING.replace("(refs/heads/(\\w+-?)+)+/release", escaped)


@pytest.mark.parametrize(("pattern", "message"), REFUSED[:13], ids=[p for p, _ in REFUSED[:13]])
def test_the_loader_reports_a_refused_regex_with_file_document_and_field(
        pattern: str, message: str) -> None:
    with pytest.raises(ConfigError) as invalid:
        parse_documents(mapping_with(pattern), "web.yaml")
    (problem,) = invalid.value.problems
    assert problem.startswith("web.yaml: document 1 (releases): spec.claims[2].regex: ")
    assert message in problem


def test_validate_reports_each_refused_regex_on_its_own_line_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patterns = [r"(a)\1", r"(?=a)b", r"(?>a)b", r"a++"]
    text = "---\n".join(mapping_with(p).replace("releases", f"r{i}")
                       for i, p in enumerate(patterns))
    (tmp_path / "web.yaml").write_text(text)
    status = main(["mappings", "validate", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 1
    lines = out.splitlines()
    assert [line.split(": error: ")[0] for line in lines] == [
        f"{tmp_path / 'web.yaml'}: document {i + 1} (r{i})" for i in range(4)]
    assert all(": error: spec.claims[2].regex: " in line for line in lines)
    refused = [line.split("regex: ")[1].split(" ")[0] for line in lines]
    assert refused == ["backreferences", "lookahead", "atomic", "possessive"]
    assert "Traceback" not in out + err


# -- the ASCII rules and full-match semantics of `re` are kept --------------------------------


@pytest.mark.parametrize(("pattern", "value", "accepted"), [
    (r"(?i)k8s", "\u212a8s", False),  # Kelvin sign: RE2 alone would fold it to k
    (r"(?i)k8s", "K8S", True),
    (r"(?i)[a-z]+", "\u017f", False),  # long s: RE2 alone would fold it to s
    (r"(?i)é", "É", False),  # re.ASCII folds ASCII letters only
    (r"é", "é", True),  # literal non-ASCII still matches
    (r"\d+", "\u0661\u0662", False),
    (r"\w+", "\u0430", False),
    (r"\s", "\x0b", True),  # Python's \s has the vertical tab, RE2's not
    (r"\S", "\x0b", False),
    (r".", "\n", False),
    (r"(?s).", "\n", True),
    (r"main", "main\n", False),
    (r"main$", "main\n", False),
    (r"^main$", "main", True),
    (r"main\Z", "main", True),
    (r"(?m)^a$\n^b$", "a\nb", True),
    (r"\bmain\b", "main", True),
    (r"a{,3}", "aaa", True),
    (r"(?x) m a i n  # verbose", "main", True),
    (r"[[:alpha:]]", "a", False),  # Python reads a POSIX class as the characters "[:alph"
    (r".*", "\ud800", False),  # not Unicode: matches nothing
])
def test_patterns_mean_what_they_mean_under_python_re_ascii(pattern: str, value: str,
                                                            accepted: bool) -> None:
    with pytest.warns(FutureWarning) if "[[" in pattern else contextlib.nullcontext():
        condition = regex(pattern)  # Python warns of "[[" as re.compile always did
    assert condition.accepts(value) is accepted


def test_a_dollar_before_more_pattern_never_matches_more_than_under_re() -> None:
    """Python's `$` also holds before a final newline; RE2 has no such anchor, so `$` is the
    end: stricter, never looser."""
    assert re.fullmatch(r"main$\n", "main\n")
    assert not regex(r"main$\n").accepts("main\n")


ATOMS = st.sampled_from([
    "a", "b", "A", "1", "-", r"\.", ".", r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", "[ab]",
    "[^a]", "[a-c]", "[^-a]", r"[\d_]", r"[^\W\d]", "[A-Z]", r"\b", r"\B", "é", "(?i:a)",
    "(?i:[a-b])", "(?i:[^b])",
])
QUANTIFIERS = st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{,2}", "{2,}", "*?", "+?",
                               "??", "{1,2}?"])
PATTERNS = st.recursive(ATOMS, lambda inner: st.one_of(
    st.lists(inner, min_size=2, max_size=4).map("".join),
    st.lists(inner, min_size=2, max_size=3).map(lambda alternatives: "|".join(alternatives)),
    st.tuples(inner, QUANTIFIERS).map(lambda parts: f"(?:{parts[0]}){parts[1]}"),
    inner.map(lambda part: f"({part})"),
    inner.map(lambda part: f"(?i:{part})"),
    inner.map(lambda part: f"(?s:{part})"),
), max_leaves=10)
ANCHORED = st.tuples(st.sampled_from(["", "^", r"\A", "(?i)", "(?m)"]), PATTERNS,
                     st.sampled_from(["", "$", r"\Z"])).map("".join)
VALUES = st.text(alphabet="abcAB1_-. \n\tkK\u212a\u017f\u0661\u00e9\u00c9", max_size=10)


@FUZZ
@given(ANCHORED, st.data())
def test_the_linear_matcher_agrees_with_python_re_fullmatch(pattern: str,
                                                            data: st.DataObject) -> None:
    expected = re.compile(pattern, re.ASCII)
    condition = regex(pattern)
    value = data.draw(st.one_of(VALUES, st.from_regex(expected, fullmatch=True)))
    assert condition.accepts(value) == (expected.fullmatch(value) is not None), (pattern, value)


GLOB_PIECES = st.lists(st.sampled_from(["*", "?", "a", "b", "/", ":", ".", "[", "]", "\\",
                                        "(", "+", "é"]), max_size=10).map("".join)


@FUZZ
@given(GLOB_PIECES.filter(lambda g: g and "**" not in g),
       st.text(alphabet="ab/:.[]\\(+é", max_size=10))
def test_a_glob_matches_what_its_python_translation_matches(pattern: str, value: str) -> None:
    translated = "".join("[^/:]*" if c == "*" else "[^/:]" if c == "?" else re.escape(c)
                         for c in pattern)
    assert glob(pattern).accepts(value) == bool(re.fullmatch(translated, value, re.ASCII))
