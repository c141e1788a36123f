"""People at the gateway: a person's ID token through the same verifier, the trust mappings of
the fronted cluster, the access gate (approval, windows) and a session in the real SQLite
index that `kubegate sessions list|revoke` see; a revoke reaches the gateway within a second
through a running SessionWatch."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exchanger.access.model import SessionEnd, State
from exchanger.access.revocation import Revoker
from exchanger.gateway.session import GatewayRefusal, GatewaySession
from tests.unit.exchanger.gateway.identity_world import WINDOW, World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def refused(call: Callable[[], GatewaySession], status: int, reason: str) -> GatewayRefusal:
    with pytest.raises(GatewayRefusal) as caught:
        call()
    assert (caught.value.status, caught.value.reason) == (status, reason), caught.value.message
    return caught.value


def test_approval_required_before_approval_then_a_session_with_the_claim_user(
        world: World) -> None:
    token = world.id_token(sub="alice", groups=("oncall",))
    authenticator = world.authenticator()
    error = refused(lambda: authenticator.authenticate(token), 403, "APPROVAL_REQUIRED")
    assert "kubegate access request --role break-glass" in error.message
    request = world.approved_request("alice", duration=1800)
    session = authenticator.authenticate(token)
    assert (session.user, session.groups) == ("oidc:alice@example.com", ("breakglass",))
    assert (session.mapping, session.access_request) == ("break-glass", request.id)
    assert session.not_after == request.ends_at  # before the token's exp (1 h)
    stored = world.sessions.get(session.id)
    assert stored is not None and stored.active and stored.cluster == "prod"
    assert stored.caller.who == "alice@example.com" and stored.access_request == request.id
    assert token not in stored.token_id and stored.token_id.startswith("sha256:")
    used = world.requests.get(request.id)
    assert used is not None and (used.state, used.uses) == (State.ACTIVE, 1)


def test_one_token_one_session_on_every_replica_and_a_new_token_a_new_one(
        world: World) -> None:
    world.approved_request("alice")
    token = world.id_token(sub="alice", groups=("oncall",))
    first = world.authenticator().authenticate(token)
    again = world.authenticator().authenticate(token)  # another replica, same token
    assert again.id == first.id
    other = world.authenticator().authenticate(world.id_token(sub="alice", groups=("oncall",)))
    assert other.id != first.id
    assert len(world.sessions.list(cluster="prod")) == 2
    used = world.requests.get("ar-0123456789abcdef")
    assert used is not None and used.uses == 2  # once per session, not per request


def test_a_revoke_reaches_the_gateway_within_a_second(world: World) -> None:
    request = world.approved_request("alice")
    token = world.id_token(sub="alice", groups=("oncall",))
    authenticator = world.authenticator()
    session = authenticator.authenticate(token)
    ended = threading.Event()
    seen: list[tuple[str, str]] = []
    world.watch.subscribe(lambda sid, why: (seen.append((sid, why)), ended.set()))
    world.watch.start()
    try:
        started = time.monotonic()
        Revoker(world.sessions, {}, world.clock).revoke_request(request.id, by=None)
        assert ended.wait(10), "the watch never reported the revoke"
        elapsed = time.monotonic() - started
    finally:
        world.watch.stop()
    assert seen == [(session.id, SessionEnd.REVOKED.value)]
    assert elapsed < 1.0, f"revoke seen after {elapsed:.2f}s"
    refused(lambda: authenticator.authenticate(token), 403, "SESSION_ENDED")


def test_a_window_mapping_admits_inside_and_refuses_outside(world: World) -> None:
    world.clock.now = WINDOW[0] - 600
    early = world.id_token(sub="vera", groups=("vendors",))
    error = refused(lambda: world.authenticator().authenticate(early), 403, "OUTSIDE_WINDOW")
    assert "next window opens" in error.message
    world.clock.now = WINDOW[1] - 600
    token = world.id_token(sub="vera", groups=("vendors",))  # expires after the window
    session = world.authenticator().authenticate(token)
    assert (session.user, session.groups) == ("oidc:vera@example.com", ("vendor-sre",))
    assert session.not_after == WINDOW[1]
    world.clock.now = WINDOW[1]
    refused(lambda: world.authenticator().authenticate(token), 403, "SESSION_ENDED")
    refused(lambda: world.authenticator().authenticate(
        world.id_token(sub="vera", groups=("vendors",))), 403, "OUTSIDE_WINDOW")


@pytest.mark.parametrize(("groups", "status", "reason"), [
    ((), 403, "NO_MATCHING_MAPPING"),
    (("greedy",), 403, "IMPERSONATION_REFUSED"),  # a grant of system:masters
    (("robots",), 403, "SERVICE_ACCOUNT_GRANT"),
    (("vendors", "greedy"), 403, "AMBIGUOUS_MAPPING"),
])
def test_identities_the_gateway_may_not_act_for(world: World, groups: tuple[str, ...],
                                                status: int, reason: str) -> None:
    token = world.id_token(sub="mallory", groups=groups)
    refused(lambda: world.authenticator().authenticate(token), status, reason)
    assert world.sessions.list() == []


def test_a_token_signed_by_another_key_or_expired_is_unauthenticated(world: World) -> None:
    from tests.unit.exchanger.gateway.identity_world import OTHER_KEY
    forged = world.id_token(sub="vera", groups=("vendors",), key=OTHER_KEY)
    refused(lambda: world.authenticator().authenticate(forged), 401, "BAD_SIGNATURE")
    expired = world.id_token(sub="vera", groups=("vendors",), lifetime=60)
    world.clock.now += 120
    refused(lambda: world.authenticator().authenticate(expired), 401, "TOKEN_EXPIRED")
    assert world.sessions.list() == []


def test_a_token_without_jti_is_kept_as_a_hash_of_the_whole_token(world: World) -> None:
    token = world.id_token(sub="vera", groups=("vendors",), jti=None)
    session = world.authenticator().authenticate(token)
    stored = world.sessions.get(session.id)
    assert stored is not None
    assert stored.token_id == "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def test_a_burst_of_parallel_first_requests_makes_one_session_and_one_use(
        world: World) -> None:
    world.approved_request("alice")
    token = world.id_token(sub="alice", groups=("oncall",))
    authenticator = world.authenticator()
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def first_request() -> None:
        barrier.wait(10)
        ids.append(authenticator.authenticate(token).id)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 8 and len(set(ids)) == 1
    used = world.requests.get("ar-0123456789abcdef")
    assert used is not None and used.uses == 1
    assert len(world.sessions.list()) == 1
