"""Load trust mappings from YAML text and from a folder of `*.yaml` / `*.yml` files.

Rules of this module:
- everything is validated and every problem is reported at once, in one ConfigError, each
  problem naming its file, document (numbered from 1) and field;
- nothing partial is returned: a folder with one bad document yields no MappingSet at all
  (the store then keeps its last good set);
- YAML is read by `kubegate.yamlread`: safe constructors, duplicate keys refused (PyYAML
  would silently keep the last one, which can quietly change a condition), and a file's cost
  bounded (size, documents, nesting, aliases and their expansion) before a value is built; a
  file over a bound is a problem of its document like any other; empty documents are skipped;
- the folder is read flat (no subfolders); hidden files are skipped, so a ConfigMap volume's
  `..data` entries are ignored while its `name.yaml` links are read;
- mapping names are unique across all files;
- what `kubectl get trustmappings -o yaml` prints is a mapping file too: a List document
  (`kind: List` or `TrustMappingList`) stands for its `items`, each judged on its own
  (`document N: items[i]`, from 0), and a resource's `status` is not part of the mapping
  (the cluster watcher drops it the same way); its server-set metadata is ignored by
  `validate`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exchanger.mappings.model import MappingSet, TrustMapping
from exchanger.mappings.schema import API_VERSION, KIND
from exchanger.mappings.validate import parse_mapping
from kubegate import yamlread
from kubegate.errors import ConfigError

SUFFIXES = (".yaml", ".yml")


def _documents(text: str, source: str, problems: list[str]) -> list[tuple[int, Any]]:
    """The non-empty documents of `text` with their numbers; a YAML error ends the file."""
    found: list[tuple[int, Any]] = []
    try:
        for number, document in yamlread.documents(text):
            if document is not None:
                found.append((number, document))
    except yamlread.YamlError as error:
        if error.of_text:  # too many documents: the file is refused as a whole
            found.clear()
        problems.append(f"{source}: document {error.document}: {error.described()}")
    return found


LIST_KINDS = frozenset({("v1", "List"), (API_VERSION, f"{KIND}List")})


def is_list(document: object) -> bool:
    """A List document, as kubectl prints several resources (`kind: List`, `items`)."""
    return (isinstance(document, dict) and isinstance(document.get("items"), list)
            and (document.get("apiVersion"), document.get("kind")) in LIST_KINDS)


def without_status(document: object) -> object:
    """A resource's document without its `status`, which the API server writes."""
    if isinstance(document, dict) and "status" in document:
        return {key: value for key, value in document.items() if key != "status"}
    return document


def mapping_documents(number: int, document: object) -> list[tuple[str, object]]:
    """The mapping documents one YAML document stands for, each with where it is:
    `document N`, or a List's items as `document N: items[i]`."""
    if not is_list(document):
        return [(f"document {number}", without_status(document))]
    assert isinstance(document, dict)
    return [(f"document {number}: items[{index}]", without_status(item))
            for index, item in enumerate(document["items"])]


def read_documents(text: str, source: str) -> tuple[list[tuple[str, object]], list[str]]:
    """The mapping documents of `text`, each with where it is in the text (`document N`,
    numbered from 1, or `document N: items[i]`), and the YAML problem that ended the file
    early, if any (for tools that judge documents one by one)."""
    problems: list[str] = []
    found = [pair for number, document in _documents(text, source, problems)
             for pair in mapping_documents(number, document)]
    return found, problems


def duplicate_names(mappings: Iterable[TrustMapping]) -> list[str]:
    """A problem for each mapping whose name an earlier one already uses."""
    return _duplicates(mappings)


def _collect(text: str, source: str, issuers: frozenset[str] | None,
             clusters: frozenset[str] | None,
             problems: list[str]) -> list[TrustMapping]:
    mappings = []
    documents, ended = read_documents(text, source)
    problems.extend(ended)
    for label, document in documents:
        mapping, found = parse_mapping(document, source=f"{source}: {label}",
                                       issuers=issuers, clusters=clusters)
        problems.extend(found)
        if mapping is not None:
            mappings.append(mapping)
    return mappings


def _duplicates(mappings: Iterable[TrustMapping]) -> list[str]:
    first: dict[str, TrustMapping] = {}
    problems = []
    for mapping in mappings:
        if mapping.name in first:
            problems.append(f"{mapping.source} ({mapping.name}): metadata.name: duplicate "
                            f"mapping name, first defined in {first[mapping.name].source}")
        else:
            first[mapping.name] = mapping
    return problems


def _names(known: set[str] | None) -> frozenset[str] | None:
    return None if known is None else frozenset(known)


def parse_documents(text: str, source: str, known_issuers: set[str] | None = None,
                    known_clusters: set[str] | None = None) -> tuple[TrustMapping, ...]:
    """The mappings in YAML `text` (one or more documents); `source` names it in problems.
    Raises ConfigError with every problem."""
    problems: list[str] = []
    mappings = _collect(text, source, _names(known_issuers), _names(known_clusters), problems)
    problems.extend(_duplicates(mappings))
    if problems:
        raise ConfigError(problems)
    return tuple(mappings)


def each_valid(texts: Iterable[tuple[str, str]], known_issuers: set[str] | None = None,
               known_clusters: set[str] | None = None) -> tuple[list[TrustMapping], list[str]]:
    """Every valid mapping in (source, text) pairs, and the problems of the others: one
    invalid document never hides the rest, and a name used again is a problem of the later
    one, which is left out. For the tools (`mappings explain`); the exchanger takes a folder
    whole or not at all (`load_folder`)."""
    issuers, clusters = _names(known_issuers), _names(known_clusters)
    problems: list[str] = []
    mappings: list[TrustMapping] = []
    for source, text in texts:
        mappings.extend(_collect(text, source, issuers, clusters, problems))
    duplicates = _duplicates(mappings)
    first: dict[str, TrustMapping] = {}
    for mapping in mappings:
        first.setdefault(mapping.name, mapping)
    return list(first.values()), problems + duplicates


def mapping_files(folder: Path) -> list[Path]:
    """The mapping files of a folder, sorted by name: `*.yaml` and `*.yml`, not hidden,
    regular files (or links to them)."""
    return sorted(path for path in folder.iterdir()
                  if path.suffix in SUFFIXES and not path.name.startswith(".")
                  and path.is_file())


def read_text(path: Path) -> str:
    """A mapping file's text (OSError or UnicodeDecodeError when it cannot be read); a file
    over yamlread's size bound is read only as far as it takes to tell."""
    limit = 4 * yamlread.MAX_TEXT_CHARACTERS + 4  # UTF-8 spends at most 4 bytes a character
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) <= limit:
        return data.decode("utf-8")
    return codecs.getincrementaldecoder("utf-8")().decode(data[:limit])  # over the bound


def _read(path: Path, problems: list[str]) -> str | None:
    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path.name}: cannot read: {error}")
        return None


def load_folder(path: str | Path, known_issuers: set[str] | None = None,
                known_clusters: set[str] | None = None) -> MappingSet:
    """Every mapping in a folder's YAML files; problems are named `<file>: document N (name)`.
    Raises ConfigError with every problem. An empty folder is an empty set (deny all)."""
    folder = Path(path)
    try:
        files = mapping_files(folder)
    except OSError as error:
        raise ConfigError([f"{folder}: cannot list trust mappings: {error}"]) from error
    issuers, clusters = _names(known_issuers), _names(known_clusters)
    problems: list[str] = []
    mappings: list[TrustMapping] = []
    for file in files:
        text = _read(file, problems)
        if text is not None:
            mappings.extend(_collect(text, file.name, issuers, clusters, problems))
    problems.extend(_duplicates(mappings))
    if problems:
        raise ConfigError(problems)
    return MappingSet(mappings=tuple(mappings))
