"""Reading YAML that someone else wrote (mapping files, config files, claim files) at a cost
that is bounded before any Python value is built from it.

    for number, document in documents(text):   # YamlError at the first bad document
        ...
    config = single_document(text)

A YAML document is a graph, not a tree: an alias (`*a`) is a second reference to an anchored
node, so ten lines of nine aliases each (a "billion laughs") stand for 10**9 values, and a
message or a copy built from them never ends. Each document is therefore composed into its
node graph (aliases stay shared, nothing is expanded) with its nesting and size counted as
it is read, measured with every alias expanded on that graph (in time proportional to its
nodes, not to their expansion), and only then constructed. libyaml scans and parses when
PyYAML has it (five times faster than PyYAML's own parser, the fallback); the composer is
always PyYAML's, bounded here, never libyaml's (which recurses in C without a limit).

Rules of this module:
- a text is at most MAX_TEXT_CHARACTERS long and holds at most MAX_DOCUMENTS documents;
- a document nests at most MAX_DEPTH deep, holds at most MAX_ALIASES aliases, and at most
  MAX_NODES nodes counted with every alias expanded; an alias inside
  the node it refers to (a cycle) is refused; nesting is checked while composing, so a
  5,000-level list is refused at level MAX_DEPTH + 1, long before Python's recursion limit;
- every refusal is a YamlError naming the document, the line and column, and the field (the
  keys and indexes leading to the node) when there is one, and it never quotes a value;
  documents before a bad one are returned first (a bad one ends the text), so a caller can
  judge them too, unless the bound is the whole text's (`YamlError.of_text`);
- a number is at most MAX_NUMBER_CHARACTERS long (a base-60 `1:1:1:...` costs quadratic
  time, a long one more digits than Python converts);
- YAML is read with the safe constructors only; `unique_keys` refuses a key repeated in one
  mapping (PyYAML would silently keep the last one); a merge key (`<<`) counts as the values
  it merges;
- RecursionError and MemoryError never escape: they become a YamlError;
- standard library and PyYAML only (a shared module: it imports neither side).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator
from typing import Any, Final, NoReturn

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode
from yaml.resolver import BaseResolver, Resolver

from kubegate.errors import Code, KubegateError

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: LIBYAML is False, this is never used
    from yaml.parser import Parser as CParser  # type: ignore[assignment]

MAX_TEXT_CHARACTERS: Final = 1 << 20
"""The longest text read (1 MiB of ASCII): a ConfigMap holds no more."""
MAX_DOCUMENTS: Final = 2000
"""The most documents in one text."""
MAX_DEPTH: Final = 64
"""The deepest nesting of lists and objects in a document, aliases expanded."""
MAX_ALIASES: Final = 256
"""The most aliases (`*name`) in a document."""
MAX_NODES: Final = 100_000
"""The most nodes (scalars, lists, objects) in a document, every alias expanded."""
MAX_NUMBER_CHARACTERS: Final = 100
"""The longest number read (an int or float written in more is refused)."""
LIBYAML: Final = bool(yaml.__with_libyaml__)
"""Whether libyaml parses (five times faster than PyYAML's own parser, which is the fallback);
either way the composer is the bounded one below."""
_SHOWN_KEY: Final = 40  # characters of a key shown in a field path
_SHOWN_PATH: Final = 80  # characters of a field path shown
_SHOWN_ERROR: Final = 200  # characters of a library's message shown


class YamlError(KubegateError):
    """A text that is not YAML, or a document over a bound: which document (from 1), where
    in it (line and column from 1, a field path when known) and what. `bound` says a bound
    was crossed; `of_text` that the bound is the whole text's (its size, its number of
    documents), so the documents read before it are better dropped too."""

    code = Code.INVALID_ARGUMENT
    default_message = "invalid configuration"

    def __init__(self, problem: str, *, document: int, line: int | None = None,
                 column: int | None = None, field: str = "", bound: bool = False,
                 of_text: bool = False) -> None:
        self.problem, self.document, self.field = problem, document, field
        self.line, self.column, self.bound, self.of_text = line, column, bound, of_text
        super().__init__("INVALID_YAML", problem)

    @property
    def position(self) -> str:
        """`line L, column C`, or "" when unknown."""
        return "" if self.line is None else f"line {self.line}, column {self.column}"

    def __str__(self) -> str:
        return ": ".join(part for part in (self.position, self.field, self.problem) if part)

    def described(self) -> str:
        """As a problem line says it after `FILE: document N: `: a bound exceeded as a field's
        problem (`spec.claims: nested more than 64 levels deep (line 3, column 9)`), other
        errors as `invalid YAML: line 3, column 9: ...`."""
        if not self.bound:
            return f"invalid YAML: {self}"
        position = f" ({self.position})" if self.position else ""
        return ": ".join(part for part in (self.field, self.problem) if part) + position


def documents(text: str, *, unique_keys: bool = True,
              libyaml: bool = LIBYAML) -> Iterator[tuple[int, Any]]:
    """Each document of `text` with its number (from 1), an empty one as None; raises
    YamlError at the first document that is not YAML or is over a bound."""
    if len(text) > MAX_TEXT_CHARACTERS:
        raise YamlError(f"the text is longer than {MAX_TEXT_CHARACTERS} characters",
                        document=1, bound=True, of_text=True)
    loader_class = _LibyamlLoader if libyaml and LIBYAML else _PythonLoader
    loader = loader_class(text, unique_keys=unique_keys)
    try:
        for number in itertools.count(1):
            found, value = _next_document(loader, number)
            if not found:
                return
            yield number, value
    finally:
        loader.dispose()


def single_document(text: str, *, unique_keys: bool = True, libyaml: bool = LIBYAML) -> Any:
    """The one document of `text` (None when there is none); YamlError if there are more."""
    found = list(itertools.islice(
        documents(text, unique_keys=unique_keys, libyaml=libyaml), 2))
    if len(found) > 1:
        raise YamlError("expected a single document, found more", document=2)
    return found[0][1] if found else None


def _next_document(loader: _Loader, number: int) -> tuple[bool, Any]:
    try:
        if not loader.check_node():
            return False, None
        if number > MAX_DOCUMENTS:
            mark = loader.next_event().start_mark
            raise _located(f"more than {MAX_DOCUMENTS} documents in one text", number, "",
                           mark, bound=True, of_text=True)
        node = loader.get_node()
        _measure(node)
        return True, loader.construct_document(node)
    except _Bound as bound:
        raise bound.error(number) from None
    except yaml.MarkedYAMLError as error:
        raise _yaml_error(error, number) from None
    except yaml.YAMLError as error:
        raise YamlError(str(error)[:_SHOWN_ERROR], document=number) from None
    except ValueError as error:  # a constructor's (a date such as 2024-13-01)
        raise YamlError(f"a value cannot be read: {str(error)[:_SHOWN_ERROR]}",
                        document=number) from None
    except RecursionError:
        raise YamlError(f"nested too deeply (at most {MAX_DEPTH} levels)", document=number,
                        bound=True) from None
    except MemoryError:
        raise YamlError("too large to read", document=number, bound=True) from None


def _yaml_error(error: yaml.MarkedYAMLError, number: int) -> YamlError:
    mark = error.problem_mark or error.context_mark
    problem = (error.problem or error.context or "invalid YAML")[:_SHOWN_ERROR]
    if "nesting depth" in problem:  # libyaml's own limit (1000 levels), met while scanning
        return _located(f"nested more than {MAX_DEPTH} levels deep", number, "", mark,
                        bound=True)
    return _located(problem, number, "", mark)


def _located(problem: str, document: int, field: str, mark: Any, *, bound: bool = False,
             of_text: bool = False) -> YamlError:
    line, column = (None, None) if mark is None else (mark.line + 1, mark.column + 1)
    return YamlError(problem, document=document, field=field, line=line, column=column,
                     bound=bound, of_text=of_text)


class _Bound(KubegateError):
    """A bound crossed inside PyYAML: carried out of it, then made a YamlError (which needs
    the document's number, known only out here)."""

    def __init__(self, problem: str, mark: Any, field: str) -> None:
        super().__init__("YAML_BOUND", problem)
        self.problem, self.mark, self.field = problem, mark, field

    def error(self, document: int) -> YamlError:
        return _located(self.problem, document, self.field, self.mark, bound=True)


class _BoundedComposer(Composer):
    """PyYAML's composer, counting nodes and aliases and refusing deep nesting as it reads;
    `path` is the field being composed (keys and indexes), for messages."""

    unique_keys: bool
    path: list[str]
    aliases: int
    nodes: int

    def compose_document(self) -> Node | None:
        self.path, self.aliases, self.nodes = [], 0, 0
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # PyYAML passes a list item's position, a value's key node, or None for a key
        self.path.append("" if parent is None else _step(index))
        try:
            self._count(self.next_event())
            return super().compose_node(parent, index)
        finally:
            self.path.pop()

    def next_event(self) -> yaml.Event:
        """The event about to be composed (not consumed)."""
        event: yaml.Event = self.peek_event()  # type: ignore[attr-defined]
        return event

    def _count(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                self._refuse(f"more than {MAX_ALIASES} aliases in one document", event)
        else:
            self.nodes += 1
            if self.nodes > MAX_NODES:
                self._refuse(f"more than {MAX_NODES} values in one document", event)
            if len(self.path) > MAX_DEPTH:
                self._refuse(f"nested more than {MAX_DEPTH} levels deep", event)

    def _refuse(self, problem: str, event: yaml.Event) -> NoReturn:
        raise _Bound(problem, event.start_mark, _field_path(self.path))


class _PythonLoader(_BoundedComposer, yaml.SafeLoader):
    """PyYAML's own reader, scanner and parser under the bounded composer."""

    def __init__(self, stream: str, *, unique_keys: bool) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self.unique_keys = unique_keys

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803
        """`[` or `{`: refused past MAX_DEPTH already while scanning (PyYAML's scanner checks
        every open flow level for each token it reads: deep flow nesting costs its square)."""
        if self.flow_level >= MAX_DEPTH:
            raise _Bound(f"nested more than {MAX_DEPTH} levels deep", self.get_mark(),
                         _field_path(self.path))
        super().fetch_flow_collection_start(TokenClass)


class _LibyamlLoader(_BoundedComposer, CParser, SafeConstructor, Resolver):
    """libyaml's scanner and parser (its events, not its composer) under the bounded one."""

    def __init__(self, stream: str, *, unique_keys: bool) -> None:
        CParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.unique_keys = unique_keys


_Loader = _PythonLoader | _LibyamlLoader


def _construct_number(loader: Any, node: ScalarNode) -> int | float:
    """An int or float of at most MAX_NUMBER_CHARACTERS: a longer one (`1:1:1:...` in base
    60, or 5,000 digits) costs time or memory out of proportion to its text."""
    if len(node.value) > MAX_NUMBER_CHARACTERS:
        raise _Bound(f"a number longer than {MAX_NUMBER_CHARACTERS} characters (quote it to "
                     "mean a string)", node.start_mark, "")
    if node.tag.endswith(":int"):
        return int(loader.construct_yaml_int(node))
    return float(loader.construct_yaml_float(node))


def _construct_mapping(loader: Any, node: MappingNode) -> dict[Any, Any]:
    """A mapping; with `unique_keys`, one whose keys are all different. (Not PyYAML's
    generator, which exists for mappings that contain themselves: those are refused.)"""
    loader.flatten_mapping(node)
    if getattr(loader, "unique_keys", False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            if not isinstance(key, Hashable):
                continue  # construct_mapping below refuses it
            if key in seen:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"found duplicate key {_key_label(key)}",
                                       key_node.start_mark)
            seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


for _loader in (_PythonLoader, _LibyamlLoader):
    _loader.add_constructor("tag:yaml.org,2002:int", _construct_number)
    _loader.add_constructor("tag:yaml.org,2002:float", _construct_number)
    _loader.add_constructor(BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _step(index: object) -> str:
    """One step of a field path: `[2]` for a list item, `.name` for the value of a key,
    `.(key)` for a key itself (PyYAML composes a key with no index) or a complex key's value."""
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, ScalarNode):
        return "." + _key_label(index.value).strip("'")
    return ".(key)"


def _key_label(key: object) -> str:
    text = repr(key) if not isinstance(key, str) else repr(key[:_SHOWN_KEY + 1])
    return text if len(text) <= _SHOWN_KEY else text[:_SHOWN_KEY] + "...'"


def _field_path(steps: list[str]) -> str:
    """`spec.claims[2].regex` from the steps `["", ".spec", ".claims", "[2]", ".regex"]`; a
    long path keeps its start and its end."""
    path = "".join(steps).lstrip(".")
    return path if len(path) <= _SHOWN_PATH else f"{path[:40]}...{path[-30:]}"


def _measure(root: Node | None) -> None:
    """Refuse a document whose graph, every alias expanded, is too big or too deep or has a
    cycle; one visit per node (post-order, sizes remembered), so a bomb costs its text."""
    if root is None:
        return
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool, str]] = [(root, False, "")]
    while stack:
        node, finished, field = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            children = _children(node)
            size[key] = min(1 + sum(size[id(child)] for child in children), MAX_NODES + 1)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            _check_measures(node, size[key], depth[key], field)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _Bound("an alias refers to a node that contains it (a cycle)",
                         node.start_mark, field)
        open_nodes.add(key)
        stack.append((node, True, field))
        stack += [(child, False, _field_path([field, step]))  # popped in document order
                  for child, step in reversed(_labelled_children(node))
                  if id(child) not in size]


def _check_measures(node: Node, size: int, depth: int, field: str) -> None:
    if size > MAX_NODES:
        raise _Bound(f"expands to more than {MAX_NODES} values through aliases",
                     node.start_mark, field)
    if depth > MAX_DEPTH:
        raise _Bound(f"nested more than {MAX_DEPTH} levels deep through aliases",
                     node.start_mark, field)


def _children(node: Node) -> list[Node]:
    return [child for child, _ in _labelled_children(node)]


def _labelled_children(node: Node) -> list[tuple[Node, str]]:
    if isinstance(node, MappingNode):
        pairs: list[tuple[Node, str]] = []
        for key, value in node.value:
            pairs += [(key, ".(key)"), (value, _step(key))]
        return pairs
    if isinstance(node, CollectionNode):
        return [(child, f"[{position}]") for position, child in enumerate(node.value)]
    return []
