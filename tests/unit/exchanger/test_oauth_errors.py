"""Every kubegate code, and the reasons with words of their own, as an OAuth error and an HTTP
status on the token endpoint (RFC 6749 §5.2, RFC 8693 §2.2.2); the table in
`exchanger.oauth.errors` is this test's."""

from __future__ import annotations

import pytest

from exchanger.oauth.errors import (
    BodyTooLargeError,
    MethodNotAllowedError,
    NotFoundError,
    RequestTimeoutError,
    internal_error,
    oauth_error,
)
from kubegate.errors import Code, KubegateError
from kubegate.http.errors import BadRequestError, HeadTooLargeError, TooManyConnectionsError

BY_CODE = {
    Code.INVALID_ARGUMENT: ("invalid_request", 400),
    Code.UNAUTHENTICATED: ("invalid_request", 400),
    Code.PERMISSION_DENIED: ("access_denied", 403),
    Code.FAILED_PRECONDITION: ("access_denied", 403),
    Code.RESOURCE_EXHAUSTED: ("temporarily_unavailable", 429),
    Code.UNAVAILABLE: ("temporarily_unavailable", 503),
    Code.CANCELLED: ("temporarily_unavailable", 503),
    Code.DEADLINE_EXCEEDED: ("temporarily_unavailable", 504),
    Code.UNKNOWN: ("server_error", 500),
    Code.NOT_FOUND: ("server_error", 500),
    Code.ALREADY_EXISTS: ("server_error", 500),  # the access service's, never an exchange's
    Code.ABORTED: ("server_error", 500),
    Code.UNIMPLEMENTED: ("server_error", 500),
    Code.INTERNAL: ("server_error", 500),
    Code.DATA_LOSS: ("server_error", 500),
}
BY_REASON = {
    ("UNSUPPORTED_GRANT_TYPE", Code.INVALID_ARGUMENT): ("unsupported_grant_type", 400),
    ("INVALID_SCOPE", Code.INVALID_ARGUMENT): ("invalid_scope", 400),
    ("INVALID_ROLE", Code.INVALID_ARGUMENT): ("invalid_scope", 400),
    ("INVALID_TARGET", Code.INVALID_ARGUMENT): ("invalid_target", 400),
    ("INVALID_AUDIENCES", Code.INVALID_ARGUMENT): ("invalid_target", 400),
    ("AUDIENCE_NOT_ALLOWED", Code.PERMISSION_DENIED): ("invalid_target", 400),
    ("NO_MATCHING_MAPPING", Code.PERMISSION_DENIED): ("access_denied", 403),
    ("ROLE_NOT_ALLOWED", Code.PERMISSION_DENIED): ("access_denied", 403),
    ("BAD_SIGNATURE", Code.UNAUTHENTICATED): ("invalid_request", 400),
    ("TOKEN_EXPIRED", Code.UNAUTHENTICATED): ("invalid_request", 400),
    ("RATE_LIMITED", Code.RESOURCE_EXHAUSTED): ("temporarily_unavailable", 429),
    ("KEYS_UNAVAILABLE", Code.UNAVAILABLE): ("temporarily_unavailable", 503),
    ("AUDIT_UNAVAILABLE", Code.UNAVAILABLE): ("temporarily_unavailable", 503),
}


def test_the_table_covers_every_code() -> None:
    assert set(BY_CODE) == set(Code)


@pytest.mark.parametrize("code", list(Code), ids=lambda c: c.name)
def test_each_code_travels_as_its_oauth_error_and_status(code: Code) -> None:
    answer = oauth_error(KubegateError("SOME_REASON", "detail", public_message="msg",
                                       code=code))
    assert (answer.error, answer.status) == BY_CODE[code]
    assert answer.body() == {"error": BY_CODE[code][0], "error_description": "msg",
                             "kubegate_reason": "SOME_REASON"}
    assert answer.retry_after == (1 if answer.status in (429, 503) else None)


@pytest.mark.parametrize(("reason", "code"), list(BY_REASON), ids=lambda v: str(v))
def test_reasons_with_words_of_their_own(reason: str, code: Code) -> None:
    answer = oauth_error(KubegateError(reason, code=code))
    assert (answer.error, answer.status) == BY_REASON[(reason, code)]
    assert answer.reason == reason


@pytest.mark.parametrize(("error", "status", "reason"), [
    (BadRequestError("smuggling"), 400, "MALFORMED_REQUEST"),
    (HeadTooLargeError("big"), 431, "HEAD_TOO_LARGE"),
    (BodyTooLargeError("big"), 413, "REQUEST_TOO_LARGE"),
    (RequestTimeoutError("slow"), 408, "REQUEST_TIMEOUT"),
    (NotFoundError("/x"), 404, "NOT_FOUND"),
    (MethodNotAllowedError("POST"), 405, "METHOD_NOT_ALLOWED"),
], ids=lambda v: str(v))
def test_http_failures_are_invalid_request_with_https_own_status(
    error: KubegateError, status: int, reason: str,
) -> None:
    answer = oauth_error(error)
    assert (answer.error, answer.status, answer.reason) == ("invalid_request", status, reason)


def test_too_many_connections_is_temporarily_unavailable() -> None:
    answer = oauth_error(TooManyConnectionsError("full"))
    assert (answer.error, answer.status, answer.retry_after) == (
        "temporarily_unavailable", 503, 1)


def test_the_description_is_the_public_message_never_the_detail() -> None:
    answer = oauth_error(KubegateError("R", "secret detail", public_message="public",
                                       code=Code.UNAUTHENTICATED))
    assert "secret" not in str(answer.body())


def test_an_internal_error_names_a_log_id_only() -> None:
    answer = internal_error("abc123")
    assert answer.body() == {"error": "server_error", "kubegate_reason": "INTERNAL",
                             "error_description": "internal error (log id abc123)"}
    assert answer.status == 500
