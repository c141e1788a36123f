"""Typed addresses: every spelling of a host and port is parsed by one function, bad ones are
refused with one message, and only loopback addresses and Unix sockets count as local."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubegate.addresses import (
    HostPort,
    UnixSocket,
    is_local_address,
    parse_address,
    parse_host_port,
)


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:8443", "127.0.0.1", 8443), ("[::1]:1", "::1", 1), ("localhost:0", "localhost", 0),
    ("exchanger.kubegate.svc:8443", "exchanger.kubegate.svc", 8443),
    ("my_host-1.example.:65535", "my_host-1.example.", 65535),
    ("[2001:db8::1]:443", "2001:db8::1", 443),
])
def test_host_and_port(text: str, host: str, port: int) -> None:
    address = parse_host_port(text)
    assert (address.host, address.port) == (host, port)
    assert parse_host_port(str(address)) == address  # it prints back as it parses


@pytest.mark.parametrize("text", [
    "", ":", ":80", "host", "host:", "host:65536", "host:-1", "host:+80", "host:0x50",
    "host:８０", "host:٨٠", "host: 80", " host:80", "host :80", "ho st:80", "::1:80",
    "[::1]", "[127.0.0.1]:80", "[host]:80", "[::1%eth0]:80", "user@host:80", "host/x:80",
    "http://host:80", "host\x00:80", "host\n:80", "ünïcode.example:80", "a..b:1", "-a:1",
    ".:80", "host:123456", "a" * 300 + ":80", "[]:80",
])
def test_bad_spellings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT, got"):
        parse_host_port(text)


def test_a_huge_value_is_cut_in_the_message() -> None:
    with pytest.raises(ValueError) as raised:
        parse_host_port("x" * 100_000)
    assert len(str(raised.value)) < 200


@pytest.mark.parametrize(("text", "local"), [
    ("127.0.0.1:1", True), ("127.8.9.10:1", True), ("[::1]:1", True), ("localhost:1", True),
    ("unix:/run/k.sock", True), ("10.0.0.1:1", False), ("0.0.0.0:1", False), ("[::]:1", False),
    ("exchanger.kubegate:8443", False), ("localhost.evil.example:1", False),
    ("127.0.0.1.nip.io:1", False), ("[::ffff:7f00:1]:1", False), ("not an address", False),
    ("unix:relative.sock", False),
])
def test_only_loopback_and_unix_sockets_are_local(text: str, local: bool) -> None:
    assert is_local_address(text) is local


def test_unix_sockets() -> None:
    assert parse_address("unix:/run/k.sock") == UnixSocket(path=Path("/run/k.sock"))
    for bad in ("unix:run/k.sock", "unix:", "unix:/a\x00b"):
        with pytest.raises(ValueError, match="unix:/absolute/path"):
            parse_address(bad)
    with pytest.raises(ValueError, match="expected HOST:PORT, got"):
        parse_address("unix:/run/k.sock", unix=False)
    assert isinstance(parse_address("[::1]:2"), HostPort)


@given(st.text(max_size=40))
def test_any_text_parses_to_a_round_tripping_address_or_is_refused(text: str) -> None:
    try:
        address = parse_host_port(text)
    except ValueError:
        return
    assert parse_host_port(str(address)) == address
    assert str(address.port) == text.rpartition(":")[2].lstrip("0") or address.port == 0
