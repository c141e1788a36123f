"""The session metrics move with what they count: a TokenRequest session issued (bound to a
session Secret or to the caller's pod) and revoked, a session Secret reaped (by reason), and
each reaper run (ok, or error when a namespace failed), with the time of the last good run."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from exchanger.backends.base import IssueRequest
from exchanger.backends.reaper import SessionReaper
from exchanger.backends.tokenrequest import TokenRequestBackend
from exchanger.identity import Identity
from exchanger.kube.port import (
    CALLER_POD_ANNOTATION,
    EXPIRES_ANNOTATION,
    GrantedToken,
    ObjectRef,
    PodInfo,
    SessionSecret,
)
from exchanger.mappings.model import Grant
from exchanger.metrics import ExchangerMetrics
from kubegate.credential import ClusterInfo
from kubegate.errors import PreconditionError

NOW = 1_000_000.0


def value(metrics: ExchangerMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


class Api:
    """KubeApi over a few session Secrets and pods; namespace `forbidden` cannot be listed."""

    def __init__(self, secrets: Sequence[SessionSecret] = (),
                 pods: Mapping[str, PodInfo] | None = None) -> None:
        self.secrets, self.pods = list(secrets), dict(pods or {})
        self.deleted: list[str] = []

    def list_session_secrets(self, namespace: str) -> list[SessionSecret]:
        if namespace == "forbidden":
            raise PreconditionError("KUBEGATE_FORBIDDEN", "list secrets: 403")
        return [s for s in self.secrets if s.namespace == namespace]

    def delete_secret(self, namespace: str, name: str) -> None:
        self.deleted.append(f"{namespace}/{name}")

    def create_session_secret(self, namespace: str, name: str, labels: Mapping[str, str],
                              annotations: Mapping[str, str]) -> ObjectRef:
        return ObjectRef(kind="Secret", name=name, uid="uid-s", namespace=namespace)

    def request_token(self, namespace: str, service_account: str, *,
                      audiences: Sequence[str], seconds: int,
                      bound_to: ObjectRef) -> GrantedToken:
        payload = base64.urlsafe_b64encode(json.dumps({"jti": "j-1"}).encode()).decode()
        return GrantedToken(token=f"e30.{payload.rstrip('=')}.c2ln",
                            expires_at=int(NOW) + seconds)

    def get_pod(self, namespace: str, name: str) -> PodInfo | None:
        return self.pods.get(f"{namespace}/{name}")

    def review_token(self, token: str, audiences: Sequence[str]) -> bool:
        return True


def secret(name: str, namespace: str = "web", **annotations: str) -> SessionSecret:
    return SessionSecret(namespace=namespace, name=name, annotations=annotations)


def reaper(api: Api, metrics: ExchangerMetrics, *namespaces: str) -> SessionReaper:
    return SessionReaper(api=api, namespaces=lambda: set(namespaces), clock=lambda: NOW,
                         cluster="prod", observer=metrics)


def test_each_reaped_secret_is_counted_by_reason_and_a_good_run_is_timed() -> None:
    metrics = ExchangerMetrics()
    api = Api([secret("kubegate-session-1", **{EXPIRES_ANNOTATION: "10"}),
               secret("kubegate-session-2", **{CALLER_POD_ANNOTATION: "ci/job-1/uid-1",
                                               EXPIRES_ANNOTATION: str(int(NOW) + 600)}),
               secret("kubegate-session-3", **{CALLER_POD_ANNOTATION: "ci/job-2/uid-2",
                                               EXPIRES_ANNOTATION: str(int(NOW) + 600)})],
              pods={"ci/job-2": PodInfo(uid="uid-2", service_account="pipeline")})
    reaper(api, metrics, "web").reap_once()
    assert api.deleted == ["web/kubegate-session-1", "web/kubegate-session-2"]
    reaped = "kubegate_sessions_reaped_total"
    assert value(metrics, reaped, cluster="prod", reason="expired") == 1
    assert value(metrics, reaped, cluster="prod", reason="caller_pod_gone") == 1
    runs = "kubegate_session_reaper_runs_total"
    assert value(metrics, runs, cluster="prod", result="ok") == 1
    assert value(metrics, "kubegate_session_reaper_last_success_timestamp_seconds",
                 cluster="prod") == NOW


def test_a_run_with_a_failing_namespace_is_an_error_run_that_still_reaps_the_others() -> None:
    metrics = ExchangerMetrics()
    api = Api([secret("kubegate-session-1", **{EXPIRES_ANNOTATION: "10"})])
    reaper(api, metrics, "forbidden", "web").reap_once()
    assert api.deleted == ["web/kubegate-session-1"]
    assert value(metrics, "kubegate_sessions_reaped_total", cluster="prod",
                 reason="expired") == 1
    runs = "kubegate_session_reaper_runs_total"
    assert value(metrics, runs, cluster="prod", result="error") == 1
    assert value(metrics, runs, cluster="prod", result="ok") == 0
    assert metrics.registry.get_sample_value(
        "kubegate_session_reaper_last_success_timestamp_seconds", {"cluster": "prod"}) == 0


def issue_request(claims: dict[str, object]) -> IssueRequest:
    identity = Identity(issuer="in-cluster", issuer_url="https://kubernetes.default.svc",
                        subject="system:serviceaccount:web:deployer", token_id=None,
                        audiences=("kubegate",), issued_at=int(NOW), expires_at=int(NOW) + 600,
                        claims=claims)
    return IssueRequest(identity=identity, mapping="web-deploy", lifetime=900, audiences=(),
                        grant=Grant(cluster="prod", namespace="web", service_account="deployer"),
                        session_id="s-1")


def backend(metrics: ExchangerMetrics) -> TokenRequestBackend:
    cluster = ClusterInfo(name="prod", server="https://10.0.0.1:6443",
                          certificate_authority_data=b"ca", namespace="")
    return TokenRequestBackend(api=Api(), cluster=cluster, cluster_issuers=frozenset(
        {"in-cluster"}), clock=lambda: NOW, observer=metrics)


def test_issued_sessions_are_counted_by_what_they_are_bound_to_and_revocations_too() -> None:
    metrics = ExchangerMetrics()
    tokens = backend(metrics)
    credential = tokens.issue(issue_request({"sub": "x"}))
    assert credential.bound_to == "Secret web/kubegate-session-s-1"
    pod_claims = {"kubernetes.io": {"namespace": "web", "pod": {"name": "job", "uid": "u"},
                                    "serviceaccount": {"name": "deployer", "uid": "v"}}}
    assert tokens.issue(issue_request(pod_claims)).bound_to == "Pod web/job"
    issued = "kubegate_sessions_issued_total"
    assert value(metrics, issued, cluster="prod", bound_to="secret") == 1
    assert value(metrics, issued, cluster="prod", bound_to="pod") == 1
    tokens.revoke(credential)
    assert value(metrics, "kubegate_sessions_revoked_total", cluster="prod") == 1
