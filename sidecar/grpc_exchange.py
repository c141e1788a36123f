"""The keeper's `ExchangePort` over gRPC: the exchanger's public `ExchangeClient`, one attempt
per call (the keeper owns the retry schedule).

Rules of this module:
- a call never retries by itself and never outlives its timeout;
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
        self._clients: dict[float, ExchangeClient] = {}
        self._lock = threading.Lock()

    def exchange(self, subject_token: str, *, timeout: float) -> Credential:
        client = self._client(timeout)
        try:
            return client.exchange(subject_token, role=self._role, lifetime=self._lifetime,
                                   audiences=self._audiences)
        except ExchangeError as error:
            if error.transient:
                self.close()
            raise

    def _client(self, timeout: float) -> ExchangeClient:
        with self._lock:
            client = self._clients.get(timeout)
            if client is None:
                client = ExchangeClient(self._target, ca_file=self._ca_file,
                                        plaintext=self._plaintext, timeout=timeout,
                                        attempts=1, retry_budget=timeout)
                self._clients[timeout] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
