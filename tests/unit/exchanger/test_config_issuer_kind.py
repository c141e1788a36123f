"""An issuer's optional `kind` (github, gitlab, kubernetes, oidc): read from the config, and
what `mappings validate` uses to know which claims that issuer's tokens carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exchanger.config import ISSUER_KINDS, build_config
from exchanger.mappings.lint import check_types, provider_of
from exchanger.mappings.load import parse_mapping
from kubegate.errors import ConfigError

CLUSTERS = [{"name": "dev", "server": "https://10.0.0.2:6443", "backend": "selfIssued"}]


def issuer(**fields: Any) -> dict[str, Any]:
    return {"name": "corp", "url": "https://sso.internal.example", "audiences": ["cli"],
            **fields}


def build(*issuers: dict[str, Any]) -> Any:
    return build_config({"listen": "127.0.0.1:0", "clusters": CLUSTERS,
                         "selfIssued": {"listen": "127.0.0.1:8444"}, "issuers": list(issuers)},
                        base=Path("/etc/kubegate"), environ={}, source="c.yaml")


@pytest.mark.parametrize("kind", ISSUER_KINDS)
def test_each_kind_is_read(kind: str) -> None:
    (loaded,) = build(issuer(kind=kind)).issuers
    assert loaded.kind == kind


def test_without_kind_the_issuer_has_none() -> None:
    (loaded,) = build(issuer()).issuers
    assert loaded.kind is None


@pytest.mark.parametrize("bad", ["people", "GitHub", "", 7, ["oidc"]])
def test_an_unknown_kind_is_a_config_problem_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as caught:
        build(issuer(kind=bad))
    assert "issuers[0]" in str(caught.value) and "kind" in str(caught.value)


def test_kind_oidc_makes_validate_check_people_claim_types() -> None:
    mapping, problems = parse_mapping({
        "apiVersion": "kubegate.io/v1alpha1", "kind": "TrustMapping",
        "metadata": {"name": "ops"},
        "spec": {"issuer": "corp", "claims": [{"claim": "sub", "equals": "x"},
                                              {"claim": "amr", "equals": "mfa"}],
                 "grant": {"cluster": "dev", "namespace": "ops", "user": "u"}}},
        source="m.yaml")
    assert mapping is not None, problems
    (loaded,) = build(issuer(kind="oidc")).issuers
    assert provider_of(mapping, loaded) == "oidc"
    assert any("amr" in error for error in check_types(mapping, loaded))
