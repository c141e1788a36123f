"""kubegate's own credentials to a cluster: a token file is sent as a bearer token on every
request and re-read each time (the kubelet rotates projected tokens); the session reaper
skips a namespace it may not read instead of giving up on the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from exchanger.backends.reaper import reap
from exchanger.kube.client import ClusterCredentials, api_client
from exchanger.kube.port import (
    EXPIRES_ANNOTATION,
    GrantedToken,
    ObjectRef,
    PodInfo,
    SessionSecret,
)
from kubegate.errors import PreconditionError


def test_a_token_file_is_sent_as_a_bearer_token_and_reread(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    client = api_client(server="https://127.0.0.1:6443", ca_file=tmp_path / "ca.crt",
                        credentials=ClusterCredentials(token_file=token))
    try:
        settings = client.configuration.auth_settings()
        assert settings["BearerToken"]["value"] == "Bearer first"
        token.write_text("second")
        assert client.configuration.auth_settings()["BearerToken"]["value"] == "Bearer second"
    finally:
        client.close()


class Api:
    """KubeApi with session Secrets in two namespaces, one of them forbidden."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def list_session_secrets(self, namespace: str) -> list[SessionSecret]:
        if namespace == "a-forbidden":
            raise PreconditionError("KUBEGATE_FORBIDDEN", "list: 403")
        return [SessionSecret(namespace=namespace, name="kubegate-session-1",
                              annotations={EXPIRES_ANNOTATION: "10"})]

    def delete_secret(self, namespace: str, name: str) -> None:
        self.deleted.append(f"{namespace}/{name}")

    def create_session_secret(self, namespace: str, name: str, labels: Mapping[str, str],
                              annotations: Mapping[str, str]) -> ObjectRef:
        raise NotImplementedError

    def request_token(self, namespace: str, service_account: str, *,
                      audiences: Sequence[str], seconds: int,
                      bound_to: ObjectRef) -> GrantedToken:
        raise NotImplementedError

    def get_pod(self, namespace: str, name: str) -> PodInfo | None:
        return None

    def review_token(self, token: str, audiences: Sequence[str]) -> bool:
        return False


def test_a_forbidden_namespace_does_not_stop_reaping_the_others() -> None:
    api = Api()
    reaped = reap(api, {"a-forbidden", "web"}, now=100)
    assert reaped == [("web/kubegate-session-1", "expired")]
    assert api.deleted == ["web/kubegate-session-1"]
