"""`kubegate serve` for experiments the real command does not offer: a clock running
`--time-scale` times faster than real time (benchmark 7 compresses credential lifetimes this
way; every party of the run uses the same `scaled_clock`), and `--no-audit-fsync` (for the
diagnosis in FINDINGS.md only: it shows what the audit log's fsync costs; the benchmarks
never use it).

    python -m kubegate_bench.serve --config FILE [--time-scale K --epoch T] [--no-audit-fsync]

Prints `gRPC: 127.0.0.1:PORT`, like `kubegate serve`, and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


def scaled_clock(epoch: float, scale: float) -> Callable[[], float]:
    """Wall-clock time that runs `scale` times faster from `epoch` on."""
    def clock() -> float:
        now = time.time()
        return epoch + (now - epoch) * scale

    return clock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--epoch", type=float, default=0.0)
    parser.add_argument("--no-audit-fsync", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING", stream=sys.stderr)
    from exchanger import server
    from exchanger.config import load_config

    if args.no_audit_fsync:
        setattr(server, "AuditLog",  # noqa: B010 - replaces the class for this process
                functools.partial(server.AuditLog, fsync=False))  # type: ignore[attr-defined]
    clock = scaled_clock(args.epoch or time.time(), args.time_scale)
    running = server.start_exchanger(load_config(args.config), clock=clock)
    print(f"gRPC: 127.0.0.1:{running.port} (TLS)", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    running.stop(grace=1)


if __name__ == "__main__":
    main()
