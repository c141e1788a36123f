"""Hypothesis profiles for the fuzz properties (tests/unit/exchanger/test_fuzz.py).

`KUBEGATE_FUZZ_PROFILE` picks one: `ci` (the default: a bounded run that fits the suite's time
budget) or `long` (20,000 examples per property, for a run before a release or after touching
the parser, verifier or matcher). The profile is applied per test through `FUZZ`, never loaded
globally, so other hypothesis tests keep their own settings.

The deadline is per example: "no input takes long" is part of every property. It is set far
above what an example costs (well under 10 ms) so that a loaded CI machine does not flake, and
far below what a pathological input (quadratic parsing, regex backtracking) would take.
"""

from __future__ import annotations

import datetime
import os

from hypothesis import HealthCheck, settings

PROFILE_VARIABLE = "KUBEGATE_FUZZ_PROFILE"
DEADLINE = datetime.timedelta(seconds=1)

settings.register_profile(
    "ci", max_examples=250, deadline=DEADLINE, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=20_000, deadline=DEADLINE, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

PROFILE = os.environ.get(PROFILE_VARIABLE, "ci")
FUZZ = settings.get_profile(PROFILE)
"""Decorate a property with `@FUZZ` (above `@given`) to run it under the chosen profile."""
