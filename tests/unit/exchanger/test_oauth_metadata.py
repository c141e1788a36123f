"""The RFC 8414 metadata document of the token endpoint."""

from __future__ import annotations

import json

from exchanger.oauth.metadata import metadata, metadata_bytes


def test_metadata_names_issuer_endpoint_grant_and_no_client_authentication() -> None:
    document = metadata("https://kubegate.example.com:8445")
    assert document == {
        "issuer": "https://kubegate.example.com:8445",
        "token_endpoint": "https://kubegate.example.com:8445/oauth2/token",
        "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "kubegate_subject_token_types_supported": [
            "urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt"],
        "kubegate_issued_token_types_supported": [
            "urn:ietf:params:oauth:token-type:jwt",
            "urn:kubegate:token-type:kubernetes-service-account"],
    }


def test_metadata_bytes_are_that_document_as_json() -> None:
    url = "https://127.0.0.1:8445"
    assert json.loads(metadata_bytes(url)) == metadata(url)
