"""TrustMapping custom resources of one namespace, over the official client: list, watch,
get, and patch the status subresource (with the resourceVersion it was computed from).

Rules of this module:
- every client and transport error is translated (`_translated`): a watch that breaks or a
  list that fails is an UnavailableError, a 403 a PreconditionError; a watch whose
  resourceVersion is too old (410 Gone) is a `WatchExpired`, after which the caller lists
  again;
- a watch is one streaming request; `stop_watch()` from another thread shuts its socket so
  the reading thread returns at once instead of waiting for the server's timeout;
- objects are plain JSON-decoded dicts, exactly as the API server sent them.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import urllib3

from exchanger.kube.client import TIMEOUT, ClusterCredentials, _translated, api_client
from exchanger.mappings.cluster import WatchExpired
from kubegate.errors import UnavailableError

GROUP, VERSION, PLURAL = "kubegate.io", "v1alpha1", "trustmappings"
WATCH_SECONDS = 300
"""How long one watch request lasts before the server ends it (then: list and watch again)."""


class TrustMappingClient:
    """The TrustMappings of `namespace` in one cluster (see the module docstring)."""

    def __init__(self, *, server: str, ca_file: Path, credentials: ClusterCredentials,
                 namespace: str) -> None:
        self.namespace = namespace
        self._api = api_client(server=server, ca_file=ca_file, credentials=credentials)
        self._custom = k8s.CustomObjectsApi(self._api)
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._stopped = False

    def close(self) -> None:
        self.stop_watch()
        self._api.close()  # type: ignore[no-untyped-call]

    def list(self) -> tuple[list[dict[str, Any]], str]:
        """Every TrustMapping of the namespace, and the list's resourceVersion."""
        with _translated(f"list trustmappings in {self.namespace}"):
            listed: Any = self._custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, _request_timeout=TIMEOUT)
        return list(listed.get("items") or []), str(listed["metadata"]["resourceVersion"])

    def watch(self, resource_version: str,
              seconds: int = WATCH_SECONDS) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) from `resource_version` on, until the server ends the watch
        (after `seconds`), `stop_watch()` is called, or the connection breaks."""
        operation = f"watch trustmappings in {self.namespace}"
        with _translated(operation):
            response: Any = self._custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, watch=True,
                resource_version=resource_version, allow_watch_bookmarks=True,
                timeout_seconds=seconds, _preload_content=False,
                _request_timeout=(TIMEOUT[0], seconds + 30))
        with self._lock:
            if self._stopped:
                response.release_conn()
                return
            self._response = response
        try:
            yield from _events(response, operation)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()

    def stop_watch(self) -> None:
        """End a watch in progress (from any thread); later watches end at once."""
        with self._lock:
            self._stopped = True
            response = self._response
        if response is not None:  # already finished or released: nothing to end
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                response.shutdown()

    def get(self, name: str) -> dict[str, Any]:
        """One TrustMapping as the API server holds it now."""
        with _translated(f"get trustmapping {self.namespace}/{name}"):
            got: Any = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, _request_timeout=TIMEOUT)
        return dict(got)

    def patch_status(self, name: str, status: dict[str, Any],
                     resource_version: str) -> dict[str, Any]:
        """Merge `status` into the object's status through the status subresource, only if
        the object is still at `resource_version` (409 otherwise); the object as written."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        with _translated(f"patch trustmapping {self.namespace}/{name} status"):
            written: Any = self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, name, body,
                _content_type="application/merge-patch+json", _request_timeout=TIMEOUT)
        return dict(written)


def _events(response: Any, operation: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for line in _lines(response, operation):
        try:
            event = json.loads(line)
        except ValueError as error:
            raise UnavailableError("KUBERNETES_UNAVAILABLE",
                                   f"{operation}: an event is not JSON") from error
        kind, obj = str(event.get("type", "")), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpired(obj.get("message", "resourceVersion too old"))
            raise UnavailableError("KUBERNETES_UNAVAILABLE",
                                   f"{operation}: {obj.get('code')} {obj.get('reason')}")
        yield kind, obj


def _lines(response: Any, operation: str) -> Iterator[bytes]:
    pending = b""
    try:
        for chunk in response.stream(None, decode_content=False):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from (line for line in complete if line.strip())
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise UnavailableError("KUBERNETES_UNAVAILABLE",
                               f"{operation}: {type(error).__name__}") from error
