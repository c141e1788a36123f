"""One process of benchmark 7's simulated sidecars: `count` real `CredentialKeeper`s (the
sidecar's refresh logic, with its default policy) over real `GrpcExchangePort`s, each with a
GitHub-shaped identity of its own whose token source mints a fresh token per exchange, on a
clock that runs `scale` times faster than real time (the exchanger runs on the same clock).

A reader samples every keeper's served credential (`current()`, what the socket would hand
out) every 50 ms and counts credentials served past their expiry.

    python -m kubegate_bench.sim_sidecars SPEC.json
SPEC: target, ca_file, key_file, first, count, epoch, scale, seconds.
Prints one JSON line: served, expired, unserved, results (per refresh outcome).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubegate.client.settings import ExchangeSettings, TokenSourceConfig
from kubegate_bench.serve import scaled_clock
from kubegate_bench.tokens import BenchIssuer
from sidecar.exchange_port import GrpcExchangePort
from sidecar.keeper import CredentialKeeper
from sidecar.refresh import RefreshPolicy

SAMPLE_EVERY = 0.05


class MintingSource:
    """A fresh token per read, as `--github-actions` fetches one per exchange."""

    def __init__(self, issuer: BenchIssuer, number: int, clock: Any) -> None:
        self._issuer, self._number, self._clock = issuer, number, clock

    @property
    def description(self) -> str:
        return f"simulated job {self._number}"

    def read(self) -> str:
        return self._issuer.mint(subject_suffix=str(self._number), clock=self._clock)

    def fingerprint(self) -> str | None:
        return None


def main() -> None:
    logging.basicConfig(level="ERROR", stream=sys.stderr)
    spec: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    clock = scaled_clock(spec["epoch"], spec["scale"])
    scale = float(spec["scale"])
    issuer = BenchIssuer.load(Path(spec["key_file"]))
    results: Counter[str] = Counter()
    lock = threading.Lock()
    stopping = threading.Event()

    def count(result: str) -> None:
        with lock:
            results[result] += 1

    keepers = [CredentialKeeper(
        MintingSource(issuer, spec["first"] + i, clock),
        GrpcExchangePort(ExchangeSettings(
            target=spec["target"], ca_file=Path(spec["ca_file"]), plaintext=False, role="",
            lifetime=0, audiences=(), token_source=TokenSourceConfig(kind="env"))),
        policy=RefreshPolicy(), clock=clock, on_result=count,
        wait=lambda seconds: stopping.wait(seconds / scale))
        for i in range(spec["count"])]
    end = time.monotonic() + spec["seconds"]
    spread = min(2.0, spec["seconds"] / 5) / max(1, len(keepers))
    for keeper in keepers:  # sidecars do not all start in the same millisecond
        keeper.start()
        time.sleep(spread)
    served = expired = unserved = 0
    while time.monotonic() < end:
        time.sleep(SAMPLE_EVERY)
        now = clock()
        for keeper in keepers:
            credential = keeper.current()
            if credential is None:
                unserved += 1
            else:
                served += 1
                expired += credential.expires_at <= now
    stopping.set()
    for keeper in keepers:
        keeper.stop()
    print(json.dumps({"served": served, "expired": expired, "unserved": unserved,
                      "results": dict(results)}), flush=True)


if __name__ == "__main__":
    main()
