"""Benchmark 4: one role-less mapping match with 10,000 mappings against 10 (at most 1.5x):
`kubegate_bench.mapping_sets` builds GitHub-like synthetic sets (the index files them by issuer
and `repository_id`; a few pattern-only mappings are always evaluated)."""

from __future__ import annotations

from kubegate_bench.common import Context, Outcome, Row
from kubegate_bench.mapping_sets import seconds_per_match, synthetic_identity, synthetic_set

TITLE = "mapping match: 10,000 mappings vs 10"
SMALL, LARGE = 10, 10_000
MAX_RATIO = 1.5


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="4", title=TITLE)
    sets = {count: (synthetic_set(count), synthetic_identity(count // 2))
            for count in (SMALL, LARGE)}
    best = {SMALL: float("inf"), LARGE: float("inf")}
    for _ in range(ctx.sizes.repeats):  # interleaved: drift hits both sizes alike
        for count, (mappings, identity) in sets.items():
            seconds = seconds_per_match(mappings, identity, rounds=ctx.sizes.match_rounds,
                                        repeats=1)
            best[count] = min(best[count], seconds)
    outcome.rows.append(Row(
        bench="4", name=f"match with {LARGE:,} mappings", value=best[LARGE] * 1e6, unit="us",
        baseline=f"match with {SMALL} mappings", baseline_value=best[SMALL] * 1e6,
        check="ratio<=", target=MAX_RATIO))
    outcome.data = {"small": SMALL, "large": LARGE,
                    "us": {str(count): seconds * 1e6 for count, seconds in best.items()}}
    return outcome
