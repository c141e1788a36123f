"""The KubeApi port over the official `kubernetes` client, for one target cluster.

Every `ApiException` and transport error is translated here, `raise ... from`, into
kubegate's errors: 403/404/409 -> PreconditionError (the cluster is not set up for this
grant), 429/5xx/connection/timeout -> UnavailableError (try again later). Messages name the
operation and object, never a token.

The cluster's service-account keys (`open_service_account_jwks`) are asked of this cluster's
own `server`, authenticated like every other call, with no redirect followed and no retry: the
credential goes to that server and nowhere else. The caller bounds and parses the body.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import kubernetes.config
import urllib3
from kubernetes.client.exceptions import ApiException

from exchanger.kube.port import GrantedToken, ObjectRef, PodInfo
from kubegate.errors import PreconditionError, UnavailableError

TIMEOUT = (3.0, 10.0)  # connect, read (the read timeout is the cluster's requestTimeout)
SERVICE_ACCOUNT_JWKS_PATH = "/openid/v1/jwks"
# Kubernetes serves its JWKS as application/jwk-set+json and answers 406 to a bare
# application/json.
_JWKS_ACCEPT = "application/jwk-set+json, application/json"


@dataclass(frozen=True, kw_only=True)
class ServerIdentity:
    """What a cluster's API server says about itself and about kubegate's credentials."""

    version: str  # gitVersion of /version
    user: str  # who kubegate is authenticated as (SelfSubjectReview)


@dataclass(frozen=True, kw_only=True)
class ClusterCredentials:
    """How kubegate itself authenticates to a cluster: a bearer token read from a file at
    every request (an in-cluster projected token rotates), a client certificate, or the
    user of a kubeconfig file (optionally a named context)."""

    kubeconfig: Path | None = None
    context: str | None = None
    token_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


def _translate(operation: str, error: Exception) -> Exception:
    if isinstance(error, ApiException):
        status = error.status or 0
        if status in (403, 404, 409, 422, 400):
            reasons = {403: "KUBEGATE_FORBIDDEN", 404: "OBJECT_NOT_FOUND", 409: "CONFLICT"}
            return PreconditionError(
                reasons.get(status, "REJECTED_BY_CLUSTER"),
                f"{operation}: the API server answered {status} {error.reason}",
            )
        reason = "KUBERNETES_THROTTLED" if status == 429 else "KUBERNETES_UNAVAILABLE"
        return UnavailableError(reason, f"{operation}: the API server answered {status}")
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason  # what went wrong, not that retries ran out
    return UnavailableError("KUBERNETES_UNAVAILABLE",
                            f"{operation}: {type(error).__name__}")


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _translate(operation, error) from error


def api_client(*, server: str, ca_file: Path | None,
               credentials: ClusterCredentials) -> k8s.ApiClient:
    """The official client's ApiClient for one cluster, authenticating as kubegate (server and
    CA may be left to a kubeconfig)."""
    config = k8s.Configuration()
    config.host = server
    if ca_file is not None:
        config.ssl_ca_cert = str(ca_file)
    if credentials.kubeconfig is not None:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(credentials.kubeconfig), context=credentials.context,
            client_configuration=config, persist_config=False)
    if credentials.client_cert_file and credentials.client_key_file:
        config.cert_file = str(credentials.client_cert_file)
        config.key_file = str(credentials.client_key_file)
    if credentials.token_file:
        config.refresh_api_key_hook = _token_file_hook(  # type: ignore[assignment]
            credentials.token_file)
        # the client sends a bearer token (and runs the hook) only when this key exists
        config.api_key = {"authorization": ""}
    return k8s.ApiClient(config)


class KubernetesClient:
    """KubeApi for one cluster."""

    def __init__(self, *, server: str, ca_file: Path | None, credentials: ClusterCredentials,
                 api_audiences: Sequence[str] = (), read_timeout: float = TIMEOUT[1]) -> None:
        self._timeout = (TIMEOUT[0], read_timeout)
        self._api = api_client(server=server, ca_file=ca_file, credentials=credentials)
        self._core = k8s.CoreV1Api(self._api)
        self._auth = k8s.AuthenticationV1Api(self._api)

    def close(self) -> None:
        self._api.close()  # type: ignore[no-untyped-call]

    @property
    def api_client(self) -> k8s.ApiClient:
        """The official client's ApiClient this client calls through (for the access stores'
        custom resources); closed by `close()`."""
        return self._api

    def create_session_secret(
        self, namespace: str, name: str, labels: Mapping[str, str],
        annotations: Mapping[str, str],
    ) -> ObjectRef:
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels),
                                      annotations=dict(annotations)),
            type="kubegate.io/session",
        )
        with _translated(f"create secret {namespace}/{name}"):
            created: Any = self._core.create_namespaced_secret(namespace, body,
                                                          _request_timeout=self._timeout)
        return ObjectRef(kind="Secret", name=name, uid=created.metadata.uid,
                         namespace=namespace)

    def delete_secret(self, namespace: str, name: str) -> None:
        try:
            with _translated(f"delete secret {namespace}/{name}"):
                self._core.delete_namespaced_secret(name, namespace, _request_timeout=self._timeout)
        except PreconditionError as error:
            if error.reason != "OBJECT_NOT_FOUND":
                raise

    def request_token(
        self, namespace: str, service_account: str, *, audiences: Sequence[str],
        seconds: int, bound_to: ObjectRef,
    ) -> GrantedToken:
        spec = k8s.V1TokenRequestSpec(
            audiences=list(audiences), expiration_seconds=seconds,
            bound_object_ref=k8s.V1BoundObjectReference(
                api_version="v1", kind=bound_to.kind, name=bound_to.name, uid=bound_to.uid),
        )
        with _translated(f"TokenRequest for {namespace}/{service_account}"):
            answer: Any = self._core.create_namespaced_service_account_token(
                service_account, namespace, k8s.AuthenticationV1TokenRequest(spec=spec),
                _request_timeout=self._timeout,
            )
        expiry: datetime.datetime = answer.status.expiration_timestamp
        return GrantedToken(token=answer.status.token, expires_at=int(expiry.timestamp()))

    def get_pod(self, namespace: str, name: str) -> PodInfo | None:
        try:
            with _translated(f"get pod {namespace}/{name}"):
                pod: Any = self._core.read_namespaced_pod(
                    name, namespace, _request_timeout=self._timeout)
        except PreconditionError as error:
            if error.reason == "OBJECT_NOT_FOUND":
                return None
            raise
        return PodInfo(uid=pod.metadata.uid, service_account=pod.spec.service_account_name or "")

    def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data; None when there is no such ConfigMap."""
        try:
            with _translated(f"get configmap {namespace}/{name}"):
                found: Any = self._core.read_namespaced_config_map(
                    name, namespace, _request_timeout=self._timeout)
        except PreconditionError as error:
            if error.reason == "OBJECT_NOT_FOUND":
                return None
            raise
        return dict(found.data or {})

    def create_config_map(self, namespace: str, name: str, data: Mapping[str, str],
                          labels: Mapping[str, str]) -> None:
        body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=dict(labels)),
                               data=dict(data))
        with _translated(f"create configmap {namespace}/{name}"):
            self._core.create_namespaced_config_map(namespace, body,
                                                    _request_timeout=self._timeout)

    def patch_config_map(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Set keys of a ConfigMap's data (a merge: other keys stay)."""
        with _translated(f"patch configmap {namespace}/{name}"):
            self._core.patch_namespaced_config_map(
                name, namespace, {"data": dict(data)},
                _content_type="application/merge-patch+json", _request_timeout=self._timeout)

    def review_token(self, token: str, audiences: Sequence[str]) -> bool:
        review = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(
            token=token, audiences=list(audiences) or None))
        with _translated("TokenReview"):
            answer: Any = self._auth.create_token_review(review, _request_timeout=self._timeout)
        return bool(answer.status.authenticated)

    @contextmanager
    def open_service_account_jwks(self, timeout: float) -> Iterator[urllib3.BaseHTTPResponse]:
        """The open answer to `GET /openid/v1/jwks` on this cluster's server, whatever its
        status (a 3xx is returned, never followed); `timeout` bounds connecting and each read.
        Transport errors, also those raised while the caller reads, leave as UnavailableError.
        """
        operation = f"GET {SERVICE_ACCOUNT_JWKS_PATH}"
        with _translated(operation):
            _, url, headers, _, _ = self._api.param_serialize(
                "GET", SERVICE_ACCOUNT_JWKS_PATH, header_params={"Accept": _JWKS_ACCEPT},
                auth_settings=["BearerToken"])
            response = self._api.rest_client.pool_manager.request(
                "GET", url, headers=headers, preload_content=False, redirect=False,
                retries=False, timeout=urllib3.Timeout(connect=min(TIMEOUT[0], timeout),
                                                       read=timeout))
            try:
                yield response
            finally:
                response.close()

    def identify(self) -> ServerIdentity:
        """The server's version and who kubegate is to it: one GET /version and one
        SelfSubjectReview (allowed to every authenticated user), so a refused credential
        shows here as PreconditionError or UnavailableError."""
        with _translated("GET /version"):
            version: Any = k8s.VersionApi(self._api).get_code(_request_timeout=self._timeout)
        with _translated("SelfSubjectReview"):
            review: Any = self._auth.create_self_subject_review(
                k8s.V1SelfSubjectReview(), _request_timeout=self._timeout)
        user = review.status.user_info.username if review.status else ""
        return ServerIdentity(version=str(version.git_version), user=str(user or ""))


def _token_file_hook(path: Path) -> Callable[[k8s.Configuration], None]:
    def refresh(config: k8s.Configuration) -> None:
        config.api_key = {"authorization": "Bearer " + path.read_text().strip()}

    return refresh
