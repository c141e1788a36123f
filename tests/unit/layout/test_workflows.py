"""GitHub Actions files are checked the way GitHub reads them: actionlint (pinned in
tools/versions.env, built by tools/build-actionlint.sh) on every workflow; the composite
action in ci-examples/github against the documented metadata syntax (actionlint lints
workflows, not action.yml files, so the action is also linted through a workflow that uses it
as a local action, which makes actionlint parse it and check inputs and outputs); and every
action used anywhere is pinned by a release tag or a commit."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegate import __version__
from tests.support.actionlint import require_actionlint, run_actionlint

REPO = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTION_DIR = REPO / "ci-examples" / "github"
SAMPLE_WORKFLOW = ACTION_DIR / "workflow.yml"
RELEASE = REPO / ".github" / "workflows" / "release.yml"
IMAGE = "ghcr.io/kubegate/kubegate"

# https://docs.github.com/en/actions/sharing-automations/creating-actions/metadata-syntax-for-github-actions
ACTION_KEYS = {"name", "author", "description", "inputs", "outputs", "runs", "branding"}
INPUT_KEYS = {"description", "required", "default", "deprecationMessage"}
STEP_KEYS = {"id", "if", "name", "uses", "run", "shell", "with", "env", "working-directory",
             "continue-on-error"}
SHELLS = {"bash", "pwsh", "python", "sh", "cmd", "powershell"}
BRANDING_COLORS = {"white", "black", "yellow", "blue", "green", "orange", "red", "purple",
                   "gray-dark"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def action() -> dict[str, Any]:
    document: dict[str, Any] = load(ACTION_DIR / "action.yml")
    return document


# -- actionlint -------------------------------------------------------------------------------


def test_there_is_a_release_workflow() -> None:
    assert RELEASE in WORKFLOWS


def test_every_workflow_passes_actionlint() -> None:
    binary = require_actionlint()
    result = run_actionlint(binary, [*WORKFLOWS, SAMPLE_WORKFLOW], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sample_workflow_and_the_action_agree_under_actionlint(tmp_path: Path) -> None:
    """A workflow that uses the action as a local action (`./ci-examples/github`): actionlint
    then parses action.yml (runs.using, input and output definitions) and checks the
    workflow's `with:` and every `steps.kubegate.outputs.*` against it."""
    binary = require_actionlint()
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)  # how actionlint finds a project's root
    shutil.copytree(ACTION_DIR, project / "ci-examples" / "github")
    workflow = {("on" if key is True else key): value  # YAML 1.1 reads `on` as true
                for key, value in load(SAMPLE_WORKFLOW).items()}
    steps = workflow["jobs"]["deploy"]["steps"]
    (step,) = [s for s in steps if str(s.get("uses", "")).startswith("kubegate/kubegate/")]
    step["uses"] = "./ci-examples/github"
    outputs = " ".join(f"${{{{ steps.{step['id']}.outputs.{name} }}}}"
                       for name in action()["outputs"])
    steps.append({"name": "every output", "run": f'echo "{outputs}"'})
    probe = project / ".github" / "workflows" / "probe.yml"
    probe.parent.mkdir(parents=True)
    probe.write_text(yaml.safe_dump(workflow, sort_keys=False))

    result = run_actionlint(binary, [probe], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr

    step["with"]["not-an-input"] = "x"  # and it does look: a wrong input is an error
    probe.write_text(yaml.safe_dump(workflow, sort_keys=False))
    wrong = run_actionlint(binary, [probe], cwd=project)
    assert wrong.returncode == 1 and '"not-an-input" is not defined' in wrong.stdout


# -- the action's metadata, by the documented syntax -------------------------------------------


def test_the_action_has_only_documented_top_level_keys() -> None:
    metadata = action()
    assert set(metadata) <= ACTION_KEYS
    assert {"name", "description", "runs"} <= set(metadata)
    assert metadata["branding"]["color"] in BRANDING_COLORS
    assert isinstance(metadata["branding"]["icon"], str)


def test_every_input_is_described_and_typed_as_github_reads_it() -> None:
    for name, spec in action()["inputs"].items():
        assert IDENTIFIER.match(name), name
        assert set(spec) <= INPUT_KEYS, name
        assert isinstance(spec["description"], str) and spec["description"], name
        assert isinstance(spec.get("required", False), bool), name
        assert isinstance(spec.get("default", ""), str), name  # GitHub passes strings only


def test_a_composite_action_runs_steps_each_with_a_shell() -> None:
    runs = action()["runs"]
    assert set(runs) == {"using", "steps"} and runs["using"] == "composite"
    ids = [step["id"] for step in runs["steps"] if "id" in step]
    assert len(ids) == len(set(ids)) and all(IDENTIFIER.match(i) for i in ids)
    for step in runs["steps"]:
        assert set(step) <= STEP_KEYS, step.get("name")
        assert ("run" in step) != ("uses" in step), step.get("name")
        if "run" in step:
            assert step["shell"] in SHELLS, step.get("name")


def test_outputs_come_from_steps_that_exist() -> None:
    metadata = action()
    ids = {step.get("id") for step in metadata["runs"]["steps"]}
    for name, spec in metadata["outputs"].items():
        assert set(spec) == {"description", "value"}, name
        (expression,) = EXPRESSION.findall(spec["value"])
        match = re.fullmatch(r"steps\.([A-Za-z0-9_-]+)\.outputs\.[A-Za-z0-9_-]+", expression)
        assert match and match.group(1) in ids, name


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_inputs_reach_scripts_through_the_environment_only() -> None:
    """`${{ inputs.x }}` inside `run:` is pasted into the script before it runs (script
    injection); an input goes through `env:` and is quoted by the shell instead. And every
    `inputs.*` an expression names is declared."""
    metadata = action()
    declared = set(metadata["inputs"])
    for step in metadata["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("name")
    for text in _strings(metadata["runs"]):
        for expression in EXPRESSION.findall(text):
            for name in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", expression):
                assert name in declared, name


def test_the_action_installs_the_released_package_by_default() -> None:
    assert action()["inputs"]["kubegate-version"]["default"] == __version__


# -- pins -------------------------------------------------------------------------------------


def _uses(document: object) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "uses" and isinstance(value, str):
                yield value
            else:
                yield from _uses(value)
    elif isinstance(document, list):
        for value in document:
            yield from _uses(value)


@pytest.mark.parametrize("path", [*WORKFLOWS, SAMPLE_WORKFLOW, ACTION_DIR / "action.yml"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_action_is_pinned_by_a_release_tag_or_a_commit(path: Path) -> None:
    for reference in _uses(load(path)):
        if reference.startswith("./"):
            continue
        assert PINNED.match(reference), f"{path.name}: {reference} (a branch moves)"


# -- the release workflow ---------------------------------------------------------------------


def release() -> dict[str, Any]:
    document: dict[str, Any] = load(RELEASE)
    return document


def _steps(job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = release()["jobs"][job]["steps"]
    return steps


def _step(job: str, action_name: str) -> dict[str, Any]:
    (step,) = [s for s in _steps(job) if str(s.get("uses", "")).startswith(action_name + "@")]
    return step


def test_a_version_tag_releases_and_only_after_the_whole_test_suite() -> None:
    workflow = release()
    assert workflow[True] == {"push": {"tags": ["v*.*.*"]}}  # YAML 1.1 reads `on` as true
    assert workflow["permissions"] == {"contents": "read"}
    assert any(step.get("run") == "scripts/test" for step in _steps("test"))
    for job in ("pypi", "image"):
        assert {"test", "package"} <= set(workflow["jobs"][job]["needs"])


def test_the_package_is_built_once_and_published_by_trusted_publishing() -> None:
    build = "\n".join(step.get("run", "") for step in _steps("package"))
    assert "python -m build" in build and re.search(r'"build==\d+\.\d+\.\d+"', build)
    assert "kubegate.__version__" in build and "GITHUB_REF_NAME" in build
    pypi = release()["jobs"]["pypi"]
    assert pypi["permissions"] == {"id-token": "write"}
    assert pypi["environment"]["name"] == "pypi"
    publish = _step("pypi", "pypa/gh-action-pypi-publish")
    assert "password" not in publish.get("with", {})  # OIDC, no stored API token


def test_the_image_is_built_from_the_containerfile_and_pushed_with_provenance() -> None:
    workflow = release()
    assert workflow["env"]["IMAGE"] == IMAGE
    job = workflow["jobs"]["image"]
    assert job["permissions"]["packages"] == "write"
    assert job["permissions"]["id-token"] == "write"
    build = _step("image", "docker/build-push-action")["with"]
    assert build["file"] == "Containerfile" and (REPO / build["file"]).is_file()
    assert build["push"] is True and build["provenance"] == "mode=max"
    assert build["sbom"] is True
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    attest = _step("image", "actions/attest-build-provenance")["with"]
    assert attest["subject-digest"] == "${{ steps.build.outputs.digest }}"
