"""The tests' name for `kubegate_bench.cluster`: the control-plane harness is shared with
bench/, which must run without the tests (see that module)."""

from kubegate_bench.cluster import (
    Cluster,
    Kubectl,
    admin_api_client,
)

__all__ = [
    "admin_api_client",
    "Cluster",
    "Kubectl",
]
