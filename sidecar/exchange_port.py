"""The keeper's `ExchangePort`, over gRPC (the exchanger's public `ExchangeClient`) or over
HTTPS (RFC 8693, `HttpsExchangeClient`), as the settings' `--server` says; one attempt per
call (the keeper owns the retry schedule).

Rules of this module:
- a call never retries by itself and never outlives its timeout;
- only the chosen route's client is imported, when the port is made: a sidecar given an
  `https://` exchanger never loads grpc or google.protobuf (about 20 MiB of its memory);
- gRPC: one channel serves every call (timeouts are per call): an exchanger serving many
  sidecars pays for one connection each, not one per timeout value;
- after a transient failure the client is dropped and the next call starts afresh: a gRPC
  channel that saw its server vanish may wait out a reconnect backoff of up to two minutes
  before it dials again, long after the exchanger is back; the HTTPS client dials for each
  call anyway, and re-reads the CA file when made again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

from kubegate.client.settings import ExchangeSettings
from kubegate.credential import Credential
from kubegate.errors import ExchangeError


class _Client(Protocol):
    def exchange(self, subject_token: str, *, role: str = "", lifetime: int = 0,
                 audiences: Sequence[str] = (), timeout: float | None = None) -> Credential:
        ...

    def close(self) -> None: ...


class _ClientPort:
    """A port over a client made by `_make` on first use and after each transient failure."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self._settings = settings
        self._client_now: _Client | None = None
        self._lock = threading.Lock()

    def exchange(self, subject_token: str, *, timeout: float) -> Credential:
        client = self._client()
        try:
            return client.exchange(subject_token, role=self._settings.role,
                                   lifetime=self._settings.lifetime,
                                   audiences=self._settings.audiences, timeout=timeout)
        except ExchangeError as error:
            if error.transient:
                self.close()
            raise

    def _client(self) -> _Client:
        with self._lock:
            if self._client_now is None:
                self._client_now = self._make()
            return self._client_now

    def _make(self) -> _Client:
        raise NotImplementedError

    def close(self) -> None:
        with self._lock:
            client, self._client_now = self._client_now, None
        if client is not None:
            client.close()


class GrpcExchangePort(_ClientPort):
    def _make(self) -> _Client:
        from kubegate.client.rpc import ExchangeClient

        settings = self._settings
        return ExchangeClient(settings.target, ca_file=settings.ca_file,
                              plaintext=settings.plaintext, attempts=1)


class HttpsExchangePort(_ClientPort):
    def _make(self) -> _Client:
        from kubegate.client.https_exchange import HttpsExchangeClient

        return HttpsExchangeClient(self._settings.target, ca_file=self._settings.ca_file,
                                   attempts=1)


def exchange_port(settings: ExchangeSettings) -> GrpcExchangePort | HttpsExchangePort:
    """The port of settings' transport."""
    if settings.transport == "https":
        return HttpsExchangePort(settings)
    return GrpcExchangePort(settings)
