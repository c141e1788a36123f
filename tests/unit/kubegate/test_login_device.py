"""The device grant's polling (RFC 8628 section 3.4-3.5), with a clock that only moves when
the code sleeps: pending keeps polling, slow_down adds 5 s for good, denied and expired end."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from kubegate.login.device import (
    DeviceAuthorization,
    parse_device_authorization,
    poll_for_token,
)
from kubegate.login.errors import LoginError, LoginTimeoutError, OAuthError
from kubegate.login.tokens import TokenReply
from kubegate.login.transport import Reply

TOKEN = TokenReply(id_token="id.token.value", refresh_token="refresh")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def authorization(*, interval: int = 5, expires_in: int = 600) -> DeviceAuthorization:
    return DeviceAuthorization(device_code="device-code", user_code="ABCD-EFGH",
                               verification_uri="https://id.example.com/device",
                               verification_uri_complete="", expires_in=expires_in,
                               interval=interval)


def answers(*errors: str) -> Callable[[], TokenReply]:
    """A token endpoint that answers each error in turn, then the token."""
    queue = list(errors)

    def poll() -> TokenReply:
        if queue:
            raise OAuthError("the device sign-in", queue.pop(0))
        return TOKEN
    return poll


def test_pending_keeps_polling_at_the_interval() -> None:
    clock = Clock()
    reply = poll_for_token(answers("authorization_pending", "authorization_pending"),
                           authorization(interval=7), timeout=300, clock=clock,
                           sleep=clock.sleep)
    assert reply is TOKEN and clock.sleeps == [7, 7, 7]


def test_slow_down_adds_five_seconds_to_every_later_poll() -> None:
    clock = Clock()
    poll_for_token(answers("authorization_pending", "slow_down", "authorization_pending",
                           "slow_down"), authorization(), timeout=300, clock=clock,
                   sleep=clock.sleep)
    assert clock.sleeps == [5, 5, 10, 10, 15]


@pytest.mark.parametrize(("error", "kind", "words"), [
    ("access_denied", LoginError, "refused"),
    ("expired_token", LoginTimeoutError, "expired"),
    ("invalid_client", OAuthError, "invalid_client"),
])
def test_denied_expired_and_other_errors_end_the_wait(error: str, kind: type[Exception],
                                                      words: str) -> None:
    clock = Clock()
    with pytest.raises(kind, match=words):
        poll_for_token(answers("authorization_pending", error), authorization(),
                       timeout=300, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [5, 5]


def test_polling_stops_at_expires_in_or_the_timeout_whichever_is_first() -> None:
    for expires_in, timeout, polls in ((30, 300, 6), (600, 12, 2)):
        clock = Clock()
        with pytest.raises(LoginTimeoutError, match="not approved in time"):
            poll_for_token(answers(*["authorization_pending"] * 1000),
                           authorization(expires_in=expires_in), timeout=timeout,
                           clock=clock, sleep=clock.sleep)
        assert len(clock.sleeps) == polls


def reply(**document: object) -> Reply:
    return Reply(status=200, body=json.dumps(document).encode())


def test_the_first_answer_gives_codes_uris_and_the_default_interval() -> None:
    parsed = parse_device_authorization(reply(
        device_code="d", user_code="U-C", verification_uri="https://x/device",
        verification_uri_complete="https://x/device?user_code=U-C", expires_in=300), "w")
    assert (parsed.user_code, parsed.interval, parsed.expires_in) == ("U-C", 5, 300)
    assert parsed.verification_uri_complete.endswith("U-C") and "d" not in repr(parsed)[:13]


def test_a_first_answer_without_what_is_needed_is_refused() -> None:
    with pytest.raises(LoginError, match="no device_code, expires_in"):
        parse_device_authorization(reply(user_code="U", verification_uri="https://x"), "w")
