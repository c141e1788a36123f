"""The credential keeper, driven by a fake clock and a fake exchange port: it refreshes at
half life, rides out an exchanger outage on the cached credential, never loops on a denial,
stops serving shortly before expiry, and reads the token file again for every exchange."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubegate.client.sources import FileTokenSource, SubjectTokenSource
from kubegate.credential import ClusterInfo, Credential
from kubegate.errors import Code, ExchangeError
from sidecar.keeper import CredentialKeeper
from sidecar.refresh import RefreshPolicy

START = 1_700_000_000.0
LIFETIME = 600
SUBJECT_TOKEN = "subject-token-1"
POLICY = RefreshPolicy(fraction=0.5, jitter=0.1, min_remaining=30, backoff_initial=1,
                       backoff_max=60, denial_backoff=300)
UNAVAILABLE = ExchangeError(Code.UNAVAILABLE, "", "failed to connect")
DENIED = ExchangeError(Code.PERMISSION_DENIED, "NO_MATCHING_MAPPING",
                       "no trust mapping allows this exchange")


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def at(self, offset: float) -> None:
        self.now = START + offset


@dataclass
class Call:
    at: float  # seconds after START
    token: str
    timeout: float


@dataclass
class FakePort:
    """Issues LIFETIME-second credentials, or raises what failure(offset) returns."""

    clock: FakeClock
    failure: Callable[[float], ExchangeError | None] = lambda offset: None
    calls: list[Call] = field(default_factory=list)

    def exchange(self, subject_token: str, *, timeout: float) -> Credential:
        offset = self.clock.now - START
        self.calls.append(Call(offset, subject_token, timeout))
        error = self.failure(offset)
        if error is not None:
            raise error
        return credential(self.clock.now + LIFETIME, f"session-{len(self.calls)}")


class FakeSource:
    def __init__(self, token: str = SUBJECT_TOKEN) -> None:
        self.token = token

    @property
    def description(self) -> str:
        return "a fake"

    def read(self) -> str:
        return self.token

    def fingerprint(self) -> str | None:
        return self.token


def credential(expires_at: float, session_id: str) -> Credential:
    return Credential(
        token=f"issued-{session_id}", token_type="urn:ietf:params:oauth:token-type:jwt",
        expires_at=int(expires_at), token_id=f"jti-{session_id}", session_id=session_id,
        mapping="ci-deploys-web",
        cluster=ClusterInfo(name="test", server="https://127.0.0.1:6443",
                            certificate_authority_data=b"", namespace="web",
                            service_account="deployer", user="", groups=()))


class Simulation:
    """Runs keeper.run() on simulated time, noting what callers would see at each wake."""

    def __init__(self, failure: Callable[[float], ExchangeError | None],
                 source: SubjectTokenSource, policy: RefreshPolicy) -> None:
        self.clock = FakeClock()
        self.port = FakePort(self.clock, failure)
        self.horizon = 0.0
        self.waits: list[float] = []
        self.served: list[tuple[float, str | None]] = []
        self.keeper = CredentialKeeper(source, self.port, policy=policy, clock=self.clock,
                                       random=lambda: 0.5, wait=self._wait,
                                       exchange_timeout=3.0, initial_timeout=10.0,
                                       token_poll=10.0)

    def _wait(self, delay: float) -> bool:
        assert delay > 0 or len(self.waits) < 10_000, "busy loop"
        self.waits.append(delay)
        self.clock.now += delay
        current = self.keeper.current()
        self.served.append((self.clock.now - START, current.session_id if current else None))
        return self.clock.now - START >= self.horizon

    def run_until(self, offset: float) -> None:
        self.horizon = offset
        self.keeper.run()


def simulate(failure: Callable[[float], ExchangeError | None] = lambda offset: None, *,
             source: SubjectTokenSource | None = None,
             policy: RefreshPolicy = POLICY) -> Simulation:
    return Simulation(failure, source or FakeSource(), policy)


def test_exchanges_at_start_then_refreshes_at_half_life() -> None:
    sim = simulate()
    sim.run_until(1000)
    assert [call.at for call in sim.port.calls] == [0, 300, 600, 900]
    assert sim.keeper.current() is not None
    assert sim.keeper.current().session_id == "session-4"  # type: ignore[union-attr]


def test_refresh_uses_the_short_timeout_only_while_a_credential_is_cached() -> None:
    sim = simulate()
    sim.run_until(400)
    assert [call.timeout for call in sim.port.calls] == [10.0, 3.0]


def test_transient_failures_back_off_while_the_cached_credential_is_served() -> None:
    sim = simulate(lambda t: UNAVAILABLE if 250 <= t < 500 else None)
    sim.run_until(560)

    during = [call.at for call in sim.port.calls if 250 <= call.at < 500]
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert during[0] == 300
    assert gaps == sorted(gaps) and gaps[0] < 1 and max(gaps) == 45  # 0.75 s .. capped 60*0.75
    assert len(during) < 15
    # the credential from t=0 (expires at 600, served until 570) was served throughout
    assert all(session == "session-1" for t, session in sim.served if t < 500)
    # and refreshing resumed after the outage
    assert sim.port.calls[-1].at >= 500
    assert sim.keeper.current().session_id == f"session-{len(sim.port.calls)}"  # type: ignore[union-attr]
    assert sim.keeper.state().status == "ready"


def test_during_an_outage_the_state_says_refresh_failing_but_ready() -> None:
    sim = simulate(lambda t: UNAVAILABLE if t >= 250 else None)
    sim.run_until(400)
    state = sim.keeper.state()
    assert state.ready and state.status == "refresh-failing"
    assert state.last_error is not None and "UNAVAILABLE" in state.last_error


def test_a_denial_is_not_retried_in_a_loop() -> None:
    sim = simulate(lambda t: DENIED)
    sim.run_until(3 * 3600)
    # one attempt at start, then one per denial back-off (5 min): 36 in three hours
    assert [call.at for call in sim.port.calls] == [300.0 * n for n in range(36)]
    state = sim.keeper.state()
    assert not state.ready and state.status == "denied"
    assert state.last_error is not None and "NO_MATCHING_MAPPING" in state.last_error


def test_a_denied_token_is_tried_again_soon_after_it_is_replaced() -> None:
    source = FakeSource("denied-token")
    sim = simulate(lambda t: DENIED if t < 100 else None, source=source)
    sim.run_until(95)
    assert len(sim.port.calls) == 1
    source.token = "rotated-token"
    sim.run_until(120)
    assert [call.token for call in sim.port.calls] == ["denied-token", "rotated-token"]
    assert sim.port.calls[1].at <= 95 + 10  # within one token poll, not after 5 min
    assert sim.keeper.state().ready


def test_serving_stops_min_remaining_before_expiry() -> None:
    sim = simulate(lambda t: UNAVAILABLE if t > 0 else None)
    sim.keeper.step()
    sim.clock.at(LIFETIME - 31)
    assert sim.keeper.current() is not None
    assert sim.keeper.state().ready
    sim.clock.at(LIFETIME - 30)
    assert sim.keeper.current() is None
    state = sim.keeper.state()
    assert not state.ready
    assert state.expires_in == pytest.approx(30)


def test_an_outage_longer_than_the_credential_ends_in_not_ready() -> None:
    sim = simulate(lambda t: UNAVAILABLE if t > 0 else None)
    sim.run_until(700)
    last_served = max(t for t, session in sim.served if session is not None)
    assert last_served < LIFETIME - 30
    assert sim.served[-1][1] is None
    assert sim.keeper.state().status == "unavailable"


def test_the_token_file_is_read_again_for_every_exchange(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    sim = simulate(source=FileTokenSource(token_file))
    sim.run_until(100)
    token_file.write_text("rotated-token\n")  # the kubelet rotates the projected token
    sim.run_until(400)
    assert [call.token for call in sim.port.calls] == ["first-token", "rotated-token"]


def test_a_missing_token_file_is_tried_again_when_it_appears(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    sim = simulate(source=FileTokenSource(token_file))
    sim.run_until(200)
    assert sim.port.calls == []
    state = sim.keeper.state()
    assert state.status == "no-subject-token" and not state.ready
    assert state.last_error is not None and "no such file" in state.last_error
    token_file.write_text("late-token")
    sim.run_until(215)
    assert [call.token for call in sim.port.calls] == ["late-token"]
    assert sim.keeper.state().ready


def test_one_log_line_per_condition_not_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kubegate.sidecar")
    sim = simulate(lambda t: UNAVAILABLE if t < 600 else None)
    sim.run_until(700)
    assert len(sim.port.calls) > 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "UNAVAILABLE" in warnings[0].getMessage()
    assert "not ready" in warnings[0].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and infos[0].startswith("recovered")


def test_log_lines_never_hold_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim = simulate(lambda t: DENIED if 250 <= t < 400 else None)
    sim.run_until(1000)
    text = caplog.text
    assert "session-1" in text
    assert "subject-token-1" not in text and "issued-session" not in text


def test_an_internal_error_is_not_retried_in_a_loop_either() -> None:
    internal = ExchangeError(Code.INTERNAL, "", "internal error (log id 7)")
    sim = simulate(lambda t: internal)
    sim.run_until(3600)
    assert [call.at for call in sim.port.calls] == [300.0 * n for n in range(12)]
    state = sim.keeper.state()
    assert state.status == "failed" and "INTERNAL" in (state.last_error or "")


# -- a credential the API server refuses (the proxy saw a 401) --------------------------------


def started(failure: Callable[[float], ExchangeError | None] = lambda offset: None,
            at: float = 100) -> Simulation:
    """A keeper that got session-1 at START and is now at offset `at`."""
    sim = simulate(failure)
    sim.keeper.step()
    sim.clock.at(at)
    return sim


def test_a_refused_credential_is_not_served_and_replaced_by_one_immediate_exchange() -> None:
    sim = started()
    sim.keeper.refused_by_apiserver("session-1")
    assert sim.keeper.current() is None
    state = sim.keeper.state()
    assert not state.ready and state.status == "revoked"
    assert "refused the credential of session session-1" in (state.last_error or "")
    assert sim.keeper.step() > 0
    assert [call.at for call in sim.port.calls] == [0, 100]  # at once, not at half life
    assert sim.keeper.current().session_id == "session-2"  # type: ignore[union-attr]
    assert sim.keeper.state().status == "ready"


def test_repeated_refusals_do_not_loop_the_exchange() -> None:
    sim = started()
    for _ in range(50):  # fifty kubectl calls all answered 401
        sim.keeper.refused_by_apiserver("session-1")
    sim.keeper.step()
    for _ in range(50):  # and the new credential refused too (an exchanger misconfigured)
        sim.keeper.refused_by_apiserver("session-2")
    sim.keeper.step()
    assert [call.at for call in sim.port.calls] == [0, 100]  # the second one waits 30 s
    assert sim.keeper.state().status == "revoked"
    sim.run_until(200)
    assert [call.at for call in sim.port.calls][:3] == [0, 100, 130]


def test_a_refusal_of_an_older_credential_is_ignored() -> None:
    sim = started(at=300)
    sim.keeper.step()  # the refresh at half life: session-2 is the cached one
    sim.keeper.refused_by_apiserver("session-1")  # a watch that began with session-1
    sim.keeper.step()
    assert len(sim.port.calls) == 2
    assert sim.keeper.state().status == "ready"
    assert sim.keeper.current().session_id == "session-2"  # type: ignore[union-attr]


def test_a_refused_credential_stays_unserved_while_the_exchanger_is_down() -> None:
    sim = started(lambda t: UNAVAILABLE if t >= 100 else None)
    sim.keeper.refused_by_apiserver("session-1")
    sim.run_until(200)
    assert len(sim.port.calls) > 2 and sim.port.calls[1].at == 100
    assert all(session is None for _, session in sim.served)
    state = sim.keeper.state()
    assert not state.ready and state.status == "unavailable"
    assert "refused" in (state.last_error or "") and "UNAVAILABLE" in (state.last_error or "")


def test_a_refusal_wakes_the_sleeping_keeper_thread() -> None:
    clock = FakeClock()
    port = FakePort(clock)
    keeper = CredentialKeeper(FakeSource(), port, policy=POLICY, clock=clock)
    keeper.start()
    try:
        assert wait_until(lambda: len(port.calls) == 1)
        keeper.refused_by_apiserver("session-1")
        assert wait_until(lambda: len(port.calls) == 2)  # not 300 s later
        assert wait_until(lambda: keeper.state().ready)
    finally:
        keeper.stop(2.0)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
