"""The relay's own answers: each error's HTTP status is its code's, made precise only where
HTTP has a word for the same failure, and an answer is a whole response that closes."""

from __future__ import annotations

import json

import h11
import pytest

from kubegate.errors import Code, KubegateError, UnavailableError
from kubegate.http import answer, http_status
from kubegate.http.errors import (
    BadRequestError,
    HeadTooLargeError,
    UnsupportedMethodError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamTLSError,
    UpstreamUnreachableError,
)
from sidecar.proxy.errors import NoCredentialError


@pytest.mark.parametrize(("error", "status"), [
    (BadRequestError(), 400),  # INVALID_ARGUMENT, as the code says
    (HeadTooLargeError(), 431),  # not 429: nothing to retry later
    (UnsupportedMethodError(), 501),  # UNIMPLEMENTED, as the code says
    (UpstreamUnreachableError(), 502),  # not 503: the gateway's next hop failed
    (UpstreamTLSError(), 502),
    (UpstreamProtocolError(), 502),
    (UpstreamTimeoutError(), 504),  # DEADLINE_EXCEEDED, as the code says
    (NoCredentialError(), 503),  # UNAVAILABLE: the proxy itself cannot serve yet
    (UnavailableError("DEPENDENCY_DOWN"), 503),  # any kubegate error has a status
])
def test_each_error_is_answered_with_its_codes_status_or_a_more_precise_one(
        error: KubegateError, status: int) -> None:
    assert http_status(error) == status


def test_every_precise_status_is_in_the_class_of_the_codes_own() -> None:
    for error in (HeadTooLargeError(), UpstreamUnreachableError()):
        assert http_status(error) // 100 == error.code.http_status // 100


def test_an_answer_is_a_whole_response_that_closes_the_connection() -> None:
    body = json.dumps({"message": "no valid credential yet"}).encode()

    raw = answer(NoCredentialError("no credential"), body=body, content_type="application/json")

    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.receive_data(raw)
    head, data, end = client.next_event(), client.next_event(), client.next_event()
    assert isinstance(head, h11.Response) and head.status_code == 503
    assert head.reason == b"Service Unavailable"
    assert (b"connection", b"close") in list(head.headers)
    assert isinstance(data, h11.Data) and bytes(data.data) == body
    assert isinstance(end, h11.EndOfMessage)


def test_a_status_without_a_standard_phrase_is_answered_without_one() -> None:
    raw = answer(KubegateError("GONE", code=Code.CANCELLED), body=b"", content_type="text/plain")

    assert raw.startswith(b"HTTP/1.1 499 \r\n")
