"""Benchmark 5: the sidecar, run as `kubegate sidecar` against the tokenRequest exchanger with
a pod's token file, and with its API proxy on.

- credential over the socket: GET /v1/credential (header `X-Kubegate-Request: true`), a new
  connection each time as `kubegate credential` makes; p99 at most 1 ms. Floor: the standard
  library's HTTP server on a Unix socket with a body of the same size.
- `kubegate credential --socket PATH` (the console script kubectl would run) cold start: at
  most 3x a bare `python -c pass` (median of alternating runs).
- `kubectl get pods` through the proxy against kubectl straight to the apiserver with the same
  token: at most 1.15x (median of alternating runs; separate discovery caches, both warm).

The sidecar's RSS after `idle_seconds` of idling (ready, nothing asked) feeds benchmark 6, for
the gRPC route and for a second sidecar exchanging over the RFC 8693 HTTPS endpoint
(`--server https://...`, which never imports gRPC).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubegate.commands.credential import get
from kubegate_bench.common import Context, Outcome, Row, median, percentile, thin
from kubegate_bench.kube_env import KubeEnv
from kubegate_bench.procs import (
    KUBEGATE,
    PYTHON,
    Process,
    free_port,
    rss_mib,
    start_process,
    wait_for_line,
)

TITLE = "sidecar: socket, credential plugin cold start, API proxy"
MAX_SOCKET_P99_MS, MAX_COLD_START, MAX_PROXY = 1.0, 3.0, 1.15
BLOCK = 50


def run(ctx: Context, env: KubeEnv) -> Outcome:
    outcome = Outcome(bench="5", title=TITLE)
    folder = ctx.work / "b5"
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "token"
    token_file.write_text(env.pod_token)
    token_file.chmod(0o600)
    socket_path, proxy_port = folder / "run" / "kubegate.sock", free_port()
    sidecar = start_process("b5-sidecar", [
        *KUBEGATE, "sidecar", "--server", env.exchanger.target,
        "--ca-file", str(env.exchanger.ca_file), "--token-file", str(token_file),
        "--socket", str(socket_path), "--proxy-listen", f"127.0.0.1:{proxy_port}",
        "--log-level", "WARNING"], folder)
    https_socket = folder / "run-https" / "kubegate.sock"
    https_sidecar = start_process("b5-sidecar-https", [
        *KUBEGATE, "sidecar", "--server", env.https_url,
        "--ca-file", str(env.exchanger.ca_file), "--token-file", str(token_file),
        "--socket", str(https_socket), "--log-level", "WARNING"], folder)
    floor: Process | None = None
    try:
        _wait_ready(sidecar, str(socket_path))
        _wait_ready(https_sidecar, str(https_socket))
        time.sleep(ctx.sizes.idle_seconds)
        outcome.data["sidecar_idle_rss_mib"] = rss_mib(sidecar.popen.pid)
        outcome.data["sidecar_https_idle_rss_mib"] = rss_mib(https_sidecar.popen.pid)
        https_sidecar.stop()
        body = _credential_body(str(socket_path))
        floor_socket = folder / "floor.sock"
        floor = start_process("b5-floor", [PYTHON, "-m", "kubegate_bench.unix_http",
                                           "--socket", str(floor_socket),
                                           "--body-bytes", str(len(body))], folder)
        wait_for_line(floor, re.compile("listening"))
        _socket_rows(ctx, outcome, str(socket_path), str(floor_socket))
        _cold_start_rows(ctx, outcome, str(socket_path))
        token = json.loads(body)["token"]
        _proxy_rows(ctx, outcome, env, token, proxy_port, folder)
        outcome.data["sidecar_rss_after_mib"] = rss_mib(sidecar.popen.pid)
    finally:
        if floor is not None:
            floor.stop()
        https_sidecar.stop()
        sidecar.stop()
    return outcome


def _wait_ready(sidecar: Process, socket_path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sidecar.popen.poll() is not None:
            raise RuntimeError(f"the sidecar exited:\n{sidecar.log_tail()}")
        try:
            if get(socket_path, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the sidecar did not become ready:\n{sidecar.log_tail()}")


def _credential_body(socket_path: str) -> bytes:
    status, body = get(socket_path, "/v1/credential")
    if status != 200:
        raise RuntimeError(f"GET /v1/credential answered {status}: {body[:200]!r}")
    return body


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _alternate(calls: dict[str, Callable[[], object]], count: int,
               block: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm
    while min(len(values) for values in samples.values()) < count:
        for name, call in calls.items():
            samples[name] += [_timed(call) for _ in range(block)]
    return samples


def _socket_rows(ctx: Context, outcome: Outcome, socket_path: str, floor: str) -> None:
    def sidecar() -> None:
        if get(socket_path, "/v1/credential")[0] != 200:
            raise RuntimeError("the sidecar stopped serving its credential")

    samples = _alternate({"sidecar": sidecar, "floor": lambda: get(floor, "/v1/credential")},
                         ctx.sizes.socket_calls, min(BLOCK, ctx.sizes.socket_calls))
    mine, base = samples["sidecar"], samples["floor"]
    outcome.rows.append(Row(
        bench="5", name="GET /v1/credential over the socket, p99", value=percentile(mine, 0.99),
        unit="ms", baseline="stdlib HTTP server on a Unix socket",
        baseline_value=percentile(base, 0.99), check="value<=", target=MAX_SOCKET_P99_MS,
        note=f"p50 {median(mine):.3f} vs {median(base):.3f} ms"))
    outcome.data["socket_latencies_ms"] = {"sidecar": thin(mine), "floor": thin(base)}


def _run_quietly(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env,
                          timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _cold_start_rows(ctx: Context, outcome: Outcome, socket_path: str) -> None:
    kubegate = str(Path(sys.executable).parent / "kubegate")
    if "ExecCredential" not in _run_quietly([kubegate, "credential", "--socket", socket_path]):
        raise RuntimeError("kubegate credential printed no ExecCredential")
    samples = _alternate({
        "kubegate credential": lambda: _run_quietly(
            [kubegate, "credential", "--socket", socket_path]),
        "python -c pass": lambda: _run_quietly([PYTHON, "-c", "pass"]),
    }, ctx.sizes.cold_starts, 1)
    outcome.rows.append(Row(
        bench="5", name="`kubegate credential` cold start, median",
        value=median(samples["kubegate credential"]), unit="ms", baseline="python -c pass",
        baseline_value=median(samples["python -c pass"]), check="ratio<=",
        target=MAX_COLD_START))
    outcome.data["cold_start_ms"] = samples


def _kubeconfig(path: Path, server: str, user: dict[str, str], ca: str | None) -> Path:
    cluster = {"server": server, **({"certificate-authority": ca} if ca else {})}
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"}))
    path.chmod(0o600)
    return path


def _proxy_rows(ctx: Context, outcome: Outcome, env: KubeEnv, token: str, proxy_port: int,
                folder: Path) -> None:
    kubectl = str(env.plane.kubectl_path)
    direct = _kubeconfig(folder / "direct.kubeconfig", env.plane.url, {"token": token},
                         str(env.plane.ca_path))
    proxied = _kubeconfig(folder / "proxy.kubeconfig", f"http://127.0.0.1:{proxy_port}", {},
                          None)
    environ = {**os.environ, "HOME": str(folder)}

    def kubectl_get(kubeconfig: Path, cache: str) -> Callable[[], object]:
        return lambda: _run_quietly([kubectl, f"--kubeconfig={kubeconfig}",
                                     f"--cache-dir={folder / cache}", "get", "pods", "-n",
                                     env.namespace, "-o", "name"], environ)

    samples = _alternate({"direct": kubectl_get(direct, "cache-direct"),
                          "proxy": kubectl_get(proxied, "cache-proxy")},
                         ctx.sizes.kubectl_runs, 1)
    outcome.rows.append(Row(
        bench="5", name="`kubectl get pods` through the proxy, median",
        value=median(samples["proxy"]), unit="ms", baseline="kubectl direct, same token",
        baseline_value=median(samples["direct"]), check="ratio<=", target=MAX_PROXY))
    outcome.data["kubectl_ms"] = samples
