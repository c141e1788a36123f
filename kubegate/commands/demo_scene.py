"""What `kubegate demo` runs against: a small stand-in for GitHub Actions' OIDC issuer and one
for an organisation's sign-in provider (the ID tokens of people, as Dex or Okta issue them),
and the demo's trust mappings, configuration and callers: two CI jobs and two engineers, one of
each allowed and one denied.

The issuer is an HTTPS server on 127.0.0.1 (a free port, a certificate from a throwaway
`LocalCA`) that publishes a discovery document and a JWKS, and mints RS256 tokens shaped like
GitHub's job ID tokens. It is a demo prop, not part of the exchanger (which is why it lives
with the command, not in `exchanger/`): the exchanger trusts it the way it trusts any issuer,
through configuration, and verifies its tokens with its own code. The benchmarks mint their
tokens with the same claim set. The test suite's issuers (`tests/support/oidc.py`) are test
code: they add key rotation, fault injection and every claim of the real providers.

Invariants: `url` has no trailing slash and is the `iss` of every token; the key is a real RSA
2048 key; `stop()` closes the socket and joins the serving thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from exchanger.documents import DocumentServer
from exchanger.localtls import LocalCA

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks"  # where GitHub publishes its keys
ISSUER_NAME = "github-demo"
AUDIENCE = "kubegate"
CLUSTER_NAME = "demo"
MAPPING_NAME = "web-production-deploy"
REPOSITORY, REPOSITORY_ID, OWNER_ID = "octo-org/web", "892634011", "6501"
TOKEN_LIFETIME_SECONDS = 300  # GitHub's job ID tokens live 5 minutes
PEOPLE_ISSUER_NAME = "corp-demo"
PEOPLE_CLIENT_ID = "kubegate-cli"  # the `aud` of people's ID tokens: kubegate login's client
PEOPLE_MAPPING_NAME = "sre-ops"
BREAK_GLASS_NAME = "break-glass-admin"


def _b64url_int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public half as a JWK, with the RFC 7638 thumbprint as `kid`."""
    numbers = key.public_key().public_numbers()
    members = {"e": _b64url_int(numbers.e), "kty": "RSA", "n": _b64url_int(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return members | {"kid": kid, "alg": "RS256", "use": "sig"}


class DemoIssuer:
    """A GitHub-Actions-shaped OIDC issuer on 127.0.0.1. Use as a context manager."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._jwk = public_jwk(self._key)
        self._server: DocumentServer | None = None
        self.ca_file = folder / "demo-issuer-ca.crt"

    def start(self) -> Self:
        ca = LocalCA("kubegate demo issuer CA")
        self._folder.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = ca.issue_server(("127.0.0.1", "localhost")).write(
            self._folder, "demo-issuer")
        ca.write(self.ca_file)
        self._server = DocumentServer(host="127.0.0.1", port=0, cert_file=cert_file,
                                      key_file=key_file, name="demo-issuer")
        self._server.publish(self._documents())
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the demo issuer is not started")
        return f"https://127.0.0.1:{self._server.port}"

    def _documents(self) -> dict[str, bytes]:
        discovery = {
            "issuer": self.url, "jwks_uri": self.url + JWKS_PATH,
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        return {DISCOVERY_PATH: json.dumps(discovery).encode(),
                JWKS_PATH: json.dumps({"keys": [self._jwk]}).encode()}

    def mint(self, claims: Mapping[str, Any], *, now: float | None = None) -> str:
        """An RS256 token with `claims`, plus `iss`, `iat`, `nbf`, `exp` and `jti` unless given."""
        issued = int(time.time() if now is None else now)
        payload = {"jti": str(uuid.uuid4()), "iss": self.url, "iat": issued,
                   "nbf": issued - 5, "exp": issued + TOKEN_LIFETIME_SECONDS} | dict(claims)
        return jwt.encode(payload, self._key, algorithm="RS256",
                          headers={"kid": self._jwk["kid"], "typ": "JWT"})


# -- the scenario ---------------------------------------------------------------------------------


def github_job_claims(*, ref: str, event_name: str, environment: str | None = None,
                      repository: str = REPOSITORY, repository_id: str = REPOSITORY_ID,
                      head_ref: str = "") -> dict[str, Any]:
    """The claims GitHub gives a job's ID token (the ones the demo mapping and audit use)."""
    context = (f"environment:{environment}" if environment is not None
               else "pull_request" if event_name == "pull_request" else f"ref:{ref}")
    claims: dict[str, Any] = {
        "sub": f"repo:{repository}:{context}", "aud": AUDIENCE, "ref": ref,
        "repository": repository, "repository_id": repository_id,
        "repository_owner": repository.partition("/")[0], "repository_owner_id": OWNER_ID,
        "event_name": event_name, "head_ref": head_ref, "ref_type": "branch",
        "workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
        "runner_environment": "github-hosted",
    }
    if environment is not None:
        claims["environment"] = environment
    return claims


@dataclass(frozen=True, kw_only=True)
class DemoJob:
    """A CI job that asks for a credential, and what the demo expects the exchanger to say."""

    title: str
    claims: Mapping[str, Any] = field(repr=False)
    expect_allow: bool
    person: bool = False  # an ID token of the sign-in provider, not a CI job's token
    role: str = ""


def person_claims(email: str, groups: list[str]) -> dict[str, Any]:
    """The claims of a person's ID token as Dex gives them with the `groups` scope."""
    name = email.partition("@")[0]
    return {"sub": base64.urlsafe_b64encode(f"user-{name}".encode()).decode().rstrip("="),
            "aud": PEOPLE_CLIENT_ID, "email": email, "email_verified": True, "name": name,
            "groups": groups}


DEMO_JOBS = (
    DemoJob(title="deploy job: push to main, environment production", expect_allow=True,
            claims=github_job_claims(ref="refs/heads/main", event_name="push",
                                     environment="production")),
    DemoJob(title="pull_request from a fork: refs/pull/7/merge, no environment",
            expect_allow=False,
            claims=github_job_claims(ref="refs/pull/7/merge", event_name="pull_request",
                                     head_ref="mallory:patch-1")),
    DemoJob(title="engineer alice@example.com (groups sre-leads, engineers) asks for sre-ops",
            expect_allow=True, person=True, role=PEOPLE_MAPPING_NAME,
            claims=person_claims("alice@example.com", ["sre-leads", "engineers"])),
    DemoJob(title="engineer bob@example.com (group engineers) asks for sre-ops",
            expect_allow=False, person=True, role=PEOPLE_MAPPING_NAME,
            claims=person_claims("bob@example.com", ["engineers"])),
)

DEMO_MAPPING = f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata:
  name: {MAPPING_NAME}
spec:
  issuer: {ISSUER_NAME}
  description: octo-org/web deploys to namespace web from main, in environment production
  claims:
  - claim: repository_id     # the id, not the name: a renamed or recreated repo gets a new id
    equals: "{REPOSITORY_ID}"
  - claim: ref
    equals: refs/heads/main
  - claim: environment
    equals: production
  grant:
    cluster: {CLUSTER_NAME}
    namespace: web
    user: "ci:{REPOSITORY}"
    groups: ["kubegate:deployers"]
    maxLifetime: 15m
"""


PEOPLE_MAPPING = f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata:
  name: {PEOPLE_MAPPING_NAME}
spec:
  issuer: {PEOPLE_ISSUER_NAME}
  description: SRE leads operate namespace ops, each under their own name
  claims:
  - {{claim: groups, contains: sre-leads}}   # groups is a list in ID tokens
  - {{claim: email_verified, equals: true}}
  grant:
    cluster: {CLUSTER_NAME}
    namespace: ops
    user: {{claim: email, prefix: "oidc:"}}   # the person, not a shared account
    groups: ["kubegate:sre", {{claim: groups, prefix: "oidc:"}}]
    maxLifetime: 15m
"""


BREAK_GLASS_MAPPING = f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata:
  name: {BREAK_GLASS_NAME}
spec:
  issuer: {PEOPLE_ISSUER_NAME}
  description: on-call engineers become cluster admins once an SRE lead approves
  claims:
  - {{claim: groups, contains: engineers}}
  - {{claim: email_verified, equals: true}}
  grant:
    cluster: {CLUSTER_NAME}
    namespace: kube-system
    user: {{claim: email, prefix: "oidc:"}}
    groups: ["kubegate:break-glass"]
    maxLifetime: 10m                  # self-issued: cannot be revoked early, so keep it short
  approval:
    approvers: {{issuer: {PEOPLE_ISSUER_NAME}, claims: [{{claim: groups, contains: sre-leads}}]}}
    reasonRequired: true
    maxDuration: 30m
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for listeners whose URL must name their port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def demo_config(*, state_dir: Path, issuer_url: str, issuer_ca: Path, people_url: str,
                people_ca: Path, discovery_port: int, api_server: str, api_ca: Path,
                gateway_token_file: Path) -> dict[str, Any]:
    """The exchanger's config: loopback gRPC with generated TLS, the two demo issuers, and one
    self-issued cluster. The self-issued discovery listener gets a real port because its
    issuer URL (what a cluster would trust) defaults from it. The cluster's server is the
    demo's stand-in for kube-apiserver, and its credentials are the gateway's own: the same
    file configures `kubegate gateway` (its `gateway:` section, loopback, generated TLS)."""
    return {
        "listen": "127.0.0.1:0",
        "stateDir": str(state_dir),
        "reloadInterval": "1s",
        "issuers": [{"name": ISSUER_NAME, "url": issuer_url, "audiences": [AUDIENCE],
                     "keys": "discovery", "caFile": str(issuer_ca), "kind": "github"},
                    {"name": PEOPLE_ISSUER_NAME, "url": people_url,
                     "audiences": [PEOPLE_CLIENT_ID], "keys": "discovery",
                     "caFile": str(people_ca), "kind": "oidc"}],
        "clusters": [{"name": CLUSTER_NAME, "server": api_server, "caFile": str(api_ca),
                      "backend": "selfIssued",
                      "credentials": {"tokenFile": str(gateway_token_file)}}],
        "selfIssued": {"listen": f"127.0.0.1:{discovery_port}"},
        "gateway": {"listen": "127.0.0.1:0", "cluster": CLUSTER_NAME},
    }
