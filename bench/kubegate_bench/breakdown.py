"""Where one self-issued exchange spends its CPU, stage by stage, in-process (no gRPC): the
diagnosis behind benchmark 1 in FINDINGS.md.

    PYTHONPATH=bench:. python -m kubegate_bench.breakdown [rounds]

It starts benchmark 1's exchanger configuration in this process, takes the `Exchanger` it
builds, and times each stage on its own (best of 5): verification of a fresh RS256 token,
matching, issuing (ES256), building the audit record, appending it (with and without fsync),
the servicer's protobuf conversions, and the whole `Exchanger.exchange`.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exchanger import server
from exchanger.audit.log import AuditLog
from exchanger.audit.record import Caller, allow_record
from exchanger.backends.base import IssueRequest
from exchanger.config import load_config
from exchanger.exchange import ExchangeInput, grant_record
from exchanger.service import to_input, to_response
from exchanger.v1 import exchange_pb2
from kubegate_bench import b1_throughput
from kubegate_bench.common import best_per_call
from kubegate_bench.tokens import BenchIssuer


def main(rounds: int = 1000) -> None:
    captured: list[Any] = []

    class Capturing(server.Exchanger):  # type: ignore[misc, name-defined]
        def __init__(self, **parts: Any) -> None:
            super().__init__(**parts)
            captured.append(self)

    setattr(server, "Exchanger", Capturing)  # noqa: B010 - this process only
    folder = Path(tempfile.mkdtemp(prefix="kubegate-breakdown-"))
    issuer = BenchIssuer()
    running = server.start_exchanger(load_config(b1_throughput._config(issuer, folder)))
    try:
        _report(captured[0], issuer, folder, rounds)
    finally:
        running.stop(grace=0)


def _report(exchanger: Any, issuer: BenchIssuer, folder: Path, rounds: int) -> None:
    tokens = itertools.cycle([issuer.mint() for _ in range(4500)])  # > the verifier's cache
    verifier, mappings = exchanger._verifier, exchanger._mappings
    bench_backend = exchanger._backends["bench"]
    identity = verifier.verify(next(tokens))
    mapping = mappings.match(identity)
    request = IssueRequest(identity=identity, mapping=mapping.name, grant=mapping.grant,
                           lifetime=900, audiences=(), session_id=str(uuid.uuid4()))
    credential = bench_backend.issue(request)
    now = datetime.datetime.now(datetime.UTC)

    def record() -> Any:
        return allow_record(
            now=now, caller=Caller(iss=identity.issuer_url, sub=identity.subject,
                                   jti=identity.token_id or ""),
            issuer=identity.issuer, mapping=mapping.name,
            grant=grant_record(mapping.grant, 900, ()), token_id=credential.token_id,
            session_id=credential.session_id, expires_at=now, peer="ipv4:127.0.0.1:5000",
            detail=f"bound to {credential.bound_to}")

    synced, unsynced = AuditLog(folder / "a.log"), AuditLog(folder / "b.log", fsync=False)
    wire = exchange_pb2.ExchangeRequest(subject_token=next(tokens))
    stages: dict[str, Callable[[], object]] = {
        "verify (RS256, not cached)": lambda: verifier.verify(next(tokens)),
        "match": functools.partial(mappings.match, identity),
        "issue (ES256 JWT)": functools.partial(bench_backend.issue, request),
        "audit record (build + sanitize)": record,
        "audit append, fsync": lambda: synced.append(record()),
        "audit append, no fsync": lambda: unsynced.append(record()),
        "servicer protobuf in + out": lambda: (to_input(wire, "peer"),
                                                to_response(credential, mapping)),
        "Exchanger.exchange, whole": lambda: exchanger.exchange(
            ExchangeInput(subject_token=next(tokens), peer="ipv4:127.0.0.1:5000")),
    }
    print(f"{'stage':36s} {'us':>8s}")
    for name, call in stages.items():
        call()
        print(f"{name:36s} {best_per_call(call, rounds, 5) * 1e6:8.1f}", flush=True)
    synced.close()
    unsynced.close()
    print(f"(wall time per call, best of 5 x {rounds}; audit lines include building the "
          f"record; {time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
