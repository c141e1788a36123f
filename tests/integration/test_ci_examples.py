"""ci-examples/ as CI systems run them, against a real exchanger and the real apiserver.

- The GitHub action's steps run as the Actions runner runs a composite action: each `run:`
  with `bash --noprofile --norc -eo pipefail`, `${{ inputs.* }}`, `${{ steps.*.outputs.* }}`
  substituted, fresh GITHUB_ENV / GITHUB_OUTPUT / GITHUB_PATH files per step (read back as the
  runner does), RUNNER_TEMP, and the ACTIONS_ID_TOKEN_REQUEST_* variables pointing at the local
  GitHub issuer's ID-token endpoint. A later step's kubectl then has exactly the mapped
  permission, the whole job makes one exchange (the exec plugin's cache), no step prints a
  token unless it masked it first, and once the job's runtime token is gone the only
  credential on disk is the cache entry in RUNNER_TEMP, which the runner empties.
- The GitLab template's before_script, the sample job's script and the after_script run with
  /bin/sh as a GitLab runner would, with KUBEGATE_ID_TOKEN from the local GitLab issuer.
- CircleCI, Buildkite, Bitbucket Pipelines, Azure DevOps and Jenkins (OIDC Provider plugin):
  each example's kubegate script runs with /bin/sh, its token command stubbed to print a token
  of that provider's shape from a local issuer; the example's mapping admits it against a real
  exchanger and refuses near misses (another branch, project, pipeline or job), and validates
  without findings.
- Every in-cluster pod spec (plain Job, Tekton Task, Argo Workflow, Jenkins pod template)
  passes server-side dry-run in a namespace that enforces the `restricted` Pod Security
  level. Tekton and Argo CRDs are not installed here: the pod each would create is built from
  the document (Tekton with `enable-kubernetes-sidecar`, which makes Task sidecars native
  sidecars) and dry-run as a Pod. The plain Job's pod is created for real.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from kubegate.cli import main as kubegate_main
from kubegate.commands.exchange import add_arguments as add_exchange_arguments
from kubegate.commands.sidecar import add_arguments as add_sidecar_arguments
from tests.support.ci_issuers import CIIssuer
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer, GitHubJob, GitLabCIIssuer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "ci-examples"
IMAGE = "ghcr.io/kubegate/kubegate:0.1.0"
REPOSITORY_ID = "5150"
PROJECT_ID = "2020"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]


# -- the exchanger and the cluster -----------------------------------------------------------


@dataclass
class Target:
    exchanger: TestExchanger
    namespace: str

    @property
    def ca_pem(self) -> str:
        assert self.exchanger.running.ca_file is not None
        return self.exchanger.running.ca_file.read_text()


@pytest.fixture
def target(cluster: Cluster, control_plane: ControlPlane, start_test_exchanger: StartExchanger,
           github_issuer: GitHubActionsIssuer, gitlab_issuer: GitLabCIIssuer) -> Target:
    web = cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    mappings = f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims:
  - {{claim: repository_id, equals: "{REPOSITORY_ID}"}}
  - {{claim: event_name, oneOf: [push, workflow_dispatch]}}
  - {{claim: ref, equals: refs/heads/main}}
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer, maxLifetime: 15m}}
---
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy-gitlab}}
spec:
  issuer: gitlab
  claims:
  - {{claim: project_id, equals: "{PROJECT_ID}"}}
  - {{claim: ref_protected, equals: "true"}}
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer, maxLifetime: 15m}}
"""
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(github_issuer.ca_path)},
                 {"name": "gitlab", "url": gitlab_issuer.url, "audiences": ["kubegate"],
                  "caFile": str(gitlab_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)], mappings=mappings)
    return Target(exchanger=exchanger, namespace=web)


def base_environment(control_plane: ControlPlane, home: Path, ca: Path) -> dict[str, str]:
    """What a runner's job sees: kubegate (this venv) and kubectl on PATH, system roots
    replaced by the test CA (the local issuers' certificates are signed by it)."""
    path = os.pathsep.join([str(Path(sys.executable).parent),
                            str(control_plane.kubectl_path.parent),
                            "/usr/local/bin", "/usr/bin", "/bin"])
    return {"PATH": path, "HOME": str(home), "SSL_CERT_FILE": str(ca), "LANG": "C.UTF-8",
            "CI": "true"}


# -- a composite action, run as the runner runs it ----------------------------------------------


_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def substitute(text: str, context: Mapping[str, Any]) -> str:
    """`${{ a.b.c }}` from `context` (nested dicts); anything else is an error."""
    def value(match: re.Match[str]) -> str:
        node: Any = context
        for part in match.group(1).split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise AssertionError(f"unsupported expression ${{{{ {match.group(1)} }}}}")
            node = node[part]
        return str(node)

    return _EXPRESSION.sub(value, text)


def read_file_commands(path: Path) -> dict[str, str]:
    """NAME=value lines and NAME<<DELIMITER blocks, as the runner reads GITHUB_ENV/OUTPUT."""
    values: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for item in lines:
                if item == delimiter:
                    break
                body.append(item)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


@dataclass
class StepLog:
    name: str
    returncode: int
    output: str


@dataclass
class ActionRun:
    env: dict[str, str] = field(default_factory=dict)  # GITHUB_ENV, for the following steps
    path: list[str] = field(default_factory=list)  # GITHUB_PATH
    outputs: dict[str, str] = field(default_factory=dict)
    logs: list[StepLog] = field(default_factory=list)

    def failed(self) -> StepLog | None:
        return next((log for log in self.logs if log.returncode != 0), None)


def run_action(action_dir: Path, inputs: Mapping[str, str], job_env: Mapping[str, str],
               runner_temp: Path) -> ActionRun:
    action = yaml.safe_load((action_dir / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    given = {name: inputs.get(name, spec.get("default", "")) for name, spec in
             action["inputs"].items()}
    missing = [n for n, spec in action["inputs"].items() if spec.get("required") and not given[n]]
    assert not missing, f"required inputs missing: {missing}"
    run = ActionRun()
    steps: dict[str, Any] = {}
    context: dict[str, Any] = {"inputs": given, "steps": steps,
                               "runner": {"temp": str(runner_temp)},
                               "github": {"action_path": str(action_dir)}}
    for number, step in enumerate(action["runs"]["steps"]):
        assert step["shell"] == "bash", "composite run steps must name their shell"
        files = {name: runner_temp / f"_{name.lower()}_{number}"
                 for name in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH")}
        for path in files.values():
            path.write_text("")
        env = {**job_env, **run.env, "RUNNER_TEMP": str(runner_temp),
               **{name: str(path) for name, path in files.items()},
               **{f"INPUT_{name.upper()}": value for name, value in given.items()},
               **{k: substitute(str(v), context) for k, v in step.get("env", {}).items()}}
        if run.path:
            env["PATH"] = os.pathsep.join([*reversed(run.path), env["PATH"]])
        script = runner_temp / f"_step_{number}.sh"
        script.write_text(substitute(step["run"], context))
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                env=env, capture_output=True, text=True, timeout=120,
                                cwd=runner_temp, check=False)
        run.logs.append(StepLog(name=step.get("name", str(number)), returncode=result.returncode,
                                output=result.stdout + result.stderr))
        if result.returncode != 0:
            return run
        run.env.update(read_file_commands(files["GITHUB_ENV"]))
        run.path += [line for line in files["GITHUB_PATH"].read_text().splitlines() if line]
        if "id" in step:
            steps[step["id"]] = {"outputs": read_file_commands(files["GITHUB_OUTPUT"])}
    context_outputs = {name: substitute(spec["value"], context)
                       for name, spec in action.get("outputs", {}).items()}
    run.outputs = context_outputs
    return run


def unmasked_tokens(text: str) -> list[str]:
    """JWTs printed before (or without) their `::add-mask::` workflow command."""
    masked: set[str] = set()
    found = []
    for line in text.splitlines():
        if line.startswith("::add-mask::"):
            masked.add(line.removeprefix("::add-mask::").strip())
            continue
        found += [token for token in JWT.findall(line) if token not in masked]
    return found


def kubectl(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], env=dict(env), capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def github_job(github_issuer: GitHubActionsIssuer) -> Iterator[GitHubJob]:
    job = GitHubJob(repository="octo-org/web", repository_id=REPOSITORY_ID)
    with github_issuer.running_job(job):
        yield job


def test_the_github_action_makes_kubectl_work_in_later_steps_and_leaves_nothing_usable(
        target: Target, github_issuer: GitHubActionsIssuer, github_job: GitHubJob,
        control_plane: ControlPlane, tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    job_env = base_environment(control_plane, tmp_path, github_issuer.ca_path) | \
        github_issuer.id_token_environment() | {"GITHUB_ACTIONS": "true", "GITHUB_JOB": "deploy"}
    run = run_action(EXAMPLES / "github", {"server": target.exchanger.target,
                                           "ca": target.ca_pem, "role": "web-deploy"},
                     job_env, runner_temp)
    assert run.failed() is None, run.failed()
    kubeconfig = run.env["KUBECONFIG"]
    assert run.outputs == {"kubeconfig": kubeconfig, "context": "test",
                           "namespace": target.namespace}
    for log in run.logs:
        assert unmasked_tokens(log.output) == [], log.name
        assert github_issuer.id_token_request_token not in log.output

    later = job_env | run.env  # a following step of the same job
    listed = kubectl(later, "get", "pods", "-n", target.namespace)
    assert listed.returncode == 0, listed.stderr
    assert kubectl(later, "auth", "can-i", "list", "pods", "-n", target.namespace
                   ).stdout.strip() == "yes"
    assert kubectl(later, "auth", "can-i", "get", "secrets", "-n", target.namespace
                   ).stdout.strip() == "no"
    assert kubectl(later, "auth", "can-i", "list", "pods", "-n", "default").stdout.strip() == "no"
    assert unmasked_tokens(listed.stdout + listed.stderr) == []

    # one exchange for the whole job: the action's check filled the exec plugin's cache
    assert [d["decision"] for d in target.exchanger.decisions()] == ["allow"]

    # after the job: the runtime's request token is gone, and the only file holding a
    # credential is the cache entry in RUNNER_TEMP, which the runner empties after every job
    after = {k: v for k, v in later.items() if not k.startswith("ACTIONS_ID_TOKEN_")}
    assert kubectl(after, "get", "pods", "-n", target.namespace).returncode != 0
    cache = runner_temp / "kubegate" / "credentials"
    assert run.env["KUBEGATE_CACHE_DIR"] == str(cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for path in runner_temp.rglob("*"):
        if path.is_file() and JWT.search(path.read_text(errors="replace")):
            assert path.parent == cache and path.suffix == ".json", path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "token" not in json.dumps(yaml.safe_load(Path(kubeconfig).read_text())["users"])


def test_the_github_action_without_id_token_permission_fails_with_a_clear_error(
        target: Target, github_issuer: GitHubActionsIssuer, control_plane: ControlPlane,
        tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    job_env = base_environment(control_plane, tmp_path, github_issuer.ca_path)
    run = run_action(EXAMPLES / "github", {"server": target.exchanger.target,
                                           "ca": target.ca_pem}, job_env, runner_temp)
    failed = run.failed()
    assert failed is not None
    assert "::error title=kubegate::no ID-token endpoint: give the job 'permissions: id-token: " \
           "write'" in failed.output


def test_the_github_action_fails_the_job_when_the_mapping_denies(
        target: Target, github_issuer: GitHubActionsIssuer, control_plane: ControlPlane,
        tmp_path: Path) -> None:
    job = GitHubJob(repository="octo-org/web", repository_id=REPOSITORY_ID,
                    event_name="pull_request_target")
    with github_issuer.running_job(job):
        runner_temp = tmp_path / "runner-temp"
        runner_temp.mkdir()
        job_env = base_environment(control_plane, tmp_path, github_issuer.ca_path) | \
            github_issuer.id_token_environment()
        run = run_action(EXAMPLES / "github", {"server": target.exchanger.target,
                                               "ca": target.ca_pem}, job_env, runner_temp)
    failed = run.failed()
    assert failed is not None
    assert "denied: PERMISSION_DENIED NO_MATCHING_MAPPING" in failed.output
    assert "KUBECONFIG" not in run.env


def test_the_sample_workflow_asks_for_an_id_token_and_uses_the_action() -> None:
    workflow = yaml.safe_load((EXAMPLES / "github" / "workflow.yml").read_text())
    assert workflow["permissions"]["id-token"] == "write"
    steps = workflow["jobs"]["deploy"]["steps"]
    uses = next(s for s in steps if s.get("id") == "kubegate")
    assert uses["uses"].startswith("kubegate/kubegate/ci-examples/github@")
    assert set(uses["with"]) <= set(yaml.safe_load(
        (EXAMPLES / "github" / "action.yml").read_text())["inputs"])


# -- GitLab CI ----------------------------------------------------------------------------------


def test_the_gitlab_template_exchanges_at_job_start_and_kubectl_works(
        target: Target, gitlab_issuer: GitLabCIIssuer, control_plane: ControlPlane,
        tmp_path: Path) -> None:
    template = yaml.safe_load((EXAMPLES / "gitlab" / "kubegate.gitlab-ci.yml").read_text())
    example = yaml.safe_load((EXAMPLES / "gitlab" / "example.gitlab-ci.yml").read_text())
    base, job = template[".kubegate"], example["deploy"]
    assert job["extends"] == ".kubegate"
    audience = base["id_tokens"]["KUBEGATE_ID_TOKEN"]["aud"]
    assert audience == "kubegate"
    ca = tmp_path / "kubegate-ca.pem"  # a File-type CI/CD variable
    ca.write_text(target.ca_pem)
    id_token = gitlab_issuer.mint(project_id=PROJECT_ID, audience=audience)
    (tmp_path / "tmp").mkdir()
    env = base_environment(control_plane, tmp_path, gitlab_issuer.ca_path) | {
        k: str(v) for k, v in {**base["variables"], **job["variables"]}.items()} | {
        "KUBEGATE_SERVER": target.exchanger.target, "KUBEGATE_CA_FILE": str(ca),
        "KUBEGATE_ID_TOKEN": id_token, "CI_JOB_ID": "302", "GITLAB_CI": "true",
        "TMPDIR": str(tmp_path / "tmp")}
    env["KUBEGATE_ROLE"] = "web-deploy-gitlab"  # the sample names the GitHub mapping's role
    script = "\n".join([*base["before_script"], *job["script"],
                        f"kubectl get pods -n {target.namespace}",
                        f"kubectl auth can-i get secrets -n {target.namespace} || true"])
    result = subprocess.run(["/bin/sh", "-e", "-c", script], env=env, capture_output=True,
                            text=True, timeout=120, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"system:serviceaccount:{target.namespace}:deployer" in output  # kubectl auth whoami
    assert result.stdout.rstrip().endswith("no")  # exactly the mapped permission
    assert JWT.findall(output) == []
    kept = tmp_path / "tmp" / "kubegate-302" / "kubeconfig"
    assert kept.is_file() and not JWT.search(kept.read_text())
    assert [d["decision"] for d in target.exchanger.decisions()] == ["allow"]  # cache reused
    assert list((kept.parent / "credentials").glob("*.json"))

    after = subprocess.run(["/bin/sh", "-e", "-c", "\n".join(base["after_script"])], env=env,
                           capture_output=True, text=True, timeout=30, check=False)
    assert after.returncode == 0, after.stderr
    assert not kept.parent.exists()


# -- in-cluster pod specs -----------------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _params(value: Any, params: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for name, default in params.items():
            value = value.replace(f"$(params.{name})", default)
        return value
    if isinstance(value, list):
        return [_params(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _params(v, params) for k, v in value.items()}
    return value


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def job_pod() -> dict[str, Any]:
    (job,) = documents(EXAMPLES / "kubernetes" / "job.yaml")
    return pod("deploy-web-pod", copy.deepcopy(job["spec"]["template"]["spec"]))


def tekton_pod() -> dict[str, Any]:
    """The pod Tekton makes of the Task and TaskRun (enable-kubernetes-sidecar: true)."""
    task, task_run = documents(EXAMPLES / "tekton" / "task.yaml")
    spec = task["spec"]
    params = {p["name"]: p["default"] for p in spec.get("params", [])}
    template = task_run["spec"].get("podTemplate", {})
    steps = [{"name": f"step-{s['name']}", "image": s["image"],
              "command": ["sh", "-c", s["script"]],
              **{k: s[k] for k in ("securityContext", "volumeMounts", "env") if k in s}}
             for s in spec["steps"]]
    return pod("tekton-task-pod", _params({
        "serviceAccountName": task_run["spec"]["serviceAccountName"], "restartPolicy": "Never",
        **template, "volumes": spec["volumes"], "containers": steps,
        "initContainers": [{**s, "restartPolicy": "Always"} for s in spec["sidecars"]],
    }, params))


def argo_pod() -> dict[str, Any]:
    """The pod Argo makes of the Workflow's step (without Argo's own executor containers)."""
    (workflow,) = documents(EXAMPLES / "argo" / "workflow.yaml")
    spec = workflow["spec"]
    template = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
    return pod("argo-step-pod", {
        "serviceAccountName": spec["serviceAccountName"], "restartPolicy": "Never",
        "securityContext": spec["securityContext"], "volumes": spec["volumes"],
        "initContainers": template["initContainers"],
        "containers": [{"name": "main", **template["container"]}],
    })


def jenkins_pod() -> dict[str, Any]:
    (document,) = documents(EXAMPLES / "jenkins" / "pod-template.yaml")
    document.setdefault("metadata", {})["name"] = "jenkins-agent-pod"
    return document


POD_SPECS = {"job": job_pod, "tekton": tekton_pod, "argo": argo_pod, "jenkins": jenkins_pod}


def sidecars(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]


def admin(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(binary=control_plane.kubectl_path,
                   kubeconfig=control_plane.admin_kubeconfig_path)


@pytest.fixture(scope="module")
def restricted_namespace(cluster: Cluster, control_plane: ControlPlane) -> str:
    """A namespace enforcing the `restricted` Pod Security level, with the examples' service
    account."""
    name = cluster.create_namespace("pipelines")
    labelled = admin(control_plane).run("label", "namespace", name,
                                        "pod-security.kubernetes.io/enforce=restricted")
    assert labelled.returncode == 0, labelled.stderr
    cluster.create_service_account(name, "pipeline")
    return name


def apply(control_plane: ControlPlane, namespace: str, document: Mapping[str, Any], folder: Path,
          *flags: str) -> subprocess.CompletedProcess[str]:
    path = folder / f"{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(dict(document)))
    return admin(control_plane).run("create", "-n", namespace, "-f", str(path), *flags)


@pytest.mark.parametrize("example", sorted(POD_SPECS))
def test_each_pod_spec_passes_server_side_dry_run_as_restricted(
        example: str, control_plane: ControlPlane, restricted_namespace: str,
        tmp_path: Path) -> None:
    document = POD_SPECS[example]()
    result = apply(control_plane, restricted_namespace, document, tmp_path, "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert "created (server dry run)" in result.stdout
    assert not result.stderr.strip(), result.stderr  # no Pod Security warnings either


def test_the_job_passes_server_side_dry_run(control_plane: ControlPlane,
                                            restricted_namespace: str, tmp_path: Path) -> None:
    (job,) = documents(EXAMPLES / "kubernetes" / "job.yaml")
    result = apply(control_plane, restricted_namespace, job, tmp_path, "--dry-run=server")
    assert result.returncode == 0, result.stderr


def test_the_jobs_pod_is_created_for_real_with_its_native_sidecar(
        cluster: Cluster, control_plane: ControlPlane, restricted_namespace: str,
        tmp_path: Path) -> None:
    result = apply(control_plane, restricted_namespace, job_pod(), tmp_path)
    assert result.returncode == 0, result.stderr
    created = cluster.core.read_namespaced_pod("deploy-web-pod", restricted_namespace)
    (sidecar,) = [c for c in created.spec.init_containers if c.restart_policy == "Always"]
    assert sidecar.name == "kubegate" and sidecar.image == IMAGE
    assert sidecar.startup_probe.var_exec.command[:3] == ["kubegate", "credential", "--ready"]
    (job,) = created.spec.containers
    assert job.volume_mounts is None or all(
        m.name != "kubegate-token" for m in job.volume_mounts)
    (projected,) = [v.projected for v in created.spec.volumes if v.projected]
    token = projected.sources[0].service_account_token
    assert (token.audience, token.expiration_seconds) == ("kubegate", 600)
    assert created.spec.automount_service_account_token is False


@pytest.mark.parametrize("example", sorted(POD_SPECS))
def test_each_example_runs_the_sidecar_natively_with_its_real_flags(example: str) -> None:
    spec = POD_SPECS[example]()["spec"]
    (sidecar,) = sidecars(spec)
    assert sidecar["image"] == IMAGE
    assert "startupProbe" in sidecar
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_sidecar_arguments(parser)
    assert sidecar["args"][0] == "sidecar"
    flags = parser.parse_args(sidecar["args"][1:])
    assert str(flags.token_file) == "/var/run/secrets/kubegate/token"
    assert flags.proxy_listen == "127.0.0.1:8001"
    # the socket's folder is one the sidecar creates 0700 inside the emptyDir (which the
    # kubelet makes 0777 and root's: the sidecar would refuse to serve in it directly)
    socket_path = PurePosixPath(flags.socket)
    mounts = {m["name"]: PurePosixPath(m["mountPath"]) for m in sidecar["volumeMounts"]}
    assert socket_path.parent.parent == mounts["kubegate-socket"]
    assert next(v for v in spec["volumes"] if v["name"] == "kubegate-socket")["emptyDir"]
    assert f"--socket={flags.socket}" in sidecar["startupProbe"]["exec"]["command"]
    token_volume = next(v for v in spec["volumes"] if v["name"] == "kubegate-token")
    (source,) = token_volume["projected"]["sources"]
    assert source["serviceAccountToken"] == {"audience": "kubegate", "expirationSeconds": 600,
                                             "path": "token"}
    # the job reaches the API through the proxy (Jenkins: in the pipeline's sh step)
    where = [(EXAMPLES / "jenkins" / "pod-template.yaml").read_text()] if example == "jenkins" \
        else [json.dumps(container) for container in spec["containers"]]
    assert all("--server=http://127.0.0.1:8001" in text for text in where)


# -- other CI systems: CircleCI, Buildkite, Bitbucket, Azure DevOps, Jenkins (OIDC plugin) ------
#
# Each example folder holds the provider's pipeline file, the platform team's TrustMapping
# (mapping.yaml) and the exchanger's issuer entry (issuer.yaml). The pipeline's kubegate script
# runs with /bin/sh as the provider's runner would, the provider's token command replaced by a
# stub on PATH that checks its arguments and prints a token from the local issuer of that
# provider (tests/support/ci_issuers.py); the exchanger trusts that issuer with the example's
# issuer entry (its URL, CA and kind swapped for the local ones) and the example's mapping.

CI_FOLDERS = {"circleci": EXAMPLES / "circleci", "buildkite": EXAMPLES / "buildkite",
              "bitbucket": EXAMPLES / "bitbucket", "azure-devops": EXAMPLES / "azure-devops",
              "jenkins": EXAMPLES / "jenkins" / "oidc-provider"}
JENKINS_URL = "https://jenkins.example.com"
_STUB = """#!/bin/sh
# {name} stub: prints the job's token when called exactly as the example calls it
[ "$*" = {expected} ] || {{ echo "{name}: unexpected arguments: $*" >&2; exit 2; }}
printf '%s\\n' {output}
"""
TOKEN_STUBS = {
    "circleci": ("circleci", """'run oidc get --claims {"aud": "kubegate"}'""",
                 '"$TEST_ID_TOKEN"'),
    "buildkite": ("buildkite-agent", "'oidc request-token --audience kubegate --claim "
                  "organization_id --claim pipeline_id'", '"$TEST_ID_TOKEN"'),
    "azure-devops": ("curl", '"-sSf -X POST -H Authorization: Bearer $SYSTEM_ACCESSTOKEN -H '
                     'Content-Type: application/json $SYSTEM_OIDCREQUESTURI?api-version='
                     '7.1-preview.1"', '"{\\"oidcToken\\": \\"$TEST_ID_TOKEN\\"}"'),
}


def ci_pipeline_script(provider: str) -> str:
    """The kubegate part of the example's pipeline file, as the runner's shell gets it."""
    folder = CI_FOLDERS[provider]
    if provider == "circleci":
        steps = yaml.safe_load((folder / "config.yml").read_text())["jobs"]["deploy"]["steps"]
        return str(next(s["run"]["command"] for s in steps
                        if isinstance(s, dict) and "run" in s))
    if provider == "buildkite":
        (step,) = yaml.safe_load((folder / "pipeline.yml").read_text())["steps"]
        return str(step["command"]).replace("$$", "$")  # the agent's upload interpolation
    if provider == "bitbucket":
        pipeline = yaml.safe_load((folder / "bitbucket-pipelines.yml").read_text())
        (entry,) = pipeline["pipelines"]["branches"]["main"]
        return "\n".join(entry["step"]["script"])
    if provider == "azure-devops":
        (step,) = yaml.safe_load((folder / "azure-pipelines.yml").read_text())["steps"]
        return str(step["bash"])
    (script,) = re.findall(r"sh '''\n(.*?)'''", (folder / "Jenkinsfile").read_text(), re.S)
    return str(script)


def ci_pipeline_environment(provider: str) -> dict[str, str]:
    """Variables the pipeline file sets for the kubegate script."""
    folder = CI_FOLDERS[provider]
    if provider == "circleci":
        return yaml.safe_load((folder / "config.yml").read_text())["jobs"]["deploy"][
            "environment"]  # type: ignore[no-any-return]
    if provider == "buildkite":
        (step,) = yaml.safe_load((folder / "pipeline.yml").read_text())["steps"]
        return step["env"]  # type: ignore[no-any-return]
    if provider == "azure-devops":
        return yaml.safe_load((folder / "azure-pipelines.yml").read_text())[
            "variables"]  # type: ignore[no-any-return]
    if provider == "jenkins":
        text = (folder / "Jenkinsfile").read_text()
        return dict(re.findall(r"^\s+(KUBEGATE_\w+) = '([^']*)'$", text, re.M))
    return {}  # Bitbucket: the script exports its own


def ci_example_mapping(provider: str, *, namespace: str, issuer_url: str) -> dict[str, Any]:
    """The example's mapping, granting in the test cluster's namespace (and, for Jenkins, the
    local controller's job URL)."""
    text = (CI_FOLDERS[provider] / "mapping.yaml").read_text()
    if provider == "jenkins":
        text = text.replace(JENKINS_URL, issuer_url.removesuffix("/oidc"))
    document = yaml.safe_load(text)
    document["spec"]["grant"] |= {"cluster": "test", "namespace": namespace}
    return document  # type: ignore[no-any-return]


def ci_example_issuer(provider: str, issuer: CIIssuer) -> dict[str, Any]:
    (entry,) = yaml.safe_load((CI_FOLDERS[provider] / "issuer.yaml").read_text())
    assert entry["kind"] == provider and entry["name"] == provider
    return entry | {"url": issuer.url, "caFile": str(issuer.ca_path)}  # type: ignore[no-any-return]


@pytest.fixture
def ci_target(cluster: Cluster, control_plane: ControlPlane,
              start_test_exchanger: StartExchanger, ci_issuers: dict[str, CIIssuer]) -> Target:
    web = cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    mappings = yaml.safe_dump_all([ci_example_mapping(p, namespace=web, issuer_url=i.url)
                                   for p, i in sorted(ci_issuers.items())])
    exchanger = start_test_exchanger(
        issuers=[ci_example_issuer(p, i) for p, i in sorted(ci_issuers.items())],
        clusters=[cluster_entry(control_plane)], mappings=mappings)
    return Target(exchanger=exchanger, namespace=web)


def run_ci_script(provider: str, token: str, target: Target, control_plane: ControlPlane,
                  ca: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """The example's kubegate script as the provider's runner runs it, with `token` as what
    the provider hands the job."""
    stubs = folder / "bin"
    stubs.mkdir(parents=True, exist_ok=True)
    if provider in TOKEN_STUBS:
        name, expected, output = TOKEN_STUBS[provider]
        (stubs / name).write_text(_STUB.format(name=name, expected=expected, output=output))
        (stubs / name).chmod(0o755)
    (folder / "tmp").mkdir(exist_ok=True)
    (folder / "ca.pem").write_text(target.ca_pem)
    env = base_environment(control_plane, folder, ca) | ci_pipeline_environment(provider) | {
        "KUBEGATE_SERVER": target.exchanger.target, "KUBEGATE_CA": target.ca_pem,
        "TMPDIR": str(folder / "tmp"), "TEST_ID_TOKEN": token,
        # what each runtime hands the job
        "CIRCLECI": "true", "BUILDKITE": "true", "BITBUCKET_STEP_OIDC_TOKEN": token,
        "SYSTEM_ACCESSTOKEN": "system-access-token",
        "SYSTEM_OIDCREQUESTURI": "https://dev.azure.com/contoso/_apis/oidctoken",
        "KUBEGATE_ID_TOKEN": token, "KUBEGATE_CA_FILE": str(folder / "ca.pem")}
    if provider != "jenkins":  # withCredentials binds these two only on Jenkins
        del env["KUBEGATE_ID_TOKEN"], env["KUBEGATE_CA_FILE"]
    env["PATH"] = f"{stubs}{os.pathsep}{env['PATH']}"
    return subprocess.run(["/bin/sh", "-e", "-c", ci_pipeline_script(provider)], env=env,
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=folder)


def ci_token(provider: str, issuer: CIIssuer, variant: str | None = None) -> str:
    (audience,) = yaml.safe_load((CI_FOLDERS[provider] / "issuer.yaml").read_text())[0][
        "audiences"]
    return issuer.mint(issuer.job(variant), audience=audience)


@pytest.mark.parametrize("provider", sorted(CI_FOLDERS))
def test_each_ci_example_admits_its_job_and_refuses_near_misses(
        provider: str, ci_target: Target, ci_issuers: dict[str, CIIssuer],
        control_plane: ControlPlane, tmp_path: Path) -> None:
    issuer = ci_issuers[provider]
    allowed = run_ci_script(provider, ci_token(provider, issuer), ci_target, control_plane,
                            issuer.ca_path, tmp_path / "job")
    output = allowed.stdout + allowed.stderr
    assert allowed.returncode == 0, output
    assert f"system:serviceaccount:{ci_target.namespace}:deployer" in output
    assert JWT.findall(output) == []
    for variant in issuer.shape.variants:
        refused = run_ci_script(provider, ci_token(provider, issuer, variant), ci_target,
                                control_plane, issuer.ca_path, tmp_path / variant)
        assert refused.returncode != 0, variant
        assert "denied: PERMISSION_DENIED ROLE_NOT_ALLOWED" in refused.stderr, variant
    decisions = [d["decision"] for d in ci_target.exchanger.decisions()]
    assert decisions == ["allow", *["deny"] * len(issuer.shape.variants)]


@pytest.mark.parametrize("provider", sorted(CI_FOLDERS))
def test_each_ci_example_runs_kubegate_exchange_with_its_real_flags(provider: str) -> None:
    (line,) = [line.strip() for line in ci_pipeline_script(provider).splitlines()
               if line.strip().startswith("kubegate exchange ")]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_exchange_arguments(parser)
    flags = parser.parse_args(shlex.split(line)[2:])
    assert flags.token_env == "KUBEGATE_ID_TOKEN"
    assert flags.server == "$KUBEGATE_SERVER" and flags.role == "$KUBEGATE_ROLE"
    assert flags.exec_kubeconfig and flags.ca_file
    role = ci_pipeline_environment(provider).get("KUBEGATE_ROLE") or re.search(
        r"KUBEGATE_ROLE=(\S+)", ci_pipeline_script(provider)).group(1)  # type: ignore[union-attr]
    assert role == yaml.safe_load((CI_FOLDERS[provider] / "mapping.yaml").read_text())[
        "metadata"]["name"]


def test_the_pipeline_files_ask_their_provider_for_a_kubegate_token() -> None:
    bitbucket = yaml.safe_load((CI_FOLDERS["bitbucket"] / "bitbucket-pipelines.yml").read_text())
    (entry,) = bitbucket["pipelines"]["branches"]["main"]
    assert entry["step"]["oidc"] == {"audiences": ["kubegate"]}
    jenkinsfile = (CI_FOLDERS["jenkins"] / "Jenkinsfile").read_text()
    assert "string(credentialsId: 'kubegate-id-token', variable: 'KUBEGATE_ID_TOKEN')" in \
        jenkinsfile
    azure = yaml.safe_load((CI_FOLDERS["azure-devops"] / "azure-pipelines.yml").read_text())
    assert azure["steps"][0]["env"] == {"SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"}
    circleci = yaml.safe_load((CI_FOLDERS["circleci"] / "config.yml").read_text())
    assert circleci["workflows"]["deploy"]["jobs"][0]["deploy"]["context"] == "kubegate"


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = kubegate_main(["mappings", "validate", "--strict", *args])
    return status, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("provider", sorted(CI_FOLDERS))
def test_each_ci_example_mapping_validates_without_findings(
        provider: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mapping = CI_FOLDERS[provider] / "mapping.yaml"
    status, out = validate(capsys, str(mapping))
    assert (status, [line for line in out if ": warning: " in line or ": error: " in line]) \
        == (0, [])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:8443", "selfIssued": {"listen": "127.0.0.1:8444"},
        "issuers": yaml.safe_load((CI_FOLDERS[provider] / "issuer.yaml").read_text()),
        "clusters": [{"name": "prod", "server": "https://10.0.0.1:6443",
                      "backend": "selfIssued"}]}))
    status, out = validate(capsys, "--config", str(config), str(mapping))
    findings = [line for line in out if ": warning: " in line or ": error: " in line]
    if provider == "azure-devops":  # its audience cannot be chosen: the warning stays
        assert len(findings) == 1 and "api://AzureADTokenExchange' belongs to another " \
            "relying party" in findings[0], findings
    else:
        assert (status, findings) == (0, [])
