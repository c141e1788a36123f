"""What a release ships, tested up to where these machines can go (README "Packaging"): the
wheel is built from a copy of the tree and holds the three packages and the `kubegate` console
script; the Containerfile is parsed and has the promised shape (a build stage, a runtime stage
with no RUN, a numeric non-root USER, `kubegate` as the exec-form entry point); and the image
name, tag, user and entry point agree with what deploy/ and ci-examples/ run. No container
runtime is available here, so the image itself is only built by the release workflow."""

from __future__ import annotations

import email.parser
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegate import __version__
from kubegate.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("kubegate", "exchanger", "sidecar")
IMAGE = "ghcr.io/kubegate/kubegate"
HELM_TEMPLATES = REPO / "deploy" / "helm"  # Go templates, not YAML: tests/integration renders them
MANIFESTS = sorted(path for path in [
    *(REPO / "deploy").rglob("*.yaml"), *(REPO / "ci-examples").rglob("*.yaml"),
    *(REPO / "ci-examples").rglob("*.yml")]
    if not (path.is_relative_to(HELM_TEMPLATES) and path.parent.name == "templates"))


# -- the wheel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """`pip wheel --no-deps` of a copy of the tree (the working tree gets no build/ folder),
    with this environment's setuptools: no network."""
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree)
    for package in PACKAGES:
        shutil.copytree(REPO / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--quiet", "--wheel-dir", str(out), str(tree)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("kubegate-*.whl")
    return zipfile.ZipFile(built)


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    return wheel.read(f"kubegate-{__version__}.dist-info/{name}").decode()


def test_the_wheel_is_named_for_this_version_and_any_platform(wheel: zipfile.ZipFile) -> None:
    assert Path(str(wheel.filename)).name == f"kubegate-{__version__}-py3-none-any.whl"
    metadata = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
    assert metadata["Name"] == "kubegate" and metadata["Version"] == __version__
    assert metadata["Requires-Python"] == ">=3.11"
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    required = metadata.get_all("Requires-Dist") or []
    for dependency in declared:
        assert dependency in required, dependency


def test_the_wheel_holds_the_three_packages_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("kubegate-")}
    assert tops == set(PACKAGES)
    for module in ("kubegate/cli.py", "kubegate/client/cache.py", "exchanger/server.py",
                   "exchanger/v1/exchange_pb2.py", "sidecar/proxy/server.py"):
        assert module in names, module
    for package in PACKAGES:  # every module of the tree, no more, no less
        shipped = {n for n in names if n.startswith(package + "/") and n.endswith(".py")}
        source = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py")
                  if "__pycache__" not in p.parts}
        assert shipped == source, package


def test_the_wheel_installs_the_kubegate_command(wheel: zipfile.ZipFile) -> None:
    entry_points = _dist_info(wheel, "entry_points.txt")
    assert re.search(r"^\[console_scripts\]\s*^kubegate = kubegate\.cli:main$", entry_points,
                     re.MULTILINE)


# -- the Containerfile ---------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        if logical.strip():
            keyword, _, args = logical.strip().partition(" ")
            yield keyword.upper(), " ".join(args.split())
        logical = ""


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(ARGs before the first FROM, with their defaults; the stages)."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            found.append(Stage(base=base, name=name.strip()))
        elif not found and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key] = default
        elif found:
            found[-1].instructions.append((keyword, args))
    return global_args, found


def containerfile() -> tuple[dict[str, str], list[Stage]]:
    return stages((REPO / "Containerfile").read_text())


def resolve(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


def test_the_parser_reads_continuations_and_stages() -> None:
    args, found = stages("ARG B=img:1\nFROM ${B} AS one\nRUN a \\\n  && b\n# note\n"
                         "FROM scratch\nUSER 1:1\n")
    assert args == {"B": "img:1"}
    assert [(s.base, s.name) for s in found] == [("${B}", "one"), ("scratch", "")]
    assert found[0].all("RUN") == ["a && b"]


def test_the_image_is_built_in_one_stage_and_run_from_another() -> None:
    args, found = containerfile()
    build, runtime = found[0], found[-1]
    assert len(found) == 2 and build.name == "build"
    assert runtime.all("COPY") == ["--from=build /opt/kubegate /opt/kubegate"]
    runtime_base = resolve(runtime.base, args)
    assert runtime_base.startswith("gcr.io/distroless/python3-debian12")  # no shell in it
    assert resolve(build.base, args).startswith("docker.io/library/debian:12")  # its python
    for image in (runtime_base, resolve(build.base, args)):
        assert ":" in image.rsplit("/", 1)[-1], f"{image}: name a tag"


def test_the_build_stage_builds_the_wheel_of_exactly_what_pyproject_packages() -> None:
    _, found = containerfile()
    build = found[0]
    copied = {args.split()[0].rstrip("/") for args in build.all("COPY")
              if not args.startswith("--")} | {"pyproject.toml", "README.md"}
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in include} | {"pyproject.toml", "README.md"} \
        == copied
    script = " ".join(build.all("RUN"))
    assert "pip wheel --no-cache-dir --no-deps" in script
    assert "pip install --no-cache-dir --compile /wheels/kubegate-*.whl" in script
    assert "kubegate --version" in script  # the installed command starts


def test_the_runtime_stage_needs_no_shell_and_runs_as_a_numeric_non_root_user() -> None:
    _, found = containerfile()
    runtime = found[-1]
    assert runtime.all("RUN") == []  # a RUN would need /bin/sh, which the image does not have
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or (gid.isdigit() and int(gid) > 0))
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["kubegate"]  # exec form: no shell in between
    for command in runtime.all("CMD"):
        assert isinstance(json.loads(command), list)
    (env,) = runtime.all("ENV")
    assert "PATH=/opt/kubegate/bin:" in env  # so probes can exec `kubegate credential`
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystems


def test_the_build_context_leaves_everything_else_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") + 1:][:5] == ["!pyproject.toml", "!README.md",
                                                    "!kubegate/", "!exchanger/", "!sidecar/"]
    assert "**/__pycache__" in ignored


# -- the image as deploy/ and ci-examples/ use it ---------------------------------------------


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("image"), str):
            yield node
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def kubegate_containers() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            for container in _containers(document):
                if container["image"].startswith(IMAGE + ":"):
                    yield path, container


def test_every_manifest_runs_the_image_of_this_version_through_its_entry_point() -> None:
    seen = list(kubegate_containers())
    assert len({path for path, _ in seen}) >= 5  # deploy/base and the in-cluster examples
    for path, container in seen:
        assert container["image"] == f"{IMAGE}:{__version__}", path
        assert "command" not in container, path  # the image's ENTRYPOINT is `kubegate`
        assert container["args"][0] in SUBCOMMANDS, path


def test_the_exchanger_runs_as_the_image_user() -> None:
    _, found = containerfile()
    uid = int(found[-1].all("USER")[0].split(":")[0])
    deployment = yaml.safe_load((REPO / "deploy" / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_every_pip_install_names_this_version() -> None:
    gitlab = yaml.safe_load((REPO / "ci-examples" / "gitlab" / "kubegate.gitlab-ci.yml")
                            .read_text())
    assert gitlab[".kubegate"]["variables"]["KUBEGATE_VERSION"] == __version__
    readme = (REPO / "README.md").read_text()
    for pinned in re.findall(r"kubegate==([0-9][^\s`\"']*)", readme):
        assert pinned == __version__
    for tag in re.findall(r"kubegate/kubegate/ci-examples/github@v([0-9.]+)", readme):
        assert tag == __version__
