"""The JSON document server behind the self-issued discovery endpoint and the demo issuer."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from exchanger.documents import DocumentServer
from tests.support.pki import TestCA


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    ca = TestCA("documents")
    cert, key = ca.issue_server().write(tmp_path, "server")
    server = DocumentServer(host="127.0.0.1", port=0, cert_file=cert, key_file=key,
                            name="test-documents", cache_control="public, max-age=300")
    server.publish({"/doc": json.dumps({"a": 1}).encode()})
    with server:
        yield server, ssl.create_default_context(cadata=ca.cert_pem.decode())


def test_documents_are_served_with_their_cache_header_and_others_are_404(served) -> None:  # type: ignore[no-untyped-def]
    server, context = served
    with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/doc", context=context,
                                timeout=5) as response:
        assert json.load(response) == {"a": 1}
        assert response.headers["Cache-Control"] == "public, max-age=300"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"https://127.0.0.1:{server.port}/other", context=context,
                               timeout=5)
    missing.value.close()
    assert missing.value.code == 404


def test_a_silent_client_does_not_hold_up_other_clients(served) -> None:  # type: ignore[no-untyped-def]
    server, context = served
    with socket.create_connection(("127.0.0.1", server.port)):  # connects, never handshakes
        started = time.monotonic()
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/doc", context=context,
                                    timeout=5) as response:
            assert response.status == 200
        assert time.monotonic() - started < 2
