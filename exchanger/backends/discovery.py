"""HTTPS server for the self-issued backend's OIDC discovery document and JWKS: what a
kube-apiserver's AuthenticationConfiguration fetches to trust kubegate's tokens."""

from __future__ import annotations

import json
from pathlib import Path

from exchanger.backends.selfissued import SelfIssuedSigner
from exchanger.documents import DocumentServer

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"


class DiscoveryServer:
    def __init__(self, *, signer: SelfIssuedSigner, host: str, port: int, cert_file: Path,
                 key_file: Path) -> None:
        self._documents = DocumentServer(host=host, port=port, cert_file=cert_file,
                                         key_file=key_file, name="oidc-discovery",
                                         cache_control="public, max-age=300")
        self._documents.publish({
            DISCOVERY_PATH: json.dumps(signer.discovery()).encode(),
            JWKS_PATH: json.dumps(signer.jwks()).encode(),
        })

    @property
    def port(self) -> int:
        return self._documents.port

    def start(self) -> None:
        self._documents.start()

    def stop(self) -> None:
        self._documents.stop()
