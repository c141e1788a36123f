"""Benchmark 15's peer: Dex v2.45.1 doing OAuth 2.0 Token Exchange (RFC 8693), and the
upstream OpenID Connect issuer whose RS256 tokens it exchanges.

Dex exchanges a token only through a connector that can verify it: an `oidc` connector whose
`issuer` is the upstream (server/handlers.go handleTokenExchange -> connector/oidc/oidc.go
TokenIdentity: the token is verified with go-oidc against the upstream's JWKS, fetched once
and cached). So the upstream serves discovery and JWKS over HTTPS on loopback, and the subject
tokens carry its URL as `iss`; kubegate and the Go floor trust the same key statically.

Rules of this module:
- both servers are on TLS with certificates of one local CA (`exchanger.localtls`);
- Dex's client may exchange (`oauth2.grantTypes` lists token-exchange), Dex logs at warn,
  storage is memory: what it needs for an exchange, nothing that would slow it for show;
- the connector asks for scope `profile` only (no `email`: CI tokens carry none) and names the
  user by the `repository` claim, so Dex's claim checks pass for GitHub-shaped tokens.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from exchanger.localtls import ensure_local_tls
from kubegate_bench.procs import Process, free_port, start_process

CONNECTOR = "upstream"
CLIENT_ID = "bench-exchanger"
CLIENT_SECRET = "bench-exchanger-secret"  # noqa: S105 - a loopback benchmark's client
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a token type URN


@dataclass(frozen=True, kw_only=True)
class LocalTLS:
    ca_file: Path
    cert_file: Path
    key_file: Path


def local_tls(folder: Path) -> LocalTLS:
    """One CA and a serving certificate for 127.0.0.1 (upstream, Dex and the Go floor)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = LocalTLS(ca_file=folder / "ca.crt", cert_file=folder / "tls.crt",
                     key_file=folder / "tls.key")
    ensure_local_tls(files.ca_file, files.cert_file, files.key_file, ("127.0.0.1",),
                     name="kubegate bench peer CA")
    return files


class Upstream:
    """Discovery and JWKS of the subject tokens' issuer, on an HTTPS thread of this process
    (Dex fetches them once; they are not on the measured path)."""

    def __init__(self, tls: LocalTLS, jwk: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        documents = {
            "/.well-known/openid-configuration": {
                "issuer": self.url, "jwks_uri": f"{self.url}/keys",
                "authorization_endpoint": f"{self.url}/auth",
                "token_endpoint": f"{self.url}/token", "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]},
            "/keys": {"keys": [jwk]},
        }
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(documents))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="bench-upstream")

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(documents: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server hook
            document = documents.get(self.path)
            body = json.dumps(document).encode() if document is not None else b"{}"
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return
    return Handler


@dataclass(kw_only=True)
class DexPeer:
    process: Process
    url: str

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def loadgen_args(self, ca_file: Path, tokens: Path) -> list[str]:
        return ["-mode", "https-form", "-target", self.token_url, "-ca", str(ca_file),
                "-tokens", str(tokens), "-basic-auth", f"{CLIENT_ID}:{CLIENT_SECRET}",
                "-form", f"connector_id={CONNECTOR}", "-form", f"subject_token_type={ID_TOKEN}",
                "-form", "scope=openid"]

    def stop(self) -> None:
        self.process.stop()


def dex_config(port: int, tls: LocalTLS, upstream_url: str) -> dict[str, Any]:
    url = f"https://127.0.0.1:{port}"
    return {
        "issuer": url,
        "storage": {"type": "memory"},
        "web": {"https": f"127.0.0.1:{port}", "tlsCert": str(tls.cert_file),
                "tlsKey": str(tls.key_file)},
        "logger": {"level": "warn", "format": "text"},
        "oauth2": {"skipApprovalScreen": True, "grantTypes": [GRANT_TYPE]},
        "connectors": [{"type": "oidc", "id": CONNECTOR, "name": "bench upstream", "config": {
            "issuer": upstream_url, "clientID": "dex", "clientSecret": "unused",
            "redirectURI": f"{url}/callback", "rootCAs": [str(tls.ca_file)],
            "scopes": ["profile"], "userNameKey": "repository",
            "insecureSkipEmailVerified": True}}],
        "staticClients": [{"id": CLIENT_ID, "name": "bench", "secret": CLIENT_SECRET,
                           "redirectURIs": [f"{url}/unused"]}],
    }


def start_dex(binary: Path, folder: Path, tls: LocalTLS, upstream_url: str) -> DexPeer:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "dex.yaml"
    config.write_text(json.dumps(dex_config(port, tls, upstream_url), indent=1))  # JSON is YAML
    process = start_process("dex", [str(binary), "serve", str(config)], folder)
    peer = DexPeer(process=process, url=f"https://127.0.0.1:{port}")
    try:
        _wait_for_discovery(peer, tls.ca_file)
    except BaseException:
        process.stop()
        raise
    return peer


def _wait_for_discovery(peer: DexPeer, ca_file: Path, timeout: float = 60) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.process.popen.poll() is not None:
            raise RuntimeError(f"dex exited with {peer.process.popen.returncode}:\n"
                               f"{peer.process.log_tail()}")
        try:
            with urllib.request.urlopen(  # noqa: S310 - https to our own Dex
                    f"{peer.url}/.well-known/openid-configuration", context=context,
                    timeout=5) as reply:
                if json.load(reply).get("issuer") == peer.url:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"dex: no discovery after {timeout:.0f}s:\n{peer.process.log_tail()}")
