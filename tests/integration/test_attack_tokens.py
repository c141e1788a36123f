"""Attack tokens, end to end: each attack class of the research note (jwt-security-and-
performance.md, Part A) sent through a real exchanger over gRPC with TLS, refused with its gRPC
status and its ErrorInfo reason, with a deny line in kubegate's audit log and no allow line;
and the same tokens over the RFC 8693 token endpoint (HTTPS), refused with the OAuth error its
status travels as (`HTTPS_ERRORS`) and the same reason as `kubegate_reason`, audited alike.

Every case runs against two exchangers: a self-issued one, and a TokenRequest one on the real
kube-apiserver, where "nothing issued" is also checked on the cluster: no session Secret in the
grant's namespace and no TokenRequest in the apiserver's audit log for the attempt.

The audience rule (also in README, "Verification rules"): a token is accepted when at least one
of its `aud` values is among the issuer's configured audiences (RFC 7519 §4.1.3); other
audiences beside ours are tolerated, since GitHub and GitLab put several there on request and a
token whose signature, issuer and our audience all check out was meant for us too. A token
without any of our audiences is refused (WRONG_AUDIENCE), also when it carries the audience of
another issuer we trust: audiences are per issuer.

Issuers: `github` and `gitlab` are real HTTPS issuers (discovery, JWKS, RS256); `ec` and `twin`
have static ES256 keys in the configuration and publish the same kid with different keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from jwt.algorithms import RSAAlgorithm

from kubegate.credential import Credential
from kubegate.errors import ExchangeError
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_exchanger import (
    StartExchanger,
    TestExchanger,
    cluster_entry,
    self_issued_entry,
)
from tests.support.hostile import (
    ApiAuditTail,
    DecisionLog,
    OffsetClock,
    StaticIssuer,
    attempt,
    b64,
    compact,
    encode_part,
    session_secrets,
    signature_of,
    start_exchanger_in,
    token_requests,
    with_signature,
)
from tests.support.kube import Cluster
from tests.support.oauth_client import https_attempt
from tests.support.oidc import (
    DISCOVERY_PATH,
    GitHubActionsIssuer,
    GitHubJob,
    GitLabCIIssuer,
    github_claims,
)
from tests.support.pki import TestCA
from tests.support.wait import poll

AUDIENCE = "kubegate"
GITLAB_AUDIENCE = "kubegate-gitlab"
MAX_LIFETIME = 3600  # the github issuer's maxTokenLifetime
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True, kw_only=True)
class World:
    """The trusted issuers, for building tokens."""

    github: GitHubActionsIssuer
    gitlab: GitLabCIIssuer
    ec: StaticIssuer
    twin: StaticIssuer


# -- token builders -------------------------------------------------------------------------------


def gh_claims(w: World, **changes: Any) -> dict[str, Any]:
    """A valid GitHub claim set for our audience; a change to None drops the claim."""
    claims = github_claims(GitHubJob(), issuer=w.github.url, audience=AUDIENCE,
                           now=int(time.time()), lifetime=300, jti=str(uuid.uuid4()))
    merged = claims | changes
    return {name: value for name, value in merged.items() if value is not None}


def gh(w: World, header: dict[str, Any] | None = None, **changes: Any) -> str:
    """A GitHub token signed with the real key; `header` overrides header members."""
    return w.github.sign(gh_claims(w, **changes), header_overrides=header)


def gh_raw(w: World, header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes) -> str:
    """Any header and payload bytes, signed RS256 with GitHub's real key."""
    signing_input = f"{encode_part(header)}.{encode_part(payload)}".encode("ascii")
    return f"{signing_input.decode()}.{b64(w.github.signing_key.sign(signing_input))}"


def gh_header(w: World, **changes: Any) -> dict[str, Any]:
    key = w.github.signing_key
    header: dict[str, Any] = {"typ": "JWT", "alg": "RS256", "x5t": key.x5t, "kid": key.kid}
    return header | changes


def unsigned(w: World, alg: str) -> str:
    """An `alg` token with an empty signature, as unsigned JWTs are sent."""
    return compact(gh_header(w, alg=alg), gh_claims(w), b"")


def hmac_with_public_key(w: World, public_form: str, algorithm: str = "HS256") -> str:
    """RS256 -> HS* confusion: the MAC keyed with the issuer's published public key."""
    public = w.github.signing_key.private_key.public_key()
    secrets: dict[str, bytes] = {
        "PEM": public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo),
        "PKCS1": public.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.PKCS1),
        "JWK": json.dumps(w.github.jwks()["keys"][-1]).encode(),
    }
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[algorithm]
    header, payload = gh_header(w, alg=algorithm), gh_claims(w)
    signing_input = f"{encode_part(header)}.{encode_part(payload)}".encode()
    return compact(header, payload, hmac.new(secrets[public_form], signing_input, digest).digest())


def ecdsa(w: World, r: int, s: int) -> str:
    return with_signature(w.ec.mint(), r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def ecdsa_in_der(w: World) -> str:
    token = w.ec.mint()
    raw = signature_of(token)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return with_signature(token, der)


def truncated(token: str, cut: int) -> str:
    return with_signature(token, signature_of(token)[:-cut])


def tampered_payload(w: World) -> str:
    header, _, signature = gh(w).split(".")
    return f"{header}.{encode_part(gh_claims(w, repository_id='1'))}.{signature}"


def noncanonical_signature(token: str) -> str:
    """The same signature bytes, spelt with a non-zero unused bit in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    body, last = token[:-1], token[-1]
    spelt = body + alphabet[alphabet.index(last) ^ 1]
    assert signature_of(spelt) == signature_of(token)
    return spelt


def json_serialisation(token: str, general: bool) -> str:
    protected, payload, signature = token.split(".")
    if general:
        return json.dumps({"payload": payload,
                           "signatures": [{"protected": protected, "signature": signature}]})
    return json.dumps({"protected": protected, "payload": payload, "signature": signature})


def duplicate_keys_payload(w: World, name: str, first: str) -> str:
    """`name` twice: the attacker's value first, the real one after (last wins in Python)."""
    rest = json.dumps(gh_claims(w))[1:]
    doubled = "{" + json.dumps(name) + ": " + json.dumps(first) + ", " + rest
    return gh_raw(w, gh_header(w), doubled.encode())


def foreign_key_token(w: World, **header: Any) -> str:
    """Signed by an attacker key, with whatever header an attack needs."""
    header = gh_header(w, **header)
    signing_input = f"{encode_part(header)}.{encode_part(gh_claims(w))}".encode()
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, ATTACKER_KEY)
    return f"{signing_input.decode()}.{b64(signature)}"


def attacker_jwk() -> dict[str, Any]:
    return RSAAlgorithm.to_jwk(ATTACKER_KEY.public_key(), as_dict=True) | {"kid": "attacker"}


def x5c_chain() -> list[str]:
    """A certificate chain as x5c carries it (standard base64 DER); never parsed by kubegate."""
    return [base64.b64encode(b"0\x82\x01\x00" + bytes(256)).decode()]


def jwe(w: World) -> str:
    header = b64(json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "k"}).encode())
    return ".".join([header, b64(bytes(256)), b64(bytes(12)), b64(b"ciphertext"), b64(bytes(16))])


def deeply_nested(w: World) -> str:
    payload = ('{"sub": "x", "nested": ' + "[" * 5000 + "]" * 5000 + "}").encode()
    return gh_raw(w, gh_header(w), payload)


def oversized(w: World, size: int) -> str:
    token = gh(w, padding="x" * size)
    assert len(token) > size
    return token


# -- the cases ------------------------------------------------------------------------------------

UNAUTHENTICATED = "UNAUTHENTICATED"
Build = Callable[[World], str]


@dataclass(frozen=True, kw_only=True)
class Attack:
    build: Build
    reason: str
    code: str = UNAUTHENTICATED
    reaches_kubegate: bool = True  # False: grpc itself refuses it before the servicer
    over_https: tuple[str, str] | None = None  # (error, reason) when HTTP refuses it first


# The OAuth error each status travels as on the token endpoint (exchanger.oauth.errors).
HTTPS_ERRORS = {UNAUTHENTICATED: "invalid_request", "INVALID_ARGUMENT": "invalid_request"}


def refused(reason: str, build: Build, code: str = UNAUTHENTICATED) -> Attack:
    return Attack(build=build, reason=reason, code=code)


NONE_SPELLINGS = ("none", "None", "NONE", "nOnE", "none ", "")
ATTACKS: dict[str, Attack] = {
    # -- algorithm -------------------------------------------------------------------------------
    **{f"alg {spelling!r}, empty signature": refused(
        "DISALLOWED_ALGORITHM", lambda w, a=spelling: unsigned(w, a))
       for spelling in NONE_SPELLINGS},
    "alg 'none' with the real RS256 signature": refused(
        "DISALLOWED_ALGORITHM", lambda w: gh(w, header={"alg": "none"})),
    "alg missing": refused("INVALID_HEADER", lambda w: gh(w, header={"alg": None})),
    "alg null": refused(
        "INVALID_HEADER", lambda w: gh_raw(w, gh_header(w, alg=None), gh_claims(w))),
    "alg in lower case": refused("DISALLOWED_ALGORITHM", lambda w: gh(w, header={"alg": "rs256"})),
    "HS256 keyed with the issuer's public key PEM": refused(
        "DISALLOWED_ALGORITHM", lambda w: hmac_with_public_key(w, "PEM")),
    "HS256 keyed with the issuer's PKCS#1 public key": refused(
        "DISALLOWED_ALGORITHM", lambda w: hmac_with_public_key(w, "PKCS1")),
    "HS512 keyed with the issuer's public JWK": refused(
        "DISALLOWED_ALGORITHM", lambda w: hmac_with_public_key(w, "JWK", "HS512")),
    "PS256 with the issuer's RSA key": refused(
        "DISALLOWED_ALGORITHM", lambda w: gh(w, header={"alg": "PS256"})),
    "ES256 to an RS256-only issuer": refused(
        "DISALLOWED_ALGORITHM", lambda w: w.ec.sign(gh_claims(w), header=w.ec.header())),
    # -- signature -------------------------------------------------------------------------------
    "null signature": refused("MALFORMED_TOKEN", lambda w: gh(w).rsplit(".", 1)[0] + "."),
    "signature of zero bytes": refused(
        "BAD_SIGNATURE", lambda w: with_signature(gh(w), bytes(256))),
    "signature truncated by three bytes": refused("BAD_SIGNATURE", lambda w: truncated(gh(w), 3)),
    "signature of another token": refused(
        "BAD_SIGNATURE", lambda w: with_signature(gh(w), signature_of(gh(w, sub="other")))),
    "payload changed after signing": refused("BAD_SIGNATURE", tampered_payload),
    "signed by an attacker's key under the issuer's kid": refused(
        "BAD_SIGNATURE", lambda w: foreign_key_token(w)),
    "ECDSA r=s=0 (psychic signature)": refused("BAD_SIGNATURE", lambda w: ecdsa(w, 0, 0)),
    "ECDSA r=s=n (the curve order)": refused(
        "BAD_SIGNATURE", lambda w: ecdsa(w, P256_ORDER, P256_ORDER)),
    "ECDSA signature in DER": refused("BAD_SIGNATURE", ecdsa_in_der),
    "ECDSA signature truncated by a byte": refused(
        "BAD_SIGNATURE", lambda w: truncated(w.ec.mint(), 1)),
    # -- headers that bring their own key, or their own semantics ---------------------------------
    "embedded jwk with the attacker's key": refused(
        "FORBIDDEN_HEADER", lambda w: foreign_key_token(w, jwk=attacker_jwk(), kid="attacker")),
    "jku to a key set the attacker serves": refused(
        "FORBIDDEN_HEADER", lambda w: foreign_key_token(w, jku=w.github.url + "/attacker/jku")),
    "x5u to a certificate the attacker serves": refused(
        "FORBIDDEN_HEADER", lambda w: foreign_key_token(w, x5u=w.github.url + "/attacker/x5u")),
    "x5c with the attacker's certificate": refused(
        "FORBIDDEN_HEADER", lambda w: foreign_key_token(w, x5c=x5c_chain())),
    "crit naming exp": refused("FORBIDDEN_HEADER", lambda w: gh(w, header={"crit": ["exp"]})),
    "crit with b64 false": refused(
        "FORBIDDEN_HEADER", lambda w: gh(w, header={"crit": ["b64"], "b64": False})),
    "zip (compressed payload)": refused("FORBIDDEN_HEADER", lambda w: gh(w, header={"zip": "DEF"})),
    "kid path traversal": refused(
        "UNKNOWN_KEY", lambda w: foreign_key_token(w, kid="../../../../../../dev/null")),
    "kid /dev/null": refused("UNKNOWN_KEY", lambda w: foreign_key_token(w, kid="/dev/null")),
    "kid SQL injection": refused(
        "UNKNOWN_KEY", lambda w: foreign_key_token(w, kid="x' UNION SELECT '1';--")),
    "kid command injection": refused(
        "UNKNOWN_KEY", lambda w: foreign_key_token(w, kid="|sleep 10")),
    "kid a URL": refused(
        "UNKNOWN_KEY", lambda w: foreign_key_token(w, kid=w.github.url + "/attacker/kid")),
    "kid empty": refused("INVALID_HEADER", lambda w: foreign_key_token(w, kid="")),
    "kid with a newline": refused("INVALID_HEADER", lambda w: foreign_key_token(w, kid="a\nb")),
    "kid of 1000 characters": refused(
        "INVALID_HEADER", lambda w: foreign_key_token(w, kid="k" * 1000)),
    "kid a number": refused("INVALID_HEADER", lambda w: foreign_key_token(w, kid=7)),
    "typ of an access token": refused(
        "WRONG_TOKEN_TYPE", lambda w: gh(w, header={"typ": "at+jwt"})),
    # -- other forms than a compact JWS ----------------------------------------------------------
    "nested JWT (cty JWT)": refused(
        "NESTED_TOKEN", lambda w: gh_raw(w, gh_header(w, cty="JWT"), gh(w).encode())),
    "cty of another content type": refused(
        "FORBIDDEN_HEADER", lambda w: gh(w, header={"cty": "application/xml"})),
    "JWE in five segments": refused("ENCRYPTED_TOKEN", jwe),
    "enc header in three segments": refused(
        "ENCRYPTED_TOKEN", lambda w: gh(w, header={"enc": "A256GCM"})),
    "JSON serialisation, flattened": refused(
        "MALFORMED_TOKEN", lambda w: json_serialisation(gh(w), general=False)),
    "JSON serialisation, general": refused(
        "MALFORMED_TOKEN", lambda w: json_serialisation(gh(w), general=True)),
    "base64 padding": refused("MALFORMED_TOKEN", lambda w: gh(w).replace(".", "==.", 1)),
    "whitespace before the token": refused("MALFORMED_TOKEN", lambda w: " " + gh(w)),
    "newline inside the token": refused("MALFORMED_TOKEN", lambda w: gh(w).replace(".", "\n.", 1)),
    "four segments": refused("MALFORMED_TOKEN", lambda w: gh(w) + ".e30"),
    "ten thousand dots": refused("MALFORMED_TOKEN", lambda w: "." * 10000),
    "standard base64 characters": refused("MALFORMED_TOKEN", lambda w: gh(w)[:-2] + "+/"),
    "non-canonical base64 (unused bits set)": refused(
        "MALFORMED_TOKEN", lambda w: noncanonical_signature(gh(w))),
    "header not UTF-8": refused(
        "MALFORMED_TOKEN", lambda w: gh_raw(w, b'{"alg":"RS256","kid":"\xff\xfe"}', gh_claims(w))),
    "header in UTF-16": refused(
        "MALFORMED_TOKEN", lambda w: gh_raw(w, json.dumps(gh_header(w)).encode("utf-16"),
                                            gh_claims(w))),
    "payload in UTF-16, validly signed": refused(
        "MALFORMED_TOKEN", lambda w: gh_raw(w, gh_header(w),
                                            json.dumps(gh_claims(w)).encode("utf-16"))),
    "duplicate alg in the header": refused(
        "MALFORMED_TOKEN", lambda w: gh_raw(w, b'{"alg":"none","alg":"RS256","typ":"JWT","kid":"'
                                            + w.github.signing_key.kid.encode() + b'"}',
                                            gh_claims(w))),
    "duplicate sub in the payload, validly signed": refused(
        "MALFORMED_TOKEN", lambda w: duplicate_keys_payload(w, "sub", "repo:attacker/x:ref:y")),
    "duplicate repository_id in the payload, validly signed": refused(
        "MALFORMED_TOKEN", lambda w: duplicate_keys_payload(w, "repository_id", "1")),
    "NaN in the payload, validly signed": refused(
        "MALFORMED_TOKEN", lambda w: gh_raw(w, gh_header(w), b'{"sub": "x", "exp": NaN}')),
    "payload nested 5000 deep, validly signed": refused("MALFORMED_TOKEN", deeply_nested),
    "payload a JSON array, validly signed": refused(
        "MALFORMED_TOKEN", lambda w: gh_raw(w, gh_header(w), b'["sub"]')),
    "empty token": refused("MISSING_SUBJECT_TOKEN", lambda w: "", code="INVALID_ARGUMENT"),
    # -- dates, validly signed -------------------------------------------------------------------
    "exp as a string": refused("INVALID_CLAIM", lambda w: gh(w, exp=str(int(time.time()) + 300))),
    "exp as a float": refused("INVALID_CLAIM", lambda w: gh(w, exp=time.time() + 300.0)),
    "exp huge (1e300)": refused("INVALID_CLAIM", lambda w: gh(w, exp=1e300)),
    "exp huge integer": refused("INVALID_CLAIM", lambda w: gh(w, exp=10**30)),
    "exp true": refused("INVALID_CLAIM", lambda w: gh(w, exp=True)),
    "exp negative": refused("INVALID_CLAIM", lambda w: gh(w, exp=-1)),
    "exp missing": refused("MISSING_CLAIM", lambda w: gh(w, exp=None)),
    "nbf as a string": refused("INVALID_CLAIM", lambda w: gh(w, nbf=str(int(time.time())))),
    "nbf as a float": refused("INVALID_CLAIM", lambda w: gh(w, nbf=time.time())),
    "nbf in the future": refused(
        "TOKEN_NOT_YET_VALID", lambda w: gh(w, nbf=int(time.time()) + 120)),
    "iat as a string": refused("INVALID_CLAIM", lambda w: gh(w, iat=str(int(time.time())))),
    "iat huge": refused("INVALID_CLAIM", lambda w: gh(w, iat=2**62)),
    "iat missing": refused("MISSING_CLAIM", lambda w: gh(w, iat=None)),
    "iat in the future": refused(
        "ISSUED_IN_FUTURE",
        lambda w: gh(w, iat=int(time.time()) + 120, nbf=None, exp=int(time.time()) + 400)),
    "expired": refused(
        "TOKEN_EXPIRED",
        lambda w: gh(w, iat=int(time.time()) - 400, nbf=None, exp=int(time.time()) - 100)),
    "lifetime over the issuer's maximum": refused(
        "LIFETIME_TOO_LONG",
        lambda w: gh(w, iat=int(time.time()) - 5, exp=int(time.time()) + MAX_LIFETIME + 60)),
    # -- audience --------------------------------------------------------------------------------
    "aud missing": refused("MISSING_CLAIM", lambda w: gh(w, aud=None)),
    "aud someone else's": refused("WRONG_AUDIENCE", lambda w: gh(w, aud="sts.amazonaws.com")),
    "aud an array without ours": refused(
        "WRONG_AUDIENCE", lambda w: gh(w, aud=["sts.amazonaws.com", "https://github.com/x"])),
    "aud an empty array": refused("INVALID_CLAIM", lambda w: gh(w, aud=[])),
    "aud a number": refused("INVALID_CLAIM", lambda w: gh(w, aud=7)),
    "aud ours as a prefix": refused("WRONG_AUDIENCE", lambda w: gh(w, aud=AUDIENCE + "-evil")),
    "gitlab token carrying github's audience": refused(
        "WRONG_AUDIENCE", lambda w: w.gitlab.mint(audience=AUDIENCE)),
    # -- issuer ----------------------------------------------------------------------------------
    "iss with a trailing slash": refused("UNKNOWN_ISSUER", lambda w: gh(w, iss=w.github.url + "/")),
    "iss a prefix of ours": refused("UNKNOWN_ISSUER", lambda w: gh(w, iss=w.github.url[:-1])),
    "iss in other case": refused("UNKNOWN_ISSUER", lambda w: gh(w, iss=w.github.url.upper())),
    "iss as an array": refused("INVALID_CLAIM", lambda w: gh(w, iss=[w.github.url])),
    "iss missing": refused("MISSING_CLAIM", lambda w: gh(w, iss=None)),
    "iss nobody configured": refused("UNKNOWN_ISSUER", lambda w: gh(w, iss="https://evil.example")),
    "same kid at two issuers: twin's key under ec's iss": refused(
        "BAD_SIGNATURE", lambda w: w.ec.sign(w.ec.claims(), key=w.twin.key)),
    "another issuer's key and kid under github's iss": refused(
        "UNKNOWN_KEY", lambda w: w.gitlab.sign(gh_claims(w))),
    "github's key and kid under gitlab's iss": refused(
        "UNKNOWN_KEY", lambda w: gh(w, iss=w.gitlab.url, aud=GITLAB_AUDIENCE)),
    # -- subject ---------------------------------------------------------------------------------
    "sub missing": refused("MISSING_CLAIM", lambda w: gh(w, sub=None)),
    "sub a number": refused("INVALID_CLAIM", lambda w: gh(w, sub=42)),
    "sub empty": refused("INVALID_CLAIM", lambda w: gh(w, sub="")),
    # -- size ------------------------------------------------------------------------------------
    "over the 16 KiB cap": refused("TOKEN_TOO_LARGE", lambda w: oversized(w, 20_000)),
    "over the 64 KiB gRPC receive limit": Attack(
        build=lambda w: oversized(w, 70_000), reason="", code="RESOURCE_EXHAUSTED",
        reaches_kubegate=False, over_https=("invalid_request", "REQUEST_TOO_LARGE")),
}

ALLOWED: dict[str, Build] = {
    "github": lambda w: gh(w),
    "gitlab": lambda w: w.gitlab.mint(audience=GITLAB_AUDIENCE),
    "ec (ES256, static keys)": lambda w: w.ec.mint(),
    "twin, whose kid ec also publishes": lambda w: w.twin.mint(),
    "aud array holding ours beside others": lambda w: gh(
        w, aud=["https://github.com/octo-org", AUDIENCE, "sts.amazonaws.com"]),
    "aud array holding ours and another trusted issuer's": lambda w: gh(
        w, aud=[GITLAB_AUDIENCE, AUDIENCE]),
}


# -- the two exchangers ---------------------------------------------------------------------------


def mappings(grant: str, issuers: tuple[str, ...] = ("github", "gitlab", "ec", "twin")) -> str:
    documents = [document for document in [("github-web", "github", "repository_id", "74"),
                                           ("gitlab-web", "gitlab", "project_id", "20"),
                                           ("ec-web", "ec", "repository_id", "74"),
                                           ("twin-web", "twin", "repository_id", "74")]
                 if document[1] in issuers]
    return "\n---\n".join(f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: {name}}}
spec:
  issuer: {issuer}
  claims: [{{claim: {claim}, equals: "{value}"}}]
  grant: {grant}
""" for name, issuer, claim, value in documents)


def issuer_entries(w: World) -> list[dict[str, Any]]:
    return [
        {"name": "github", "url": w.github.url, "audiences": [AUDIENCE], "algorithms": ["RS256"],
         "caFile": str(w.github.ca_path), "maxTokenLifetime": f"{MAX_LIFETIME}s"},
        {"name": "gitlab", "url": w.gitlab.url, "audiences": [GITLAB_AUDIENCE],
         "algorithms": ["RS256"], "caFile": str(w.gitlab.ca_path)},
        w.ec.config_entry("ec", [AUDIENCE]),
        w.twin.config_entry("twin", [AUDIENCE]),
    ]


@pytest.fixture(scope="module")
def world(github_issuer: GitHubActionsIssuer, gitlab_issuer: GitLabCIIssuer) -> World:
    return World(github=github_issuer, gitlab=gitlab_issuer,
                 ec=StaticIssuer("https://ec.issuer.kubegate.test", kid="ec-1"),
                 twin=StaticIssuer("https://twin.issuer.kubegate.test", kid="ec-1"))


@dataclass
class Backend:
    exchanger: TestExchanger
    cluster: Cluster | None = None
    namespace: str = ""
    api_audit: ApiAuditTail | None = None


@pytest.fixture(scope="module")
def self_issued_backend(world: World, tmp_path_factory: pytest.TempPathFactory,
                        ) -> Iterator[Backend]:
    exchanger = start_exchanger_in(
        tmp_path_factory.mktemp("attack-self-issued"), issuers=issuer_entries(world),
        clusters=[{"name": "local", "server": "https://127.0.0.1:6443", "backend": "selfIssued"}],
        mappings=mappings('{cluster: local, namespace: web, user: "ci:web"}'),
        self_issued=self_issued_entry(), httpListen="127.0.0.1:0")
    yield Backend(exchanger=exchanger)
    exchanger.running.stop(grace=0)


@pytest.fixture(scope="module")
def token_request_backend(world: World, cluster: Cluster, control_plane: ControlPlane,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    namespace = cluster.create_namespace("attack")
    cluster.create_service_account(namespace, "deployer")
    exchanger = start_exchanger_in(
        tmp_path_factory.mktemp("attack-token-request"), issuers=issuer_entries(world),
        clusters=[cluster_entry(control_plane)],
        mappings=mappings(f"{{cluster: test, namespace: {namespace}, serviceAccount: deployer}}"),
        httpListen="127.0.0.1:0")
    yield Backend(exchanger=exchanger, cluster=cluster, namespace=namespace,
                  api_audit=ApiAuditTail(control_plane.audit_log_path))
    exchanger.running.stop(grace=0)


@pytest.fixture(params=["self-issued", "token-request"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name = "self_issued_backend" if request.param == "self-issued" else "token_request_backend"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(params=["grpc", "https"])
def transport(request: pytest.FixtureRequest) -> str:
    """gRPC's Exchange, or the RFC 8693 token endpoint over HTTPS: the same use case."""
    return str(request.param)


def assert_nothing_issued_on_the_cluster(backend: Backend) -> None:
    if backend.cluster is None or backend.api_audit is None:
        return
    assert session_secrets(backend.cluster, backend.namespace) == []
    assert token_requests(backend.api_audit.new(), backend.namespace) == []


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ATTACKS.keys())
def test_attack_token_is_refused_with_its_status_and_reason_and_nothing_is_issued(
    backend: Backend, world: World, case: str, transport: str,
) -> None:
    attack = ATTACKS[case]
    token = attack.build(world)
    decisions = DecisionLog(backend.exchanger)
    if backend.api_audit is not None:
        backend.api_audit.new()  # what happened before this attempt is not its doing

    if transport == "grpc":
        outcome = attempt(backend.exchanger, token)
        assert isinstance(outcome, ExchangeError), f"{case}: ACCEPTED"
        assert (outcome.code.name, outcome.reason) == (attack.code, attack.reason), \
            outcome.message
    else:
        answer = https_attempt(backend.exchanger, token)
        assert answer.status != 200, f"{case}: ACCEPTED"
        assert answer.refusal == (attack.over_https or (HTTPS_ERRORS[attack.code],
                                                        attack.reason)), answer.status
    new = decisions.new()
    if attack.reaches_kubegate:
        assert [(d["decision"], d["reason"], d["status"]) for d in new] == [
            ("deny", attack.reason, attack.code)]
        assert new[0]["token_id"] == "" and new[0]["session_id"] == ""
        assert new[0]["peer"].startswith("https:" if transport == "https" else "ipv")
    else:
        assert new == []  # refused by grpc before kubegate saw it: nothing to decide
    assert_nothing_issued_on_the_cluster(backend)


@pytest.mark.parametrize("case", ALLOWED.keys())
def test_valid_token_is_allowed_so_the_refusals_above_mean_something(
    backend: Backend, world: World, case: str, transport: str,
) -> None:
    decisions = DecisionLog(backend.exchanger)
    if transport == "grpc":
        outcome = attempt(backend.exchanger, ALLOWED[case](world))
        assert isinstance(outcome, Credential), outcome
        token_id, session_id = outcome.token_id, outcome.session_id
    else:
        answer = https_attempt(backend.exchanger, ALLOWED[case](world))
        assert answer.status == 200, answer.refusal
        token_id, session_id = answer.body["token_id"], answer.body["session_id"]
    [line] = decisions.new()
    assert (line["decision"], line["token_id"]) == ("allow", token_id)
    if backend.cluster is not None and backend.api_audit is not None:
        api_audit, events = backend.api_audit, []
        assert f"kubegate-session-{session_id}" in session_secrets(
            backend.cluster, backend.namespace)
        assert poll(lambda: bool(events.extend(api_audit.new()) or token_requests(
            events, backend.namespace)), 10, 0.05)  # the apiserver's audit lags its answer
        backend.cluster.core.delete_namespaced_secret(
            f"kubegate-session-{session_id}", backend.namespace)


def test_urls_in_headers_are_never_fetched(self_issued_backend: Backend, world: World) -> None:
    paths = ("/attacker/jku", "/attacker/x5u", "/attacker/kid")
    for case in ("jku to a key set the attacker serves", "x5u to a certificate the attacker serves",
                 "kid a URL"):
        assert isinstance(attempt(self_issued_backend.exchanger, ATTACKS[case].build(world)),
                          ExchangeError)
    assert [world.github.request_count(path) for path in paths] == [0, 0, 0]


# Bytes that are not an ExchangeRequest, by class. Field 1 is subject_token (a string),
# field 4 requested_lifetime (a google.protobuf.Duration).
MALFORMED_MESSAGES: dict[str, bytes] = {
    "a truncated varint": b"\x0a\x80\x80",  # subject_token's length never ends
    "a truncated tag": b"\x80",
    "a wrong wire type for a string field": b"\x08\x01",  # subject_token as a varint
    "a wrong wire type inside a nested message": b"\x22\x05\x0d\x01\x02\x03\x04",
    "invalid UTF-8 in a string field": b"\x0a\x05\xff\xfe.\x80.",
    "a huge length prefix": b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 64,
    "field number 0": b"\x00\x01",
}


@pytest.mark.parametrize("case", MALFORMED_MESSAGES)
def test_a_malformed_message_is_invalid_argument_with_a_reason_audited_and_logs_no_traceback(
    self_issued_backend: Backend, case: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """grpc would answer INTERNAL "Exception deserializing request!" and log a traceback; the
    exchanger reads the bytes itself and denies like any other refusal."""
    exchanger = self_issued_backend.exchanger
    decisions = DecisionLog(exchanger)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(str(exchanger.running.ca_file)).read_bytes())
    with grpc.secure_channel(exchanger.target, credentials) as channel:
        call = channel.unary_unary("/exchanger.v1.ExchangeService/Exchange")
        with pytest.raises(grpc.RpcError) as failed:
            call(MALFORMED_MESSAGES[case], timeout=5)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failed.value.details()
    status = rpc_status.from_call(failed.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.domain, info.reason) == ("kubegate.io", "MALFORMED_REQUEST")
    assert "ExchangeRequest" in failed.value.details()
    [line] = poll_new(decisions)
    assert (line["decision"], line["reason"], line["status"]) == (
        "deny", "MALFORMED_REQUEST", "INVALID_ARGUMENT")
    assert line["peer"] and line["caller"] == {"iss": "", "sub": "", "jti": ""}
    logged = "\n".join(caplog.text.splitlines())
    assert "Traceback" not in logged and "deserializing" not in logged
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def poll_new(decisions: DecisionLog) -> list[dict[str, Any]]:
    """The new decision lines, once there is one (the audit line is written before the
    answer, so it is there at once; the poll only guards against a slow disk)."""
    found: list[dict[str, Any]] = []
    poll(lambda: bool(found.extend(decisions.new()) or found), 5, 0.05)
    return found


def test_a_flood_of_unknown_kids_fetches_keys_at_most_once_per_cooldown(
    oidc_ca: TestCA, start_test_exchanger: StartExchanger,
) -> None:
    """100 tokens naming kids nobody published, from 8 threads: no key fetch within the cooldown
    that started with the exchanger, and one (discovery and JWKS) after it has passed."""
    with GitHubActionsIssuer(oidc_ca) as issuer:
        clock = OffsetClock()
        exchanger = start_test_exchanger(
            issuers=[{"name": "github", "url": issuer.url, "audiences": [AUDIENCE],
                      "caFile": str(issuer.ca_path)}],
            clusters=[{"name": "local", "server": "https://127.0.0.1:6443",
                       "backend": "selfIssued"}],
            mappings=mappings('{cluster: local, namespace: web, user: "ci:web"}',
                              issuers=("github",)),
            self_issued=self_issued_entry(), clock=clock)
        assert isinstance(attempt(exchanger, issuer.mint(audience=AUDIENCE)), Credential)
        jwks, discovery = issuer.request_count(issuer.jwks_path), issuer.request_count(
            DISCOVERY_PATH)

        def flood(count: int) -> set[tuple[str, str]]:
            tokens = [issuer.mint(audience=AUDIENCE, header_overrides={"kid": f"forged-{n}"})
                      for n in range(count)]
            with exchanger.client(attempts=1) as client, ThreadPoolExecutor(8) as pool:
                def one(token: str) -> tuple[str, str]:
                    try:
                        client.exchange(token)
                    except ExchangeError as error:
                        return error.code.name, error.reason
                    return "OK", ""
                return set(pool.map(one, tokens))

        assert flood(100) == {("UNAUTHENTICATED", "UNKNOWN_KEY")}
        assert issuer.request_count(issuer.jwks_path) == jwks
        clock.advance(61)  # past the one-minute cooldown
        assert flood(100) == {("UNAUTHENTICATED", "UNKNOWN_KEY")}
        assert issuer.request_count(issuer.jwks_path) == jwks + 1
        assert issuer.request_count(DISCOVERY_PATH) == discovery + 1
