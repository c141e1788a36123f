"""The tests' name for `kubegate_bench.gateway_env`: the gateway harness is shared with
bench/ (benchmark 17), which must run without the tests (see that module)."""

from kubegate_bench.gateway_env import (
    GATEWAY_ACCOUNT,
    GATEWAY_NAMESPACE,
    GATEWAY_USER,
    IMPERSONATE_RULES,
    START_TIMEOUT,
    GatewayProcess,
    gateway_cluster_entry,
    gateway_service_account,
    start_gateway_process,
)

__all__ = [
    "GATEWAY_ACCOUNT",
    "GATEWAY_NAMESPACE",
    "GATEWAY_USER",
    "IMPERSONATE_RULES",
    "START_TIMEOUT",
    "GatewayProcess",
    "gateway_cluster_entry",
    "gateway_service_account",
    "start_gateway_process",
]
