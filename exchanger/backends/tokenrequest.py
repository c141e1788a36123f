"""TokenRequest backend: a token of the grant's service account, from the target cluster.

Binding decides revocation. When the caller is a pod of the same cluster that runs as the
granted service account in the granted namespace, the token is bound to that pod itself.
Otherwise it is bound to a per-session Secret that kubegate creates beside the service
account: deleting the Secret revokes the token. When the caller is a pod of the same
cluster (but TokenRequest cannot bind to it: it runs elsewhere or as another account), the
Secret records the pod, and the SessionReaper deletes the Secret once the pod is gone.

A request with `not_after` (the end of an access request or window) is always bound to a
session Secret, never to the caller pod, whose expiry annotation is `not_after` at the
latest: the reaper deletes it then and the token dies with it, although TokenRequest never
issues less than 600 seconds.

Invariants: nothing half-made (a Secret whose TokenRequest failed is deleted again); the
expiry reported is the one the API server granted, never the one asked for.
"""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode
from collections.abc import Callable, Mapping
from typing import Any

from exchanger.backends.base import (
    MIN_LIFETIME,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    IssuedCredential,
    IssueRequest,
    SessionObserver,
)
from exchanger.identity import Identity
from exchanger.kube.port import (
    CALLER_POD_ANNOTATION,
    EXPIRES_ANNOTATION,
    MANAGED_BY_LABEL,
    MAPPING_ANNOTATION,
    SESSION_LABEL,
    KubeApi,
    ObjectRef,
)
from kubegate.credential import ClusterInfo


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def caller_pod(identity: Identity, cluster_issuers: frozenset[str]) -> ObjectRef | None:
    """The pod a Kubernetes subject token is bound to, when its issuer is this cluster."""
    if identity.issuer not in cluster_issuers:
        return None
    kube = _object(identity.claims.get("kubernetes.io"))
    pod = _object(kube.get("pod"))
    namespace, name, uid = kube.get("namespace"), pod.get("name"), pod.get("uid")
    if not (isinstance(namespace, str) and isinstance(name, str) and isinstance(uid, str)):
        return None
    return ObjectRef(kind="Pod", name=name, uid=uid, namespace=namespace)


def caller_service_account(identity: Identity) -> str | None:
    account = _object(_object(identity.claims.get("kubernetes.io")).get("serviceaccount"))
    name = account.get("name")
    return name if isinstance(name, str) else None


def token_id(token: str) -> str:
    """The `jti` of a token the API server just issued to us over TLS (not verified again)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims.get("jti", ""))


class TokenRequestBackend:
    def __init__(self, *, api: KubeApi, cluster: ClusterInfo,
                 cluster_issuers: frozenset[str], clock: Callable[[], float],
                 default_audiences: tuple[str, ...] = (),
                 observer: SessionObserver | None = None):
        """cluster_issuers: the configured issuer names whose tokens come from this cluster;
        observer: told of each session issued and revoked (metrics)."""
        self._api = api
        self._observer = observer
        self._cluster = cluster
        self._cluster_issuers = cluster_issuers
        self._default_audiences = default_audiences
        self._clock = clock

    def issue(self, request: IssueRequest) -> IssuedCredential:
        grant = request.grant
        if not grant.service_account:
            raise ValueError("a TokenRequest grant names a service account")
        pod = caller_pod(request.identity, self._cluster_issuers)
        secret: ObjectRef | None = None
        if not request.not_after and pod and pod.namespace == grant.namespace and (
            caller_service_account(request.identity) == grant.service_account
        ):
            bound = pod
        else:
            secret = bound = self._create_session_secret(request, pod)
        try:
            granted = self._api.request_token(
                grant.namespace, grant.service_account,
                audiences=request.audiences or self._default_audiences,
                seconds=max(request.lifetime, MIN_LIFETIME), bound_to=bound,
            )
        except BaseException:
            if secret is not None:
                self._api.delete_secret(secret.namespace, secret.name)
            raise
        if self._observer is not None:
            self._observer.on_session_issued(self._cluster.name,
                                             "pod" if secret is None else "secret")
        return IssuedCredential(
            token=granted.token, token_type=SERVICE_ACCOUNT_TOKEN_TYPE,
            token_id=token_id(granted.token), expires_at=granted.expires_at,
            session_id=request.session_id,
            cluster=ClusterInfo(
                name=self._cluster.name, server=self._cluster.server,
                certificate_authority_data=self._cluster.certificate_authority_data,
                namespace=grant.namespace, service_account=grant.service_account,
            ),
            bound_to=f"{bound.kind} {bound.namespace}/{bound.name}",
            caller_pod=f"{pod.namespace}/{pod.name}/{pod.uid}" if pod else "",
        )

    def revoke(self, credential: IssuedCredential) -> None:
        kind, _, where = credential.bound_to.partition(" ")
        if kind == "Secret":
            namespace, _, name = where.partition("/")
            self._api.delete_secret(namespace, name)
            if self._observer is not None:
                self._observer.on_session_revoked(self._cluster.name)

    def _create_session_secret(self, request: IssueRequest, pod: ObjectRef | None) -> ObjectRef:
        expires = int(self._clock()) + max(request.lifetime, MIN_LIFETIME)
        annotations = {
            # the API server may shorten the lifetime, never lengthen it: a safe upper bound
            EXPIRES_ANNOTATION: str(min(expires, request.not_after) if request.not_after
                                    else expires),
            MAPPING_ANNOTATION: request.mapping,
        }
        if pod is not None:
            annotations[CALLER_POD_ANNOTATION] = f"{pod.namespace}/{pod.name}/{pod.uid}"
        return self._api.create_session_secret(
            request.grant.namespace, f"kubegate-session-{request.session_id}",
            labels={SESSION_LABEL: request.session_id, MANAGED_BY_LABEL: "kubegate"},
            annotations=annotations,
        )
