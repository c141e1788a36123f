"""The README documents every flag and every config field, so what it says stays true.

Rules of this module:
- flags come from the parsers themselves: `kubegate.cli.build_parser` for each subcommand,
  nested actions (`mappings validate`, `audit verify`, ...) included; a flag is documented
  when `--flag` appears anywhere in README.md;
- config fields come from the config reader's own declarations: every set of known names
  that `exchanger/config.py` and `exchanger/audit/settings.py` hand to `Fields.section`
  (a set literal, or a module constant holding one). A field is documented when it appears as
  a YAML key (`field:`) or in backquotes in README's "Configuration" section;
- a failure lists every missing name at once, with where it comes from.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

from kubegate.cli import SUBCOMMANDS, build_parser

REPO = Path(__file__).resolve().parents[3]
README = (REPO / "README.md").read_text(encoding="utf-8")
CONFIG_READERS = (REPO / "exchanger" / "config.py", REPO / "exchanger" / "audit" / "settings.py")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _long_options(parser: argparse.ArgumentParser, prog: str) -> Iterator[tuple[str, str]]:
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option not in ("--help", "--version"):
                yield prog, option
    for name, sub in _subparsers(parser):
        yield from _long_options(sub, f"{prog} {name}")


def every_long_option() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name in SUBCOMMANDS:
        root = build_parser(name)
        command = dict(_subparsers(root))[name]
        found.extend(_long_options(command, f"kubegate {name}"))
    return found


def _string_set(node: ast.expr, constants: dict[str, ast.expr]) -> set[str]:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    if isinstance(node, ast.BinOp):  # `_A | {"x"}`
        return _string_set(node.left, constants) | _string_set(node.right, constants)
    if isinstance(node, ast.Set):
        return {e.value for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    raise AssertionError(f"cannot read the known fields from {ast.unparse(node)}")


def every_config_field() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in CONFIG_READERS:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {target.id: statement.value for statement in tree.body
                     if isinstance(statement, ast.Assign)
                     for target in statement.targets if isinstance(target, ast.Name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "section" and len(node.args) >= 3):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                found.extend((where, name) for name in sorted(_string_set(node.args[2],
                                                                          constants)))
    return found


def configuration_reference() -> str:
    start = README.index("\n## Configuration\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def test_the_walkers_find_what_they_should() -> None:
    options = {option for _, option in every_long_option()}
    assert {"--config", "--checkpoints", "--from-configmap", "--socket", "--strict"} <= options
    fields = {name for _, name in every_config_field()}
    assert {"listen", "perIdentity", "tokenReview", "keyName", "clientCAFile"} <= fields


def test_every_long_option_is_in_the_readme() -> None:
    missing = sorted({f"{prog} {option}" for prog, option in every_long_option()
                      if not re.search(re.escape(option) + r"(?![\w-])", README)})
    assert not missing, "flags missing from README.md:\n  " + "\n  ".join(missing)


def test_every_config_field_is_in_the_configuration_reference() -> None:
    reference = configuration_reference()
    missing = sorted({f"{name} (read at {where})" for where, name in every_config_field()
                      if not re.search(rf"(?<![\w-]){re.escape(name)}:|`{re.escape(name)}`",
                                       reference)})
    assert not missing, ("config fields missing from README.md's Configuration section:\n  "
                         + "\n  ".join(missing))
