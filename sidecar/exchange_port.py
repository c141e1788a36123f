"""The keeper's `ExchangePort` over gRPC: the exchanger's public `ExchangeClient`, one attempt
per call (the keeper owns the retry schedule).

Rules of this module:
- a call never retries by itself and never outlives its timeout;
- one channel serves every call (timeouts are per call): an exchanger serving many sidecars
  pays for one connection each, not one per timeout value;
- after a transient failure the channel is dropped and the next call dials afresh: a gRPC
  channel that saw its server vanish may wait out a reconnect backoff of up to two minutes
  before it dials again, long after the exchanger is back.
"""

from __future__ import annotations

import threading

from kubegate.client.rpc import ExchangeClient
from kubegate.client.settings import ExchangeSettings
from kubegate.credential import Credential
from kubegate.errors import ExchangeError


class GrpcExchangePort:
    def __init__(self, settings: ExchangeSettings) -> None:
        self._settings = settings
        self._client_now: ExchangeClient | None = None
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

    def _client(self) -> ExchangeClient:
        with self._lock:
            if self._client_now is None:
                self._client_now = ExchangeClient(
                    self._settings.target, ca_file=self._settings.ca_file,
                    plaintext=self._settings.plaintext, attempts=1)
            return self._client_now

    def close(self) -> None:
        with self._lock:
            client, self._client_now = self._client_now, None
        if client is not None:
            client.close()
