"""One HTTP/1.1 cycle of the token endpoint, bytes only: the strict head rules (smuggling),
the body bound, keep-alive and pipelining, 100-continue, and no-store on every answer."""

from __future__ import annotations

import pytest

from exchanger.oauth.errors import BodyTooLargeError
from exchanger.oauth.wire import MAX_BODY, Answer, Cycle
from kubegate.http.errors import BadRequestError, HeadTooLargeError
from tests.support.smuggling import MALFORMED_HEADS, SMUGGLING

HEAD = (b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n")


def request(body: bytes = b"a=b", extra: bytes = b"") -> bytes:
    return HEAD + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_a_request_arriving_byte_by_byte_is_read_whole() -> None:
    cycle, raw = Cycle(), request(b"grant_type=x")
    results = [cycle.receive(raw[i:i + 1]) for i in range(len(raw))]
    assert results[:-1] == [None] * (len(raw) - 1)
    done = results[-1]
    assert done is not None
    assert (done.method, done.path, done.body) == ("POST", "/oauth2/token", b"grant_type=x")
    assert done.header("content-type") == ["application/x-www-form-urlencoded"]


def test_answers_carry_no_store_and_keep_the_connection_alive() -> None:
    cycle = Cycle()
    assert cycle.receive(request()) is not None
    raw = cycle.send(Answer(status=200, body=b"{}"))
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"cache-control: no-store\r\n" in raw.lower() and b"pragma: no-cache\r\n" in raw.lower()
    assert cycle.keep_alive


def test_a_pipelined_request_is_left_over_for_the_next_cycle() -> None:
    cycle = Cycle()
    first = cycle.receive(request(b"one=1") + request(b"two=2"))
    assert first is not None and first.body == b"one=1"
    cycle.send(Answer(status=200, body=b"{}"))
    following = Cycle().receive(cycle.leftover())
    assert following is not None and following.body == b"two=2"


def test_connection_close_and_http10_close_after_the_answer() -> None:
    for raw in (request(extra=b"Connection: close\r\n"),
                request().replace(b"HTTP/1.1", b"HTTP/1.0", 1)):
        cycle = Cycle()
        assert cycle.receive(raw) is not None
        assert b"connection: close" in cycle.send(Answer(status=200, body=b"{}")).lower()
        assert not cycle.keep_alive


@pytest.mark.parametrize("case", SMUGGLING)
def test_smuggling_spellings_are_refused_before_h11(case: str) -> None:
    with pytest.raises(BadRequestError):
        Cycle().receive(HEAD + SMUGGLING[case] + b"\r\nabcdef")


@pytest.mark.parametrize("case", MALFORMED_HEADS)
def test_malformed_heads_are_refused(case: str) -> None:
    cycle = Cycle()
    with pytest.raises(BadRequestError):
        cycle.receive(MALFORMED_HEADS[case])
        cycle.receive(b"")


def test_a_refusal_can_be_answered_and_closes() -> None:
    cycle = Cycle()
    with pytest.raises(BadRequestError):
        cycle.receive(HEAD + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    raw = cycle.send(Answer(status=400, body=b"{}"), close=True)
    assert raw.startswith(b"HTTP/1.1 400 ") and b"connection: close" in raw.lower()


def test_a_content_length_over_the_bound_is_refused_before_the_body() -> None:
    with pytest.raises(BodyTooLargeError):
        Cycle().receive(HEAD + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))


def test_a_chunked_body_over_the_bound_is_refused_as_it_arrives() -> None:
    cycle = Cycle()
    assert cycle.receive(HEAD + b"Transfer-Encoding: chunked\r\n\r\n") is None
    chunk = b"%x\r\n" % 4096 + b"x" * 4096 + b"\r\n"
    with pytest.raises(BodyTooLargeError):
        for _ in range(MAX_BODY // 4096 + 1):
            cycle.receive(chunk)


def test_a_head_over_the_bound_is_refused() -> None:
    with pytest.raises(HeadTooLargeError):
        Cycle(max_head=1024).receive(HEAD + b"X-Filler: " + b"a" * 2000)


def test_a_stream_ending_inside_a_request_is_malformed_and_before_one_is_closed() -> None:
    cycle = Cycle()
    cycle.receive(HEAD)
    with pytest.raises(BadRequestError):
        cycle.receive(b"")
    idle = Cycle()
    assert idle.receive(b"") is None and idle.closed


def test_expect_100_continue_is_answered_once() -> None:
    cycle = Cycle()
    assert cycle.receive(request(extra=b"Expect: 100-continue\r\n")[:-3]) is None
    assert cycle.interim().startswith(b"HTTP/1.1 100 ")
    assert cycle.interim() == b""
