"""The proxy's session records feed the keeper: a 401 the API server gave a credential is
reported by its session id; other statuses, the proxy's own answers and requests made without
a credential are not, and every record still reaches the session log."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.main import watch_refusals


def record(status: int, session_id: str = "session-1", refused: str = "") -> dict[str, Any]:
    return {"method": "GET", "path": "/api/v1/pods", "status": status,
            "session_id": session_id, "refused": refused}


@pytest.mark.parametrize(("seen", "reported"), [
    (record(401), ["session-1"]),
    (record(403), []),
    (record(200), []),
    (record(401, session_id=""), []),  # no credential was used
    (record(401, refused="HOST_NOT_ALLOWED"), []),  # the proxy's own answer
])
def test_only_an_apiserver_401_to_a_credential_is_reported(seen: dict[str, Any],
                                                           reported: list[str]) -> None:
    refused: list[str] = []
    logged: list[dict[str, Any]] = []
    watch_refusals(refused.append, logged.append)(seen)
    assert refused == reported
    assert logged == [seen]
