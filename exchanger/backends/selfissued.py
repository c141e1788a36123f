"""Self-issued backend: kubegate signs its own short-lived ES256 JWTs.

A cluster trusts them through its structured authentication configuration (a `jwt` issuer
whose url is kubegate's discovery URL); RBAC on the mapped user and groups decides the rest.
Each token carries a fresh `jti`, which the apiserver records as the credential id.

Invariants: the signing key never leaves this module except as its public JWK; the `kid`
is the key's RFC 7638 thumbprint, so a rotated key never reuses an id; a grant whose user or
groups come from claims is signed only once resolved (the exchange resolves it before the
backend is called, so the token and the audit line carry the same names); a token never
expires after the request's `not_after` (the end of its access request or window).

Signing is on every exchange's path, so what does not change between tokens is done once, when
the signer is built: the protected header (`{"alg":"ES256","kid":...,"typ":"JWT"}`, sorted,
as PyJWT writes it) is encoded then, and each token is one `cryptography` ECDSA signature over
`header.payload`, converted from DER to JWS's fixed-width `r || s` (RFC 7518 §3.4).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm

from exchanger.backends.base import (
    JWT_TOKEN_TYPE,
    IssuedCredential,
    IssueRequest,
)
from kubegate.credential import ClusterInfo
from kubegate.files import write_secret_file

Clock = Callable[[], float]
_ES256 = ec.ECDSA(hashes.SHA256())
_P256_BYTES = 32  # each of r and s in an ES256 signature (RFC 7518 §3.4)


def load_or_create_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 key at path; created (0600, atomically) when the file does not exist."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_secret_file(path, pem)
    return key


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=jwk_thumbprint(jwk), alg="ES256", use="sig")
    return jwk


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _compact_json(value: dict[str, Any], *, sort_keys: bool = False) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")


def sign_es256(key: ec.EllipticCurvePrivateKey, header_segment: bytes,
               claims: dict[str, Any]) -> str:
    """The compact JWS of `claims` under the encoded header `header_segment`, signed ES256."""
    signing_input = header_segment + b"." + _b64url(_compact_json(claims))
    r, s = decode_dss_signature(key.sign(signing_input, _ES256))
    signature = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public JWK."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")},
                           separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class SelfIssuedSigner:
    """Signs credentials that clusters trusting `issuer_url` accept."""

    def __init__(
        self, *, key: ec.EllipticCurvePrivateKey, issuer_url: str, audience: str, clock: Clock,
    ) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the self-issued signing key must be a P-256 key (ES256)")
        self._key = key
        self._jwk = public_jwk(key)
        self._header = _b64url(_compact_json(
            {"alg": "ES256", "kid": self._jwk["kid"], "typ": "JWT"}, sort_keys=True))
        self.issuer_url = issuer_url
        self.audience = audience
        self._clock = clock

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer_url,
            "jwks_uri": f"{self.issuer_url}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }

    def issue(self, request: IssueRequest, cluster: ClusterInfo) -> IssuedCredential:
        grant = request.grant
        user, groups = grant.user_name, grant.group_names  # ValueError unless resolved
        if not user:
            raise ValueError("a self-issued grant names a user")
        now = int(self._clock())
        expires = now + request.lifetime
        if request.not_after:  # never past an access request's or window's end
            expires = max(now + 1, min(expires, request.not_after))
        claims = {
            "iss": self.issuer_url,
            "sub": user,
            "aud": list(request.audiences) or [self.audience],
            "groups": list(groups),
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": request.session_id,
            "kubegate.io/mapping": request.mapping,
            "kubegate.io/caller": f"{request.identity.issuer_url} {request.identity.subject}",
        }
        token = sign_es256(self._key, self._header, claims)
        cluster = ClusterInfo(
            name=cluster.name, server=cluster.server,
            certificate_authority_data=cluster.certificate_authority_data,
            namespace=grant.namespace, user=user, groups=groups,
        )
        return IssuedCredential(
            token=token, token_type=JWT_TOKEN_TYPE, token_id=request.session_id,
            expires_at=expires, session_id=request.session_id,
            cluster=cluster, bound_to="self-issued",
        )



class SelfIssuedBackend:
    """The CredentialBackend of one cluster that trusts a SelfIssuedSigner."""

    def __init__(self, signer: SelfIssuedSigner, cluster: ClusterInfo) -> None:
        self._signer, self._cluster = signer, cluster

    def issue(self, request: IssueRequest) -> IssuedCredential:
        return self._signer.issue(request, self._cluster)

    def revoke(self, credential: IssuedCredential) -> None:
        """A signed token cannot be recalled; one that was never returned is harmless."""
