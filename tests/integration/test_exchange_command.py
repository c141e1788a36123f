"""`kubegate exchange` as a pipeline runs it: a subprocess talking real gRPC over TLS to a real
exchanger on loopback, which trusts the loopback GitHub Actions issuer. The subject token comes
from a file, an environment variable or the Actions runtime's ID-token endpoint; the answer is
JSON, an ExecCredential or a 0600 kubeconfig; failures are one line on stderr with exit 1
(denied) or 2 (usage), and never show a token or a traceback."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, self_issued_entry
from tests.support.oidc import GitHubActionsIssuer, GitHubJob

REPOSITORY_ID = "4242"
# An audience that only survives the trip to the ID-token endpoint if it is URL-encoded.
ODD_AUDIENCE = "kubegate prod&role=admin#x"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

MAPPINGS = f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims:
  - claim: repository_id
    equals: "{REPOSITORY_ID}"
  - claim: ref
    equals: refs/heads/main
  grant:
    cluster: ci
    namespace: web
    user: "ci:octo-org/web"
    groups: ["kubegate:deployers"]
    maxLifetime: 15m
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exec plugin's credential cache in this test's folder, not the user's."""
    monkeypatch.setenv("KUBEGATE_CACHE_DIR", str(tmp_path / "credential-cache"))


@pytest.fixture
def exchanger(start_test_exchanger: StartExchanger,
              github_issuer: GitHubActionsIssuer) -> TestExchanger:
    return start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url,
                  "audiences": ["kubegate", ODD_AUDIENCE], "caFile": str(github_issuer.ca_path)}],
        clusters=[{"name": "ci", "server": "https://127.0.0.1:6443", "backend": "selfIssued"}],
        self_issued=self_issued_entry(), mappings=MAPPINGS,
    )


@pytest.fixture
def web_job(github_issuer: GitHubActionsIssuer) -> Iterator[GitHubJob]:
    """The shared issuer's ID-token endpoint hands out tokens for octo-org/web, then goes back."""
    job = GitHubJob(repository="octo-org/web", repository_id=REPOSITORY_ID)
    with github_issuer.running_job(job):
        yield job


def allowed_token(issuer: GitHubActionsIssuer) -> str:
    return issuer.mint(repository="octo-org/web", repository_id=REPOSITORY_ID,
                       ref="refs/heads/main", audience="kubegate")


def kubegate_exchange(*args: str, env: Mapping[str, str] | None = None,
                      ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_ID_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "kubegate", "exchange", *args],
        capture_output=True, text=True, timeout=60, env=environment | dict(env or {}),
    )


def server_args(exchanger: TestExchanger) -> list[str]:
    return ["--server", exchanger.target, "--ca-file", str(exchanger.running.ca_file)]


def assert_one_clean_line(stderr: str, *secrets: str) -> None:
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    assert not any(secret in stderr for secret in secrets)


def assert_granted(result: subprocess.CompletedProcess[str],
                   exchanger: TestExchanger) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    assert isinstance(document["token"], str) and document["token"].count(".") == 2
    assert document["mapping"] == "web-deploy"
    assert RFC3339.match(str(document["expires_at"]))
    assert document["cluster"] == {
        "name": "ci", "server": "https://127.0.0.1:6443", "namespace": "web",
        "service_account": "", "user": "ci:octo-org/web", "groups": ["kubegate:deployers"],
        "certificate_authority_data": ""}  # the same shape the sidecar's socket serves
    (allow,) = [d for d in exchanger.decisions() if d["decision"] == "allow"]
    assert allow["token_id"] == document["token_id"]
    assert allow["session_id"] == document["session_id"]
    return document


def test_a_token_file_is_exchanged_and_the_credential_printed_as_json(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(allowed_token(github_issuer) + "\n")
    result = kubegate_exchange(*server_args(exchanger), "--token-file", str(token_file),
                               "--lifetime", "12m")
    document = assert_granted(result, exchanger)
    assert document["token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    (allow,) = exchanger.decisions()
    assert allow["grant"]["lifetime_seconds"] == 720


def test_a_token_from_an_environment_variable_is_exchanged(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer) -> None:
    result = kubegate_exchange(*server_args(exchanger), "--token-env", "CI_JOB_JWT",
                               env={"CI_JOB_JWT": allowed_token(github_issuer)})
    assert_granted(result, exchanger)


def test_github_actions_fetches_a_fresh_id_token_for_the_kubegate_audience(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, web_job: GitHubJob) -> None:
    result = kubegate_exchange(*server_args(exchanger), "--github-actions",
                               env=github_issuer.id_token_environment()
                               | {"SSL_CERT_FILE": str(github_issuer.ca_path)})
    assert_granted(result, exchanger)
    (allow,) = exchanger.decisions()
    assert allow["caller"]["sub"] == "repo:octo-org/web:ref:refs/heads/main"


def test_github_actions_url_encodes_the_audience(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, web_job: GitHubJob) -> None:
    result = kubegate_exchange(*server_args(exchanger), "--github-actions",
                               "--github-audience", ODD_AUDIENCE,
                               env=github_issuer.id_token_environment()
                               | {"SSL_CERT_FILE": str(github_issuer.ca_path)})
    assert_granted(result, exchanger)


def test_github_actions_without_the_runtime_variables_is_a_usage_error(
        exchanger: TestExchanger) -> None:
    result = kubegate_exchange(*server_args(exchanger), "--github-actions")
    assert result.returncode == 2
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in result.stderr
    assert_one_clean_line(result.stderr)


def test_github_actions_with_a_wrong_request_token_fails_without_showing_it(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer) -> None:
    env = github_issuer.id_token_environment() | {
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "not-the-runtime-token",
        "SSL_CERT_FILE": str(github_issuer.ca_path)}
    result = kubegate_exchange(*server_args(exchanger), "--github-actions", env=env)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert_one_clean_line(result.stderr, "not-the-runtime-token")


def test_exec_credential_output_is_what_kubectl_reads(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer) -> None:
    token = allowed_token(github_issuer)
    result = kubegate_exchange(*server_args(exchanger), "--token-env", "T",
                               "--output", "exec-credential", env={"T": token})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["apiVersion"], document["kind"]) == (
        "client.authentication.k8s.io/v1", "ExecCredential")
    assert set(document["status"]) == {"token", "expirationTimestamp"}
    assert document["status"]["token"].count(".") == 2
    assert document["status"]["token"] != token
    assert RFC3339.match(document["status"]["expirationTimestamp"])


def test_exec_credential_output_is_reused_from_the_cache_and_json_output_is_not(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, tmp_path: Path) -> None:
    env = {"T": allowed_token(github_issuer)}
    plugin = [*server_args(exchanger), "--token-env", "T", "--output", "exec-credential"]
    first, second = (kubegate_exchange(*plugin, env=env) for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert len(exchanger.decisions()) == 1
    (entry,) = (tmp_path / "credential-cache").glob("*.json")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert env["T"] not in entry.read_text()  # the subject token is only a digest in the key

    printed = [kubegate_exchange(*server_args(exchanger), "--token-env", "T", env=env)
               for _ in range(2)]
    assert all(result.returncode == 0 for result in printed)
    assert len(exchanger.decisions()) == 3
    uncached = kubegate_exchange(*plugin, "--no-cache", env=env)
    assert uncached.returncode == 0 and len(exchanger.decisions()) == 4


def test_a_cache_folder_others_may_enter_is_not_used_and_says_so(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = {"T": allowed_token(github_issuer), "KUBEGATE_CACHE_DIR": str(shared)}
    for _ in range(2):
        result = kubegate_exchange(*server_args(exchanger), "--token-env", "T",
                                   "--output", "exec-credential", env=env)
        assert result.returncode == 0
        assert json.loads(result.stdout)["kind"] == "ExecCredential"
        assert "warning: credential cache not used" in result.stderr
        assert_one_clean_line(result.stderr, env["T"])
    assert len(exchanger.decisions()) == 2
    assert list(shared.iterdir()) == []


def test_kubeconfig_is_written_0600_and_the_token_is_not_printed(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer, tmp_path: Path) -> None:
    path = tmp_path / "out" / "kubeconfig"
    result = kubegate_exchange(*server_args(exchanger), "--token-env", "T",
                               "--kubeconfig", str(path), env={"T": allowed_token(github_issuer)})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = yaml.safe_load(path.read_text())
    token = document["users"][0]["user"]["token"]
    assert token.count(".") == 2
    assert token not in result.stdout
    assert str(path) in result.stdout and "expires" in result.stdout
    assert document["contexts"][0]["context"]["namespace"] == "web"
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_a_denied_token_exits_1_with_the_reason_on_one_line(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer) -> None:
    token = github_issuer.mint(repository="octo-org/other", repository_id="9999",
                               audience="kubegate")
    result = kubegate_exchange(*server_args(exchanger), "--token-env", "T", env={"T": token})
    assert result.returncode == 1
    assert result.stderr.strip() == ("kubegate exchange: denied: PERMISSION_DENIED "
                                     "NO_MATCHING_MAPPING: no trust mapping allows this exchange")
    assert result.stdout == ""
    assert_one_clean_line(result.stderr, token)
    (deny,) = exchanger.decisions()
    assert deny["reason"] == "NO_MATCHING_MAPPING"


def test_a_token_for_another_audience_is_unauthenticated(
        exchanger: TestExchanger, github_issuer: GitHubActionsIssuer) -> None:
    token = github_issuer.mint(repository="octo-org/web", repository_id=REPOSITORY_ID,
                               audience="https://github.com/octo-org")
    result = kubegate_exchange(*server_args(exchanger), "--token-env", "T", env={"T": token})
    assert result.returncode == 1
    assert "denied: UNAUTHENTICATED" in result.stderr
    assert_one_clean_line(result.stderr, token)


def test_a_missing_token_file_exits_2(exchanger: TestExchanger, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    result = kubegate_exchange(*server_args(exchanger), "--token-file", str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert_one_clean_line(result.stderr)
    assert exchanger.decisions() == []


@pytest.mark.parametrize("env", [{}, {"T": "  \n"}])
def test_an_empty_or_unset_token_variable_exits_2(exchanger: TestExchanger,
                                                  env: dict[str, str]) -> None:
    result = kubegate_exchange(*server_args(exchanger), "--token-env", "T", env=env)
    assert result.returncode == 2
    assert "the environment variable is not set or empty" in result.stderr
    assert_one_clean_line(result.stderr)


def test_plaintext_to_a_non_loopback_server_exits_2(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    result = kubegate_exchange("--server", "10.20.30.40:8443", "--plaintext",
                               "--token-file", str(token_file))
    assert result.returncode == 2
    assert "--plaintext is only allowed for a loopback server" in result.stderr
    assert_one_clean_line(result.stderr)


@pytest.mark.parametrize(("flags", "complaint"), [
    (["--token-env", "T", "--lifetime", "soon"], "--lifetime: expected a duration"),
    (["--token-env", "T", "--token-file", "/dev/null"], "not allowed with argument"),
    (["--token-env", "T", "--output", "exec-credential", "--kubeconfig", "k"],
     "not allowed with argument"),
    (["--token-env", "T", "--plaintext"], "--plaintext and --ca-file are mutually exclusive"),
    ([], "one of the arguments --token-file --token-env --gitlab-id-token --github-actions "
         "is required"),
])
def test_bad_flags_exit_2(exchanger: TestExchanger, flags: list[str], complaint: str) -> None:
    result = kubegate_exchange(*server_args(exchanger), *flags, env={"T": "x"})
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
