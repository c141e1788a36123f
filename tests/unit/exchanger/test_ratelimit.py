"""The per-identity rate limiter: a token bucket per (issuer, subject), refused at once, bounded
memory; and its configuration (`rateLimit.perIdentity`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchanger.audit.record import AuditRecord
from exchanger.config import Config, build_config
from exchanger.exchange import ExchangeInput, Exchanger
from exchanger.identity import Identity
from exchanger.ratelimit import IdentityRateLimiter, RateLimit
from kubegate.errors import ConfigError, PermissionDeniedError, RateLimitedError

NOW = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def identity(subject: str = "repo:octo-org/a:ref:refs/heads/main",
             issuer: str = "github") -> Identity:
    return Identity(issuer=issuer, issuer_url="https://issuer.example", subject=subject,
                    token_id=None, audiences=("kubegate",), issued_at=int(NOW) - 10,
                    expires_at=int(NOW) + 300, claims={"sub": subject})


def spend(limiter: IdentityRateLimiter, who: Identity, times: int) -> int:
    """How many of `times` exchanges were allowed."""
    allowed = 0
    for _ in range(times):
        try:
            limiter.check(who)
        except RateLimitedError:
            continue
        allowed += 1
    return allowed


def test_a_burst_is_allowed_then_refused_with_resource_exhausted() -> None:
    limiter = IdentityRateLimiter(RateLimit(rate=1, burst=3), Clock())
    assert spend(limiter, identity(), 3) == 3
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(identity())
    assert refused.value.reason == "RATE_LIMITED"
    assert refused.value.code.name == "RESOURCE_EXHAUSTED"


def test_the_bucket_refills_at_the_rate_and_never_beyond_the_burst() -> None:
    clock = Clock()
    limiter = IdentityRateLimiter(RateLimit(rate=2, burst=3), clock)
    assert spend(limiter, identity(), 10) == 3
    clock.now += 1.0  # two more
    assert spend(limiter, identity(), 10) == 2
    clock.now += 3600  # idle for an hour: full again, not 7200
    assert spend(limiter, identity(), 10) == 3


def test_identities_have_separate_buckets() -> None:
    limiter = IdentityRateLimiter(RateLimit(rate=1, burst=2), Clock())
    assert spend(limiter, identity("flooder"), 50) == 2
    assert spend(limiter, identity("quiet"), 2) == 2
    assert spend(limiter, identity("flooder", issuer="gitlab"), 2) == 2


def test_a_clock_going_backwards_refills_nothing() -> None:
    clock = Clock()
    limiter = IdentityRateLimiter(RateLimit(rate=100, burst=1), clock)
    assert spend(limiter, identity(), 1) == 1
    clock.now -= 3600
    assert spend(limiter, identity(), 1) == 0
    clock.now = NOW + 0.02  # back in the present: refilled, but never beyond the burst
    assert spend(limiter, identity(), 2) == 1


def test_memory_is_bounded_least_recently_used_first() -> None:
    limiter = IdentityRateLimiter(RateLimit(rate=1, burst=1), Clock(), max_identities=3)
    for name in ("a", "b", "c"):
        limiter.check(identity(name))
    limiter.check(identity("d"))  # evicts a
    assert limiter.tracked() == 3
    with pytest.raises(RateLimitedError):
        limiter.check(identity("b"))  # b is still tracked: its bucket is empty
    assert spend(limiter, identity("a"), 1) == 1  # a was forgotten: a new, full bucket


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1),
                                             (float("nan"), 1), (True, 1), (1, 0), (1, 1.5)])
def test_rate_limit_refuses_bad_values(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimit(rate=rate, burst=burst)


def config(document: dict[str, object]) -> Config:
    return build_config(document, base=Path("/tmp"), environ={}, source="test.yaml")


def test_rate_limit_defaults_are_generous() -> None:
    limit = config({}).rate_limit
    assert (limit.rate, limit.burst) == (10.0, 100)


def test_rate_limit_is_configured_per_identity() -> None:
    limit = config({"rateLimit": {"perIdentity": {"rate": "120/m", "burst": 5}}}).rate_limit
    assert (limit.rate, limit.burst) == (2.0, 5)


@pytest.mark.parametrize(("section", "problem"), [
    ({"perIdentity": {"rate": 0}}, "rateLimit.perIdentity: rate must be a positive"),
    ({"perIdentity": {"rate": "fast"}}, "rateLimit.perIdentity.rate: expected a rate"),
    ({"perIdentity": {"burst": 0}}, "rateLimit.perIdentity: burst must be"),
    ({"perIdentity": {"rate": 1, "window": 2}}, "rateLimit.perIdentity.window: unknown field"),
    ({"global": {}}, "rateLimit.global: unknown field"),
])
def test_bad_rate_limit_configuration_is_reported_with_its_field(
        section: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config({"rateLimit": section})
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def test_cluster_request_timeout_is_read_in_seconds() -> None:
    cluster = {"name": "c", "server": "https://127.0.0.1:1", "backend": "selfIssued"}
    document = {"clusters": [cluster | {"requestTimeout": "2s"}],
                "selfIssued": {"listen": "127.0.0.1:1"}}
    assert config(document).clusters[0].request_timeout == 2.0
    with pytest.raises(ConfigError, match="requestTimeout"):
        config(document | {"clusters": [cluster | {"requestTimeout": "0s"}]})


class Verifier:
    def verify(self, token: str) -> Identity:
        return identity(subject=token)


class Matcher:
    def __init__(self) -> None:
        self.asked = 0

    def match(self, who: Identity, role: str | None = None) -> object:
        self.asked += 1
        raise PermissionDeniedError("NO_MATCHING_MAPPING", "no mapping in this test")


class Audit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)


def test_the_exchange_refuses_an_identity_over_its_limit_before_matching_and_audits_it() -> None:
    matcher, audit = Matcher(), Audit()
    use_case = Exchanger(verifier=Verifier(), mappings=matcher, backends={},  # type: ignore[arg-type]
                         audit=audit, clock=Clock(),
                         limiter=IdentityRateLimiter(RateLimit(rate=1, burst=1), Clock()))
    with pytest.raises(PermissionDeniedError):
        use_case.exchange(ExchangeInput(subject_token="flooder"))
    with pytest.raises(RateLimitedError):
        use_case.exchange(ExchangeInput(subject_token="flooder"))
    with pytest.raises(PermissionDeniedError):
        use_case.exchange(ExchangeInput(subject_token="someone else"))
    assert matcher.asked == 2
    assert [(r.decision, r.reason, r.status, r.caller.sub) for r in audit.records] == [
        ("deny", "NO_MATCHING_MAPPING", "PERMISSION_DENIED", "flooder"),
        ("deny", "RATE_LIMITED", "RESOURCE_EXHAUSTED", "flooder"),
        ("deny", "NO_MATCHING_MAPPING", "PERMISSION_DENIED", "someone else"),
    ]
