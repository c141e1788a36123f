"""Access requests and sessions as custom resources in the exchanger's namespace, so every
replica sees the same requests (group kubegate.io, version v1alpha1; `crds.py` defines them).

The shape of a resource (one for each value; the exchanger is its only writer):
- `metadata.name` is the value's `id`; `metadata.resourceVersion` is the value's `version`;
- `spec` is the value's `to_dict()`, whole: the value is replaced as one piece, so there is no
  status subresource and no spec/status split to keep in step;
- labels, for the API server to filter lists on: `kubegate.io/mapping`, `kubegate.io/state`
  and `kubegate.io/requester` (sha256 of the requester's `sub`, a label cannot hold any
  `sub`) on an AccessRequest; `kubegate.io/mapping`, `kubegate.io/cluster`,
  `kubegate.io/active` and `kubegate.io/access-request` on a KubegateSession;
- annotation `kubegate.io/created-ns`: when it was created (nanoseconds), for creation order.

Rules of this module:
- a label narrows a list on the server, the spec decides: every list filters the answer
  again on the values themselves, so a hashed or shortened label never lets another value in;
- `replace` is a JSON Patch that sets `metadata.resourceVersion` to the value's version (the
  API server's precondition: a stale one is 409, a ConflictError, and nothing changes), the
  spec and the labels, whole; the creation annotation stays;
- `watch` is the API's watch from a resourceVersion (`kubernetes.watch.Watch`); the server
  ends each after WATCH_SECONDS and it goes on from the last version seen; a version too old
  (410 Gone) lists again and yields, as "modified", each request whose version it has not
  yet yielded; setting `stop` shuts the open connection at once;
- every client and transport error is translated (`exchanger.kube.client._translated`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any, Final

import kubernetes.client as k8s
import kubernetes.watch
from kubernetes.client.exceptions import ApiException

from exchanger.access.model import AccessRequest, Session, State
from exchanger.access.ports import AlreadyExistsError, ConflictError
from exchanger.kube.client import TIMEOUT, _translated
from kubegate.errors import Code, KubegateError, PreconditionError, UnavailableError

__all__ = ["ACCESS_REQUESTS", "SESSIONS", "KubeAccessStore", "KubeSessionStore", "KubeStores",
           "Resource", "label_value"]

GROUP: Final = "kubegate.io"
VERSION: Final = "v1alpha1"
WATCH_SECONDS: Final = 300
"""How long one watch request lasts before the server ends it (then: watch on)."""
STOP_POLL_SECONDS: Final = 0.2
CREATED: Final = "kubegate.io/created-ns"
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


class Resource:
    """One custom resource type in one namespace: the calls every store makes."""

    def __init__(self, custom: k8s.CustomObjectsApi, namespace: str, *, kind: str,
                 plural: str) -> None:
        self.custom, self.namespace, self.kind, self.plural = custom, namespace, kind, plural

    def create(self, name: str, spec: dict[str, Any], labels: dict[str, str]) -> str:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind,
                "metadata": {"name": name, "labels": labels,
                             "annotations": {CREATED: str(time.time_ns())}},
                "spec": spec}
        try:
            with _translated(f"create {self.plural} {self.namespace}/{name}"):
                created: Any = self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, self.plural, body, _request_timeout=TIMEOUT)
        except PreconditionError as error:
            if error.reason == "CONFLICT":
                raise AlreadyExistsError(f"{self.kind} {name}") from error
            raise
        return str(created["metadata"]["resourceVersion"])

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            with _translated(f"get {self.plural} {self.namespace}/{name}"):
                found: Any = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, self.plural, name, _request_timeout=TIMEOUT)
        except PreconditionError as error:
            if error.reason == "OBJECT_NOT_FOUND":
                return None
            raise
        return dict(found)

    def list(self, selector: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
        """The objects in creation order, and the list's resourceVersion."""
        with _translated(f"list {self.plural} in {self.namespace}"):
            listed: Any = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, self.plural,
                label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
                _request_timeout=TIMEOUT)
        items = sorted(listed.get("items") or [], key=_creation_order)
        return items, str(listed["metadata"]["resourceVersion"])

    def replace(self, name: str, version: str, spec: dict[str, Any],
                labels: dict[str, str]) -> str:
        if not version:
            raise ConflictError(f"{self.kind} {name}")  # never read from the store
        patch: list[dict[str, Any]] = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
            {"op": "replace", "path": "/spec", "value": spec},
            {"op": "replace", "path": "/metadata/labels", "value": labels}]
        try:
            with _translated(f"replace {self.plural} {self.namespace}/{name}"):
                written: Any = self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, self.plural, name, patch,
                    _content_type="application/json-patch+json", _request_timeout=TIMEOUT)
        except PreconditionError as error:
            if error.reason in ("CONFLICT", "OBJECT_NOT_FOUND"):
                raise ConflictError(f"{self.kind} {name}") from error
            raise
        return str(written["metadata"]["resourceVersion"])

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
        """(ADDED|MODIFIED|DELETED, object) after resourceVersion `since` until `stop`; ends
        (without error) when the server ends the watch, raises _Expired on 410 Gone."""
        watcher = kubernetes.watch.Watch(return_type="object")  # type: ignore[no-untyped-call]
        opened: list[Any] = []  # the responses opened (urllib3.BaseHTTPResponse)
        operation = f"watch {self.plural} in {self.namespace}"

        @functools.wraps(self.custom.list_namespaced_custom_object)
        def call(*args: Any, **kwargs: Any) -> Any:
            response = self.custom.list_namespaced_custom_object(*args, **kwargs)
            opened.append(response)
            return response

        done = threading.Event()
        threading.Thread(target=_shut_when_stopped, args=(stop, done, watcher, opened),
                         name="kubegate-access-watch-stop", daemon=True).start()
        try:
            with _translated(operation):
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                        call, GROUP, VERSION, self.namespace, self.plural,
                        resource_version=since, allow_watch_bookmarks=True,
                        timeout_seconds=WATCH_SECONDS,
                        _request_timeout=(TIMEOUT[0], WATCH_SECONDS + 30)):
                    if stop.is_set():
                        return
                    yield str(event["type"]), dict(event["raw_object"])
        except UnavailableError as error:
            if stop.is_set():
                return  # our own shutdown of the connection
            if isinstance(error.__cause__, ApiException) and error.__cause__.status == 410:
                raise _Expired(operation) from error
            raise
        finally:
            done.set()


class _Expired(KubegateError):
    """The watch's resourceVersion is gone (410 Gone): list again. Never leaves this module."""

    code = Code.UNAVAILABLE

    def __init__(self, operation: str) -> None:
        super().__init__("WATCH_EXPIRED", f"{operation}: resourceVersion too old")


def _shut_when_stopped(stop: threading.Event, done: threading.Event,
                       watcher: kubernetes.watch.Watch, opened: list[Any]) -> None:
    while not done.is_set():
        if stop.wait(STOP_POLL_SECONDS):
            watcher.stop()  # type: ignore[no-untyped-call]
            for response in opened:  # already finished or released: nothing to shut
                with contextlib.suppress(ValueError, RuntimeError, OSError):
                    response.shutdown()
            return


class KubeAccessStore:
    """AccessStore over AccessRequest resources (see the module docstring)."""

    def __init__(self, resource: Resource) -> None:
        self._resource = resource

    def create(self, request: AccessRequest) -> AccessRequest:
        spec = request.to_dict()
        version = self._resource.create(request.id, spec, _request_labels(request))
        return AccessRequest.from_dict(spec, version)

    def get(self, request_id: str) -> AccessRequest | None:
        found = self._resource.get(request_id)
        return _request(found) if found is not None else None

    def list(self, *, states: frozenset[State] | None = None, mapping: str = "",
             requester_subject: str = "") -> list[AccessRequest]:
        selector = {}
        if states is not None and len(states) == 1:
            selector["kubegate.io/state"] = next(iter(states)).value
        if mapping:
            selector["kubegate.io/mapping"] = label_value(mapping)
        if requester_subject:
            selector["kubegate.io/requester"] = _hashed(requester_subject)
        items, _ = self._resource.list(selector)
        return [request for request in map(_request, items)
                if (states is None or request.state in states)
                and (not mapping or request.mapping == mapping)
                and (not requester_subject or request.requester.subject == requester_subject)]

    def replace(self, request: AccessRequest) -> AccessRequest:
        spec = request.to_dict()
        version = self._resource.replace(request.id, request.version, spec,
                                         _request_labels(request))
        return AccessRequest.from_dict(spec, version)

    def watch(self, since: str, stop: threading.Event) -> Iterator[tuple[str, AccessRequest]]:
        position = since or self._resource.list({})[1]
        seen: dict[str, str] = {}  # name -> version last yielded
        while not stop.is_set():
            try:
                for kind, obj in self._resource.watch(position, stop):
                    position = str(obj["metadata"]["resourceVersion"])
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        yield _remember(seen, kind.lower(), _request(obj))
            except _Expired:
                position = yield from self._relist(seen)

    def _relist(self, seen: dict[str, str],
                ) -> Generator[tuple[str, AccessRequest], None, str]:
        """After 410 Gone: what changed while no watch ran, at least once each."""
        items, version = self._resource.list({})
        requests = [_request(item) for item in items]
        for request in requests:
            if seen.get(request.id) != request.version:
                yield _remember(seen, "modified", request)
        return version


class KubeSessionStore:
    """SessionStore over KubegateSession resources (see the module docstring)."""

    def __init__(self, resource: Resource) -> None:
        self._resource = resource

    def create(self, session: Session) -> Session:
        spec = session.to_dict()
        version = self._resource.create(session.id, spec, _session_labels(session))
        return Session.from_dict(spec, version)

    def get(self, session_id: str) -> Session | None:
        found = self._resource.get(session_id)
        return _session(found) if found is not None else None

    def list_due(self, now: float) -> list[Session]:
        """Every active session, filtered here (labels cannot compare times)."""
        return [session for session in self.list(active_only=True)
                if session.not_after <= now or session.caller_pod]

    def list(self, *, active_only: bool = False, access_request: str = "",
             cluster: str = "") -> list[Session]:
        selector = {}
        if active_only:
            selector["kubegate.io/active"] = "true"
        if access_request:
            selector["kubegate.io/access-request"] = label_value(access_request)
        if cluster:
            selector["kubegate.io/cluster"] = label_value(cluster)
        items, _ = self._resource.list(selector)
        return [session for session in map(_session, items)
                if (not active_only or session.active)
                and (not access_request or session.access_request == access_request)
                and (not cluster or session.cluster == cluster)]

    def replace(self, session: Session) -> Session:
        spec = session.to_dict()
        version = self._resource.replace(session.id, session.version, spec,
                                         _session_labels(session))
        return Session.from_dict(spec, version)


ACCESS_REQUESTS: Final = {"kind": "AccessRequest", "plural": "accessrequests"}
SESSIONS: Final = {"kind": "KubegateSession", "plural": "kubegatesessions"}


class KubeStores:
    """Both stores over the custom resources of `namespace`: `.requests` and `.sessions`."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        custom = k8s.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.requests = KubeAccessStore(Resource(custom, namespace, **ACCESS_REQUESTS))
        self.sessions = KubeSessionStore(Resource(custom, namespace, **SESSIONS))


def label_value(text: str) -> str:
    """`text` when it is a valid label value, else `h-` and a sha256 prefix of it."""
    return text if _LABEL_VALUE.fullmatch(text) else "h-" + _hashed(text)


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _request_labels(request: AccessRequest) -> dict[str, str]:
    return {"kubegate.io/mapping": label_value(request.mapping),
            "kubegate.io/state": request.state.value,
            "kubegate.io/requester": _hashed(request.requester.subject)}


def _session_labels(session: Session) -> dict[str, str]:
    return {"kubegate.io/mapping": label_value(session.mapping),
            "kubegate.io/cluster": label_value(session.cluster),
            "kubegate.io/active": "true" if session.active else "false",
            "kubegate.io/access-request": label_value(session.access_request)}


def _request(obj: dict[str, Any]) -> AccessRequest:
    return AccessRequest.from_dict(obj["spec"], str(obj["metadata"]["resourceVersion"]))


def _session(obj: dict[str, Any]) -> Session:
    return Session.from_dict(obj["spec"], str(obj["metadata"]["resourceVersion"]))


def _remember(seen: dict[str, str], kind: str,
              request: AccessRequest) -> tuple[str, AccessRequest]:
    if kind == "deleted":
        seen.pop(request.id, None)
    else:
        seen[request.id] = request.version
    return kind, request


def _creation_order(obj: dict[str, Any]) -> tuple[int, str]:
    metadata = obj["metadata"]
    created = str((metadata.get("annotations") or {}).get(CREATED, "0"))
    return int(created) if created.isdigit() else 0, str(metadata["name"])

