"""Revocation that holds, against the real kube-apiserver: a credential issued by a real
exchanger (tokenRequest backend, bound to a session Secret) is recorded in the session index
(the SQLite file of the embedded default); revoking the session, or the end of its access
request, deletes the Secret by name and the API server refuses the token within 15 s; the
index says who ended it and why; and an exchanger restarted on the same state keeps the
index and still ends, on time, a session whose end was scheduled before the restart.

Each measured time is printed (`-s`); README "Revocation and the session index" quotes them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from exchanger.access.model import Requester, Session, SessionEnd
from exchanger.access.revocation import Revoker
from exchanger.access.sqlite_store import SqliteStores
from exchanger.kube.client import ClusterCredentials, KubernetesClient
from exchanger.server import start_exchanger
from kubegate.credential import Credential
from tests.support.controlplane import ControlPlane
from tests.support.fixtures_exchanger import StartExchanger, TestExchanger, cluster_entry
from tests.support.kube import Cluster, Kubectl
from tests.support.oidc import GitHubActionsIssuer
from tests.support.wait import poll

AUDIENCE = "kubegate"
REFUSED_WITHIN = 15.0  # issue 14: the API server refuses a revoked token within 15 s
REAPER_INTERVAL = 5.0
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
ONCALL = Requester(issuer="corp", subject="oncall-2", who="bob@example.com")


@dataclass
class Setup:
    exchanger: TestExchanger
    stores: SqliteStores  # the exchanger's own index, opened beside it (as a replica would)
    revoker: Revoker
    web: str


@pytest.fixture
def setup(cluster: Cluster, control_plane: ControlPlane, github_issuer: GitHubActionsIssuer,
          start_test_exchanger: StartExchanger) -> Iterator[Setup]:
    web = cluster.create_namespace("web")
    cluster.create_service_account(web, "deployer")
    cluster.create_role(web, "pod-reader", POD_READER)
    cluster.bind_role(web, "pod-reader", service_account=(web, "deployer"))
    exchanger = start_test_exchanger(
        issuers=[{"name": "github", "url": github_issuer.url, "audiences": [AUDIENCE],
                  "caFile": str(github_issuer.ca_path)}],
        clusters=[cluster_entry(control_plane)], mappings=f"""
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {{name: web-deploy}}
spec:
  issuer: github
  claims: [{{claim: ref, equals: refs/heads/main}}]
  grant: {{cluster: test, namespace: {web}, serviceAccount: deployer, maxLifetime: 15m}}
""")
    database = exchanger.config.access.sqlite_file
    assert database is not None
    stores = SqliteStores(database)
    api = KubernetesClient(server=control_plane.url, ca_file=control_plane.ca_path,
                           credentials=ClusterCredentials(
                               client_cert_file=control_plane.admin_cert_path,
                               client_key_file=control_plane.admin_key_path))
    try:
        yield Setup(exchanger=exchanger, stores=stores, web=web,
                    revoker=Revoker(stores.sessions, {"test": api}, time.time))
    finally:
        api.close()
        stores.close()


def issue(setup: Setup, github_issuer: GitHubActionsIssuer) -> tuple[Credential, Session]:
    """An exchange, and its session as the index recorded it."""
    with setup.exchanger.client() as client:
        credential = client.exchange(github_issuer.mint(audience=AUDIENCE))
    assert poll(lambda: setup.stores.sessions.get(credential.session_id) is not None, 5, 0.1), (
        "the exchange recorded no session")
    session = setup.stores.sessions.get(credential.session_id)
    assert session is not None
    return credential, session


def seconds_until_refused(cluster: Cluster, token: str, since: float) -> float:
    """Seconds from `since` until a TokenReview refuses `token` (inf if not within 30 s)."""
    if not poll(lambda: not cluster.token_review(token).authenticated, 30, 0.25):
        return float("inf")
    return time.monotonic() - since


def in_use(cluster: Cluster, kubectl_with_token: Callable[[str], Kubectl], token: str,
           namespace: str) -> None:
    """Use the token as a client would, so the API server has it in its cache."""
    assert kubectl_with_token(token).run("get", "pods", "-n", namespace).returncode == 0
    assert cluster.token_review(token).authenticated


def test_a_revoked_session_is_refused_within_15_seconds(
        setup: Setup, cluster: Cluster, github_issuer: GitHubActionsIssuer,
        kubectl_with_token: Callable[[str], Kubectl]) -> None:
    credential, session = issue(setup, github_issuer)
    assert session.secret == f"{setup.web}/kubegate-session-{credential.session_id}"
    assert (session.mapping, session.cluster, session.token_id) == (
        "web-deploy", "test", credential.token_id)
    in_use(cluster, kubectl_with_token, credential.token, setup.web)

    started = time.monotonic()
    ended = setup.revoker.revoke_session(session.id, by=ONCALL, reason=SessionEnd.REVOKED)
    took = seconds_until_refused(cluster, credential.token, started)
    print(f"\nrevoke_session -> token refused after {took:.1f} s")
    assert took <= REFUSED_WITHIN
    assert kubectl_with_token(credential.token).run("get", "pods", "-n",
                                                    setup.web).returncode != 0
    stored = setup.stores.sessions.get(session.id)
    assert stored == ended
    assert stored is not None and not stored.active
    assert (stored.end_reason, stored.ended_by) == (SessionEnd.REVOKED, ONCALL)
    assert setup.stores.sessions.list(active_only=True) == []


def test_a_session_past_its_end_is_ended_and_refused_within_15_seconds(
        setup: Setup, cluster: Cluster, github_issuer: GitHubActionsIssuer,
        kubectl_with_token: Callable[[str], Kubectl]) -> None:
    """The access request ended before the credential's expiry: `end_due` (the reaper's
    run) deletes the Secret; whichever replica's reaper gets there first, it ends once."""
    credential, session = issue(setup, github_issuer)
    in_use(cluster, kubectl_with_token, credential.token, setup.web)
    now = int(time.time())
    setup.stores.sessions.replace(dataclasses.replace(session, not_after=now - 1))

    started = time.monotonic()
    setup.revoker.end_due(time.time())
    took = seconds_until_refused(cluster, credential.token, started)
    print(f"\nend_due past not_after -> token refused after {took:.1f} s")
    assert took <= REFUSED_WITHIN
    stored = setup.stores.sessions.get(session.id)
    assert stored is not None and stored.end_reason is SessionEnd.REQUEST_ENDED
    assert stored.ended_by is None


def test_a_restarted_exchanger_keeps_the_index_and_ends_a_session_scheduled_before(
        setup: Setup, cluster: Cluster, github_issuer: GitHubActionsIssuer,
        kubectl_with_token: Callable[[str], Kubectl]) -> None:
    """Stopped with a session whose end lies ahead, started again on the same config and
    state: the session is still listed, and the new exchanger's reaper ends it when due."""
    credential, session = issue(setup, github_issuer)
    setup.exchanger.running.stop(grace=0)
    not_after = int(time.time()) + 8
    setup.stores.sessions.replace(dataclasses.replace(session, not_after=not_after))

    restarted = start_exchanger(setup.exchanger.config)
    try:
        assert [s.id for s in setup.stores.sessions.list(active_only=True)] == [session.id]
        time.sleep(max(0.0, not_after - 2 - time.time()))
        # first use now: the API server caches the authenticated token ~10 s, past not_after
        in_use(cluster, kubectl_with_token, credential.token, setup.web)
        time.sleep(max(0.0, not_after - time.time()))
        due = time.monotonic()

        def ended() -> bool:
            stored = setup.stores.sessions.get(session.id)
            return stored is not None and not stored.active

        assert poll(ended, REAPER_INTERVAL + 5, 0.1), "the restarted reaper did not end it"
        reaped = time.monotonic() - due
        took = seconds_until_refused(cluster, credential.token, due)
        print(f"\nafter a restart: ended {reaped:.1f} s after not_after, token refused after "
              f"{took:.1f} s")
        assert took <= REAPER_INTERVAL + REFUSED_WITHIN
    finally:
        restarted.stop(grace=0)
    stored = setup.stores.sessions.get(session.id)
    assert stored is not None and stored.end_reason is SessionEnd.REQUEST_ENDED
