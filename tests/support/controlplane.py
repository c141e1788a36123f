"""The tests' name for `kubegate_bench.controlplane`: the control-plane harness is shared
with bench/, which must run without the tests (see that module)."""

from kubegate_bench.controlplane import (
    AUDIT_POLICY,
    BINARIES,
    EMPTY_AUTHENTICATION_CONFIG,
    HOW_TO_GET_BINARIES,
    REPO,
    START_TIMEOUT,
    ControlPlane,
    ControlPlaneError,
    Process,
    audit_events,
    cache_bin_dir,
    cluster_entry,
    find_binaries,
    free_port,
    start_process,
    versions,
    wait_until,
)

__all__ = [
    "AUDIT_POLICY",
    "BINARIES",
    "EMPTY_AUTHENTICATION_CONFIG",
    "HOW_TO_GET_BINARIES",
    "REPO",
    "START_TIMEOUT",
    "audit_events",
    "cache_bin_dir",
    "cluster_entry",
    "ControlPlane",
    "ControlPlaneError",
    "find_binaries",
    "free_port",
    "Process",
    "start_process",
    "versions",
    "wait_until",
]
