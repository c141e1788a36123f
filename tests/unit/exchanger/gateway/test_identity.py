"""The gateway's authenticator with kubegate's own credentials: real exchanges sign them with
the exchanger's real key and record their sessions in a real SQLite index; the gateway must
accept exactly those, as the user and groups the cluster would see, and refuse every other
token with the right status and reason, never echoing the token."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from exchanger.access.model import SessionEnd
from exchanger.access.revocation import Revoker
from exchanger.backends.base import IssueRequest
from exchanger.gateway.identity import CACHE_SECONDS
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from tests.unit.exchanger.gateway.identity_world import MAPPINGS, OTHER_KEY, World, person


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def refused(call: Callable[[], GatewaySession], status: int, reason: str) -> GatewayRefusal:
    with pytest.raises(GatewayRefusal) as caught:
        call()
    assert (caught.value.status, caught.value.reason) == (status, reason), caught.value.message
    return caught.value


def test_a_self_issued_credential_acts_as_its_grant_in_its_session(world: World) -> None:
    credential = world.credential("deployer")
    session = world.authenticator().authenticate(credential.token)
    assert session.id == credential.session_id
    assert (session.cluster, session.user, session.groups) == ("prod", "deployer",
                                                                ("deployers",))
    assert session.mapping == "deploy" and session.access_request == ""
    assert session.subject == "corp deployer"
    assert session.not_after == credential.expires_at
    assert credential.token not in repr(session)
    assert world.watch.tracked == 1


def test_a_cached_credential_is_still_refused_once_its_session_ends(world: World) -> None:
    credential = world.credential()
    authenticator = world.authenticator()
    first = authenticator.authenticate(credential.token)
    assert authenticator.authenticate(credential.token) is first  # the cache answered
    Revoker(world.sessions, {}, world.clock).revoke_session(first.id, by=None,
                                                            reason=SessionEnd.REVOKED)
    assert world.watch.poll() == [(first.id, "revoked")]
    error = refused(lambda: authenticator.authenticate(credential.token), 403, "SESSION_ENDED")
    assert "revoked" in error.message
    refused(lambda: world.authenticator().authenticate(credential.token), 403, "SESSION_ENDED")


def test_the_end_of_a_session_is_exact_even_inside_the_cache(world: World) -> None:
    credential = world.credential()
    authenticator = world.authenticator()
    authenticator.authenticate(credential.token)
    world.clock.now = credential.expires_at - 1
    authenticator.authenticate(credential.token)
    world.clock.now = credential.expires_at
    refused(lambda: authenticator.authenticate(credential.token), 403, "SESSION_ENDED")


def test_an_expired_credential_is_unauthenticated(world: World) -> None:
    credential = world.credential()
    world.clock.now = credential.expires_at + 60  # past the 30 s leeway
    refused(lambda: world.authenticator().authenticate(credential.token), 401,
            "TOKEN_EXPIRED")


def _tampered(token: str, **claims: object) -> str:
    head, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    body = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{signature}"


def test_a_forged_credential_is_unauthenticated_and_its_text_never_shown(
        world: World) -> None:
    credential = world.credential()
    forged = _tampered(credential.token, sub="admin", groups=["admins"])
    error = refused(lambda: world.authenticator().authenticate(forged), 401, "BAD_SIGNATURE")
    assert forged not in error.message and "admin" not in error.message


def test_a_credential_signed_with_another_key_is_unauthenticated(world: World) -> None:
    credential = world.credential()
    claims = jwt.decode(credential.token, options={"verify_signature": False})
    header = jwt.get_unverified_header(credential.token)
    other = jwt.encode(claims, OTHER_KEY, algorithm="ES256", headers=header)
    refused(lambda: world.authenticator().authenticate(other), 401, "BAD_SIGNATURE")


def test_a_credential_of_another_cluster_is_refused(world: World) -> None:
    credential = world.credential("stager")  # the staging mapping's grant
    refused(lambda: world.authenticator().authenticate(credential.token), 403,
            "WRONG_CLUSTER")


def test_a_genuine_credential_without_a_session_is_unauthenticated(world: World) -> None:
    deploy = MAPPINGS.get("deploy")
    assert deploy is not None
    unrecorded = world.signer.issue(IssueRequest(  # signed as an exchange would, not recorded
        identity=person("deployer"), mapping="deploy", grant=deploy.grant, lifetime=600,
        audiences=(), session_id="never-recorded"), world.credential().cluster)
    refused(lambda: world.authenticator().authenticate(unrecorded.token), 401,
            "UNKNOWN_SESSION")


@pytest.mark.parametrize(("token", "reason"), [
    ("", "MISSING_CREDENTIAL"),
    ("not-a-jwt", "MALFORMED_TOKEN"),
])
def test_a_missing_or_malformed_token_is_unauthenticated(world: World, token: str,
                                                         reason: str) -> None:
    refused(lambda: world.authenticator().authenticate(token), 401, reason)


def test_a_token_of_an_unknown_issuer_says_which_credentials_are_accepted(
        world: World) -> None:
    foreign = jwt.encode({"iss": "https://other.example", "sub": "someone",
                          "aud": "kubernetes", "exp": int(world.clock.now) + 600,
                          "iat": int(world.clock.now)}, OTHER_KEY, algorithm="ES256")
    error = refused(lambda: world.authenticator().authenticate(foreign), 401,
                    "UNKNOWN_ISSUER")
    assert "TokenRequest credentials are not accepted" in error.message


def test_a_token_request_credential_is_told_to_use_a_self_issued_one(world: World) -> None:
    now = int(world.clock.now)
    service_account = jwt.encode({
        "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:web:deployer",
        "aud": ["https://kubernetes.default.svc"], "exp": now + 600, "iat": now, "nbf": now,
        "jti": "0d4c", "kubernetes.io": {"namespace": "web", "serviceaccount": {
            "name": "deployer", "uid": "1"}, "secret": {"name": "kubegate-session-1"}}},
        OTHER_KEY, algorithm="ES256")
    error = refused(lambda: world.authenticator().authenticate(service_account), 401,
                    "USE_SELF_ISSUED")
    assert "self-issued kubegate credential or your ID token" in error.message


def test_a_cache_entry_lives_at_most_cache_seconds(world: World) -> None:
    credential = world.credential()
    authenticator = world.authenticator()
    authenticator.authenticate(credential.token)
    stored = world.sessions.get(credential.session_id)
    assert stored is not None
    world.sessions.replace(dataclasses.replace(stored, ended_at=int(world.clock.now),
                                               end_reason=SessionEnd.REVOKED))
    world.clock.now += CACHE_SECONDS  # no watch tick: the cache alone must let go
    refused(lambda: authenticator.authenticate(credential.token), 403, "SESSION_ENDED")
