"""Benchmark 17: what `kubegate gateway` costs in front of the real kube-apiserver (issue 19).

One exchanger process (self-issued backend) and one gateway process on the same config, the
gateway fronting the control plane as its impersonate-only service account (gateway_env). The
session's grant is user `ci:bench-gateway`, group `kubegate:bench-gateway`, bound to the same
Role (`pod-reader` in `web`) as service account `deployer`, whose TokenRequest token is the
equivalent credential for the direct path. Rows:

1. `kubectl get pods` (the real kubectl, warm discovery cache of its own) through the gateway
   vs direct, median wall time of runs taken in alternation: target ratio <= 1.15.
2. The gateway's CPU (utime + stime from /proc) per proxied `GET .../pods` from a lean client
   (http.client, a fresh TLS connection each, as every kubectl invocation makes), for
   information; beside it the control plane's (etcd + kube-apiserver) CPU per the same GET
   made directly, and the wall time per request each way.
3. Watches held by one replica: W `GET ...pods?watch=1` (500 in full and quick runs, 20 in
   smoke) opened from one asyncio loop (so the client's memory is not the gateway's), the
   gateway's RSS before and with all of them open: target 100 MiB for 500 (about 200 KiB a
   watch), pro rata in smoke.
4. Of those watches, how many deliver the event of one change of the watched pod: all of them
   (proves they were really held through to the API server while measured).

Rules: nothing here imports the tests; a failed request is an error, not a figure.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from kubegate.client.rpc import ExchangeClient
from kubegate_bench import exchangers
from kubegate_bench.cluster import Kubectl
from kubegate_bench.common import Context, Outcome, Row, median, percentile, thin
from kubegate_bench.gateway_env import (
    GatewayProcess,
    gateway_cluster_entry,
    gateway_service_account,
    start_gateway_process,
)
from kubegate_bench.kube_env import KubeEnv
from kubegate_bench.procs import cpu_seconds, open_sockets, rss_mib
from kubegate_bench.tokens import github_mapping

TITLE = "gateway: kubectl overhead, CPU per request, memory per watch (real apiserver)"
USER = "ci:bench-gateway"
GROUP = "kubegate:bench-gateway"
MAX_RATIO = 1.15  # issue 19: kubectl through the gateway at most 1.15x direct
BUDGET_MIB_PER_500 = 100.0  # the stated budget: 100 MiB for 500 watches (~200 KiB each)
# per mode: kubectl runs each way, lean requests for the CPU figure, watches held
PLAN = {"smoke": (3, 20, 20), "quick": (20, 300, 500), "full": (30, 1000, 500)}
OPEN_AT_ONCE = 25  # TLS handshakes in flight while the watches open
WATCH_TIMEOUT = 300.0  # seconds for all watches to open, and for all to see the event


def run(ctx: Context, env: KubeEnv) -> Outcome:
    outcome = Outcome(bench="17", title=TITLE)
    runs, requests, watches = PLAN[ctx.mode]
    folder = ctx.work / "b17-gateway"
    folder.mkdir(parents=True, exist_ok=True)
    document = _config(env, folder)
    exchanger = exchangers.start("b17-exchanger", folder, folder / "config.yaml")
    try:
        with start_gateway_process(document, folder, log_level="INFO") as gateway:
            with ExchangeClient(exchanger.target, ca_file=exchanger.ca_file,
                                attempts=1) as client:
                token = client.exchange(env.github.mint()).token
            direct = str(env.cluster.request_token(env.namespace, "deployer",
                                                   seconds=3600).token)
            through, base = _kubectl_runs(env, gateway, token, direct, folder, runs)
            path = f"/api/v1/namespaces/{env.namespace}/pods"
            cpu_ms, wall_ms = _cpu_per_request(gateway.url, _context(gateway), path, token,
                                               [gateway.process.popen.pid], requests)
            plane_ms, plane_wall = _cpu_per_request(env.plane.url, env.plane.ssl_context(),
                                                    path, direct, env.plane.pids(), requests)
            held = asyncio.run(_watches(env, gateway, token, watches))
    finally:
        exchanger.stop()
    outcome.rows += [
        Row(bench="17", name="kubectl get pods through the gateway, p50", value=median(through),
            unit="ms", baseline="direct, equivalent token", baseline_value=median(base),
            check="ratio<=", target=MAX_RATIO,
            note=f"{runs} runs each; p90 {percentile(through, 0.9):.0f} vs "
                 f"{percentile(base, 0.9):.0f} ms"),
        Row(bench="17", name="gateway CPU per proxied GET (fresh TLS connection)", value=cpu_ms,
            unit="ms", baseline="etcd + apiserver CPU per direct GET", baseline_value=plane_ms,
            note=f"{requests} requests each; wall p50 {median(wall_ms):.1f} ms through, "
                 f"{median(plane_wall):.1f} ms direct"),
        Row(bench="17", name=f"gateway RSS for {watches} open watches", value=held["delta"],
            unit="MiB", check="value<=", target=BUDGET_MIB_PER_500 * watches / 500,
            note=f"{held['delta'] * 1024 / watches:.0f} KiB/watch (budget "
                 f"{BUDGET_MIB_PER_500 * 1024 / 500:.0f}); RSS {held['before']:.0f} -> "
                 f"{held['after']:.0f} MiB; "
                 f"{held['sockets']:.0f} gateway sockets"),
        Row(bench="17", name="held watches that delivered the change", value=held["delivered"],
            unit="watches", check="value==", target=float(watches),
            note=f"all events within {held['event_s'] * 1000:.0f} ms of the patch"),
    ]
    outcome.data = {"kubectl_ms": {"gateway": thin(through), "direct": thin(base)},
                    "request_wall_ms": {"gateway": thin(wall_ms), "direct": thin(plane_wall)},
                    "watch_rss_mib": held}
    return outcome


def _config(env: KubeEnv, folder: Path) -> dict[str, Any]:
    """The shared config (written to folder/config.yaml); the group may read pods in web."""
    env.cluster.bind_role(env.namespace, "pod-reader", group=GROUP)
    token_file = gateway_service_account(env.cluster, folder)
    _, self_issued = exchangers.self_issued_cluster()
    grant = (f'{{cluster: test, namespace: {env.namespace}, user: "{USER}", '
             f'groups: ["{GROUP}"], maxLifetime: 15m}}')
    path = exchangers.write_config(
        folder, mappings=github_mapping("github-gateway", grant),
        rateLimit=exchangers.UNLIMITED, issuers=[env.github.issuer_entry()],
        clusters=[gateway_cluster_entry(env.plane, token_file, "test")],
        selfIssued=self_issued, gateway={"listen": "127.0.0.1:0", "cluster": "test"})
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def _kubectl_runs(env: KubeEnv, gateway: GatewayProcess, token: str, direct: str,
                  folder: Path, runs: int) -> tuple[list[float], list[float]]:
    """Milliseconds per `kubectl get pods`, each way in alternation, after a warm-up run."""
    ways = {"gateway": gateway.kubectl(env.plane, token, folder),
            "direct": Kubectl.with_token(env.plane, direct, folder)}
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for number in range(runs + 1):
        order = list(ways.items()) if number % 2 else list(ways.items())[::-1]
        for name, kubectl in order:  # each way goes first in half the rounds
            args = ("get", "pods", "-n", env.namespace, "--cache-dir",
                    str(folder / f"kube-cache-{name}"))
            started = time.perf_counter()
            done = kubectl.run(*args)
            elapsed = (time.perf_counter() - started) * 1000
            if done.returncode != 0 or "build-1" not in done.stdout:
                raise RuntimeError(f"kubectl get pods ({name}) failed: {done.stderr}\n"
                                   + (gateway.log_tail() if name == "gateway" else ""))
            if number:  # the first run fills the discovery cache
                samples[name].append(elapsed)
    return samples["gateway"], samples["direct"]


def _context(gateway: GatewayProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(gateway.ca_file))


def _cpu_per_request(url: str, context: ssl.SSLContext, path: str, token: str,
                     pids: list[int], requests: int) -> tuple[float, list[float]]:
    """The CPU ms of processes `pids` per GET of path at url, each on a fresh TLS
    connection, and the wall ms of each request."""
    address = urlsplit(url)

    def one() -> float:
        started = time.perf_counter()
        connection = http.client.HTTPSConnection(address.hostname or "127.0.0.1",
                                                 address.port, context=context, timeout=60)
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {token}",
                                                     "Accept": "application/json"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200 or json.loads(body).get("kind") != "PodList":
            raise RuntimeError(f"GET {path} at {url}: {response.status}")
        return (time.perf_counter() - started) * 1000

    for _ in range(5):  # warm: session lookup caches, upstream connections
        one()
    before = sum(cpu_seconds(pid) for pid in pids)
    walls = [one() for _ in range(requests)]
    return (sum(cpu_seconds(pid) for pid in pids) - before) * 1000 / requests, walls


async def _watches(env: KubeEnv, gateway: GatewayProcess, token: str,
                   count: int) -> dict[str, float]:
    """Open `count` watches, read the gateway's RSS with all open, then change the pod and
    count the watches that report it."""
    address, context, pid = urlsplit(gateway.url), _context(gateway), gateway.process.popen.pid
    host, port = address.hostname or "127.0.0.1", address.port or 443
    listed = env.cluster.core.list_namespaced_pod(env.namespace).metadata
    version = listed.resource_version if listed is not None else ""
    request = (f"GET /api/v1/namespaces/{env.namespace}/pods?watch=1&resourceVersion={version}"
               f"&timeoutSeconds=1800 HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n").encode()
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"watch through the gateway: {head.splitlines()[0]!r}")
        return reader, writer

    before = rss_mib(pid)
    streams = await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(count))),
                                     WATCH_TIMEOUT)
    try:
        after = await _settled_rss(pid)
        sockets = open_sockets(pid)
        started = time.monotonic()
        await asyncio.to_thread(env.cluster.core.patch_namespaced_pod, env.pod.name,
                                env.namespace, {"metadata": {"labels": {"b17": str(count)}}})
        seen = await asyncio.gather(*(_sees(reader, env.pod.name) for reader, _ in streams))
        event_s = time.monotonic() - started
    finally:
        for _, writer in streams:
            writer.close()
    return {"before": before, "after": after, "delta": after - before,
            "sockets": float(sockets), "delivered": float(sum(seen)), "event_s": event_s}


async def _settled_rss(pid: int) -> float:
    """The RSS once two readings a second apart differ by under 1 % (or after 15 s)."""
    last, deadline = rss_mib(pid), time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = rss_mib(pid)
        if abs(now - last) < 0.01 * last:
            return max(now, last)
        last = now
    return last


async def _sees(reader: asyncio.StreamReader, name: str) -> bool:
    """Whether the watch's stream carries an event naming the pod before the deadline."""
    received = b""
    try:
        async with asyncio.timeout(WATCH_TIMEOUT):
            while name.encode() not in received or b'"MODIFIED"' not in received:
                chunk = await reader.read(65536)
                if not chunk:
                    return False
                received += chunk
    except TimeoutError:
        return False
    return True
