"""The gateway's own way to the API server it fronts: the `clusters:` entry it names gives the
server, the CA and the gateway's credential (a service account whose only rights are to
impersonate users, groups and the `kubegate.io/session` extra).

Rules of this module:
- the credential is the cluster entry's, exactly as `kubegate serve` would use it: a token file
  (read again when it changes: a projected token rotates), a client certificate, or a
  kubeconfig's user (bearer token or client certificate); a kubeconfig's exec plugin or an
  auth provider is refused at start, since a gateway must not run programs per request;
- TLS to the API server is always verified (`kubegate.relayio.upstream`), against the entry's
  CA bundle or the kubeconfig's;
- the token never leaves this module but as the `Authorization` the rewrite adds.
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exchanger.config import ClusterConfig
from kubegate.errors import Code, KubegateError
from kubegate.relayio.upstream import TLSConnector, Upstream, parse_server


class GatewayUpstreamError(KubegateError):
    """The fronted cluster's entry cannot be used by the gateway (said at start)."""

    code = Code.INVALID_ARGUMENT
    default_message = "the fronted cluster's entry cannot be used by the gateway"

    def __init__(self, detail: str) -> None:
        super().__init__("GATEWAY_UPSTREAM_UNUSABLE", detail)


@dataclass(frozen=True, kw_only=True)
class _Secret:
    token: str = ""
    token_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None


class GatewayUpstream:
    """Where the gateway forwards to, how it verifies that server, and as whom it speaks."""

    def __init__(self, *, server: str, ca_pem: bytes, secret: _Secret) -> None:
        self.target: Upstream = parse_server(server)
        self.ca_pem = ca_pem
        self.connector = TLSConnector(secret.client_cert)
        self._secret = secret
        self._lock = threading.Lock()
        self._cached: tuple[float, str] = (-1.0, "")

    def token(self) -> str:
        """The bearer token to send, "" when the gateway authenticates by certificate."""
        if self._secret.token_file is None:
            return self._secret.token
        path = self._secret.token_file
        mtime = os.stat(path).st_mtime
        with self._lock:
            if self._cached[0] != mtime:
                self._cached = (mtime, path.read_text().strip())
            return self._cached[1]


def gateway_upstream(cluster: ClusterConfig) -> GatewayUpstream:
    """The upstream of the cluster entry; `GatewayUpstreamError` says what cannot be used."""
    if cluster.kubeconfig is not None:
        return _from_kubeconfig(cluster)
    if not cluster.server or cluster.ca_file is None:
        raise GatewayUpstreamError(f"cluster {cluster.name}: the gateway needs server and "
                                   "caFile (or a kubeconfig)")
    ca_pem = cluster.ca_file.read_bytes()
    if cluster.token_file is not None:
        secret = _Secret(token_file=cluster.token_file)
    elif cluster.client_cert_file is not None and cluster.client_key_file is not None:
        secret = _Secret(client_cert=(cluster.client_cert_file, cluster.client_key_file))
    else:
        raise GatewayUpstreamError(f"cluster {cluster.name}: the gateway needs credentials "
                                   "(tokenFile, clientCertFile and clientKeyFile, or "
                                   "kubeconfig)")
    upstream = GatewayUpstream(server=cluster.server, ca_pem=ca_pem, secret=secret)
    upstream.token()  # a missing token file is said at start, not at the first request
    return upstream


def _from_kubeconfig(cluster: ClusterConfig) -> GatewayUpstream:
    assert cluster.kubeconfig is not None
    path = cluster.kubeconfig
    try:
        document: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
        context_name = cluster.context or document["current-context"]
        context = _named(document, "contexts", context_name)["context"]
        entry = _named(document, "clusters", context["cluster"])["cluster"]
        user: dict[str, Any] = _named(document, "users", context["user"])["user"] or {}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise GatewayUpstreamError(f"cluster {cluster.name}: kubeconfig {path} cannot be "
                                   f"read: {type(error).__name__}") from error
    if "exec" in user or "auth-provider" in user:
        raise GatewayUpstreamError(f"cluster {cluster.name}: the gateway does not run "
                                   "kubeconfig exec plugins or auth providers")
    server = cluster.server or str(entry.get("server", ""))
    ca_pem = _material(entry, "certificate-authority", path.parent)
    if cluster.ca_file is not None:
        ca_pem = cluster.ca_file.read_bytes()
    return GatewayUpstream(server=server, ca_pem=ca_pem, secret=_user_secret(
        cluster, user, path.parent))


def _user_secret(cluster: ClusterConfig, user: dict[str, Any], base: Path) -> _Secret:
    if user.get("token"):
        return _Secret(token=str(user["token"]))
    if user.get("tokenFile"):
        return _Secret(token_file=base / str(user["tokenFile"]))
    cert = _material(user, "client-certificate", base)
    key = _material(user, "client-key", base)
    if not cert or not key:
        raise GatewayUpstreamError(f"cluster {cluster.name}: the kubeconfig's user has no "
                                   "token and no client certificate")
    return _Secret(client_cert=_spill(cluster.name, cert, key))


def _named(document: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    items = document.get(section) or []
    assert isinstance(items, list)
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise KeyError(f"{section}/{name}")


def _material(entry: dict[str, Any], key: str, base: Path) -> bytes:
    """A kubeconfig's `<key>-data` (base64) or `<key>` (a file) as bytes; b"" when absent."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(str(entry[f"{key}-data"]))
    if entry.get(key):
        return (base / str(entry[key])).read_bytes()
    return b""


def _spill(name: str, cert: bytes, key: bytes) -> tuple[Path, Path]:
    """ssl loads a client key from a file only: write both to a private folder (0700 folder,
    0600 files) that lives as long as the process and is removed when it exits."""
    import atexit
    import shutil
    import tempfile

    from kubegate.files import write_secret_file

    folder = Path(tempfile.mkdtemp(prefix=f"kubegate-gateway-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the key does not outlive us
    write_secret_file(folder / "client.crt", cert)
    write_secret_file(folder / "client.key", key)
    return folder / "client.crt", folder / "client.key"
