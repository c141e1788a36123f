"""A GitHub-Actions-shaped subject-token issuer for benchmarks: an RSA-2048 key that the
exchanger trusts as static keys (no network in the measured path), and RS256 tokens with
GitHub's claim set (`kubegate.commands.demo_scene.github_job_claims`).

The key is written to a PEM file so that load-generator processes can mint tokens too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kubegate.commands.demo_scene import REPOSITORY_ID, github_job_claims, public_jwk

ISSUER_NAME = "github"
ISSUER_URL = "https://token.actions.githubusercontent.com"
AUDIENCE = "kubegate"
TOKEN_LIFETIME = 300  # GitHub's job tokens live 5 minutes


class BenchIssuer:
    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = public_jwk(self.key)

    @classmethod
    def load(cls, path: Path) -> BenchIssuer:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(key)

    def save(self, path: Path) -> Path:
        path.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    def issuer_entry(self) -> dict[str, Any]:
        """The exchanger config's `issuers[]` entry trusting this key."""
        return {"name": ISSUER_NAME, "url": ISSUER_URL, "audiences": [AUDIENCE],
                "algorithms": ["RS256"], "keys": {"static": {"keys": [self.jwk]}}}

    def mint(self, *, subject_suffix: str = "", clock: Callable[[], float] = time.time,
             extra: Mapping[str, Any] | None = None) -> str:
        """A fresh token (new jti) of a main-branch production deploy job."""
        claims = github_job_claims(ref="refs/heads/main", event_name="push",
                                   environment="production")
        if subject_suffix:
            claims["sub"] += f":job-{subject_suffix}"
        now = int(clock())
        payload = {"iss": ISSUER_URL, "jti": str(uuid.uuid4()), "iat": now, "nbf": now - 5,
                   "exp": now + TOKEN_LIFETIME, **claims, **(extra or {})}
        return jwt.encode(payload, self.key, algorithm="RS256",
                          headers={"kid": self.jwk["kid"], "typ": "JWT"})


def github_mapping(name: str, grant: str) -> str:
    """A TrustMapping for this issuer's deploy jobs, with `grant` as the grant's YAML flow."""
    return f"""\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: {ISSUER_NAME}
  claims:
  - {{claim: repository_id, equals: "{REPOSITORY_ID}"}}
  - {{claim: ref, equals: refs/heads/main}}
  - {{claim: environment, equals: production}}
  grant: {grant}
"""
