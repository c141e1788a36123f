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
from collections.abc import Sequence
from pathlib import Path

from exchanger.client import Credential, ExchangeClient, ExchangeError


class GrpcExchangePort:
    def __init__(self, target: str, *, ca_file: Path | None, plaintext: bool, role: str,
                 lifetime: int, audiences: Sequence[str]) -> None:
        self._target, self._ca_file, self._plaintext = target, ca_file, plaintext
        self._role, self._lifetime, self._audiences = role, lifetime, tuple(audiences)
        self._client_now: ExchangeClient | None = None
        self._lock = threading.Lock()

    def exchange(self, subject_token: str, *, timeout: float) -> Credential:
        client = self._client()
        try:
            return client.exchange(subject_token, role=self._role, lifetime=self._lifetime,
                                   audiences=self._audiences, timeout=timeout)
        except ExchangeError as error:
            if error.transient:
                self.close()
            raise

    def _client(self) -> ExchangeClient:
        with self._lock:
            if self._client_now is None:
                self._client_now = ExchangeClient(
                    self._target, ca_file=self._ca_file, plaintext=self._plaintext,
                    attempts=1)
            return self._client_now

    def close(self) -> None:
        with self._lock:
            client, self._client_now = self._client_now, None
        if client is not None:
            client.close()
