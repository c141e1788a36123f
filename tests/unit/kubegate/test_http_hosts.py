"""Who may call a loopback relay, as pure rules of a request head: `Host` names a loopback
host or a configured one (DNS rebinding refused), is well-formed and given once, and a
browser's request comes from the relay's own origin. The same classes over a real socket, with
the credential never asked for, are in tests/unit/sidecar/test_proxy_headers.py."""

from __future__ import annotations

import pytest

from kubegate.http import Downstream, RequestHead
from kubegate.http.errors import BadRequestError, CrossOriginError, HostNotAllowedError
from kubegate.http.headers import Headers
from kubegate.http.hosts import HostPolicy, check_caller, is_loopback_host, split_host

POLICY = HostPolicy(allowed_hosts=frozenset({"kubegate-proxy", "[fd00::1]"}))


def check(*headers: tuple[str, str], authority: str | None = None,
          policy: HostPolicy = POLICY) -> None:
    check_caller(tuple(headers), authority, policy)


@pytest.mark.parametrize(("value", "split"), [
    ("localhost", ("localhost", None)), ("LocalHost:8001", ("localhost", 8001)),
    ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]", ("[::1]", None)),
    ("[::1]:65535", ("[::1]", 65535)), ("localhost.", ("localhost.", None)),
    ("a_b.example", ("a_b.example", None)),
])
def test_a_well_formed_host_splits_into_lower_case_host_and_port(
        value: str, split: tuple[str, int | None]) -> None:
    assert split_host(value) == split


@pytest.mark.parametrize("value", [
    "", ":8001", "localhost:", "localhost:x", "localhost:65536", "localhost:123456",
    "user@localhost", "%6cocalhost", "l\u043ecalhost", "localh\u00f6st", "::1", "[::1",
    "[127.0.0.1]", "[fe80::1%lo]", "[v1.x]", "localhost/", "local host", "-localhost",
    "localhost..", ".localhost", "a" * 64 + ".example", "localhost:+80", "localhost:\u0661",
])
def test_a_malformed_host_is_a_bad_request(value: str) -> None:
    with pytest.raises(BadRequestError):
        split_host(value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.255.0.9", True), ("[::1]", True),
    ("[0:0:0:0:0:0:0:1]", True), ("[::0001]", True),
    ("localhost.", False), ("0.0.0.0", False), ("127.1", False),  # noqa: S104
    ("2130706433", False),
    ("0x7f.0.0.1", False), ("127.000.000.001", False), ("[::ffff:127.0.0.1]", False),
    ("[::]", False), ("localhost.evil.example", False), ("127.0.0.1.nip.io", False),
    ("10.0.0.1", False), ("[::2]", False),
])
def test_loopback_is_localhost_or_a_plainly_written_loopback_address(
        host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("host", [
    "localhost", "LOCALHOST:8001", "127.0.0.1:8001", "[::1]:8001", "kubegate-proxy",
    "KUBEGATE-PROXY:80", "[FD00::1]:8001",
])
def test_loopback_and_configured_hosts_are_allowed(host: str) -> None:
    check(("Host", host))


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:8001", "localhost.evil.example", "kubegate-proxy.evil",
    "127.0.0.1.nip.io", "localhost.", "0.0.0.0:8001", "127.1", "2130706433",
    "[::ffff:127.0.0.1]:8001", "[fd00::2]",
])
def test_any_other_host_is_not_allowed(host: str) -> None:
    with pytest.raises(HostNotAllowedError):
        check(("Host", host))


@pytest.mark.parametrize("headers", [
    (), (("Host", "localhost"), ("Host", "localhost")), (("Host", "localhost"), ("host", "x")),
    (("Host", ""),), (("Host", "user@localhost"),),
])
def test_host_must_be_given_once_and_well_formed(headers: Headers) -> None:
    with pytest.raises(BadRequestError):
        check_caller(headers, None, POLICY)


@pytest.mark.parametrize(("authority", "error"), [
    ("evil.example", HostNotAllowedError), ("127.1:8001", HostNotAllowedError),
    ("user@localhost", BadRequestError), ("localhost@evil.example", BadRequestError),
])
def test_an_absolute_form_targets_authority_must_be_allowed_too(
        authority: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        check(("Host", "localhost"), authority=authority)
    check(("Host", "localhost"), authority="127.0.0.1:8001")


@pytest.mark.parametrize("headers", [
    (("Origin", "http://evil.example"),), (("Origin", "null"),),
    (("Origin", "http://localhost:3000"),), (("Origin", "https://localhost:8001"),),
    (("Origin", "http://127.0.0.1:8001"),), (("Origin", "http://localhost:8001/"),),
    (("Origin", "HTTP://localhost:8001"),), (("Origin", "http://user@localhost:8001"),),
    (("Origin", "http://localhost:8001"), ("Origin", "http://evil.example")),
    (("Sec-Fetch-Site", "cross-site"),), (("Sec-Fetch-Site", "same-site"),),
    (("sec-fetch-site", "Cross-Site"),), (("Sec-Fetch-Site", "whatever"),),
    (("Origin", "http://localhost:8001"), ("Sec-Fetch-Site", "cross-site")),
])
def test_a_browser_request_from_another_origin_is_refused(headers: Headers) -> None:
    with pytest.raises(CrossOriginError):
        check(("Host", "localhost:8001"), *headers)


@pytest.mark.parametrize("headers", [
    (), (("Origin", "http://localhost:8001"),), (("Origin", "http://LOCALHOST:8001"),),
    (("Sec-Fetch-Site", "same-origin"),), (("Sec-Fetch-Site", "none"),),
    (("Origin", "http://localhost:8001"), ("Sec-Fetch-Site", "same-origin")),
])
def test_kubectl_and_same_origin_browser_requests_pass(headers: Headers) -> None:
    check(("Host", "localhost:8001"), *headers)


def test_the_default_port_is_the_same_origin_written_or_not() -> None:
    check(("Host", "localhost"), ("Origin", "http://localhost:80"))
    check(("Host", "localhost:80"), ("Origin", "http://localhost"))


def test_without_the_host_rule_any_host_passes_but_not_a_cross_origin_request() -> None:
    unix = HostPolicy(check_host=False)
    check(("Host", "evil.example"), policy=unix)
    check(("Host", "%2Frun%2Fp.sock"), policy=unix)
    with pytest.raises(CrossOriginError):
        check(("Host", "localhost"), ("Origin", "http://evil.example"), policy=unix)


@pytest.mark.parametrize("name", ["evil.example:80", "EVIL.example", "user@x", "", "::1"])
def test_a_configured_host_must_be_a_lower_case_host_without_port(name: str) -> None:
    with pytest.raises(ValueError, match="allowed host"):
        HostPolicy(allowed_hosts=frozenset({name}))


@pytest.mark.parametrize(("target", "authority"), [
    (b"/api", None), (b"http://evil.example/api", "evil.example"),
    (b"http://localhost:8001?x=1", "localhost:8001"), (b"https://u@h:1/p", "u@h:1"),
])
def test_the_engine_hands_on_an_absolute_form_targets_authority(
        target: bytes, authority: str | None) -> None:
    client = Downstream()
    client.receive(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = client.next_event()
    assert isinstance(head, RequestHead)
    assert head.authority == authority
