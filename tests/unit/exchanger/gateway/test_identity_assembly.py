"""`start_identity`: the identity half built from the config alone (mapping files in the
mappings folder, the SQLite index, static issuer keys), as `kubegate gateway` starts it; a
revoke with the exchanger's own Revoker reaches its running watch within a second."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from exchanger.access.model import SessionEnd
from exchanger.access.revocation import Revoker
from exchanger.access.sqlite_store import SqliteStores
from exchanger.backends.selfissued import load_or_create_signing_key
from exchanger.config import build_config
from exchanger.gateway.identity_assembly import start_identity
from exchanger.gateway.session import GatewayRefusal
from tests.unit.exchanger.gateway.identity_world import Clock, World, config_data

VENDOR_MAPPING = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: vendor}
spec:
  issuer: corp
  claims:
  - {claim: groups, contains: vendors}
  - {claim: email_verified, equals: true}
  grant:
    cluster: prod
    namespace: web
    user: {claim: email, prefix: "oidc:"}
    groups: [vendor-sre]
"""


def test_the_identity_half_starts_from_the_config_and_sees_a_revoke_within_a_second(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "mappings").mkdir(parents=True)
    (state / "mappings" / "vendor.yaml").write_text(VENDOR_MAPPING)
    load_or_create_signing_key(state / "signing-key.pem")  # the exchanger's, as it makes it
    config = build_config(config_data(state), base=tmp_path, environ={}, source="t.yaml")
    clock = Clock()
    minter = World(tmp_path / "minter", clock=clock)  # mints corp ID tokens
    identity = start_identity(config, clock)
    try:
        token = minter.id_token(sub="vera", groups=("vendors",))
        session = identity.authenticator.authenticate(token)
        assert (session.user, session.groups, session.mapping) == (
            "oidc:vera@example.com", ("vendor-sre",), "vendor")
        ended = threading.Event()
        identity.ends.subscribe(lambda sid, why: ended.set() if sid == session.id else None)
        sessions = SqliteStores(state / "access.db").sessions
        started = time.monotonic()
        Revoker(sessions, {}, clock).revoke_session(session.id, by=None,
                                                    reason=SessionEnd.REVOKED)
        assert ended.wait(10), "the running watch never reported the revoke"
        assert time.monotonic() - started < 1.0
        with pytest.raises(GatewayRefusal) as caught:
            identity.authenticator.authenticate(token)
        assert caught.value.reason == "SESSION_ENDED"
    finally:
        identity.stop()
