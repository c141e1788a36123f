"""Loading trust mappings: a valid folder of multi-document files, every problem reported at
once with its file and field, durations, duplicates, and the OpenAPI schema's shape."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exchanger.mappings import TRUST_MAPPING_SCHEMA, Operator, load_folder, parse_documents
from kubegate.errors import ConfigError

WEB_DEPLOYER = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata:
  name: web-deployer
  namespace: kubegate
  labels: {team: web}
  annotations: {owner: platform}
spec:
  issuer: github
  description: "Deploys web from the central workflow"
  claims:
  - claim: repository_id
    equals: "123456"
  - claim: [kubernetes.io, namespace]
    equals: ci
  - claim: sub
    glob: "repo:octo-org/web:environment:*"
  - claim: job_workflow_ref
    regex: 'octo-org/deploy/\\.github/workflows/deploy\\.yml@refs/tags/v[0-9]+'
  - claim: event_name
    oneOf: [push, workflow_dispatch]
  - claim: run_attempt
    equals: 1
  grant:
    cluster: default
    namespace: web
    serviceAccount: deployer
    maxLifetime: 1h
"""

SELF_ISSUED = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata:
  name: gitlab-runner
spec:
  issuer: gitlab
  claims:
  - claim: project_id
    equals: "42"
  grant:
    cluster: default
    namespace: ci
    user: "ci:group/project"
    groups: ["kubegate:deployers"]
    audiences: [https://kubernetes.default.svc]
"""

ISSUERS = {"github", "gitlab"}
CLUSTERS = {"default"}


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def problems_of(text: str, source: str = "web.yaml") -> list[str]:
    with pytest.raises(ConfigError) as invalid:
        parse_documents(text, source, ISSUERS, CLUSTERS)
    return invalid.value.problems


def test_a_valid_multi_document_folder_loads_every_mapping(tmp_path: Path) -> None:
    write(tmp_path, {"web.yaml": WEB_DEPLOYER + "---\n" + SELF_ISSUED.replace(
        "gitlab-runner", "gitlab-runner-2"), "gitlab.yml": "---\n---\n" + SELF_ISSUED + "---\n",
        "notes.txt": "not: yaml: at all:", ".hidden.yaml": "broken: ["})
    mappings = load_folder(tmp_path, ISSUERS, CLUSTERS)
    assert [m.name for m in mappings.mappings] == ["gitlab-runner", "web-deployer",
                                                   "gitlab-runner-2"]
    assert {m.name: m.source for m in mappings.mappings} == {
        "gitlab-runner": "gitlab.yml: document 2", "web-deployer": "web.yaml: document 1",
        "gitlab-runner-2": "web.yaml: document 2"}


def test_a_valid_document_keeps_paths_operators_and_typed_values() -> None:
    (web,) = parse_documents(WEB_DEPLOYER, "web.yaml", ISSUERS, CLUSTERS)
    assert [(c.path, c.operator, c.expected) for c in web.conditions] == [
        (("repository_id",), Operator.EQUALS, "123456"),
        (("kubernetes.io", "namespace"), Operator.EQUALS, "ci"),
        (("sub",), Operator.GLOB, "repo:octo-org/web:environment:*"),
        (("job_workflow_ref",), Operator.REGEX,
         r"octo-org/deploy/\.github/workflows/deploy\.yml@refs/tags/v[0-9]+"),
        (("event_name",), Operator.ONE_OF, ("push", "workflow_dispatch")),
        (("run_attempt",), Operator.EQUALS, 1),
    ]
    assert (web.issuer, web.description) == ("github", "Deploys web from the central workflow")
    assert (web.grant.cluster, web.grant.namespace, web.grant.service_account) == (
        "default", "web", "deployer")
    assert (web.grant.user, web.grant.groups, web.grant.audiences) == (None, (), ())
    assert web.grant.max_lifetime == 3600


def test_a_self_issued_grant_has_user_groups_audiences_and_the_default_lifetime() -> None:
    (runner,) = parse_documents(SELF_ISSUED, "gitlab.yaml")
    grant = runner.grant
    assert (grant.service_account, grant.user, grant.groups) == (
        None, "ci:group/project", ("kubegate:deployers",))
    assert grant.audiences == ("https://kubernetes.default.svc",)
    assert grant.max_lifetime == 900


def test_unknown_issuers_and_clusters_are_not_checked_when_not_given() -> None:
    assert parse_documents(WEB_DEPLOYER.replace("github", "elsewhere"), "web.yaml")


@pytest.mark.parametrize(("written", "message"), [
    ("9m59s", "must be between 10m and 24h, got 599s"),
    ("24h1s", "must be between 10m and 24h, got 86401s"),
    ("15min", "expected a duration such as 90s, 15m"),
])
def test_lifetime_outside_10m_to_24h_is_a_problem(written: str, message: str) -> None:
    text = WEB_DEPLOYER.replace("maxLifetime: 1h", f"maxLifetime: {written}")
    (problem,) = problems_of(text)
    assert problem.startswith(f"{PREFIX}spec.grant.maxLifetime: {message}")


def base_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(WEB_DEPLOYER)
    return document


def edit(path: str, value: Any) -> Any:
    """A change to the base document: set (or, with DELETE, remove) a dotted path."""
    def apply(document: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = document
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return apply


DELETE = object()
PREFIX = "web.yaml: document 1 (web-deployer): "
SINGLE_PROBLEMS = [
    ("apiVersion", "v1", "apiVersion: expected 'kubegate.io/v1alpha1', got 'v1'"),
    ("kind", "ConfigMap", "kind: expected 'TrustMapping', got 'ConfigMap'"),
    ("kind", DELETE, "kind: required"),
    ("status", {"conditions": []}, None),  # what the API server writes: not the mapping
    ("metadata.generation", 3, None),
    ("metadata.owner", "me", "metadata.owner: unknown field"),
    ("spec.issuer", DELETE, "spec.issuer: required"),
    ("spec.issuer", "bitbucket", "spec.issuer: unknown issuer 'bitbucket' (configured: "
                                 "github, gitlab)"),
    ("spec.issuer", 7, "spec.issuer: expected a non-empty string, got integer"),
    ("spec.description", ["x"], "spec.description: expected a string, got list"),
    ("spec.match", {}, "spec.match: unknown field"),
    ("spec.claims", [], "spec.claims: at least one condition is required"),
    ("spec.claims", DELETE, "spec.claims: at least one condition is required"),
    ("spec.claims", {"claim": "sub"}, "spec.claims: expected a list of conditions, got object"),
    ("spec.claims.0", "sub", "spec.claims[0]: expected an object, got string"),
    ("spec.claims.0.claim", DELETE, "spec.claims[0].claim: required"),
    ("spec.claims.0.claim", [], "spec.claims[0].claim: expected a claim name or a non-empty"),
    ("spec.claims.0.claim", ["a", 1], "spec.claims[0].claim: expected a claim name"),
    ("spec.claims.0.equal", "x", "spec.claims[0].equal: unknown field"),
    ("spec.claims.0.glob", "x", "spec.claims[0]: needs exactly one of equals, glob, regex, "
                                "oneOf, contains (found equals, glob)"),
    ("spec.claims.0.equals", DELETE, "spec.claims[0]: needs exactly one of equals, glob, "
                                     "regex, oneOf, contains (found none)"),
    ("spec.claims.0.equals", None, "spec.claims[0].equals: expected a string, number or "
                                   "boolean, got null (quote it to mean a string)"),
    ("spec.claims.0.equals", ["a"], "spec.claims[0].equals: expected a string, number or "
                                    "boolean, got list"),
    ("spec.claims.4.oneOf", [], "spec.claims[4].oneOf: expected a non-empty list of values"),
    ("spec.claims.4.oneOf", ["push", {"a": 1}], "spec.claims[4].oneOf[1]: expected a string, "
                                                "number or boolean, got object"),
    ("spec.claims.2.glob", "repo:octo-org/**", "spec.claims[2].glob: '**' is not allowed"),
    ("spec.claims.2.glob", 5, "spec.claims[2].glob: expected a string, got integer"),
    ("spec.claims.3.regex", "v[0-9", "spec.claims[3].regex: invalid regex: unterminated "
                                     "character set"),
    ("spec.claims.3.regex", "a" * 1025, "spec.claims[3].regex: pattern longer than 1024"),
    ("spec.grant", DELETE, "spec.grant: required"),
    ("spec.grant.role", "admin", "spec.grant.role: unknown field"),
    ("spec.grant.cluster", "prod", "spec.grant.cluster: unknown cluster 'prod' (configured: "
                                   "default)"),
    ("spec.grant.namespace", "Web_NS", "spec.grant.namespace: 'Web_NS' is not a DNS-1123"),
    ("spec.grant.namespace", DELETE, "spec.grant.namespace: required"),
    ("spec.grant.serviceAccount", "De ployer", "spec.grant.serviceAccount: 'De ployer' is "
                                               "not a DNS-1123 subdomain"),
    ("spec.grant.user", "ci:x", "spec.grant: needs exactly one of serviceAccount or user"),
    ("spec.grant.serviceAccount", DELETE, "spec.grant: needs exactly one of serviceAccount "
                                          "or user"),
    ("spec.grant.groups", ["g"], "spec.grant.groups: groups go with user, not with "
                                 "serviceAccount"),
    ("spec.grant.audiences", "api", "spec.grant.audiences: expected a list of strings, got "
                                    "string"),
    ("spec.grant.audiences", ["a", "a"], "spec.grant.audiences[1]: duplicate 'a'"),
    ("spec.grant.audiences", ["a", ""], "spec.grant.audiences[1]: expected a non-empty string"),
    ("spec.grant.maxLifetime", True, "spec.grant.maxLifetime: expected a duration"),
]


@pytest.mark.parametrize(("path", "value", "problem"), SINGLE_PROBLEMS,
                         ids=[f"{p}={str(v)[:20]}" for p, v, _ in SINGLE_PROBLEMS])
def test_each_invalid_field_is_reported_with_file_document_and_field(
        path: str, value: Any, problem: str | None) -> None:
    document = base_document()
    edit(path, value)(document)
    text = yaml.safe_dump(document, sort_keys=False)
    if problem is None:
        assert parse_documents(text, "web.yaml", ISSUERS, CLUSTERS)
        return
    found = problems_of(text)
    assert len(found) == 1, found
    assert found[0].startswith(PREFIX + problem), found


def test_every_problem_of_every_document_is_reported_at_once(tmp_path: Path) -> None:
    broken = base_document()
    for path, value in [("apiVersion", "v1"), ("spec.issuer", "bitbucket"),
                        ("spec.claims.2.glob", "repo:octo-org/**"),
                        ("spec.claims.3.regex", "v[0-9"), ("spec.grant.namespace", "Web_NS"),
                        ("spec.grant.maxLifetime", True)]:
        edit(path, value)(broken)
    write(tmp_path, {"a.yaml": SELF_ISSUED + "---\n" + yaml.safe_dump(broken),
                     "b.yaml": "apiVersion: kubegate.io/v1alpha1\nkind: TrustMapping\n"})
    with pytest.raises(ConfigError) as invalid:
        load_folder(tmp_path, ISSUERS, CLUSTERS)
    assert invalid.value.problems == [
        f"a.yaml: document 2 (web-deployer): {problem}" for problem in [
            "apiVersion: expected 'kubegate.io/v1alpha1', got 'v1'",
            "spec.issuer: unknown issuer 'bitbucket' (configured: github, gitlab)",
            "spec.claims[2].glob: '**' is not allowed: a wildcard never crosses '/' or ':'",
            "spec.claims[3].regex: invalid regex: unterminated character set at position 1",
            "spec.grant.namespace: 'Web_NS' is not a DNS-1123 label",
            "spec.grant.maxLifetime: expected a duration such as 90s, 15m, 1h30m or 500ms, "
            "got True",
        ]] + ["b.yaml: document 1: metadata: required",
              "b.yaml: document 1: spec: required"]
    assert "a.yaml: document 2 (web-deployer): spec.claims[3].regex" in str(invalid.value)


def test_yaml_values_keep_their_types_so_a_date_must_be_quoted() -> None:
    text = WEB_DEPLOYER.replace('equals: "123456"', "equals: 2024-01-01")
    assert problems_of(text) == [PREFIX + "spec.claims[0].equals: expected a string, number "
                                 "or boolean, got date (quote it to mean a string)"]


def test_a_repeated_yaml_key_is_refused_not_silently_overwritten() -> None:
    text = WEB_DEPLOYER.replace('    equals: "123456"\n',
                                '    equals: "123456"\n    equals: "999"\n')
    (problem,) = problems_of(text)
    assert problem.startswith("web.yaml: document 1: invalid YAML: line 14, column 5: "
                              "found duplicate key 'equals'")


def test_a_yaml_syntax_error_names_the_document_and_line() -> None:
    (problem,) = problems_of(WEB_DEPLOYER + "---\nkind: [unclosed\n")
    assert re.match(r"web\.yaml: document 2: invalid YAML: line \d+, column \d+: ", problem)


def test_a_document_that_is_not_an_object_is_a_problem() -> None:
    assert problems_of("- a\n- b\n") == ["web.yaml: document 1: expected an object, got list"]


def test_duplicate_names_across_files_are_reported_with_both_places(tmp_path: Path) -> None:
    write(tmp_path, {"a.yaml": WEB_DEPLOYER, "b.yml": SELF_ISSUED + "---\n" + WEB_DEPLOYER})
    with pytest.raises(ConfigError) as invalid:
        load_folder(tmp_path, ISSUERS, CLUSTERS)
    assert invalid.value.problems == [
        "b.yml: document 2 (web-deployer): metadata.name: duplicate mapping name, first "
        "defined in a.yaml: document 1"]


def test_duplicate_names_in_one_text_are_reported() -> None:
    (problem,) = problems_of(WEB_DEPLOYER + "---\n" + WEB_DEPLOYER)
    assert "duplicate mapping name" in problem


@pytest.mark.parametrize("name", ["Web", "web_deployer", "-web", "a" * 254, ""])
def test_a_mapping_name_must_be_a_dns_subdomain(name: str) -> None:
    (problem,) = problems_of(WEB_DEPLOYER.replace("name: web-deployer", f"name: '{name}'"))
    assert "metadata.name: " in problem


def test_an_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ConfigError, match="bad.yaml: cannot read"):
        load_folder(tmp_path)


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot list trust mappings"):
        load_folder(tmp_path / "absent")


def test_an_empty_folder_is_an_empty_set_that_denies_everything(tmp_path: Path) -> None:
    assert len(load_folder(tmp_path)) == 0


# --- the OpenAPI schema -------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,),
}


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        return True
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    wanted = schema["type"]
    return isinstance(value, _TYPES[wanted]) and not (
        isinstance(value, bool) and wanted in ("integer", "number"))


def conformance_problems(value: Any, schema: dict[str, Any], at: str = "") -> list[str]:
    """A small structural OpenAPI v3 walker: type, properties (unknown fields refused),
    required, items, minItems, minLength, maxLength, pattern, and oneOf of `required`s."""
    if not _type_ok(value, schema):
        return [f"{at}: wrong type"]
    if "type" not in schema:  # any value (preserve-unknown-fields) or int-or-string
        return []
    problems: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        problems += [f"{at}.{key}: unknown" for key in value if key not in schema["properties"]]
        problems += [f"{at}.{key}: required" for key in schema.get("required", ())
                     if key not in value]
        for key, sub in schema["properties"].items():
            if key in value:
                problems += conformance_problems(value[key], sub, f"{at}.{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{at}: too few items")
        for i, item in enumerate(value):
            problems += conformance_problems(item, schema.get("items", {}), f"{at}[{i}]")
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9):
            problems.append(f"{at}: length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{at}: pattern")
    if "oneOf" in schema:
        held = [all(k in value for k in option["required"]) for option in schema["oneOf"]]
        if held.count(True) != 1:
            problems.append(f"{at}: not exactly one of {schema['oneOf']}")
    return problems


VALID_SAMPLES = [yaml.safe_load(WEB_DEPLOYER), yaml.safe_load(SELF_ISSUED),
                 {**yaml.safe_load(SELF_ISSUED), "metadata": {"name": "minimal"}}]


@pytest.mark.parametrize("document", VALID_SAMPLES, ids=["web", "self-issued", "minimal"])
def test_every_valid_sample_conforms_to_the_openapi_schema(document: dict[str, Any]) -> None:
    assert conformance_problems(document, TRUST_MAPPING_SCHEMA) == []


@pytest.mark.parametrize(("path", "value"), [
    ("spec.claims", []), ("spec.grant.user", "u"), ("spec.claims.0.glob", "x"),
    ("spec.grant.namespace", "Web"), ("spec.extra", 1),
])
def test_the_schema_refuses_what_the_loader_refuses_structurally(path: str,
                                                                 value: Any) -> None:
    document = copy.deepcopy(VALID_SAMPLES[0])
    edit(path, value)(document)
    assert conformance_problems(document, TRUST_MAPPING_SCHEMA) != []


def structural_violations(schema: dict[str, Any], at: str = "") -> list[str]:
    """Kubernetes' structural rule: every node has a type unless it preserves unknown fields
    or is int-or-string; value validations (oneOf) carry only `required`."""
    problems = []
    if "type" not in schema and not (schema.get("x-kubernetes-preserve-unknown-fields")
                                     or schema.get("x-kubernetes-int-or-string")):
        problems.append(f"{at}: no type")
    for option in schema.get("oneOf", []):
        if set(option) != {"required"}:
            problems.append(f"{at}: oneOf holds more than required")
    for key, sub in schema.get("properties", {}).items():
        problems += structural_violations(sub, f"{at}.{key}")
    if "items" in schema:
        problems += structural_violations(schema["items"], f"{at}[]")
    return problems


def test_the_schema_is_structural() -> None:
    assert structural_violations(TRUST_MAPPING_SCHEMA) == []
    assert TRUST_MAPPING_SCHEMA["properties"]["metadata"] == {"type": "object"}
