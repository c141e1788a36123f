"""CI job webhooks end to end: a real HTTPS listener (certificate from a test CA) in front of
the real `Revoker` over the SQLite session index. A forged GitHub delivery (wrong signature,
none, or one made for another body) is refused with 401 and ends nothing; a signed
`workflow_job` completed ends exactly the sessions of that run attempt (not another attempt's,
not another run's); GitLab's job events likewise with X-Gitlab-Token."""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exchanger.access.ciwebhooks import GITHUB_PATH, GITLAB_PATH, CiWebhookServer, github_signature
from exchanger.access.model import Requester, Session, SessionEnd
from exchanger.access.revocation import Revoker
from exchanger.access.settings import CiWebhooks
from exchanger.access.sqlite_store import SqliteStores
from exchanger.config import TLSFiles
from exchanger.metrics import WebhookMetrics
from tests.support.leakcheck import SecretRegistry
from tests.support.pki import TestCA

NOW = 1_800_000_000
GITHUB_CALLER = Requester(issuer="github", subject="repo:octo/web:environment:prod")
GITLAB_CALLER = Requester(issuer="gitlab", subject="project_path:octo/web:ref_type:branch")


@dataclass
class Receiver:
    server: CiWebhookServer
    stores: SqliteStores
    context: ssl.SSLContext
    github_secret: bytes
    gitlab_token: bytes
    metrics: WebhookMetrics

    def post(self, path: str, body: bytes,
             headers: dict[str, str]) -> tuple[int, dict[str, object]]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=10,
                                                 context=self.context)
        try:
            connection.request("POST", path, body=body,
                               headers={"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def github(self, body: bytes, *, signature: str | None) -> tuple[int, dict[str, object]]:
        headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": "d-1",
                   "User-Agent": "GitHub-Hookshot/test"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return self.post(GITHUB_PATH, body, headers)

    def active(self) -> set[str]:
        return {s.id for s in self.stores.sessions.list(active_only=True)}


def session(session_id: str, caller: Requester, ci: dict[str, str]) -> Session:
    return Session(id=session_id, mapping="prod-deploy", cluster="local", namespace="web",
                   caller=caller, token_id=f"tok-{session_id}", issued_at=NOW,
                   expires_at=NOW + 900, not_after=NOW + 900, ci=ci)


GITHUB_RUN = {"repository_id": "892301", "run_id": "7001", "sha": "a" * 40}


@pytest.fixture
def receiver(tmp_path: Path, secret_registry: SecretRegistry) -> Iterator[Receiver]:
    github_secret, gitlab_token = secrets.token_hex(24).encode(), secrets.token_hex(24).encode()
    secret_registry.add_token("GitHub webhook secret", github_secret.decode())
    secret_registry.add_token("GitLab webhook token", gitlab_token.decode())
    (tmp_path / "github-secret").write_bytes(github_secret + b"\n")
    (tmp_path / "gitlab-token").write_bytes(gitlab_token + b"\n")
    ca = TestCA("ci-webhooks-test-ca")
    cert_file, key_file = ca.issue_server().write(tmp_path, "webhooks")
    stores = SqliteStores(tmp_path / "access.db")
    for item in (
        session("s-attempt-1", GITHUB_CALLER, {**GITHUB_RUN, "run_attempt": "1"}),
        session("s-attempt-1-b", GITHUB_CALLER, {**GITHUB_RUN, "run_attempt": "1"}),
        session("s-attempt-2", GITHUB_CALLER, {**GITHUB_RUN, "run_attempt": "2"}),
        session("s-other-run", GITHUB_CALLER, {**GITHUB_RUN, "run_id": "7002",
                                               "run_attempt": "1"}),
        session("s-job-4242", GITLAB_CALLER, {"project_id": "77", "pipeline_id": "900",
                                              "job_id": "4242"}),
        session("s-job-4243", GITLAB_CALLER, {"project_id": "77", "pipeline_id": "900",
                                              "job_id": "4243"}),
    ):
        stores.sessions.create(item)
    metrics = WebhookMetrics(CollectorRegistry())
    server = CiWebhookServer(
        CiWebhooks(listen="127.0.0.1:0", github_secret_file=tmp_path / "github-secret",
                   gitlab_token_file=tmp_path / "gitlab-token"),
        tls=TLSFiles(cert_file=cert_file, key_file=key_file), plaintext=False,
        revoker=Revoker(stores.sessions, {}, clock=lambda: NOW + 60), metrics=metrics)
    server.start()
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    try:
        yield Receiver(server=server, stores=stores, context=context,
                       github_secret=github_secret, gitlab_token=gitlab_token, metrics=metrics)
    finally:
        server.stop()
        stores.close()


def completed(run_attempt: int, run_id: int = 7001) -> bytes:
    return json.dumps({
        "action": "completed",
        "workflow_job": {"id": 29679449, "run_id": run_id, "run_attempt": run_attempt,
                         "status": "completed", "conclusion": "success",
                         "head_sha": "a" * 40, "name": "deploy", "labels": ["ubuntu-latest"]},
        "repository": {"id": 892301, "full_name": "octo/web"},
        "sender": {"login": "octocat"}}).encode()


ALL = {"s-attempt-1", "s-attempt-1-b", "s-attempt-2", "s-other-run", "s-job-4242",
       "s-job-4243"}


@pytest.mark.parametrize("forgery", ["wrong secret", "no signature", "another body's"])
def test_a_forged_github_webhook_is_refused_and_revokes_nothing(
        receiver: Receiver, forgery: str) -> None:
    body = completed(run_attempt=1)
    signature = {
        "wrong secret": github_signature(b"guessed-secret", body),
        "no signature": None,
        "another body's": github_signature(receiver.github_secret, completed(run_attempt=2)),
    }[forgery]
    status, answer = receiver.github(body, signature=signature)
    assert status == 401 and answer == {"error": "missing or wrong X-Hub-Signature-256"}
    assert receiver.active() == ALL


def test_a_completed_workflow_job_revokes_exactly_its_run_attempt(receiver: Receiver) -> None:
    body = completed(run_attempt=1)
    status, answer = receiver.github(body, signature=github_signature(receiver.github_secret,
                                                                      body))
    assert (status, answer) == (200, {"revoked": 2})
    assert receiver.active() == ALL - {"s-attempt-1", "s-attempt-1-b"}  # attempt 2 lives on
    ended = receiver.stores.sessions.get("s-attempt-1")
    assert ended is not None and ended.end_reason is SessionEnd.JOB_FINISHED
    assert ended.ended_at == NOW + 60
    # redelivered (GitHub's "Redeliver"): nothing more to end, still a success
    assert receiver.github(body, signature=github_signature(receiver.github_secret, body)) \
        == (200, {"revoked": 0})


def test_the_other_attempt_is_revoked_by_its_own_completion(receiver: Receiver) -> None:
    body = completed(run_attempt=2)
    assert receiver.github(body, signature=github_signature(receiver.github_secret, body)) \
        == (200, {"revoked": 1})
    assert receiver.active() == ALL - {"s-attempt-2"}


def test_a_gitlab_job_event_revokes_its_job_with_the_right_token(receiver: Receiver) -> None:
    body = json.dumps({"object_kind": "build", "build_id": 4242, "build_status": "failed",
                       "build_name": "deploy", "pipeline_id": 900, "project_id": 77,
                       "project_name": "octo / web"}).encode()
    forged = receiver.post(GITLAB_PATH, body, {"X-Gitlab-Event": "Job Hook",
                                               "X-Gitlab-Token": "guessed"})
    assert forged == (401, {"error": "missing or wrong X-Gitlab-Token"})
    assert receiver.active() == ALL
    status, answer = receiver.post(GITLAB_PATH, body, {
        "X-Gitlab-Event": "Job Hook", "X-Gitlab-Token": receiver.gitlab_token.decode()})
    assert (status, answer) == (200, {"revoked": 1})
    assert receiver.active() == ALL - {"s-job-4242"}
    assert receiver.metrics.registry.get_sample_value(
        "kubegate_ci_webhook_requests_total", {"provider": "gitlab", "result": "unauthorized"}) \
        == 1


def test_the_listener_speaks_tls_only(receiver: Receiver) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", receiver.server.port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("POST", GITHUB_PATH, body=b"{}")
        connection.getresponse()
    connection.close()
    assert receiver.active() == ALL
