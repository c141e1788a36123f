"""Helpers for hostile-input tests: an issuer with static keys that signs whatever it is told,
compact tokens assembled from any parts, exchangers that live for a whole test module, and
bookkeeping of what an attempt left behind (kubegate's audit lines, the kube-apiserver's audit
events, session Secrets).

Nothing here decides whether an attack works: it only builds the inputs and reads the traces.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

from exchanger.config import build_config
from exchanger.server import start_exchanger
from kubegate.credential import Credential
from kubegate.errors import ExchangeError
from tests.support.fixtures_exchanger import TestExchanger, write_mappings
from tests.support.kube import Cluster

SESSION_LABEL = "kubegate.io/session"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def encode_part(part: Mapping[str, Any] | bytes) -> str:
    """A header or payload: JSON of a mapping, or raw bytes as given (for malformed ones)."""
    return b64(part if isinstance(part, bytes) else json.dumps(part).encode())


def compact(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes,
            signature: bytes) -> str:
    return f"{encode_part(header)}.{encode_part(payload)}.{b64(signature)}"


def with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64(signature)


def signature_of(token: str) -> bytes:
    return unb64(token.rsplit(".", 1)[1])


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class StaticIssuer:
    """An issuer configured with `keys: {static: JWKS}`: no server, so any number of them.

    It signs any header and payload with its key using `algorithm`, whatever the header says,
    which is what an attacker holding (or not holding) a key can do too.
    """

    def __init__(self, url: str, *, kid: str = "key-1", algorithm: str = "ES256",
                 key: PrivateKey | None = None) -> None:
        self.url, self.kid, self.algorithm = url, kid, algorithm
        self.key: PrivateKey = key or (
            ec.generate_private_key(ec.SECP256R1()) if algorithm.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_jwk(self, kid: str | None = None) -> dict[str, Any]:
        public = self.key.public_key()
        converter = ECAlgorithm if isinstance(public, ec.EllipticCurvePublicKey) else RSAAlgorithm
        jwk: dict[str, Any] = converter.to_jwk(public, as_dict=True)
        return jwk | {"kid": kid or self.kid, "alg": self.algorithm, "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def config_entry(self, name: str, audiences: list[str], **more: Any) -> dict[str, Any]:
        return {"name": name, "url": self.url, "audiences": audiences,
                "algorithms": [self.algorithm], "keys": {"static": self.jwks()}, **more}

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A valid claim set for audience `kubegate`; a change to None drops the claim."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url, "sub": "repo:octo-org/web:ref:refs/heads/main", "aud": "kubegate",
            "iat": now - 5, "nbf": now - 5, "exp": now + 300, "jti": str(uuid.uuid4()),
            "repository_id": "74", "ref": "refs/heads/main",
        }
        merged = base | changes
        return {name: value for name, value in merged.items() if value is not None}

    def header(self, **changes: Any) -> dict[str, Any]:
        merged = {"alg": self.algorithm, "kid": self.kid, "typ": "JWT"} | changes
        return {name: value for name, value in merged.items() if value is not None}

    def sign(self, claims: Mapping[str, Any] | bytes, *, header: Mapping[str, Any] | None = None,
             key: PrivateKey | None = None) -> str:
        head = self.header() if header is None else header
        signing_input = f"{encode_part(head)}.{encode_part(claims)}".encode("ascii")
        signature = get_default_algorithms()[self.algorithm].sign(signing_input, key or self.key)
        return f"{signing_input.decode('ascii')}.{b64(signature)}"

    def mint(self, **changes: Any) -> str:
        return self.sign(self.claims(**changes))


def start_exchanger_in(folder: Path, *, issuers: list[dict[str, Any]],
                       clusters: list[dict[str, Any]], mappings: str,
                       self_issued: dict[str, Any] | None = None,
                       clock: Callable[[], float] = time.time, **extra: Any) -> TestExchanger:
    """What `start_test_exchanger` does, in a folder the caller owns (for module-scoped
    exchangers); the caller stops `.running`. `extra` are more top-level config fields."""
    write_mappings(folder / "mappings", mappings)
    document: dict[str, Any] = {
        "listen": "127.0.0.1:0", "stateDir": str(folder), "reloadInterval": "1s",
        "issuers": issuers, "clusters": clusters,
    }
    if self_issued is not None:
        document["selfIssued"] = self_issued
    document.update(extra)
    config = build_config(document, base=folder, environ={}, source="test")
    return TestExchanger(running=start_exchanger(config, clock=clock), config=config)


class OffsetClock:
    """The wall clock, moved forward on demand (past a key cache's cooldown, say)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def attempt(exchanger: TestExchanger, token: str, **options: Any) -> Credential | ExchangeError:
    """One exchange without retries: the credential, or the refusal."""
    with exchanger.client(attempts=1) as client:
        try:
            return client.exchange(token, **options)
        except ExchangeError as error:
            return error


class DecisionLog:
    """The audit decisions an exchanger wrote since the last call of `new`."""

    def __init__(self, exchanger: TestExchanger) -> None:
        self._exchanger = exchanger
        self._seen = len(exchanger.decisions())

    def new(self) -> list[dict[str, Any]]:
        lines = self._exchanger.decisions()
        fresh, self._seen = lines[self._seen:], len(lines)
        return fresh


class ApiAuditTail:
    """The kube-apiserver's audit events written since the last call of `new`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[dict[str, Any]]:
        """Complete lines only: a line still being written is read next time."""
        if not self._path.exists():
            return []
        with self._path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def token_requests(events: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """TokenRequests (create serviceaccounts/token) in `namespace` among audit events."""
    return [e for e in events
            if e.get("verb") == "create"
            and e.get("objectRef", {}).get("resource") == "serviceaccounts"
            and e.get("objectRef", {}).get("subresource") == "token"
            and e.get("objectRef", {}).get("namespace") == namespace]


def session_secrets(cluster: Cluster, namespace: str) -> list[str]:
    """Names of kubegate's session Secrets in `namespace`."""
    listed = cluster.core.list_namespaced_secret(namespace, label_selector=SESSION_LABEL)
    return [item.metadata.name for item in listed.items]
