"""A benchmark of role-less matching: the cost of one `match` with many mappings against the
cost with few, measured in the same run. The index should keep the ratio near 1 (the target:
10,000 mappings cost at most ~1.5x what 10 cost).

The synthetic mappings look like real GitHub ones: a `repository_id` equals (what the index
files them under), a segment glob on `sub` and an anchored regex on `job_workflow_ref`, plus
a few that only have patterns (the always-evaluated fallback bucket).

Run: `python -m kubegate_bench.mapping_sets [small] [large]`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from exchanger.identity import Identity
from exchanger.mappings.conditions import Condition, Operator
from exchanger.mappings.model import Grant, MappingSet, TrustMapping

_FALLBACK_MAPPINGS = 3
_GRANT = Grant(cluster="default", namespace="ci", service_account="deployer")


@dataclass(frozen=True, kw_only=True)
class MatchBenchmark:
    """Seconds per match with `small` and `large` mappings, and large / small."""

    small: int
    large: int
    small_seconds: float
    large_seconds: float

    @property
    def ratio(self) -> float:
        return self.large_seconds / self.small_seconds


def _mapping(number: int) -> TrustMapping:
    conditions = (
        Condition(path=("repository_id",), operator=Operator.EQUALS, expected=str(number)),
        Condition(path=("sub",), operator=Operator.GLOB,
                  expected=f"repo:org/repo-{number}:environment:*"),
        Condition(path=("job_workflow_ref",), operator=Operator.REGEX,
                  expected=r"org/deploy/\.github/workflows/deploy\.yml@refs/tags/v[0-9]+"),
    )
    return TrustMapping(name=f"repo-{number}", issuer="github", conditions=conditions,
                        grant=_GRANT)


def _fallback(number: int) -> TrustMapping:
    condition = Condition(path=("sub",), operator=Operator.GLOB,
                          expected=f"repo:other/fallback-{number}:ref:*")
    return TrustMapping(name=f"fallback-{number}", issuer="github", conditions=(condition,),
                        grant=_GRANT)


def synthetic_set(count: int) -> MappingSet:
    """`count` indexed mappings plus a few fallback ones, all for issuer `github`."""
    mappings = [_mapping(n) for n in range(count)]
    mappings += [_fallback(n) for n in range(_FALLBACK_MAPPINGS)]
    return MappingSet(mappings=tuple(mappings))


def synthetic_identity(number: int) -> Identity:
    """A GitHub identity that matches exactly `repo-<number>`."""
    claims: dict[str, Any] = {
        "repository_id": str(number),
        "sub": f"repo:org/repo-{number}:environment:production",
        "job_workflow_ref": "org/deploy/.github/workflows/deploy.yml@refs/tags/v3",
    }
    return Identity(issuer="github", issuer_url="https://token.actions.githubusercontent.com",
                    subject=claims["sub"], token_id=None, audiences=("kubegate",),
                    issued_at=0, expires_at=300, claims=claims)


def seconds_per_match(mappings: MappingSet, identity: Identity, *, rounds: int = 2000,
                      repeats: int = 5) -> float:
    """The best of `repeats` timings of `rounds` role-less matches, per match."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            mappings.match(identity)
        best = min(best, time.perf_counter() - started)
    return best / rounds


def compare_match_cost(small: int = 10, large: int = 10_000, *,
                       rounds: int = 2000) -> MatchBenchmark:
    """Time role-less matching with `small` and with `large` mappings."""
    timings = []
    for count in (small, large):
        mappings = synthetic_set(count)
        timings.append(seconds_per_match(mappings, synthetic_identity(count // 2),
                                         rounds=rounds))
    return MatchBenchmark(small=small, large=large, small_seconds=timings[0],
                          large_seconds=timings[1])


def main(argv: list[str]) -> None:
    sizes = [int(arg) for arg in argv[:2]]
    result = compare_match_cost(*sizes)
    print(f"match with {result.small}: {result.small_seconds * 1e6:.1f} us; "
          f"with {result.large}: {result.large_seconds * 1e6:.1f} us; "
          f"ratio {result.ratio:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
