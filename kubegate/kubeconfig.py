"""Documents kubectl reads: an ExecCredential, a kubeconfig holding a token, and a kubeconfig
whose user is an exec plugin. Pure, except `write_kubeconfig`.

Rules of this module:
- client-go caches an exec plugin's credential until exactly `expirationTimestamp`, with no
  skew of its own, so `exec_credential` reports expiry `margin` seconds early (never earlier
  than now): a request is never sent with a token that expires on the way;
- times are RFC 3339 in UTC with a `Z` (`2025-01-02T03:04:05Z`), as Kubernetes writes them;
- an exec kubeconfig holds no secret: it names a command that fetches one when kubectl runs;
- a kubeconfig that holds a token is written 0600 and atomically (`write_secret_file`);
- YAML (and the file helpers, with tempfile and shutil) are imported only to render and write
  a kubeconfig: the exec plugin's cached path prints an ExecCredential (JSON) and should not
  pay for them.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from kubegate.credential import ClusterInfo, Credential, rfc3339

__all__ = ["exec_credential", "exec_kubeconfig", "render_kubeconfig", "rfc3339",
           "token_kubeconfig", "write_kubeconfig"]

EXEC_API_VERSION = "client.authentication.k8s.io/v1"
DEFAULT_MARGIN_SECONDS = 60


def reported_expiry(expires_at: int, *, now: float, margin: int = DEFAULT_MARGIN_SECONDS) -> int:
    """The expiry to tell client-go: `margin` seconds early, but not before now."""
    if margin < 0:
        raise ValueError("margin must not be negative")
    return max(expires_at - margin, math.ceil(now))


def exec_credential(credential: Credential, *, now: float,
                    margin: int = DEFAULT_MARGIN_SECONDS) -> dict[str, Any]:
    """What an exec credential plugin prints on stdout for kubectl."""
    expiry = reported_expiry(credential.expires_at, now=now, margin=margin)
    return {
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": {"token": credential.token, "expirationTimestamp": rfc3339(expiry)},
    }


def _names(cluster: ClusterInfo) -> tuple[str, str]:
    """(cluster and context name, user name)."""
    name = cluster.name or "kubegate"
    return name, f"kubegate@{name}"


def _cluster_entry(cluster: ClusterInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {"server": cluster.server}
    if cluster.certificate_authority_data:
        entry["certificate-authority-data"] = base64.b64encode(
            cluster.certificate_authority_data).decode("ascii")
    return {"name": _names(cluster)[0], "cluster": entry}


def _kubeconfig(cluster: ClusterInfo, user: Mapping[str, Any],
                namespace: str | None = None) -> dict[str, Any]:
    name, user_name = _names(cluster)
    context: dict[str, Any] = {"cluster": name, "user": user_name}
    if namespace or cluster.namespace:
        context["namespace"] = namespace or cluster.namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [_cluster_entry(cluster)],
        "users": [{"name": user_name, "user": dict(user)}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }


def token_kubeconfig(credential: Credential) -> dict[str, Any]:
    """A kubeconfig for the credential's cluster and namespace that holds the token itself."""
    return _kubeconfig(credential.cluster, {"token": credential.token})


def exec_kubeconfig(target: Credential | ClusterInfo, command: Sequence[str], *,
                    env: Mapping[str, str] | None = None, namespace: str | None = None,
                    install_hint: str = "",
                    interactive_mode: str = "Never") -> dict[str, Any]:
    """A kubeconfig whose user runs `command` (program, then arguments) to get a credential.

    Only the cluster's address, CA and namespace are taken from target; never its token.
    interactive_mode: `Never` (a pipeline), or `IfAvailable` for a plugin that may ask a
    person to sign in (kubectl then hands it the terminal when there is one).
    """
    if interactive_mode not in ("Never", "IfAvailable", "Always"):
        raise ValueError("interactive_mode is Never, IfAvailable or Always")
    if not command:
        raise ValueError("an exec kubeconfig needs a command")
    cluster = cast("ClusterInfo", getattr(target, "cluster", target))
    plugin: dict[str, Any] = {
        "apiVersion": EXEC_API_VERSION,
        "command": command[0],
        "args": list(command[1:]),
        "interactiveMode": interactive_mode,
        "provideClusterInfo": False,
    }
    if env:
        plugin["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if install_hint:
        plugin["installHint"] = install_hint
    return _kubeconfig(cluster, {"exec": plugin}, namespace)


def render_kubeconfig(document: Mapping[str, Any], *, as_json: bool = False) -> bytes:
    if as_json:
        return (json.dumps(document, indent=2) + "\n").encode()
    import yaml

    return yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False).encode()


def write_kubeconfig(path: Path, document: Mapping[str, Any]) -> None:
    """Write document as YAML (JSON when path ends in `.json`), 0600 and atomically."""
    from kubegate.files import write_secret_file

    write_secret_file(path, render_kubeconfig(document, as_json=path.suffix == ".json"))
