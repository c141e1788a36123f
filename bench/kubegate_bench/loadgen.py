"""One load-generator process of benchmark 1: `threads` threads, each calling one unary
method in a closed loop over one shared TLS channel, with pre-serialized request bytes and no
response parsing, so the client costs the same whichever server it drives.

    python -m kubegate_bench.loadgen SPEC.json

SPEC: target, ca_file, method, requests_file (one request per line, base64), threads, and
where in the file to take requests: the processes of one load walk the file together, in
order and around, from `offset` (process `index` of `step` takes offset+index, then every
step-th one), so that a request comes back only after every other one in the file has been
sent (for subject tokens: after more distinct tokens than the verifier's cache holds).
The process sets up (channel ready, one call), prints `ready`, waits for one line on stdin
holding {"start": wall-clock time, "warmup": s, "duration": s}, runs, and prints one JSON
line: {"count", "latencies_ms", "errors"} for the calls that completed inside the measured
window, and "taken": how many requests it took from the file.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc


def main() -> None:
    spec: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    lines = Path(spec["requests_file"]).read_text().split()
    requests = [base64.b64decode(line) for line in lines]
    first, step = spec["offset"] + spec["index"], spec["step"]
    roots = Path(spec["ca_file"]).read_bytes()
    channel = grpc.secure_channel(spec["target"],
                                  grpc.ssl_channel_credentials(root_certificates=roots))
    grpc.channel_ready_future(channel).result(timeout=30)
    call = channel.unary_unary(spec["method"])  # bytes in, bytes out
    call(requests[(first - step) % len(requests)], timeout=30)  # one behind: never measured
    print("ready", flush=True)
    go = json.loads(sys.stdin.readline())
    offset = time.perf_counter() - time.time()  # wall clock -> perf_counter
    start = go["start"] + offset
    window_start = start + go["warmup"]
    window_end = window_start + go["duration"]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    counter = itertools.count()

    def worker() -> None:
        while True:
            now = time.perf_counter()
            if now >= window_end:
                return
            request = requests[(first + next(counter) * step) % len(requests)]
            try:
                call(request, timeout=30)
            except grpc.RpcError as error:
                errors[str(error.code())] += 1
                continue
            done = time.perf_counter()
            if window_start <= done <= window_end:
                latencies.append((done - now) * 1000)

    delay = start - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    channel.close()
    print(json.dumps({"count": len(latencies), "latencies_ms": latencies,
                      "errors": dict(errors), "taken": next(counter)}), flush=True)


if __name__ == "__main__":
    main()
