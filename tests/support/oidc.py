"""Real HTTPS OpenID Connect issuers for tests, shaped like GitHub Actions and GitLab CI.

An issuer is a TLS server on 127.0.0.1 (serving certificate from a `TestCA`) that publishes a
discovery document and a JWKS, and mints RS256 tokens whose header and claim set are the provider's
(trust-policies-and-claims.md §6.1-6.2). The GitHub issuer also serves the job-side ID-token request
endpoint of the Actions runtime (`ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN`, reply `{"value": jwt}`).
This is test code, never shipped: `kubegate demo` runs its own small prop issuer
(`kubegate/commands/demo_scene.py`); these add key rotation, JWKS faults and request counts.

Invariants:
- `url` is `https://127.0.0.1:<port>` with no trailing slash, and is the `iss` of every token.
- Keys are real RSA 2048 keys. Tokens are signed by the newest key; `rotate()` keeps older keys
  published until `retire(kid)` removes them.
- Claim builders are pure functions of a job description and the time; only the issuer does I/O.
- `stop()` joins the serving thread and every request thread: nothing is left running.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import hmac
import json
import secrets
import shutil
import socketserver
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.pki import TestCA

DISCOVERY_PATH = "/.well-known/openid-configuration"
HUGE_BODY_BYTES = 4 * 1024 * 1024
# Bounds how long a request thread can block on a silent client, and so how long stop() can take.
_SOCKET_TIMEOUT_SECONDS = 5.0

Claims = dict[str, Any]
HeaderOverrides = Mapping[str, object | None]


# -- keys and signing (pure) ----------------------------------------------------------------------


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_to_base64url(value: int) -> str:
    return base64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    """An RSA key pair with its JWK key id and the SHA-1 thumbprint (`x5t`) of its certificate."""

    kid: str
    private_key: rsa.RSAPrivateKey
    x5t: str

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA", "n": _int_to_base64url(numbers.n), "e": _int_to_base64url(numbers.e),
            "kid": self.kid, "alg": "RS256", "use": "sig",
        }

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def new_signing_key() -> SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(
        kid=jwk_thumbprint(private_key.public_key()),
        private_key=private_key,
        x5t=certificate_thumbprint(private_key),
    )


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    numbers = public_key.public_numbers()
    members = {"e": _int_to_base64url(numbers.e), "kty": "RSA", "n": _int_to_base64url(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64url(hashlib.sha256(canonical).digest())


def certificate_thumbprint(private_key: rsa.RSAPrivateKey) -> str:
    """`x5t`: SHA-1 of a self-signed certificate for the key, as GitHub publishes one per key."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc-signing-key")])
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=2))
        .sign(private_key, hashes.SHA256())
    )
    return base64url(certificate.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is SHA-1 by spec


def encode_jwt(header: Mapping[str, object], claims: Mapping[str, object], key: SigningKey) -> str:
    """A compact JWS signed with RS256 by key, whatever the header claims."""
    segments = [base64url(json.dumps(part).encode()) for part in (header, claims)]
    signing_input = ".".join(segments).encode("ascii")
    return f"{signing_input.decode('ascii')}.{base64url(key.sign(signing_input))}"


def apply_overrides(base: Mapping[str, object], overrides: HeaderOverrides | None) -> Claims:
    """base updated by overrides; an override of None removes the member."""
    merged = dict(base)
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def tamper_claims(
    claims: Claims, extra_claims: Mapping[str, object] | None, drop_claims: Iterable[str]
) -> Claims:
    dropped = set(drop_claims)
    kept = {name: value for name, value in claims.items() if name not in dropped}
    return kept | dict(extra_claims or {})


def issued_at(now: float | None) -> int:
    return int(time.time() if now is None else now)


# -- HTTP plumbing --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Request:
    path: str
    query: Mapping[str, list[str]]
    authorization: str | None


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_reply(document: object, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(document).encode())


Route = Callable[[Request], Reply]


class JWKSFault(enum.Enum):
    """Ways the JWKS endpoint can misbehave, for fault tests."""

    DOWN = "down"  # 503
    SLOW = "slow"  # the real key set, after a delay
    GARBAGE = "garbage"  # 200, application/json, body not JSON
    HUGE = "huge"  # 200, the real key set padded to a huge JSON document


@dataclass(frozen=True, kw_only=True)
class _FaultPlan:
    kind: JWKSFault
    delay_seconds: float
    body_bytes: int


class _TLSServer(ThreadingHTTPServer):
    """Threads per request, joined on close; TLS handshakes run in the request thread so a
    silent client cannot stall the accept loop."""

    daemon_threads = False

    def __init__(self, context: ssl.SSLContext, dispatch: Route) -> None:
        self.context = context
        self.dispatch = dispatch
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse DNS lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_SOCKET_TIMEOUT_SECONDS)
        with self.context.wrap_socket(request, server_side=True) as tls:
            _Handler(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are not our errors
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer

    def do_GET(self) -> None:  # http.server's naming
        parts = urlsplit(self.path)
        request = Request(
            path=parts.path, query=parse_qs(parts.query),
            authorization=self.headers.get("Authorization"),
        )
        reply = self.server.dispatch(request)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the issuer -----------------------------------------------------------------------------------


class OIDCIssuer:
    """An HTTPS OIDC issuer on loopback: discovery, JWKS, key rotation, request counting."""

    jwks_path: ClassVar[str] = "/.well-known/jwks"
    claims_supported: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ca: TestCA, *, folder: Path | None = None) -> None:
        """folder receives the CA and serving certificate; a temporary one is used if None."""
        self._ca = ca
        self._folder = folder
        self._lock = threading.Lock()
        self._signing = new_signing_key()
        self._keys = [self._signing]
        self._counts: Counter[str] = Counter()
        self._fault: _FaultPlan | None = None
        self._stopping = threading.Event()
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self._own_folder: Path | None = None
        self._ca_path: Path | None = None

    # lifecycle

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("issuer already started")
        folder = self._folder or self._make_own_folder()
        self._ca_path = self._ca.write(folder / f"oidc-ca-{secrets.token_hex(4)}.pem")
        self._stopping.clear()
        self._server = _TLSServer(self._server_context(folder), self._dispatch)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self._server.server_port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._stopping.set()  # wakes SLOW handlers
        self._server.shutdown()
        self._server.server_close()  # joins request threads
        self._thread.join()
        self._server = self._thread = None
        if self._own_folder is not None:
            shutil.rmtree(self._own_folder, ignore_errors=True)
            self._own_folder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _make_own_folder(self) -> Path:
        self._own_folder = Path(tempfile.mkdtemp(prefix="oidc-issuer-"))
        return self._own_folder

    def _server_context(self, folder: Path) -> ssl.SSLContext:
        stem = f"oidc-server-{secrets.token_hex(4)}"
        cert_path, key_path = self._ca.issue_server(("127.0.0.1", "localhost")).write(folder, stem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        return context

    # where clients go

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("issuer not started")
        return f"https://127.0.0.1:{self._server.server_port}"

    @property
    def discovery_url(self) -> str:
        return self.url + DISCOVERY_PATH

    @property
    def jwks_url(self) -> str:
        return self.url + self.jwks_path

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem

    @property
    def ca_path(self) -> Path:
        if self._ca_path is None:
            raise RuntimeError("issuer not started")
        return self._ca_path

    # keys

    @property
    def signing_key(self) -> SigningKey:
        with self._lock:
            return self._signing

    @property
    def published_kids(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(key.kid for key in self._keys)

    def rotate(self) -> SigningKey:
        """A new signing key; the older ones stay published."""
        key = new_signing_key()
        with self._lock:
            self._keys.append(key)
            self._signing = key
        return key

    def retire(self, kid: str) -> None:
        """Stop publishing kid. Retiring the signing key is allowed: it goes on signing, so
        tokens name an unpublished key until the next rotate()."""
        with self._lock:
            remaining = [key for key in self._keys if key.kid != kid]
            if len(remaining) == len(self._keys):
                raise KeyError(kid)
            self._keys = remaining

    # documents

    def discovery(self) -> Claims:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": list(self.claims_supported),
        }

    def jwks(self) -> Claims:
        with self._lock:
            return {"keys": [self._public_jwk(key) for key in self._keys]}

    def _public_jwk(self, key: SigningKey) -> dict[str, str]:
        return key.public_jwk()

    # minting

    def sign(self, claims: Mapping[str, object], *, header_overrides: HeaderOverrides | None = None,
             key: SigningKey | None = None) -> str:
        """claims signed by key (default: the signing key), header as the provider sends it."""
        key = key or self.signing_key
        return encode_jwt(apply_overrides(self._header(key), header_overrides), claims, key)

    def _header(self, key: SigningKey) -> Claims:
        return {"alg": "RS256", "kid": key.kid, "typ": "JWT"}

    # faults and counting

    def set_jwks_fault(self, fault: JWKSFault | None, *, delay_seconds: float = 1.0,
                       body_bytes: int = HUGE_BODY_BYTES) -> None:
        """Make the JWKS endpoint misbehave from now on; None restores it."""
        self._fault = fault and _FaultPlan(
            kind=fault, delay_seconds=delay_seconds, body_bytes=body_bytes
        )

    def request_count(self, path: str) -> int:
        """Requests received for path (query string ignored), whatever the reply."""
        with self._lock:
            return self._counts[path]

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # serving

    def _routes(self) -> dict[str, Route]:
        return {DISCOVERY_PATH: self._serve_discovery, self.jwks_path: self._serve_jwks}

    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            self._counts[request.path] += 1
        route = self._routes().get(request.path)
        return route(request) if route else json_reply({"message": "Not Found"}, status=404)

    def _serve_discovery(self, _: Request) -> Reply:
        return json_reply(self.discovery())

    def _serve_jwks(self, _: Request) -> Reply:
        plan = self._fault
        if plan is None:
            return json_reply(self.jwks())
        if plan.kind is JWKSFault.DOWN:
            return json_reply({"message": "Service Unavailable"}, status=503)
        if plan.kind is JWKSFault.GARBAGE:
            return Reply(status=200, body=b"<html>\x00\xff not a key set")
        if plan.kind is JWKSFault.HUGE:
            return json_reply(self.jwks() | {"padding": "x" * plan.body_bytes})
        self._stopping.wait(plan.delay_seconds)
        return json_reply(self.jwks())


# -- GitHub Actions -------------------------------------------------------------------------------

GITHUB_CLAIMS = (
    "jti", "sub", "environment", "aud", "ref", "sha", "repository", "repository_owner",
    "repository_owner_id", "run_id", "run_number", "run_attempt", "repository_visibility",
    "repository_id", "actor_id", "actor", "workflow", "head_ref", "base_ref", "event_name",
    "ref_type", "workflow_ref", "workflow_sha", "job_workflow_ref", "job_workflow_sha",
    "runner_environment", "enterprise", "enterprise_id", "iss", "nbf", "exp", "iat",
)
GITHUB_NOT_BEFORE_SECONDS = 600  # the documented example token has nbf = iat - 600
DEFAULT_LIFETIME_SECONDS = 300


@dataclass(frozen=True, kw_only=True)
class GitHubJob:
    """A GitHub Actions job: everything its ID token's claims derive from. Ids are strings, as
    GitHub sends them."""

    repository: str = "octo-org/octo-repo"
    repository_id: str = "74"
    repository_owner_id: str = "65"
    repository_visibility: str = "private"
    ref: str = "refs/heads/main"
    sha: str = "a3b1c2d4e5f60718293a4b5c6d7e8f9012345678"
    event_name: str = "push"
    environment: str | None = None
    head_ref: str = ""
    base_ref: str = ""
    actor: str = "octocat"
    actor_id: str = "12"
    workflow: str = "deploy"
    workflow_path: str = ".github/workflows/deploy.yml"
    job_workflow_ref: str | None = None  # a reusable workflow's ref; None: the workflow itself
    job_workflow_sha: str | None = None
    run_id: str = "5511"
    run_number: str = "10"
    run_attempt: str = "1"
    runner_environment: str = "github-hosted"
    enterprise: str | None = None
    enterprise_id: str | None = None
    immutable_sub: bool = False

    def __post_init__(self) -> None:
        if self.repository.count("/") != 1:
            raise ValueError(f"repository must be OWNER/NAME, got {self.repository!r}")
        for name in ("repository_id", "repository_owner_id", "actor_id", "run_id"):
            if not getattr(self, name).isdigit():
                raise ValueError(f"{name} must be a string of digits")

    @property
    def owner(self) -> str:
        return self.repository.partition("/")[0]

    @property
    def workflow_ref(self) -> str:
        return f"{self.repository}/{self.workflow_path}@{self.ref}"


def github_subject(job: GitHubJob) -> str:
    """The default `sub`: environment beats pull_request beats ref."""
    return f"repo:{_github_subject_repository(job)}:{_github_subject_context(job)}"


def _github_subject_repository(job: GitHubJob) -> str:
    if not job.immutable_sub:
        return job.repository
    owner, name = job.repository.split("/")
    return f"{owner}@{job.repository_owner_id}/{name}@{job.repository_id}"


def _github_subject_context(job: GitHubJob) -> str:
    if job.environment is not None:
        return f"environment:{job.environment}"
    if job.event_name == "pull_request":
        return "pull_request"
    return f"ref:{job.ref}"


def github_default_audience(job: GitHubJob) -> str:
    return f"https://github.com/{job.owner}"


def github_claims(
    job: GitHubJob, *, issuer: str, audience: str | list[str], now: int, lifetime: int, jti: str
) -> Claims:
    """The claim set GitHub puts in the job's ID token, in GitHub's order."""
    claims: Claims = {"jti": jti, "sub": github_subject(job)}
    if job.environment is not None:
        claims["environment"] = job.environment
    claims |= {
        "aud": audience, "ref": job.ref, "sha": job.sha, "repository": job.repository,
        "repository_owner": job.owner, "repository_owner_id": job.repository_owner_id,
        "run_id": job.run_id, "run_number": job.run_number, "run_attempt": job.run_attempt,
        "repository_visibility": job.repository_visibility, "repository_id": job.repository_id,
        "actor_id": job.actor_id, "actor": job.actor, "workflow": job.workflow,
        "head_ref": job.head_ref, "base_ref": job.base_ref, "event_name": job.event_name,
        "ref_type": "tag" if job.ref.startswith("refs/tags/") else "branch",
        "workflow_ref": job.workflow_ref, "workflow_sha": job.sha,
        "job_workflow_ref": job.job_workflow_ref or job.workflow_ref,
        "job_workflow_sha": job.job_workflow_sha or job.sha,
        "runner_environment": job.runner_environment,
    }
    if job.enterprise is not None:
        claims |= {"enterprise": job.enterprise, "enterprise_id": job.enterprise_id or "1"}
    return claims | {"iss": issuer, "nbf": now - GITHUB_NOT_BEFORE_SECONDS, "exp": now + lifetime,
                     "iat": now}


class GitHubActionsIssuer(OIDCIssuer):
    """token.actions.githubusercontent.com on loopback, plus the runtime's ID-token endpoint."""

    jwks_path = "/.well-known/jwks"
    claims_supported = GITHUB_CLAIMS

    def __init__(self, ca: TestCA, *, folder: Path | None = None) -> None:
        super().__init__(ca, folder=folder)
        self._job = GitHubJob()
        self._request_token = secrets.token_urlsafe(32)
        self._id_token_path = f"/_apis/pipelines/workflows/{self._job.run_id}/idtoken"

    def mint(
        self, *, repository: str = "octo-org/octo-repo", repository_id: str = "74",
        repository_owner_id: str = "65", ref: str = "refs/heads/main", event_name: str = "push",
        environment: str | None = None, audience: str | list[str] | None = None,
        lifetime: int = DEFAULT_LIFETIME_SECONDS, immutable_sub: bool = False,
        now: float | None = None, extra_claims: Mapping[str, object] | None = None,
        drop_claims: Iterable[str] = (), header_overrides: HeaderOverrides | None = None,
    ) -> str:
        """A token for a job described by the keywords (other job fields: GitHubJob defaults)."""
        job = GitHubJob(
            repository=repository, repository_id=repository_id,
            repository_owner_id=repository_owner_id, ref=ref, event_name=event_name,
            environment=environment, immutable_sub=immutable_sub,
        )
        return self.mint_job(job, audience=audience, lifetime=lifetime, now=now,
                             extra_claims=extra_claims, drop_claims=drop_claims,
                             header_overrides=header_overrides)

    def mint_job(
        self, job: GitHubJob, *, audience: str | list[str] | None = None,
        lifetime: int = DEFAULT_LIFETIME_SECONDS, now: float | None = None,
        extra_claims: Mapping[str, object] | None = None, drop_claims: Iterable[str] = (),
        header_overrides: HeaderOverrides | None = None,
    ) -> str:
        claims = github_claims(
            job, issuer=self.url, audience=audience or github_default_audience(job),
            now=issued_at(now), lifetime=lifetime, jti=str(uuid.uuid4()),
        )
        return self.sign(tamper_claims(claims, extra_claims, drop_claims),
                         header_overrides=header_overrides)

    def _header(self, key: SigningKey) -> Claims:
        return {"typ": "JWT", "alg": "RS256", "x5t": key.x5t, "kid": key.kid}

    def _public_jwk(self, key: SigningKey) -> dict[str, str]:
        return key.public_jwk() | {"x5t": key.x5t}

    # the job-side ID-token endpoint

    @property
    def job(self) -> GitHubJob:
        return self._job

    def set_job(self, job: GitHubJob) -> None:
        """The job whose claims the ID-token endpoint puts in the tokens it hands out next."""
        self._job = job

    @contextmanager
    def running_job(self, job: GitHubJob) -> Iterator[GitHubJob]:
        """set_job(job) for the duration of a with-block, then the previous job again (the
        session issuer is shared by every test)."""
        previous, self._job = self._job, job
        try:
            yield job
        finally:
            self._job = previous

    @property
    def id_token_request_url(self) -> str:
        return f"{self.url}{self._id_token_path}?api-version=2.0"

    @property
    def id_token_request_token(self) -> str:
        return self._request_token

    def id_token_environment(self) -> dict[str, str]:
        """The variables a job with `permissions: id-token: write` sees."""
        return {"ACTIONS_ID_TOKEN_REQUEST_URL": self.id_token_request_url,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.id_token_request_token}

    def _routes(self) -> dict[str, Route]:
        return super()._routes() | {self._id_token_path: self._serve_id_token}

    def _serve_id_token(self, request: Request) -> Reply:
        expected = f"Bearer {self._request_token}".encode()
        if not hmac.compare_digest((request.authorization or "").encode(), expected):
            return json_reply({"message": "Unauthorized"}, status=401)
        audience = request.query.get("audience", [None])[0]
        return json_reply({"value": self.mint_job(self._job, audience=audience)})


# -- GitLab CI ------------------------------------------------------------------------------------

GITLAB_CLAIMS = (
    "namespace_id", "namespace_path", "project_id", "project_path", "user_id", "user_login",
    "user_email", "user_access_level", "pipeline_id", "pipeline_source", "job_id", "ref",
    "ref_type", "ref_path", "ref_protected", "environment", "environment_protected",
    "deployment_tier", "environment_action", "runner_id", "runner_environment", "sha",
    "ci_config_ref_uri", "ci_config_sha", "project_visibility", "jti", "iss", "iat", "nbf",
    "exp", "sub", "aud",
)
GITLAB_NOT_BEFORE_SECONDS = 5  # GitLab's documented example has nbf = iat - 5


@dataclass(frozen=True, kw_only=True)
class GitLabJob:
    """A GitLab CI job: everything its `id_tokens` claims derive from. Ids are strings and
    runner_id a number, as GitLab sends them; booleans become "true"/"false" in the token."""

    project_path: str = "my-group/my-project"
    project_id: str = "20"
    namespace_id: str = "72"
    project_visibility: str = "private"
    user_id: str = "1"
    user_login: str = "sample-user"
    user_email: str = "sample-user@example.com"
    user_access_level: str = "developer"
    pipeline_id: str = "574"
    pipeline_source: str = "push"
    job_id: str = "302"
    ref: str = "main"
    ref_type: str = "branch"
    ref_protected: bool = True
    environment: str | None = None
    environment_protected: bool = False
    deployment_tier: str = "production"
    environment_action: str = "start"
    runner_id: int = 1
    runner_environment: str = "gitlab-hosted"
    sha: str = "714a629c0b401fdce83e847fc9589983fc6f46bc"

    def __post_init__(self) -> None:
        if "/" not in self.project_path:
            raise ValueError(f"project_path must be GROUP/PROJECT, got {self.project_path!r}")
        if self.ref_type not in ("branch", "tag") or self.ref.startswith("refs/"):
            raise ValueError("ref is a bare branch or tag name and ref_type 'branch' or 'tag'")

    @property
    def namespace_path(self) -> str:
        return self.project_path.rpartition("/")[0]

    @property
    def ref_path(self) -> str:
        return f"refs/{'heads' if self.ref_type == 'branch' else 'tags'}/{self.ref}"


def gitlab_subject(job: GitLabJob) -> str:
    return f"project_path:{job.project_path}:ref_type:{job.ref_type}:ref:{job.ref}"


def _gitlab_flag(value: bool) -> str:
    return "true" if value else "false"


def _gitlab_environment_claims(job: GitLabJob) -> Claims:
    if job.environment is None:
        return {}
    return {"environment": job.environment,
            "environment_protected": _gitlab_flag(job.environment_protected),
            "deployment_tier": job.deployment_tier, "environment_action": job.environment_action}


def gitlab_claims(
    job: GitLabJob, *, issuer: str, audience: str | list[str], now: int, lifetime: int, jti: str
) -> Claims:
    """The claim set GitLab puts in an `id_tokens` token, in GitLab's order."""
    host = issuer.removeprefix("https://")
    claims: Claims = {
        "namespace_id": job.namespace_id, "namespace_path": job.namespace_path,
        "project_id": job.project_id, "project_path": job.project_path,
        "user_id": job.user_id, "user_login": job.user_login, "user_email": job.user_email,
        "user_access_level": job.user_access_level, "pipeline_id": job.pipeline_id,
        "pipeline_source": job.pipeline_source, "job_id": job.job_id, "ref": job.ref,
        "ref_type": job.ref_type, "ref_path": job.ref_path,
        "ref_protected": _gitlab_flag(job.ref_protected),
    }
    return claims | _gitlab_environment_claims(job) | {
        "runner_id": job.runner_id, "runner_environment": job.runner_environment, "sha": job.sha,
        "ci_config_ref_uri": f"{host}/{job.project_path}//.gitlab-ci.yml@{job.ref_path}",
        "ci_config_sha": job.sha, "project_visibility": job.project_visibility, "jti": jti,
        "iss": issuer, "iat": now, "nbf": now - GITLAB_NOT_BEFORE_SECONDS, "exp": now + lifetime,
        "sub": gitlab_subject(job), "aud": audience,
    }


class GitLabCIIssuer(OIDCIssuer):
    """A GitLab instance's ID-token issuer on loopback."""

    jwks_path = "/oauth/discovery/keys"
    claims_supported = GITLAB_CLAIMS

    def mint(
        self, *, project_path: str = "my-group/my-project", project_id: str = "20",
        namespace_id: str = "72", ref: str = "main", ref_type: str = "branch",
        ref_protected: bool = True, environment: str | None = None,
        environment_protected: bool = False, pipeline_source: str = "push",
        runner_environment: str = "gitlab-hosted", audience: str | list[str] | None = None,
        lifetime: int = DEFAULT_LIFETIME_SECONDS, now: float | None = None,
        extra_claims: Mapping[str, object] | None = None, drop_claims: Iterable[str] = (),
        header_overrides: HeaderOverrides | None = None,
    ) -> str:
        """A token for a job described by the keywords (other job fields: GitLabJob defaults).
        audience defaults to the instance URL, as GitLab's does."""
        job = GitLabJob(
            project_path=project_path, project_id=project_id, namespace_id=namespace_id,
            ref=ref, ref_type=ref_type, ref_protected=ref_protected, environment=environment,
            environment_protected=environment_protected, pipeline_source=pipeline_source,
            runner_environment=runner_environment,
        )
        return self.mint_job(job, audience=audience, lifetime=lifetime, now=now,
                             extra_claims=extra_claims, drop_claims=drop_claims,
                             header_overrides=header_overrides)

    def mint_job(
        self, job: GitLabJob, *, audience: str | list[str] | None = None,
        lifetime: int = DEFAULT_LIFETIME_SECONDS, now: float | None = None,
        extra_claims: Mapping[str, object] | None = None, drop_claims: Iterable[str] = (),
        header_overrides: HeaderOverrides | None = None,
    ) -> str:
        claims = gitlab_claims(
            job, issuer=self.url, audience=audience or self.url, now=issued_at(now),
            lifetime=lifetime, jti=str(uuid.uuid4()),
        )
        return self.sign(tamper_claims(claims, extra_claims, drop_claims),
                         header_overrides=header_overrides)
