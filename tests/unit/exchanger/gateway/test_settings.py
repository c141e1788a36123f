"""The config's `gateway:` section, read by the real loader: defaults, every problem named by
its field and reported together, and the self-issued key the gateway verifies with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchanger.backends.selfissued import load_or_create_signing_key, public_jwk
from exchanger.config import Config, build_config
from exchanger.gateway.identity_selfissued import (
    SELF_ISSUED_ISSUER,
    load_public_jwk,
    self_issued_issuer,
)
from exchanger.gateway.settings import DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS
from kubegate.errors import ConfigError
from tests.unit.exchanger.gateway.identity_world import config_data


def load(tmp_path: Path, **gateway: Any) -> Config:
    return build_config(config_data(tmp_path / "state", **gateway), base=tmp_path,
                        environ={}, source="test.yaml")


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_config(data, base=tmp_path, environ={}, source="test.yaml")
    return caught.value.problems


def test_defaults_serve_loopback_with_a_generated_certificate(tmp_path: Path) -> None:
    settings = load(tmp_path).gateway
    state = tmp_path / "state"
    assert settings is not None
    assert (settings.listen, settings.cluster) == (DEFAULT_LISTEN, "prod")
    assert settings.tls.generated_ca_file == state / "tls" / "gateway-ca.crt"
    assert settings.recordings == state / "recordings"
    assert settings.audit_log == state / "gateway-audit.log"
    assert settings.max_connections == DEFAULT_MAX_CONNECTIONS
    assert settings.self_issued_key is None
    assert settings.metrics_listen == ""  # off


def test_every_field_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    settings = load(tmp_path, listen="0.0.0.0:9443", recordings="rec",
                    tls={"certFile": "tls.crt", "keyFile": "tls.key"},
                    audit={"path": "gw.log"}, maxConnections=20, selfIssuedKey="key.pub",
                    metricsListen="0.0.0.0:9091").gateway
    assert settings is not None
    assert settings.listen == "0.0.0.0:9443"
    assert (settings.tls.cert_file, settings.tls.key_file) == (tmp_path / "tls.crt",
                                                                tmp_path / "tls.key")
    assert settings.tls.generated_ca_file is None
    assert (settings.recordings, settings.audit_log) == (tmp_path / "rec", tmp_path / "gw.log")
    assert (settings.max_connections, settings.self_issued_key) == (20, tmp_path / "key.pub")
    assert settings.metrics_listen == "0.0.0.0:9091"


def test_a_config_without_the_section_has_no_gateway(tmp_path: Path) -> None:
    data = config_data(tmp_path / "state")
    del data["gateway"]
    assert build_config(data, base=tmp_path, environ={}, source="t").gateway is None


def test_every_problem_is_reported_at_once_with_its_field(tmp_path: Path) -> None:
    data = config_data(tmp_path / "state", cluster="nowhere", listen="0.0.0.0:9443",
                       maxConnections=0, colour="blue", audit={"path": "../audit.log",
                                                              "rotate": True})
    data["auditLog"] = str((tmp_path / "../audit.log").resolve())
    found = problems(tmp_path, data)
    assert found == [
        "test.yaml: gateway.colour: unknown field",
        "test.yaml: gateway: cluster: 'nowhere' is not a configured cluster (configured: "
        "prod, staging)",
        "test.yaml: gateway.audit.rotate: unknown field",
        f"test.yaml: gateway: audit.path: {(tmp_path / '../audit.log').resolve()} is the "
        "exchanger's auditLog; the gateway needs a log of its own (one hash chain has one "
        "writer)",
        "test.yaml: gateway: tls: required when listening on 0.0.0.0:9443 (a generated "
        "certificate is only for loopback)",
        "test.yaml: gateway: maxConnections: expected a whole number within 1..100000, got 0",
    ]


@pytest.mark.parametrize(("gateway", "expected"), [
    ({"cluster": "staging"}, "gateway: cluster: 'staging' has no credentials"),
    ({"cluster": 7}, "gateway.cluster: expected a string, got integer"),
    ({"maxConnections": True}, "maxConnections: expected a whole number within 1..100000, "
                               "got True"),
    ({"listen": "nowhere"}, "gateway.listen:"),
    ({"metricsListen": "nowhere:port"}, "gateway.metricsListen:"),
    ({"metricsListen": "unix:/run/metrics.sock"}, "gateway.metricsListen:"),
    ({"tls": {"certFile": "a.crt"}}, "gateway.tls.keyFile: required"),
])
def test_a_bad_field_is_named(tmp_path: Path, gateway: dict[str, Any], expected: str) -> None:
    assert any(expected in problem for problem in problems(
        tmp_path, config_data(tmp_path / "state", **gateway)))


def test_a_missing_cluster_is_required(tmp_path: Path) -> None:
    data = config_data(tmp_path / "state")
    data["gateway"] = {}
    assert "test.yaml: gateway.cluster: required" in problems(tmp_path, data)


def test_the_section_must_be_an_object(tmp_path: Path) -> None:
    data = config_data(tmp_path / "state")
    data["gateway"] = ["prod"]
    assert "test.yaml: gateway: expected an object, got list" in problems(tmp_path, data)


def test_the_gateway_verifies_with_the_public_half_of_the_exchangers_key(
        tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "state" / "signing-key.pem")
    public = tmp_path / "key.pub"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert load_public_jwk(public) == public_jwk(key)
    issuer = self_issued_issuer(load(tmp_path, selfIssuedKey="key.pub"))
    assert issuer is not None and issuer.name == SELF_ISSUED_ISSUER
    assert (issuer.url, issuer.audiences, issuer.algorithms) == (
        "https://127.0.0.1:8444", ("kubernetes",), ("ES256",))
    default = self_issued_issuer(load(tmp_path))  # <stateDir>/signing-key.pem
    assert default is not None and default.key_source == issuer.key_source


@pytest.mark.parametrize("content", [
    None, b"not a key",
    rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()),
    ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
])
def test_an_unusable_self_issued_key_fails_the_start_naming_the_file(
        tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_public_jwk(path)
    assert caught.value.problems[0].startswith(f"{path}: ")
