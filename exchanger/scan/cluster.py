"""What the scan reads from a cluster: RBAC objects, legacy token Secrets, and the service
accounts and pods of pipeline namespaces. Lists only.

Rules of this module:
- read-only: list calls, nothing else;
- a list the scanner may not make (or that fails) is a `CouldNotSee` with the API's reason,
  never an empty list: a scan that could not look never reports "nothing found";
- a Secret's `data` and `stringData` are dropped as soon as it arrives: the scan keeps and
  prints metadata only;
- objects are plain dicts as the API serves them (camelCase), so `candidates.py` and the
  checks are pure and testable with literal objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import kubernetes.client as k8s
import urllib3
from kubernetes.client.exceptions import ApiException

from exchanger.scan.candidates import RbacObjects
from exchanger.scan.model import CouldNotSee
from exchanger.scan.review import api_reason
from kubegate.errors import MessageError, UnavailableError

LEGACY_TOKEN_TYPE: Final = "kubernetes.io/service-account-token"  # noqa: S105 (a type)
PAGE: Final = 500
TIMEOUT: Final = (3.0, 30.0)

Item = dict[str, Any]


class ListError(MessageError):
    """A list was refused or failed: the resource and the API's reason."""

    code = UnavailableError.code
    reason_name = "LIST_FAILED"

    def __init__(self, resource: str, namespace: str, reason: str) -> None:
        self.could_not_see = CouldNotSee(resource=resource, namespace=namespace, reason=reason)
        super().__init__(str(self.could_not_see))


class ClusterReader(Protocol):
    """Lists (`items`) `resource` (one of RESOURCES), in `namespace` or ("") all namespaces; raises
    ListError."""

    def items(self, resource: str, namespace: str = "") -> list[Item]: ...


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    rbac: RbacObjects
    legacy_tokens: tuple[Item, ...] = ()
    service_accounts: tuple[Item, ...] = ()
    pods: tuple[Item, ...] = ()
    could_not_see: tuple[CouldNotSee, ...] = field(default=())


def read_cluster(reader: ClusterReader, pipeline_namespaces: Iterable[str]) -> Snapshot:
    """Everything the checks need; what could not be listed is named, the rest still read."""
    missing: list[CouldNotSee] = []

    def take(resource: str, namespace: str = "") -> list[Item]:
        try:
            return reader.items(resource, namespace)
        except ListError as error:
            missing.append(error.could_not_see)
            return []

    namespaces = sorted(set(pipeline_namespaces))
    rbac = RbacObjects(cluster_roles=take("clusterroles"), roles=take("roles"),
                       cluster_role_bindings=take("clusterrolebindings"),
                       role_bindings=take("rolebindings"))
    return Snapshot(
        rbac=rbac, legacy_tokens=tuple(take("secrets")),
        service_accounts=tuple(i for n in namespaces for i in take("serviceaccounts", n)),
        pods=tuple(i for n in namespaces for i in take("pods", n)),
        could_not_see=tuple(missing))


def _without_secret_data(item: Item) -> Item:
    return {key: value for key, value in item.items() if key not in ("data", "stringData")}


class KubeClusterReader:
    """ClusterReader over the official client, paging through lists as raw JSON."""

    def __init__(self, api: k8s.ApiClient) -> None:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        self._all: dict[str, Callable[..., Any]] = {
            "clusterroles": rbac.list_cluster_role,
            "clusterrolebindings": rbac.list_cluster_role_binding,
            "roles": rbac.list_role_for_all_namespaces,
            "rolebindings": rbac.list_role_binding_for_all_namespaces,
            "secrets": core.list_secret_for_all_namespaces,
        }
        self._namespaced: dict[str, Callable[..., Any]] = {
            "serviceaccounts": core.list_namespaced_service_account,
            "pods": core.list_namespaced_pod,
        }

    def items(self, resource: str, namespace: str = "") -> list[Item]:
        if namespace:
            method = self._namespaced[resource]
            return self._pages(resource, namespace, lambda **kw: method(namespace, **kw))
        extra = {"field_selector": f"type={LEGACY_TOKEN_TYPE}"} if resource == "secrets" else {}
        method = self._all[resource]
        items = self._pages(resource, "", lambda **kw: method(**extra, **kw))
        return [_without_secret_data(i) for i in items] if resource == "secrets" else items

    def _pages(self, resource: str, namespace: str,
               call: Callable[..., Any]) -> list[Item]:
        items: list[Item] = []
        token: str | None = None
        while True:
            try:
                response = call(limit=PAGE, _continue=token, _preload_content=False,
                                _request_timeout=TIMEOUT)
                page = json.loads(response.data)
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                label = resource + (" (type kubernetes.io/service-account-token)"
                                    if resource == "secrets" else "")
                raise ListError(label, namespace, api_reason(error)) from error
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                return items


def named(items: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Items by (namespace, name)."""
    return {(str((i.get("metadata") or {}).get("namespace") or ""),
             str((i.get("metadata") or {}).get("name") or "")): i for i in items}
