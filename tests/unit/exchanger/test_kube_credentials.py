"""kubegate's own credentials to a cluster: a token file is sent as a bearer token on every
request and re-read each time (the kubelet rotates projected tokens)."""

from __future__ import annotations

from pathlib import Path

from exchanger.kube.client import ClusterCredentials, api_client


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
