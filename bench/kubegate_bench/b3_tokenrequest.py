"""Benchmark 3: a TokenRequest-backed exchange against the same work done directly, with the
exchanger's own Kubernetes client class and credentials, on the same real apiserver (at most
1.3x latency, p50).

Two paths, each beside its own direct baseline, called alternately in small blocks:
- pod-bound: a pod's service-account token; the exchanger binds the credential to that pod
  (one TokenRequest). Baseline: one TokenRequest bound to the pod.
- session Secret: a GitHub-shaped token (a fresh one per call, so verified in full); the
  exchanger creates a `kubegate-session-*` Secret and a TokenRequest bound to it. Baseline:
  the same two calls. Beside a single direct TokenRequest too (information: the price of
  revocability is the second round trip).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from exchanger.kube.client import KubernetesClient
from exchanger.kube.port import MANAGED_BY_LABEL, SESSION_LABEL
from kubegate.client.rpc import ExchangeClient
from kubegate_bench.common import Context, Outcome, Row, median, percentile, thin
from kubegate_bench.kube_env import KubeEnv

TITLE = "TokenRequest-backed exchange vs direct TokenRequest (real apiserver)"
MAX_RATIO = 1.3
BLOCK = 5
LIFETIME = 900  # the mappings' maxLifetime


def run(ctx: Context, env: KubeEnv) -> Outcome:
    outcome = Outcome(bench="3", title=TITLE)
    kube = env.kube_client()
    client = ExchangeClient(env.exchanger.target, ca_file=env.exchanger.ca_file, attempts=1)
    calls = max(2, ctx.sizes.kube_calls // 2)
    github_tokens = iter([env.github.mint() for _ in range(calls + 2 * BLOCK)])
    paths: dict[str, Callable[[], object]] = {
        "direct TokenRequest (pod-bound)": lambda: _token_request(kube, env, bound="pod"),
        "exchange (pod-bound)": lambda: client.exchange(env.pod_token),
        "direct Secret + TokenRequest": lambda: _token_request(kube, env, bound="secret"),
        "exchange (session Secret)": lambda: client.exchange(next(github_tokens)),
    }
    try:
        samples = _alternate(paths, calls)
    finally:
        client.close()
        kube.close()
    pairs = (("exchange (pod-bound)", "direct TokenRequest (pod-bound)"),
             ("exchange (session Secret)", "direct Secret + TokenRequest"))
    for measured, baseline in pairs:
        outcome.rows.append(_row(measured, baseline, samples, check=True))
    outcome.rows.append(_row("exchange (session Secret)", "direct TokenRequest (pod-bound)",
                             samples, check=False))
    outcome.data = {"latencies_ms": {name: thin(values) for name, values in samples.items()}}
    return outcome


def _token_request(kube: KubernetesClient, env: KubeEnv, *, bound: str) -> object:
    target = env.pod
    if bound == "secret":
        session = uuid.uuid4().hex
        target = kube.create_session_secret(
            env.namespace, f"bench-session-{session}",
            labels={SESSION_LABEL: session, MANAGED_BY_LABEL: "kubegate-bench"},
            annotations={})
    return kube.request_token(env.namespace, "deployer", audiences=(), seconds=LIFETIME,
                              bound_to=target)


def _alternate(paths: dict[str, Callable[[], object]], calls: int) -> dict[str, list[float]]:
    for call in paths.values():  # warm: connections, caches, keys
        call()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    while min(len(values) for values in samples.values()) < calls:
        for name, call in paths.items():
            for _ in range(BLOCK):
                started = time.perf_counter()
                call()
                samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def _row(measured: str, baseline: str, samples: dict[str, list[float]], *, check: bool) -> Row:
    values, base = samples[measured], samples[baseline]
    return Row(bench="3", name=f"{measured}, p50", value=median(values), unit="ms",
               baseline=baseline, baseline_value=median(base),
               check="ratio<=" if check else "info", target=MAX_RATIO if check else None,
               note=f"p99 {percentile(values, 0.99):.1f} vs {percentile(base, 0.99):.1f} ms")
