"""The session metrics move with what they count: a TokenRequest session issued (bound to a
session Secret or to the caller's pod) and revoked, a session ended from the index (by reason), and
each reaper run (ok, or error when a cluster or the session index failed), with the time of
the last good run."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from exchanger.access.model import Requester, Session
from exchanger.access.revocation import Revoker
from exchanger.access.sqlite_store import SqliteStores
from exchanger.backends.base import IssueRequest
from exchanger.backends.reaper import SessionReaper
from exchanger.backends.tokenrequest import TokenRequestBackend
from exchanger.identity import Identity
from exchanger.kube.port import GrantedToken, ObjectRef, PodInfo
from exchanger.mappings.model import Grant
from exchanger.metrics import ExchangerMetrics
from kubegate.credential import ClusterInfo
from kubegate.errors import UnavailableError

NOW = 1_000_000.0


def value(metrics: ExchangerMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


class Api:
    """KubeApi over a few pods, recording deleted Secrets; `down` makes every call fail."""

    def __init__(self, pods: Mapping[str, PodInfo] | None = None, *, down: bool = False) -> None:
        self.pods, self.down = dict(pods or {}), down
        self.deleted: list[str] = []

    def delete_secret(self, namespace: str, name: str) -> None:
        if self.down:
            raise UnavailableError("KUBERNETES_UNAVAILABLE", "delete secret: timeout")
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
        if self.down:
            raise UnavailableError("KUBERNETES_UNAVAILABLE", "get pod: timeout")
        return self.pods.get(f"{namespace}/{name}")

    def review_token(self, token: str, audiences: Sequence[str]) -> bool:
        return True


def indexed(folder: Path, *sessions: Session) -> SqliteStores:
    stores = SqliteStores(folder / "access.db")
    for each in sessions:
        stores.sessions.create(each)
    return stores


def session(session_id: str, cluster: str = "prod", *, not_after: int = int(NOW) + 600,
            caller_pod: str = "") -> Session:
    return Session(id=session_id, mapping="web-deploy", cluster=cluster, namespace="web",
                   caller=Requester(issuer="ci", subject="pipeline"), token_id="j",
                   issued_at=int(NOW) - 60, expires_at=not_after, not_after=not_after,
                   secret=f"web/kubegate-session-{session_id}", caller_pod=caller_pod)


def reaper(stores: SqliteStores, apis: Mapping[str, Api],
           metrics: ExchangerMetrics) -> SessionReaper:
    revoker = Revoker(stores.sessions, apis, lambda: NOW, observer=metrics)
    return SessionReaper(revoker=revoker, clock=lambda: NOW, clusters=apis, observer=metrics)


def test_each_ended_session_is_counted_by_reason_and_a_good_run_is_timed(
        tmp_path: Path) -> None:
    metrics = ExchangerMetrics()
    api = Api(pods={"ci/job-2": PodInfo(uid="uid-2", service_account="pipeline")})
    stores = indexed(tmp_path, session("1", not_after=10),
                     session("2", caller_pod="ci/job-1/uid-1"),
                     session("3", caller_pod="ci/job-2/uid-2"))
    try:
        reaper(stores, {"prod": api}, metrics).reap_once()
    finally:
        stores.close()
    assert api.deleted == ["web/kubegate-session-1", "web/kubegate-session-2"]
    reaped = "kubegate_sessions_reaped_total"
    assert value(metrics, reaped, cluster="prod", reason="expired") == 1
    assert value(metrics, reaped, cluster="prod", reason="caller_pod_gone") == 1
    runs = "kubegate_session_reaper_runs_total"
    assert value(metrics, runs, cluster="prod", result="ok") == 1
    assert value(metrics, "kubegate_session_reaper_last_success_timestamp_seconds",
                 cluster="prod") == NOW


def test_a_run_with_an_unreachable_cluster_is_an_error_run_that_still_ends_the_others(
        tmp_path: Path) -> None:
    metrics = ExchangerMetrics()
    up = Api()
    stores = indexed(tmp_path, session("1", "down", not_after=10),
                     session("2", "prod", not_after=10))
    try:
        reaper(stores, {"down": Api(down=True), "prod": up}, metrics).reap_once()
    finally:
        stores.close()
    assert up.deleted == ["web/kubegate-session-2"]
    assert value(metrics, "kubegate_sessions_reaped_total", cluster="prod",
                 reason="expired") == 1
    runs = "kubegate_session_reaper_runs_total"
    assert value(metrics, runs, cluster="down", result="error") == 1
    assert value(metrics, runs, cluster="prod", result="ok") == 1
    assert metrics.registry.get_sample_value(
        "kubegate_session_reaper_last_success_timestamp_seconds", {"cluster": "down"}) == 0


class Unreadable:
    def end_due(self, now: float, failed: list[str] | None = None) -> list[Session]:
        raise UnavailableError("STORE_UNAVAILABLE", "database is locked")


def test_an_unreadable_index_is_an_error_run_for_every_cluster() -> None:
    metrics = ExchangerMetrics()
    reaper = SessionReaper(revoker=Unreadable(), clock=lambda: NOW, clusters=["a", "b"],
                           observer=metrics)
    with pytest.raises(UnavailableError):
        reaper.reap_once()
    runs = "kubegate_session_reaper_runs_total"
    assert value(metrics, runs, cluster="a", result="error") == 1
    assert value(metrics, runs, cluster="b", result="error") == 1


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
