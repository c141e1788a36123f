"""The CI job webhook routes, pure (a Request in, an Answer out): a GitHub delivery counts only
with the right X-Hub-Signature-256 over its exact body, a GitLab one only with the right
X-Gitlab-Token; a finished job revokes by the run's or job's ids; other events are ignored;
bad bodies are 400; and the listener's own limits (413, plaintext on loopback only)."""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exchanger.access.ciwebhooks import (
    GITHUB_PATH,
    GITLAB_PATH,
    CiWebhookEndpoint,
    CiWebhookServer,
    github_signature,
)
from exchanger.access.model import Requester, Session, SessionEnd
from exchanger.access.settings import CiWebhooks
from exchanger.metrics import WebhookMetrics
from exchanger.oauth.wire import Request
from kubegate.errors import ConfigError, UnavailableError
from tests.support.leakcheck import SecretRegistry

GITHUB_SECRET = secrets.token_hex(24).encode()
GITLAB_TOKEN = secrets.token_hex(24).encode()
CALLER = Requester(issuer="github", subject="repo:octo/web:ref:refs/heads/main")


class FakeRevoker:
    """Records the claims it was asked to revoke; answers with `ended` sessions."""

    def __init__(self, ended: int = 1, error: Exception | None = None) -> None:
        self.calls: list[tuple[dict[str, str], SessionEnd]] = []
        self._ended, self._error = ended, error

    def revoke_matching_ci(self, claims: Mapping[str, str], *,
                           reason: SessionEnd = SessionEnd.JOB_FINISHED) -> list[Session]:
        self.calls.append((dict(claims), reason))
        if self._error is not None:
            raise self._error
        return [Session(id=f"s-{n}", mapping="deploy", cluster="local", namespace="web",
                        caller=CALLER, token_id="t", issued_at=1, expires_at=2, not_after=2)
                for n in range(self._ended)]


def workflow_job(action: str = "completed", run_attempt: int = 1) -> bytes:
    return json.dumps({
        "action": action, "repository": {"id": 892301, "full_name": "octo/web"},
        "workflow_job": {"id": 31, "run_id": 7001, "run_attempt": run_attempt,
                         "status": action, "conclusion": "success"}}).encode()


def job_hook(status: str = "success", kind: str = "build") -> bytes:
    return json.dumps({"object_kind": kind, "build_id": 4242, "build_status": status,
                       "project_id": 77, "pipeline_id": 900}).encode()


def github(body: bytes, *, event: str = "workflow_job", sign: bytes | None = None,
           signed: bytes | None = GITHUB_SECRET, method: str = "POST") -> Request:
    headers = [("x-github-event", event), ("content-type", "application/json")]
    if signed is not None:
        headers.append(("x-hub-signature-256",
                        github_signature(signed, body if sign is None else sign)))
    return Request(method=method, target=GITHUB_PATH, headers=tuple(headers), body=body)


def gitlab(body: bytes, *, token: bytes | None = GITLAB_TOKEN,
           event: str = "Job Hook") -> Request:
    headers = [("x-gitlab-event", event), ("content-type", "application/json")]
    if token is not None:
        headers.append(("x-gitlab-token", token.decode()))
    return Request(method="POST", target=GITLAB_PATH, headers=tuple(headers), body=body)


@pytest.fixture(autouse=True)
def _secrets(secret_registry: SecretRegistry) -> None:
    secret_registry.add_token("GitHub webhook secret", GITHUB_SECRET.decode())
    secret_registry.add_token("GitLab webhook token", GITLAB_TOKEN.decode())


def endpoint(revoker: FakeRevoker, metrics: WebhookMetrics | None = None,
             **secrets_: bytes) -> CiWebhookEndpoint:
    given = {"github_secret": GITHUB_SECRET, "gitlab_token": GITLAB_TOKEN, **secrets_}
    return CiWebhookEndpoint(revoker=revoker, metrics=metrics, **given)


def answered(endpoint_: CiWebhookEndpoint, request: Request) -> tuple[int, dict[str, Any]]:
    answer = endpoint_.handle(request, "https:127.0.0.1:5000")
    return answer.status, json.loads(answer.body)


def test_a_completed_workflow_job_revokes_its_run_attempt() -> None:
    revoker = FakeRevoker(ended=2)
    metrics = WebhookMetrics(CollectorRegistry())
    status, body = answered(endpoint(revoker, metrics), github(workflow_job(run_attempt=2)))
    assert (status, body) == (200, {"revoked": 2})
    assert revoker.calls == [({"repository_id": "892301", "run_id": "7001",
                               "run_attempt": "2"}, SessionEnd.JOB_FINISHED)]
    assert metrics.registry.get_sample_value(
        "kubegate_ci_webhook_requests_total", {"provider": "github", "result": "revoked"}) == 1
    assert metrics.registry.get_sample_value(
        "kubegate_ci_webhook_sessions_revoked_total", {"provider": "github"}) == 2


@pytest.mark.parametrize("request_", [
    pytest.param(github(workflow_job(), signed=b"another secret"), id="wrong secret"),
    pytest.param(github(workflow_job(), signed=None), id="no signature"),
    pytest.param(github(workflow_job(), sign=workflow_job(run_attempt=9)),
                 id="signature of another body"),
    pytest.param(Request(method="POST", target=GITHUB_PATH, body=workflow_job(), headers=(
        ("x-github-event", "workflow_job"),
        ("x-hub-signature-256", github_signature(GITHUB_SECRET, workflow_job()).upper()))),
                 id="signature in upper case"),
    pytest.param(Request(method="POST", target=GITHUB_PATH, body=workflow_job(), headers=(
        ("x-github-event", "workflow_job"),
        ("x-hub-signature-256", github_signature(GITHUB_SECRET, workflow_job())),
        ("x-hub-signature-256", "sha256=00"))), id="two signatures"),
    pytest.param(github(b"{not json", signed=b"x"), id="bad body, bad signature"),
])
def test_a_forged_github_delivery_is_401_and_revokes_nothing(request_: Request) -> None:
    revoker = FakeRevoker()
    metrics = WebhookMetrics(CollectorRegistry())
    status, body = answered(endpoint(revoker, metrics), request_)
    assert status == 401 and "X-Hub-Signature-256" in body["error"]
    assert revoker.calls == []
    assert metrics.registry.get_sample_value(
        "kubegate_ci_webhook_requests_total",
        {"provider": "github", "result": "unauthorized"}) == 1


@pytest.mark.parametrize(("request_", "status", "body"), [
    (github(b'{"zen": "Keep it logically awesome.", "hook_id": 1}', event="ping"), 200,
     {"revoked": 0}),
    (github(workflow_job(action="in_progress")), 202,
     {"revoked": 0, "ignored": "action is not completed"}),
    (github(b'{"action": "completed"}', event="workflow_run"), 202,
     {"revoked": 0, "ignored": "event 'workflow_run'"}),
    (github(b"{not json"), 400, {"error": "the body is not JSON"}),
    (github(b"[1]"), 400, {"error": "the body is not a JSON object"}),
    (github(b'{"action": "completed", "repository": {"id": 1}}'), 400,
     {"error": "workflow_job: expected an object"}),
    (github(b'{"action": "completed", "repository": {"id": "1"}, '
            b'"workflow_job": {"run_id": 2, "run_attempt": 1}}'), 400,
     {"error": "repository.id: expected a positive integer"}),
    (github(workflow_job(), method="GET"), 405, {"error": "POST only"}),
])
def test_github_events_that_end_no_job(request_: Request, status: int,
                                       body: dict[str, Any]) -> None:
    revoker = FakeRevoker()
    assert answered(endpoint(revoker), request_) == (status, body)
    assert revoker.calls == []


@pytest.mark.parametrize("status", ["success", "failed", "canceled", "skipped"])
def test_a_finished_gitlab_job_revokes_its_job(status: str) -> None:
    revoker = FakeRevoker()
    assert answered(endpoint(revoker), gitlab(job_hook(status))) == (200, {"revoked": 1})
    assert revoker.calls == [({"project_id": "77", "job_id": "4242"}, SessionEnd.JOB_FINISHED)]


@pytest.mark.parametrize(("request_", "status"), [
    (gitlab(job_hook(), token=b"guessed"), 401),
    (gitlab(job_hook(), token=None), 401),
    (gitlab(job_hook(), token=GITLAB_TOKEN + b"x"), 401),
    (gitlab(job_hook("running")), 202),
    (gitlab(job_hook("created")), 202),
    (gitlab(job_hook(kind="pipeline")), 202),
    (gitlab(job_hook(), event="Pipeline Hook"), 202),
    (gitlab(b'{"object_kind": "build", "build_status": "success", "project_id": 77}'), 400),
])
def test_gitlab_deliveries_that_revoke_nothing(request_: Request, status: int) -> None:
    revoker = FakeRevoker()
    assert answered(endpoint(revoker), request_)[0] == status
    assert revoker.calls == []


def test_an_unconfigured_provider_is_not_found() -> None:
    revoker = FakeRevoker()
    only_github = endpoint(revoker, gitlab_token=b"")
    assert answered(only_github, gitlab(job_hook(), token=b""))[0] == 404
    assert answered(only_github, Request(method="POST", target="/other", headers=()))[0] == 404
    assert revoker.calls == []


def test_a_store_outage_is_503_so_the_ci_may_redeliver(
        caplog: pytest.LogCaptureFixture) -> None:
    revoker = FakeRevoker(error=UnavailableError("STORE_UNAVAILABLE", "sqlite locked"))
    status, body = answered(endpoint(revoker), github(workflow_job()))
    assert status == 503 and "redeliver" in body["error"]
    assert "sqlite locked" in caplog.text and GITHUB_SECRET.decode() not in caplog.text


def _secret_files(tmp_path: Path) -> CiWebhooks:
    (tmp_path / "github").write_bytes(GITHUB_SECRET + b"\n")
    (tmp_path / "gitlab").write_bytes(GITLAB_TOKEN)
    return CiWebhooks(listen="127.0.0.1:0", github_secret_file=tmp_path / "github",
                      gitlab_token_file=tmp_path / "gitlab")


def test_a_body_over_one_mebibyte_is_413(tmp_path: Path) -> None:
    revoker = FakeRevoker()
    server = CiWebhookServer(_secret_files(tmp_path), tls=None, plaintext=True,
                             revoker=revoker).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", GITHUB_PATH, body=b"x" * (1024 * 1024 + 1),
                           headers={"X-GitHub-Event": "workflow_job"})
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == {"error": "the body is over 1 MiB"}
        connection.close()
    finally:
        server.stop()
    assert revoker.calls == []


def test_plaintext_is_refused_off_loopback_and_secret_files_must_be_readable(
        tmp_path: Path) -> None:
    config = CiWebhooks(listen="0.0.0.0:0", github_secret_file=tmp_path / "missing")
    with pytest.raises(ConfigError) as raised:
        CiWebhookServer(config, tls=None, plaintext=True, revoker=FakeRevoker())
    assert "plaintext on loopback only" in str(raised.value)
    assert "access.ciWebhooks.github.secretFile: cannot read" in str(raised.value)
