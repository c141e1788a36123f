"""The device authorization grant's client side (RFC 8628): the provider's first answer,
and polling the token endpoint until the person approved, refused, or time ran out.

Rules of this module:
- poll no faster than the provider's `interval` (5 s when it names none, section 3.2);
  `authorization_pending` keeps polling, `slow_down` adds 5 s to the interval for this and
  every later poll (section 3.5);
- `access_denied` and `expired_token` end with a clear error, as does reaching
  `expires_in` (or our own timeout, whichever is first); any other OAuth error ends it too;
- time is injected (`clock`, `sleep`): the rules are tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubegate.login.errors import LoginError, LoginTimeoutError, OAuthError
from kubegate.login.tokens import TokenReply, parse_json_reply
from kubegate.login.transport import Reply

__all__ = ["DeviceAuthorization", "parse_device_authorization", "poll_for_token"]

DEFAULT_INTERVAL = 5
SLOW_DOWN_SECONDS = 5
MAX_INTERVAL = 300


@dataclass(frozen=True, kw_only=True)
class DeviceAuthorization:
    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


def parse_device_authorization(reply: Reply, where: str) -> DeviceAuthorization:
    document = parse_json_reply(reply, where)
    texts = {name: document.get(name) for name in ("device_code", "user_code",
                                                   "verification_uri")}
    missing = [name for name, value in texts.items() if not isinstance(value, str) or not value]
    expires_in, interval = document.get("expires_in"), document.get("interval", DEFAULT_INTERVAL)
    if not _positive(expires_in):
        missing.append("expires_in")
    if missing:
        raise LoginError(f"{where}: the answer has no {', '.join(missing)}")
    complete = document.get("verification_uri_complete", "")
    return DeviceAuthorization(
        device_code=str(texts["device_code"]), user_code=str(texts["user_code"]),
        verification_uri=str(texts["verification_uri"]),
        verification_uri_complete=complete if isinstance(complete, str) else "",
        expires_in=int(expires_in),  # type: ignore[call-overload]
        interval=min(int(interval), MAX_INTERVAL)  # type: ignore[call-overload]
        if _positive(interval) else DEFAULT_INTERVAL)


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def poll_for_token(poll: Callable[[], TokenReply], authorization: DeviceAuthorization, *,
                   timeout: float, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> TokenReply:
    """Call `poll` (one token request, raising `OAuthError` for an error reply) until it
    returns a token, waiting `interval` before each call."""
    deadline = clock() + min(float(authorization.expires_in), timeout)
    interval = float(authorization.interval)
    while True:
        if clock() + interval > deadline:
            raise LoginTimeoutError("the device sign-in was not approved in time; run "
                                    "kubegate login again")
        sleep(interval)
        try:
            return poll()
        except OAuthError as error:
            if error.error == "authorization_pending":
                continue
            if error.error == "slow_down":
                interval += SLOW_DOWN_SECONDS
                continue
            if error.error == "access_denied":
                raise LoginError("the device sign-in was refused (access_denied)") from None
            if error.error == "expired_token":
                raise LoginTimeoutError("the device code expired before the sign-in was "
                                        "approved; run kubegate login again") from None
            raise
