"""`httpListen` and `httpPublicUrl`: the token endpoint takes `listen`'s TLS rules (TLS off
loopback, plaintext only on loopback) and an issuer URL without a path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchanger.config import Config, build_config
from kubegate.errors import ConfigError

TLS = {"certFile": "/tls/tls.crt", "keyFile": "/tls/tls.key"}


def config(**top: Any) -> Config:
    document = {"listen": "127.0.0.1:8443", "clusters": [], "issuers": [], **top}
    return build_config(document, base=Path("/etc/kubegate"), environ={}, source="c.yaml")


def problems(**top: Any) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        config(**top)
    return raised.value.problems


def test_off_by_default() -> None:
    assert (config().http_listen, config().http_public_url) == ("", "")


def test_on_loopback_with_the_generated_certificate_and_a_default_url() -> None:
    loaded = config(httpListen="127.0.0.1:8445")
    assert (loaded.http_listen, loaded.http_public_url) == ("127.0.0.1:8445", "")


def test_off_loopback_with_tls_files_and_a_public_url() -> None:
    loaded = config(listen="0.0.0.0:8443", tls=TLS, httpListen="0.0.0.0:8445",
                    httpPublicUrl="https://kubegate.example.com:8445")
    assert loaded.http_public_url == "https://kubegate.example.com:8445"


def test_off_loopback_without_tls_files_is_refused() -> None:
    assert problems(httpListen="0.0.0.0:8445") == [
        "c.yaml: tls: required when httpListen is 0.0.0.0:8445"]


def test_plaintext_only_on_loopback() -> None:
    assert config(plaintext=True, httpListen="127.0.0.1:8445").http_listen
    assert problems(plaintext=True, httpListen="0.0.0.0:8445") == [
        "c.yaml: plaintext: only allowed on loopback, not httpListen 0.0.0.0:8445"]


@pytest.mark.parametrize("url", [
    "http://kubegate.example.com", "https://kubegate.example.com/", "https://k.example/path",
    "https://k.example?x=1", "https://k.example#f", "https://user@k.example", "https://",
    "https://k.example:port", "kubegate.example.com"])
def test_the_public_url_is_an_https_origin(url: str) -> None:
    assert problems(httpListen="127.0.0.1:8445", httpPublicUrl=url) == [
        "c.yaml: httpPublicUrl: must be an https URL of a host and port, without a path, "
        "query or fragment"]


def test_a_public_url_needs_the_listener_and_the_listener_an_address() -> None:
    assert problems(httpPublicUrl="https://k.example") == [
        "c.yaml: httpPublicUrl: needs httpListen"]
    assert problems(httpListen="unix:/run/x.sock")
