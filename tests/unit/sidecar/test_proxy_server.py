"""The proxy's limits over real loopback sockets: never more connection threads than the cap,
a connection over it answered 503 with `Retry-After` at once (and recorded), slow and idle
heads closed at the head timeout so their slots come back. (A slowloris client beside a real
`kubectl get` against a real apiserver is in tests/integration/test_proxy.py.)"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.proxy import ApiProxy

CAP = 4
HEAD_TIMEOUT = 1.5


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("kubegate-proxy")]


@pytest.fixture
def records() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def proxy(records: list[dict[str, Any]]) -> Iterator[ApiProxy]:
    with ApiProxy(lambda: None, "127.0.0.1:0", recorder=records.append,
                  max_connections=CAP, head_timeout=HEAD_TIMEOUT) as started:
        yield started


def connect(proxy: ApiProxy) -> socket.socket:
    host, _, port = proxy.address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def wait_for(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_connections_over_the_cap_are_answered_503_at_once_and_threads_stay_bounded(
    proxy: ApiProxy, records: list[dict[str, Any]],
) -> None:
    held = [connect(proxy) for _ in range(CAP)]
    try:
        for sock in held:  # a partial head each: every slot is taken
            sock.sendall(b"GET /api HTTP/1.1\r\n")
        assert wait_for(lambda: len(proxy_threads()) == CAP + 1)  # and the accept loop

        for _ in range(3 * CAP):
            started = time.monotonic()
            with connect(proxy) as over:
                answer = read_all(over)
            assert time.monotonic() - started < 0.5
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ")
            assert b"\r\nRetry-After: 1\r\n" in head + b"\r\n"
            assert b"\r\nConnection: close" in head
            assert json.loads(body)["message"] == ("kubegate proxy: too many connections, "
                                                   "try again shortly")
            assert len(proxy_threads()) <= CAP + 1
    finally:
        for sock in held:
            sock.close()

    assert wait_for(lambda: len(proxy_threads()) == 1)
    over_cap = [r for r in records if r["status"] == 503]
    assert len(over_cap) == 3 * CAP
    assert {r["refused"] for r in over_cap} == {"TOO_MANY_CONNECTIONS"}


def test_slow_heads_are_cut_at_the_head_timeout_and_their_slots_come_back(
    proxy: ApiProxy, records: list[dict[str, Any]],
) -> None:
    stop = threading.Event()
    answers: list[bytes] = []

    def slowloris(sock: socket.socket) -> None:
        with sock, contextlib.suppress(OSError):
            for byte in b"GET /api HTTP/1.1\r\nHost: localhost\r\n" + b"X: y\r\n" * 1000:
                if stop.is_set():
                    return
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
        answers.append(b"")

    slow = [connect(proxy) for _ in range(CAP)]
    started = time.monotonic()
    threads = [threading.Thread(target=slowloris, args=(sock,)) for sock in slow]
    for thread in threads:
        thread.start()
    try:
        assert wait_for(lambda: len(proxy_threads()) == CAP + 1)
        with connect(proxy) as over:
            assert read_all(over).startswith(b"HTTP/1.1 503 ")

        # each slow head is answered 408 at the timeout; then a new request is served
        assert wait_for(lambda: len(proxy_threads()) == 1, timeout=HEAD_TIMEOUT + 2)
        assert time.monotonic() - started < HEAD_TIMEOUT + 1.5
        with connect(proxy) as client:
            client.sendall(b"GET /api HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert read_all(client).startswith(b"HTTP/1.1 503 ")  # no credential: served
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)

    statuses = sorted((r["status"], r["refused"]) for r in records)
    assert statuses == sorted([(408, "HEAD_TIMEOUT")] * CAP + [
        (503, "TOO_MANY_CONNECTIONS"), (503, "NO_CREDENTIAL")])


def test_an_idle_connection_is_closed_at_the_head_timeout_without_a_record(
    proxy: ApiProxy, records: list[dict[str, Any]],
) -> None:
    started = time.monotonic()
    with connect(proxy) as idle:
        assert read_all(idle) == b""
    assert HEAD_TIMEOUT <= time.monotonic() - started < HEAD_TIMEOUT + 0.5
    assert records == []


@pytest.mark.parametrize("options", [{"max_connections": 0}, {"head_timeout": 0}])
def test_limits_must_be_positive(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="positive"):
        ApiProxy(lambda: None, "127.0.0.1:0", **options)
