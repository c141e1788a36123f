"""Log lines as `kubegate serve` and `kubegate sidecar` write them: JSON lines that parse, with
the current exchange's trace and session ids, and no token in either format, ever."""

from __future__ import annotations

import argparse
import datetime
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from kubegate.errors import ConfigError
from kubegate.logformat import (
    REDACTED,
    RedactTokens,
    configure_logging,
    current_request,
    log_handler,
    redact_tokens,
    request_scope,
    set_session_id,
)
from sidecar.config import load_config
from sidecar.keeper import CredentialKeeper
from tests.support.oidc import base64url
from tests.unit.sidecar.test_keeper import POLICY, FakeClock, FakePort, FakeSource

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def a_jwt(alg: str = "RS256", signature: bytes = b"s" * 64) -> str:
    """A JWT-shaped string, made here (not by a test issuer: nothing secret is logged)."""
    header = base64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{base64url(b'{}')}.{base64url(signature)}"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger of its own (not propagating) writing both formats into buffers."""
    text, lines = io.StringIO(), io.StringIO()
    log = logging.getLogger("kubegate.test.logformat")
    log.propagate, log.level = False, logging.DEBUG
    handlers = [log_handler("text", text), log_handler("json", lines)]
    for handler in handlers:
        log.addHandler(handler)
    yield log, text, lines
    for handler in handlers:
        log.removeHandler(handler)


def json_lines(buffer: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_and_message_and_no_ids_outside_an_exchange(
    logger: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    log, text, lines = logger
    before = time.time()
    log.warning("key fetch for %s failed: %d", "github", 503)
    [line] = json_lines(lines)
    assert set(line) == {"time", "level", "logger", "message"}
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING", "kubegate.test.logformat", "key fetch for github failed: 503")
    assert line["time"].endswith("Z")
    moment = datetime.datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert moment.utcoffset() == datetime.timedelta(0)
    assert abs(moment.timestamp() - before) < 5
    assert text.getvalue().rstrip().endswith(
        "WARNING kubegate.test.logformat: key fetch for github failed: 503")


def test_lines_inside_a_request_scope_carry_its_trace_id_then_its_session_id(
    logger: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    log, _, lines = logger
    with request_scope(TRACE_ID):
        log.info("verifying")
        set_session_id("session-1")
        log.info("issued")
        with request_scope():
            log.info("nested: a scope of its own")
        log.info("back")
    log.info("after")
    verifying, issued, nested, back, after = json_lines(lines)
    assert verifying["trace_id"] == TRACE_ID and "session_id" not in verifying
    assert (issued["trace_id"], issued["session_id"]) == (TRACE_ID, "session-1")
    assert "trace_id" not in nested and "session_id" not in nested
    assert (back["trace_id"], back["session_id"]) == (TRACE_ID, "session-1")
    assert "trace_id" not in after and current_request() is None


def test_set_session_id_outside_a_scope_does_nothing() -> None:
    set_session_id("orphan")
    assert current_request() is None


@pytest.mark.parametrize("token", [
    a_jwt(),
    a_jwt("none", b""),                                      # unsecured: empty signature
    a_jwt() + ".ZW5jcnlwdGVk.dGFn",                           # five segments (JWE-like)
])
def test_a_jwt_in_the_message_or_its_arguments_is_redacted_in_both_formats(
    logger: tuple[logging.Logger, io.StringIO, io.StringIO], token: str,
) -> None:
    log, text, lines = logger
    log.error("refused %s for repo", token)
    log.error(f"bearer {token}, then more")
    for output in (text.getvalue(), lines.getvalue()):
        assert token.split(".")[0] not in output
    first, second = json_lines(lines)
    assert first["message"] == f"refused {REDACTED} for repo"
    assert second["message"] == f"bearer {REDACTED}, then more"


def test_a_jwt_in_exception_text_is_redacted_and_the_traceback_is_one_string(
    logger: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    log, text, lines = logger
    token = a_jwt()
    try:
        raise ValueError(f"could not parse {token}")
    except ValueError:
        log.exception("exchange failed")
    [line] = json_lines(lines)
    assert line["message"] == "exchange failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert f"ValueError: could not parse {REDACTED}" in line["exception"]
    assert token not in text.getvalue() and token not in lines.getvalue()
    assert f"ValueError: could not parse {REDACTED}" in text.getvalue()


def test_text_that_only_resembles_a_token_is_kept() -> None:
    for text in ("they.said.so", "eyJ alone", "version 1.2.3", "key fetch eyJhbG. done"):
        assert redact_tokens(text) == text


def test_redaction_is_linear_on_hostile_input() -> None:
    """Runs of `eyJ`, dots and near-misses: a backtracking pattern would take minutes."""
    for hostile in ("eyJ" * 200_000, "eyJa." * 100_000, ("eyJ" + "a" * 50 + ".") * 20_000,
                    "." + "eyJaaaa.aaaa" * 50_000):
        started = time.perf_counter()
        redact_tokens(hostile)
        assert time.perf_counter() - started < 2.0, hostile[:20]


def test_the_filter_leaves_a_record_with_bad_arguments_to_the_handler_to_report() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "two %s %s", ("one",), None)
    assert RedactTokens().filter(record)  # no exception here, where the caller would see it
    assert (record.msg, record.args) == ("two %s %s", ("one",))


def test_configure_logging_leaves_a_configured_root_alone() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    assert before, "pytest's handlers are on the root logger"
    configure_logging(level="INFO", log_format="json")
    assert root.handlers == before


def test_the_sidecar_reads_log_format_from_its_flag_or_environment() -> None:
    def config(flag: str | None, environ: dict[str, str]) -> str:
        args = argparse.Namespace(log_format=flag, server="127.0.0.1:8443", plaintext=True,
                                  token_file="/var/run/token")
        return load_config(args, environ).log_format

    assert config(None, {}) == "text"
    assert config(None, {"KUBEGATE_LOG_FORMAT": "json"}) == "json"
    assert config("text", {"KUBEGATE_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ConfigError) as bad:
        config("yaml", {})
    assert any("log-format" in problem and "'yaml'" in problem for problem in bad.value.problems)


def test_the_sidecar_keeper_logs_its_exchange_with_the_new_session_id(
    logger: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    _, _, lines = logger
    keeper_log = logging.getLogger("kubegate.sidecar")
    handler = log_handler("json", lines)
    keeper_log.addHandler(handler)
    clock = FakeClock()
    try:
        CredentialKeeper(FakeSource(), FakePort(clock), policy=POLICY, clock=clock,
                         random=lambda: 0.5).step()
    finally:
        keeper_log.removeHandler(handler)
    [line] = [line for line in json_lines(lines) if "got a credential" in line["message"]]
    assert line["session_id"] == "session-1" and "trace_id" not in line
    assert current_request() is None
