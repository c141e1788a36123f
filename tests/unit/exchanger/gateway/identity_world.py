"""A small, real world for the gateway's identity tests: a config read by the real loader,
a people issuer with a real P-256 key (static JWKS), the exchanger's real self-issued signer
and `Exchanger` (so credentials and their sessions are exactly what an exchange makes), the
real SQLite access and session stores, and a clock the test moves."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from exchanger.access.gate import AccessGate
from exchanger.access.lifecycle import approve, new_request
from exchanger.access.model import AccessRequest
from exchanger.access.policy import ApprovalPolicy, Approvers
from exchanger.access.sqlite_store import SqliteStores
from exchanger.access.windows import OneOffWindow
from exchanger.audit.log import AuditLog
from exchanger.backends.base import CredentialBackend, IssuedCredential
from exchanger.backends.selfissued import (
    SelfIssuedBackend,
    SelfIssuedSigner,
    load_or_create_signing_key,
)
from exchanger.config import Config, build_config
from exchanger.exchange import ExchangeInput, Exchanger
from exchanger.gateway.ends import SessionWatch
from exchanger.gateway.identity import GatewayAuthenticator, build_authenticator
from exchanger.identity import Identity
from exchanger.mappings.model import Condition, Grant, MappingSet, Operator, TrustMapping
from exchanger.mappings.subjects import ClaimReference
from exchanger.verify.issuers import IssuerConfig
from exchanger.verify.keys import KeyCache
from exchanger.verify.verifier import Verifier
from kubegate.credential import ClusterInfo

NOW = 1_900_000_000.0
CORP = "https://corp.example"
CORP_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
SELF_ISSUED_URL = "https://127.0.0.1:8444"
WINDOW = (int(NOW) - 60, int(NOW) + 3600)


def in_group(group: str) -> tuple[Condition, ...]:
    return (Condition(path=("groups",), operator=Operator.CONTAINS, expected=group),)


def subject_is(sub: str) -> tuple[Condition, ...]:
    return (Condition(path=("sub",), operator=Operator.EQUALS, expected=sub),)


EMAIL_USER = ClaimReference(path=("email",), prefix="oidc:")
MAPPINGS = MappingSet(mappings=(
    TrustMapping(name="deploy", issuer="corp", conditions=subject_is("deployer"),
                 grant=Grant(cluster="prod", namespace="web", user="deployer",
                             groups=("deployers",))),
    TrustMapping(name="staging-deploy", issuer="corp", conditions=subject_is("stager"),
                 grant=Grant(cluster="staging", namespace="web", user="stager")),
    TrustMapping(name="break-glass", issuer="corp", conditions=in_group("oncall"),
                 grant=Grant(cluster="prod", namespace="web", user=EMAIL_USER,
                             groups=("breakglass",)),
                 approval=ApprovalPolicy(approvers=Approvers(issuer="corp",
                                                             conditions=in_group("leads")))),
    TrustMapping(name="vendor", issuer="corp", conditions=in_group("vendors"),
                 grant=Grant(cluster="prod", namespace="web", user=EMAIL_USER,
                             groups=("vendor-sre",)),
                 windows=(OneOffWindow(start=WINDOW[0], end=WINDOW[1]),)),
    TrustMapping(name="masters", issuer="corp", conditions=in_group("greedy"),
                 grant=Grant(cluster="prod", namespace="web", user=EMAIL_USER,
                             groups=("system:masters",))),
    TrustMapping(name="robots", issuer="corp", conditions=in_group("robots"),
                 grant=Grant(cluster="prod", namespace="web", service_account="robot")),
))


def corp_jwks(key: ec.EllipticCurvePrivateKey = CORP_KEY) -> dict[str, Any]:
    return {"keys": [{**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "corp-1",
                      "alg": "ES256", "use": "sig"}]}


def config_data(state: Path, **gateway: Any) -> dict[str, Any]:
    return {
        "stateDir": str(state),
        "issuers": [{"name": "corp", "url": CORP, "audiences": ["kubegate-cli"],
                     "algorithms": ["ES256"], "keys": {"static": corp_jwks()}, "kind": "oidc"}],
        "clusters": [
            {"name": "prod", "server": "https://127.0.0.1:6443", "backend": "selfIssued",
             "credentials": {"tokenFile": str(state / "gateway-token")}},
            {"name": "staging", "server": "https://127.0.0.1:7443", "backend": "selfIssued"}],
        "selfIssued": {"issuerUrl": SELF_ISSUED_URL, "listen": "127.0.0.1:8444"},
        "access": {"sqliteFile": str(state / "access.db")},
        "gateway": {"cluster": "prod", **gateway},
    }


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


class NoFetcher:
    def fetch_jwks(self, issuer: IssuerConfig) -> Mapping[str, Any]:
        raise AssertionError(f"static keys only; asked to fetch {issuer.name}")


@dataclass(frozen=True)
class FixedMappings:
    current: MappingSet = MAPPINGS


@dataclass
class World:
    folder: Path
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        state = self.folder / "state"
        self.key = load_or_create_signing_key(state / "signing-key.pem")
        self.config: Config = build_config(config_data(state), base=self.folder, environ={},
                                           source="test.yaml")
        stores = SqliteStores(state / "access.db")
        self.requests, self.sessions = stores.requests, stores.sessions
        self.signer = SelfIssuedSigner(key=self.key, issuer_url=SELF_ISSUED_URL,
                                       audience="kubernetes", clock=self.clock)
        self.watch = SessionWatch(self.sessions, cluster="prod", clock=self.clock,
                                  interval=0.05)
        self.exchanger = Exchanger(
            verifier=Verifier(self.config.issuers, KeyCache(NoFetcher(), self.clock),
                              self.clock),
            mappings=MAPPINGS, backends=self.backends(), clock=self.clock,
            audit=AuditLog(self.folder / "audit.log", fsync=False, clock=self.clock),
            gate=AccessGate(self.requests, self.clock), sessions=self.sessions)

    def backends(self) -> dict[str, CredentialBackend]:
        return {name: SelfIssuedBackend(self.signer, ClusterInfo(
                    name=name, server="https://127.0.0.1:6443", certificate_authority_data=b"",
                    namespace="")) for name in ("prod", "staging")}

    def authenticator(self, config: Config | None = None) -> GatewayAuthenticator:
        return build_authenticator(
            config or self.config, keys=KeyCache(NoFetcher(), self.clock),
            mappings=FixedMappings(), requests=self.requests, sessions=self.sessions,
            ends=self.watch, clock=self.clock)

    def credential(self, sub: str = "deployer") -> IssuedCredential:
        """A self-issued credential from a real exchange of a corp token."""
        credential, _ = self.exchanger.exchange(ExchangeInput(subject_token=self.id_token(
            sub=sub)))
        return credential

    def id_token(self, *, sub: str = "alice", groups: tuple[str, ...] = (),
                 lifetime: int = 3600, key: ec.EllipticCurvePrivateKey = CORP_KEY,
                 **claims: Any) -> str:
        now = int(self.clock.now)
        payload = {"iss": CORP, "sub": sub, "aud": "kubegate-cli", "iat": now, "nbf": now,
                   "exp": now + lifetime, "jti": str(uuid.uuid4()), "groups": list(groups),
                   "email": f"{sub}@example.com", "email_verified": True, **claims}
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, key, algorithm="ES256", headers={"kid": "corp-1"})

    def approved_request(self, requester: str = "alice",
                         duration: int = 1800) -> AccessRequest:
        mapping = MAPPINGS.get("break-glass")
        assert mapping is not None
        request = self.requests.create(new_request(
            mapping=mapping, identity=person(requester, "oncall"), reason="INC-1", ticket="",
            duration=duration, now=int(self.clock.now), request_id="ar-0123456789abcdef"))
        return self.requests.replace(approve(request, mapping=mapping,
                                             approver=person("lead", "leads"),
                                             now=int(self.clock.now)))


def person(sub: str, *groups: str) -> Identity:
    return Identity(issuer="corp", issuer_url=CORP, subject=sub, token_id=None,
                    audiences=("kubegate-cli",), issued_at=int(NOW) - 10,
                    expires_at=int(NOW) + 3600,
                    claims={"sub": sub, "groups": list(groups), "email": f"{sub}@example.com",
                            "email_verified": True})


def replaced(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, **changes)
