"""Listen and target addresses: which ones are local. Light on purpose (stdlib `ipaddress`
only), so the sidecar can share the rule without importing the exchanger's config."""

from __future__ import annotations

import ipaddress


def is_local_address(address: str) -> bool:
    """True for a Unix socket (`unix:/path`) or a loopback `host:port`."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
