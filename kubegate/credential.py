"""The credential an exchange hands out, as plain values, and its JSON shape.

Rules of this module:
- the token is a secret: never in a repr, a log line or an error;
- it imports nothing heavy (no grpc, no YAML), so every side can hold a credential cheaply;
- `credential_json` is the one JSON shape of a credential: `kubegate exchange` prints it and
  the sidecar serves it (the sidecar adds `expires_in` by passing `now`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ClusterInfo:
    name: str
    server: str
    certificate_authority_data: bytes = field(repr=False)
    namespace: str
    service_account: str = ""
    user: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Credential:
    token: str = field(repr=False)  # a secret: never in repr, logs or errors
    token_type: str
    expires_at: int
    token_id: str
    session_id: str
    mapping: str
    cluster: ClusterInfo


def rfc3339(seconds: float) -> str:
    """Whole seconds since the epoch as RFC 3339 UTC: `2025-01-02T03:04:05Z`."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def credential_json(credential: Credential, *, now: float | None = None) -> dict[str, Any]:
    """The credential as JSON; with `now`, also `expires_in` (seconds left)."""
    cluster = credential.cluster
    document: dict[str, Any] = {
        "token": credential.token, "token_type": credential.token_type,
        "expires_at": rfc3339(credential.expires_at),
    }
    if now is not None:
        document["expires_in"] = int(credential.expires_at - now)
    document.update({
        "token_id": credential.token_id, "session_id": credential.session_id,
        "mapping": credential.mapping,
        "cluster": cluster_json(cluster),
    })
    return document


def cluster_json(cluster: ClusterInfo) -> dict[str, Any]:
    """The cluster part of a credential as JSON (the CA as base64)."""
    return {
        "name": cluster.name, "server": cluster.server, "namespace": cluster.namespace,
        "service_account": cluster.service_account, "user": cluster.user,
        "groups": list(cluster.groups),
        "certificate_authority_data": base64.b64encode(
            cluster.certificate_authority_data).decode("ascii"),
    }
