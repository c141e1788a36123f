"""Kubegate-issued credentials at the gateway: the self-issued JWTs the exchanger signs.

The gateway verifies them as the cluster would (`exchanger.backends.selfissued`, and the
AuthenticationConfiguration that trusts it: username from `sub`, groups from `groups`, a
`jti` required): through the same `Verifier` as subject tokens, under one extra issuer,
`SELF_ISSUED_ISSUER`, whose url is `selfIssued.issuerUrl`, whose audiences are
`selfIssued.audience` plus the fronted cluster's `audiences`, ES256 only, and whose key is
the public half of the exchanger's signing key, read from a file at start (`gateway.
selfIssuedKey`, default `<stateDir>/signing-key.pem`; a PEM public key is enough, and is
what a gateway replica should be given). A static key keeps the per-request cost to one
signature check and needs no network; rotating the signing key means restarting gateways,
as it means updating clusters' trust.

Then the credential's session is read from the index by its `jti` (the self-issued backend
makes the session id the `jti`, and `exchanger.exchange` records `token_id` = that id).

TokenRequest credentials (service-account tokens bound to a session Secret) are NOT accepted:
their user is `system:serviceaccount:NS:NAME`, and the gateway never impersonates a `system:`
name (impersonating service accounts would need `impersonate serviceaccounts` rights in
every granted namespace, a far wider right than users and groups). Such a token fails
verification at the gateway (its issuer is the cluster's, not a credential issuer here, or
its audience is not a subject-token audience) and is refused 401 USE_SELF_ISSUED, saying to
present a self-issued credential or an ID token. A service-account token that does verify
(the cluster's issuer configured for subject tokens, with its audience) is an identity like
any other and needs a trust mapping that grants a user.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from exchanger.access.model import Session
from exchanger.backends.selfissued import jwk_thumbprint
from exchanger.config import Config
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from exchanger.identity import Identity
from exchanger.verify.issuers import IssuerConfig, StaticKeys
from kubegate.errors import ConfigError

__all__ = ["SELF_ISSUED_ISSUER", "credential_groups", "load_public_jwk", "self_issued_issuer",
           "session_of_credential"]

SELF_ISSUED_ISSUER: Final = "kubegate.self-issued"
"""The issuer name the gateway's verifier gives kubegate's own credentials (not a name a
config can use for another issuer: it is refused at start when one does)."""
MAX_CREDENTIAL_LIFETIME: Final = 24 * 3600  # a mapping's maxLifetime is at most 24h


def load_public_jwk(path: Path) -> dict[str, Any]:
    """The ES256 public JWK of a PEM P-256 key file (public or private); ConfigError when the
    file is missing or holds anything else."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the self-issued signing key: "
                           f"{error.strerror}"]) from error
    try:
        public: object
        if b"PUBLIC KEY" in data:
            public = serialization.load_pem_public_key(data)
        else:
            public = serialization.load_pem_private_key(data, password=None).public_key()
    except (ValueError, TypeError) as error:
        raise ConfigError([f"{path}: not a PEM key"]) from error
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ConfigError([f"{path}: not a P-256 (ES256) key"])
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": jwk_thumbprint(jwk), "alg": "ES256", "use": "sig"}


def self_issued_issuer(config: Config) -> IssuerConfig | None:
    """The issuer of kubegate's own credentials, or None when the config has no selfIssued."""
    settings, self_issued = config.gateway, config.self_issued
    if self_issued is None or settings is None:
        return None
    if any(i.name == SELF_ISSUED_ISSUER or i.url == self_issued.issuer_url
           for i in config.issuers):
        raise ConfigError([f"{config.source}: issuers: the name {SELF_ISSUED_ISSUER!r} and "
                           "the url of selfIssued.issuerUrl are kubegate's own credentials at "
                           "the gateway"])
    cluster = config.cluster(settings.cluster)
    key_file = settings.self_issued_key or config.state_dir / "signing-key.pem"
    audiences = tuple(dict.fromkeys((self_issued.audience, *cluster.audiences)))
    return IssuerConfig(
        name=SELF_ISSUED_ISSUER, url=self_issued.issuer_url, audiences=audiences,
        algorithms=("ES256",), key_source=StaticKeys(jwks={"keys": [load_public_jwk(key_file)]}),
        max_token_lifetime=MAX_CREDENTIAL_LIFETIME)


def session_of_credential(identity: Identity, stored: Session, *, cluster: str,
                          now: float) -> GatewaySession:
    """The gateway session of a verified self-issued credential and its index record; a
    GatewayRefusal when it ended or is another cluster's."""
    if stored.cluster != cluster:
        raise GatewayRefusal(403, "WRONG_CLUSTER",
                             "the credential was issued for another cluster")
    if not stored.active:
        raise GatewayRefusal(403, "SESSION_ENDED", "the session ended ("
                             f"{stored.end_reason.value if stored.end_reason else 'ended'})")
    not_after = min(stored.not_after or identity.expires_at, identity.expires_at)
    if now >= not_after:
        raise GatewayRefusal(403, "SESSION_ENDED", "the session is past its end")
    return GatewaySession(
        id=stored.id, cluster=cluster, user=identity.subject,
        groups=credential_groups(identity.claims), mapping=stored.mapping,
        access_request=stored.access_request,
        subject=f"{stored.caller.issuer} {stored.caller.subject}", not_after=not_after)


def credential_groups(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The `groups` claim as the cluster maps it: a list of non-empty strings (absent: none)."""
    groups = claims.get("groups", ())
    if not isinstance(groups, list | tuple) or not all(
            isinstance(group, str) and group for group in groups):
        raise GatewayRefusal(401, "INVALID_CLAIM", "claim groups is not a list of names")
    return tuple(groups)
