"""Subject-token sources: a file read afresh each time, an environment value, and the GitHub
Actions ID-token endpoint (a local stand-in); failures name the source, never a token."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kubegate.client.sources import (
    EnvTokenSource,
    FileTokenSource,
    GitHubActionsTokenSource,
    SubjectTokenError,
    fingerprint_of,
)

RUNTIME_TOKEN = "runtime-bearer-secret"


def test_a_token_file_is_read_afresh_each_time(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    source = FileTokenSource(path)
    assert source.read() == "first"
    assert source.fingerprint() == fingerprint_of("first")
    path.write_text("second")
    assert source.read() == "second"
    assert source.fingerprint() == fingerprint_of("second")


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"), ("  \n", "is empty"), (b"\xff\xfe", "not UTF-8"),
])
def test_a_bad_token_file_is_a_clear_error(tmp_path: Path, content: str | bytes | None,
                                           message: str) -> None:
    path = tmp_path / "token"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    source = FileTokenSource(path)
    with pytest.raises(SubjectTokenError, match=message) as raised:
        source.read()
    assert str(path) in str(raised.value)
    assert source.fingerprint() is None


def test_an_environment_token_is_stripped() -> None:
    source = EnvTokenSource("CI_JOB_JWT", " eyJ.a.b\n")
    assert source.read() == "eyJ.a.b"
    with pytest.raises(SubjectTokenError, match="CI_JOB_JWT"):
        EnvTokenSource("CI_JOB_JWT", "").read()


class _Runtime(http.server.BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []
    answer: tuple[int, bytes] = (200, b"{}")

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        self.requests.append({"auth": self.headers["Authorization"], "query": query})
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def runtime() -> Iterator[tuple[str, type[_Runtime]]]:
    handler = type("Runtime", (_Runtime,), {"requests": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/idtoken?api-version=2.0", handler
    server.shutdown()
    server.server_close()
    thread.join()


def test_github_tokens_are_fetched_fresh_with_the_audience(
    runtime: tuple[str, type[_Runtime]],
) -> None:
    url, handler = runtime
    handler.answer = (200, json.dumps({"value": "eyJ.github.sig"}).encode())
    source = GitHubActionsTokenSource(url, RUNTIME_TOKEN, "kubegate")
    assert source.read() == "eyJ.github.sig"
    assert source.read() == "eyJ.github.sig"
    assert len(handler.requests) == 2
    assert handler.requests[0]["auth"] == f"Bearer {RUNTIME_TOKEN}"
    assert handler.requests[0]["query"] == {"api-version": ["2.0"], "audience": ["kubegate"]}
    assert source.fingerprint() is None  # unknown without fetching a new one


def test_a_github_refusal_is_a_clear_error_without_secrets(
    runtime: tuple[str, type[_Runtime]],
) -> None:
    url, handler = runtime
    handler.answer = (403, b"nope")
    with pytest.raises(SubjectTokenError, match="HTTP 403") as raised:
        GitHubActionsTokenSource(url, RUNTIME_TOKEN, "kubegate").read()
    assert RUNTIME_TOKEN not in str(raised.value)
    assert "api-version" not in str(raised.value)  # the query may carry secrets
