"""The CI job webhook receiver: when a GitHub Actions job or a GitLab CI job ends, every
session whose caller's CI claims carry that run or job is revoked, so a credential dies with
its job even when the runner vanished.

    POST /webhooks/github   X-GitHub-Event: workflow_job, action "completed"
                            -> revoke ci {repository_id, run_id, run_attempt}
    POST /webhooks/gitlab   X-Gitlab-Event: Job Hook, object_kind "build", build_status
                            success/failed/canceled/skipped -> revoke ci {project_id, job_id}

Answers are small JSON: `{"revoked": N}` (200), `{"revoked": 0, "ignored": "..."}` (202 for
an event or action that ends nothing; 200 for GitHub's `ping`), `{"error": "..."}` otherwise:
401 (signature or token missing or wrong), 400 (not JSON, fields missing), 404, 405, 413
(body over `MAX_BODY`), 503 (the session store or a cluster is unavailable: the CI may
redeliver).

Rules of this module:
- a request is authenticated before its body is parsed: GitHub's `X-Hub-Signature-256`
  (`sha256=` + hex HMAC-SHA256 of the raw body under the secret) and GitLab's
  `X-Gitlab-Token` (the token itself) are compared in constant time (`hmac.compare_digest`);
  a provider without a configured secret is 404;
- secrets are read once at construction (a missing or empty file is a ConfigError) and never
  logged or answered; a revocation is logged with the CI ids and session ids, never a token;
- the listener is the token endpoint's (`exchanger.oauth.server`): a connection's TLS
  handshake in its own thread, bounded connections and requests, h11 with the strict head
  rules; only the body bound (`MAX_BODY`) and the error answers differ;
- TLS never asks for a client certificate (GitHub and GitLab present none): the secret
  authenticates; plaintext is allowed on loopback only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from exchanger.access.model import Session, SessionEnd
from exchanger.access.settings import CiWebhooks
from exchanger.config import TLSFiles
from exchanger.metrics import WebhookMetrics
from exchanger.oauth.errors import BodyTooLargeError, RequestTimeoutError
from exchanger.oauth.server import TokenServer, tls_context
from exchanger.oauth.wire import Answer, Request
from kubegate.addresses import parse_host_port
from kubegate.errors import ConfigError, KubegateError
from kubegate.http.errors import HeadTooLargeError, HttpError

__all__ = ["GITHUB_PATH", "GITLAB_PATH", "MAX_BODY", "CiRevoker", "CiWebhookEndpoint",
           "CiWebhookServer", "github_signature"]

log = logging.getLogger(__name__)

GITHUB_PATH: Final = "/webhooks/github"
GITLAB_PATH: Final = "/webhooks/gitlab"
MAX_BODY: Final = 1024 * 1024
GITLAB_FINISHED: Final = frozenset({"success", "failed", "canceled", "skipped"})


class CiRevoker(Protocol):
    """What the receiver needs of `exchanger.access.revocation.Revoker`."""

    def revoke_matching_ci(self, claims: Mapping[str, str], *,
                           reason: SessionEnd = ...) -> list[Session]: ...


class _Refusal(KubegateError):
    """An answer other than success, with its status and fixed public words."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__("CI_WEBHOOK_REFUSED", message, public_message=message)


def github_signature(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class CiWebhookEndpoint:
    """The routes, pure: a whole `Request` in, an `Answer` out (revocations through the
    revoker). Empty secrets mean the provider is not configured."""

    def __init__(self, *, github_secret: bytes, gitlab_token: bytes, revoker: CiRevoker,
                 metrics: WebhookMetrics | None = None) -> None:
        self._secrets = {"github": github_secret, "gitlab": gitlab_token}
        self._revoker, self._metrics = revoker, metrics

    def handle(self, request: Request, peer: str = "") -> Answer:
        provider = {GITHUB_PATH: "github", GITLAB_PATH: "gitlab"}.get(request.path, "")
        try:
            if not provider or not self._secrets[provider]:
                raise _Refusal(404, "no such endpoint")
            if request.method != "POST":
                raise _Refusal(405, "POST only")
            if provider == "github":
                return self._github(request)
            return self._gitlab(request)
        except _Refusal as refusal:
            self._count(provider, _refusal_result(refusal.status))
            headers = (("Allow", "POST"),) if refusal.status == 405 else ()
            return _json(refusal.status, {"error": refusal.public_message}, headers)
        except KubegateError as error:
            log.warning("CI webhook %s from %s: sessions not revoked: %s", provider, peer,
                        error.detail or error.reason)
            self._count(provider, "error")
            return _json(503 if error.code.transient else 500,
                         {"error": "sessions could not be revoked; redeliver later"})
        except Exception:
            log_id = uuid.uuid4().hex[:12]
            log.exception("CI webhook %s failed unexpectedly (log id %s)", provider, log_id)
            self._count(provider, "error")
            return _json(500, {"error": f"internal error (log id {log_id})"})

    def _github(self, request: Request) -> Answer:
        given = _one(request, "x-hub-signature-256")
        expected = github_signature(self._secrets["github"], request.body)
        if not hmac.compare_digest(given.encode("latin-1"), expected.encode("ascii")):
            raise _Refusal(401, "missing or wrong X-Hub-Signature-256")
        event = _one(request, "x-github-event")
        if event == "ping":
            return self._answer("github", "ping", 200, {"revoked": 0})
        if event != "workflow_job":
            return self._ignored("github", f"event {event[:40]!r}")
        payload = _parse(request.body)
        if payload.get("action") != "completed":
            return self._ignored("github", "action is not completed")
        job, repository = _object(payload, "workflow_job"), _object(payload, "repository")
        return self._revoke("github", {
            "repository_id": _id(repository, "id", "repository.id"),
            "run_id": _id(job, "run_id", "workflow_job.run_id"),
            "run_attempt": _id(job, "run_attempt", "workflow_job.run_attempt")})

    def _gitlab(self, request: Request) -> Answer:
        given = _one(request, "x-gitlab-token")
        if not hmac.compare_digest(given.encode("latin-1"), self._secrets["gitlab"]):
            raise _Refusal(401, "missing or wrong X-Gitlab-Token")
        event = _one(request, "x-gitlab-event")
        if event != "Job Hook":
            return self._ignored("gitlab", f"event {event[:40]!r}")
        payload = _parse(request.body)
        if payload.get("object_kind") != "build":
            return self._ignored("gitlab", "object_kind is not build")
        if payload.get("build_status") not in GITLAB_FINISHED:
            return self._ignored("gitlab", "the job has not finished")
        return self._revoke("gitlab", {"project_id": _id(payload, "project_id", "project_id"),
                                       "job_id": _id(payload, "build_id", "build_id")})

    def _revoke(self, provider: str, claims: dict[str, str]) -> Answer:
        ended = self._revoker.revoke_matching_ci(claims, reason=SessionEnd.JOB_FINISHED)
        ids = ", ".join(session.id for session in ended) or "none"
        log.info("CI webhook %s: job finished (%s): sessions revoked: %s", provider,
                 ", ".join(f"{key}={value}" for key, value in claims.items()), ids)
        return self._answer(provider, "revoked", 200, {"revoked": len(ended)},
                            revoked=len(ended))

    def _ignored(self, provider: str, why: str) -> Answer:
        return self._answer(provider, "ignored", 202, {"revoked": 0, "ignored": why})

    def _answer(self, provider: str, result: str, status: int, body: dict[str, Any],
                revoked: int = 0) -> Answer:
        self._count(provider, result, revoked)
        return _json(status, body)

    def _count(self, provider: str, result: str, revoked: int = 0) -> None:
        if self._metrics is not None and provider:
            self._metrics.on_ci_request(provider=provider, result=result, revoked=revoked)


class CiWebhookServer:
    """The receiver on `config.listen`: HTTPS with `tls` (no client certificate asked), or
    plaintext when `plaintext` and the address is loopback. Binds at construction (`port`
    is known at once; 0 picks one); `start()` serves, `stop()` closes."""

    def __init__(self, config: CiWebhooks, *, tls: TLSFiles | None, plaintext: bool,
                 revoker: CiRevoker, metrics: WebhookMetrics | None = None) -> None:
        problems: list[str] = []
        github = _read_secret(config.github_secret_file, "access.ciWebhooks.github.secretFile",
                              problems)
        gitlab = _read_secret(config.gitlab_token_file, "access.ciWebhooks.gitlab.tokenFile",
                              problems)
        address = parse_host_port(config.listen)  # the config loader checked it
        if tls is None and not (plaintext and address.is_local):
            problems.append("access.ciWebhooks.listen: TLS files are needed (plaintext on "
                            "loopback only)")
        if problems:
            raise ConfigError(problems)
        self.endpoint = CiWebhookEndpoint(github_secret=github, gitlab_token=gitlab,
                                          revoker=revoker, metrics=metrics)
        context = tls_context(tls.cert_file, tls.key_file, None) if tls is not None else None
        self._listener = TokenServer(host=address.bind_host, port=address.port,
                                     context=context, max_body=MAX_BODY,
                                     http_error=_http_error)
        self.scheme = self._listener.scheme

    @property
    def port(self) -> int:
        return self._listener.port

    def start(self) -> CiWebhookServer:
        self._listener.start(self.endpoint)
        return self

    def stop(self) -> None:
        self._listener.stop()


def _http_error(error: HttpError) -> Answer:
    if isinstance(error, BodyTooLargeError):
        return _json(413, {"error": "the body is over 1 MiB"})
    if isinstance(error, RequestTimeoutError):
        return _json(408, {"error": "no whole request in time"})
    if isinstance(error, HeadTooLargeError):
        return _json(431, {"error": "the request head is too large"})
    return _json(400, {"error": "malformed HTTP request"})


def _json(status: int, body: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()
          ) -> Answer:
    return Answer(status=status, body=json.dumps(body).encode(), headers=headers)


def _refusal_result(status: int) -> str:
    return {401: "unauthorized", 404: "not_found", 405: "invalid"}.get(status, "invalid")


def _one(request: Request, name: str) -> str:
    """The header's value; "" when absent or repeated (never matches a secret)."""
    values = request.header(name)
    return values[0] if len(values) == 1 else ""


def _parse(body: bytes) -> Mapping[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Refusal(400, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise _Refusal(400, "the body is not a JSON object")
    return payload


def _object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if not isinstance(value, dict):
        raise _Refusal(400, f"{key}: expected an object")
    return value


def _id(data: Mapping[str, Any], key: str, where: str) -> str:
    """An id as the CI claims carry it: a positive integer, as decimal text."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Refusal(400, f"{where}: expected a positive integer")
    return str(value)


def _read_secret(path: Path | None, where: str, problems: list[str]) -> bytes:
    if path is None:
        return b""
    try:
        secret = path.read_bytes().strip()
    except OSError as error:
        problems.append(f"{where}: cannot read {path}: "
                        f"{error.strerror or type(error).__name__}")
        return b""
    if not secret:
        problems.append(f"{where}: {path} is empty")
    return secret
