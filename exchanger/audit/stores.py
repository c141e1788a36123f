"""Where checkpoints are published, off the log's host: a ConfigMap on a cluster, an HTTPS
witness. Each is a `CheckpointStore`; the `Checkpointer` (`publish`) drives them.

Rules of this module:
- a ConfigMap keeps the latest checkpoint of each log under the key `config_map_key(origin)`
  (the origin with every character a key may not hold replaced by `_`); writes are merge
  patches of that one key, so replicas publishing their own logs never overwrite each other.
  The ConfigMap is created (labelled managed-by kubegate) only when it does not exist;
- a witness gets each checkpoint as the body of an HTTPS POST (text/plain); any 2xx is
  success. That is all this protocol is: not the C2SP tlog-witness API, which needs Merkle
  consistency proofs. https only, no redirects, no proxies from the environment;
- every failure leaves as `CheckpointPublishError` (UNAVAILABLE), raised `from` its cause;
  messages name the store and the status, never a key or a token.
"""

from __future__ import annotations

import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from kubegate.errors import KubegateError, PreconditionError, UnavailableError

MANAGED_BY = {"app.kubernetes.io/managed-by": "kubegate"}
_KEY_CHARACTERS = re.compile(r"[^-._a-zA-Z0-9]")
WITNESS_TIMEOUT = 10.0


class CheckpointPublishError(UnavailableError):
    def __init__(self, detail: str) -> None:
        super().__init__("AUDIT_CHECKPOINT_UNAVAILABLE", detail)


class CheckpointStore(Protocol):
    """A place checkpoints are published to. `latest` is None when the store cannot be read
    back (a witness) or holds none for `origin`."""

    @property
    def name(self) -> str: ...

    def latest(self, origin: str) -> bytes | None: ...

    def publish(self, origin: str, note: str) -> None: ...


class ConfigMapApi(Protocol):
    """The ConfigMap operations of `exchanger.kube.client.KubernetesClient`."""

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str],
                          labels: Mapping[str, str]) -> None: ...

    def patch_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None: ...


def config_map_key(origin: str) -> str:
    """The ConfigMap data key a log's checkpoint is kept under."""
    return _KEY_CHARACTERS.sub("_", origin)[:253]


class ConfigMapStore:
    """Checkpoints in ConfigMap `namespace/name` on a cluster."""

    def __init__(self, api: ConfigMapApi, *, cluster: str, namespace: str, name: str) -> None:
        self._api, self._namespace, self._config_map = api, namespace, name
        self.name = f"configmap {namespace}/{name} on cluster {cluster}"

    def latest(self, origin: str) -> bytes | None:
        try:
            data = self._api.read_config_map(self._namespace, self._config_map)
        except KubegateError as error:
            raise CheckpointPublishError(f"{self.name}: {error.detail or error.reason}") \
                from error
        note = (data or {}).get(config_map_key(origin))
        return note.encode() if note is not None else None

    def publish(self, origin: str, note: str) -> None:
        data = {config_map_key(origin): note}
        try:
            try:
                self._api.patch_config_map(self._namespace, self._config_map, data)
            except PreconditionError as error:
                if error.reason != "OBJECT_NOT_FOUND":
                    raise
                self._create(data)
        except KubegateError as error:
            raise CheckpointPublishError(f"{self.name}: {error.detail or error.reason}") \
                from error

    def _create(self, data: Mapping[str, str]) -> None:
        try:
            self._api.create_config_map(self._namespace, self._config_map, data, MANAGED_BY)
        except PreconditionError as error:
            if error.reason != "CONFLICT":  # another replica created it meanwhile
                raise
            self._api.patch_config_map(self._namespace, self._config_map, data)


class WitnessStore:
    """Checkpoints POSTed to an HTTPS witness."""

    def __init__(self, url: str, *, ca_file: Path | None = None,
                 timeout: float = WITNESS_TIMEOUT) -> None:
        if not url.startswith("https://"):
            raise ValueError("a witness URL must be https")
        self._url, self._ca_file, self._timeout = url, ca_file, timeout
        self.name = f"witness {url}"

    def latest(self, origin: str) -> bytes | None:
        return None

    def publish(self, origin: str, note: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - https only, checked above
            self._url, data=note.encode(), method="POST",
            headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "kubegate"})
        try:
            with _opener(self._ca_file).open(request, timeout=self._timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            error.close()
            raise CheckpointPublishError(f"{self.name} answered HTTP {error.code}") from error
        except (OSError, ValueError) as error:
            raise CheckpointPublishError(f"{self.name} failed: {type(error).__name__}") \
                from error
        if not 200 <= status < 300:
            raise CheckpointPublishError(f"{self.name} answered HTTP {status}")


def _opener(ca_file: Path | None) -> urllib.request.OpenerDirector:
    """HTTPS and nothing else: no redirect handler, no proxy handler, no other schemes."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.HTTPSHandler(context=context),
                    urllib.request.HTTPErrorProcessor(),
                    urllib.request.HTTPDefaultErrorHandler()):
        opener.add_handler(handler)
    return opener
