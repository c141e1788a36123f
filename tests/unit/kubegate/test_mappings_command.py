"""`kubegate mappings validate` and `kubegate mappings explain` as a platform team runs them:
one line per finding with exit 1 on errors (warnings only with --strict), and a dry run
that shows every condition, the value it saw, and the exchanger's own decision."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubegate.cli import main
from tests.support.oidc import GitHubJob, encode_jwt, github_claims, new_signing_key

GITHUB_URL = "https://token.actions.githubusercontent.com"

WEB = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: web-deploy}
spec:
  issuer: github
  claims:
  - {claim: repository_id, equals: "74"}
  - {claim: event_name, oneOf: [push, workflow_dispatch]}
  - {claim: ref, equals: refs/heads/main}
  grant: {cluster: prod, namespace: web, serviceAccount: deployer, maxLifetime: 20m}
"""
WEB_ANY_BRANCH = WEB.replace("web-deploy", "web-any-branch").replace(
    "{claim: ref, equals: refs/heads/main}", "{claim: ref, glob: 'refs/heads/*'}")
RISKY = WEB.replace("web-deploy", "risky").replace(
    '{claim: repository_id, equals: "74"}', "{claim: repository, equals: octo-org/web}")

CONFIG = f"""\
listen: 127.0.0.1:0
issuers:
- {{name: github, url: "{GITHUB_URL}", audiences: [kubegate, "https://github.com/octo-org"]}}
clusters:
- {{name: prod, server: "https://10.0.0.1:6443", caFile: ca.crt,
   credentials: {{tokenFile: token}}}}
"""


def kubegate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    status = main(["mappings", *args])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


# -- validate ------------------------------------------------------------------------------


def test_clean_mappings_exit_0_with_a_summary(folder: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "web.yaml").write_text(WEB)
    status, out, err = kubegate(capsys, "validate", str(folder / "web.yaml"))
    assert (status, out) == (0, [])
    assert "1 mapping document(s), 0 error(s), 0 warning(s)" in err


def test_warnings_exit_0_unless_strict(folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "risky.yaml"
    path.write_text(RISKY)
    status, out, _ = kubegate(capsys, "validate", str(path))
    assert status == 0
    assert out == [f"{path}: document 1 (risky): warning: repository is matched without "
                   "repository_id: names can be deleted and registered again by someone "
                   "else; add repository_id"]
    assert kubegate(capsys, "validate", "--strict", str(path))[0] == 1


def test_errors_name_file_document_and_field_and_exit_1(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "bad.yaml"
    path.write_text(WEB + "---\n" + WEB.replace("web-deploy", "short").replace("20m", "1m")
                    + "---\nkind: [unclosed\n")
    status, out, _ = kubegate(capsys, "validate", str(path))
    assert status == 1
    assert out[0] == (f"{path}: document 2 (short): error: spec.grant.maxLifetime: must be "
                      "between 10m and 24h, got 60s")
    assert out[1].startswith(f"{path}: document 3: error: invalid YAML: line 24")
    assert len(out) == 2


def test_a_folder_is_read_and_names_must_be_unique_across_files(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mappings = folder / "mappings"
    mappings.mkdir()
    (mappings / "a.yaml").write_text(WEB)
    (mappings / "b.yml").write_text(WEB)
    (mappings / ".hidden.yaml").write_text("not: a mapping")
    status, out, _ = kubegate(capsys, "validate", str(mappings), str(folder / "missing.yaml"))
    assert status == 1
    assert out == [
        f"{folder / 'missing.yaml'}: error: no such file",
        f"{mappings / 'b.yml'}: document 1 (web-deploy): error: metadata.name: duplicate "
        f"mapping name, first defined in {mappings / 'a.yaml'}: document 1",
    ]


PEOPLE = """\
apiVersion: kubegate.io/v1alpha1
kind: TrustMapping
metadata: {name: sre-break-glass}
spec:
  issuer: corp
  claims:
  - {claim: groups, contains: sre-leads}
  - {claim: email_verified, equals: true}
  grant:
    cluster: prod
    namespace: ops
    user: {claim: email, prefix: "oidc:"}
    groups: ["kubegate:people", {claim: groups, prefix: "oidc:"}]
"""


def test_a_people_mapping_with_claim_names_is_clean(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "people.yaml"
    path.write_text(PEOPLE)
    status, out, err = kubegate(capsys, "validate", "--strict", str(path))
    assert (status, out) == (0, [])
    assert "0 error(s), 0 warning(s)" in err


def test_a_condition_that_can_never_match_its_claim_type_is_an_error(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "people.yaml"
    path.write_text(PEOPLE.replace("contains: sre-leads", "equals: sre-leads")
                    .replace("equals: true", 'equals: "true"')
                    .replace('user: {claim: email, prefix: "oidc:"}', "user: sre"))
    status, out, err = kubegate(capsys, "validate", str(path))
    assert status == 1
    where = f"{path}: document 1 (sre-break-glass)"
    assert out[:2] == [
        f"{where}: error: spec.claims[0]: groups is a list of strings in ID tokens: equals can "
        "never match; use contains",
        f'{where}: error: spec.claims[1]: email_verified is a boolean in ID tokens: equals '
        '"true" (string) can never match; write true without quotes']
    assert out[2].startswith(f"{where}: warning: grant.user is the constant 'sre': everyone "
                             "this mapping admits becomes the same Kubernetes user")
    assert "2 error(s), 1 warning(s)" in err


def test_email_without_email_verified_is_a_warning(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "people.yaml"
    path.write_text(PEOPLE.replace("{claim: email_verified, equals: true}",
                                   "{claim: email, glob: '*@corp.example'}"))
    status, out, _ = kubegate(capsys, "validate", str(path))
    assert status == 0
    assert out == [f"{path}: document 1 (sre-break-glass): warning: email is matched without "
                   "{claim: email_verified, equals: true}: an unverified email can be set by "
                   "its owner to anyone's address; add email_verified equals true"]


def test_with_a_config_names_are_checked_and_audiences_linted(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "web.yaml"
    path.write_text(WEB.replace("cluster: prod", "cluster: staging"))
    status, out, _ = kubegate(capsys, "validate", "--config", str(folder / "config.yaml"),
                              str(path))
    assert status == 1
    assert out[0] == (f"{path}: document 1 (web-deploy): error: spec.grant.cluster: unknown "
                      "cluster 'staging' (configured: prod)")
    assert out[1].startswith(f"{folder / 'config.yaml'}: issuer github: warning: audience "
                             "'https://github.com/octo-org' is GitHub's default")


def test_a_bad_config_is_a_usage_error(folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "config.yaml").write_text("issuers: 3\n")
    status, _, err = kubegate(capsys, "validate", "--config", str(folder / "config.yaml"),
                              str(folder))
    assert status == 2
    assert "issuers: expected a list" in err


# -- explain -------------------------------------------------------------------------------


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    base = github_claims(GitHubJob(repository_id="74"), issuer=GITHUB_URL, audience="kubegate",
                         now=now, lifetime=300, jti="j-1")
    return {**base, **changes}


def explain(capsys: pytest.CaptureFixture[str], folder: Path, *args: str,
            ) -> tuple[int, list[str], str]:
    (folder / "mappings.yaml").write_text(WEB + "---\n" + WEB_ANY_BRANCH)
    return kubegate(capsys, "explain", "--mappings", str(folder / "mappings.yaml"),
                    "--config", str(folder / "config.yaml"), *args)


def test_a_token_is_explained_without_verifying_its_signature(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = encode_jwt({"alg": "RS256", "kid": "k1", "typ": "JWT"},
                       claims(ref="refs/heads/feature"), new_signing_key())
    (folder / "token").write_text(token + "\n")
    status, out, _ = explain(capsys, folder, "--token", str(folder / "token"))
    assert status == 0
    assert out[0] == "token: RS256, kid k1; signature NOT verified (explain shows matching only)"
    assert out[1] == f"issuer: github (found by iss '{GITHUB_URL}')"
    assert out[2] == "audience: ['kubegate'] includes one of github's"
    text = "\n".join(out)
    assert "mapping web-deploy (" in text and ": no match" in text
    assert '  FAIL  ref equals "refs/heads/main"' in text
    assert 'saw "refs/heads/feature"' in text
    assert "mapping web-any-branch" in text and ": MATCH" in text
    assert out[-1] == ("decision: would grant web-any-branch: cluster prod, namespace web, "
                       "service account deployer, lifetime up to 20m (nothing was issued)")
    assert token not in text


def test_two_matching_mappings_are_an_ambiguity_resolved_by_a_role(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "claims.json").write_text(json.dumps(claims()))
    status, out, _ = explain(capsys, folder, "--claims", str(folder / "claims.json"))
    assert status == 1
    assert out[-1].startswith("decision: denied: AMBIGUOUS_MAPPING: ")
    status, out, _ = explain(capsys, folder, "--claims", str(folder / "claims.json"),
                             "--role", "web-deploy")
    assert status == 0
    assert out[-1].startswith("decision: would grant web-deploy:")
    assert sum(line.startswith("mapping ") for line in out) == 1


def test_no_match_shows_each_failing_condition_and_the_missing_claim(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "claims.json").write_text(json.dumps(claims(repository_id="75",
                                                          event_name=None)))
    status, out, _ = explain(capsys, folder, "--claims", str(folder / "claims.json"))
    assert status == 1
    assert '  FAIL  repository_id equals "74"' in "\n".join(out)
    assert any("saw null" in line for line in out)
    assert out[-1].startswith("decision: denied: NO_MATCHING_MAPPING: ")


def test_an_audience_the_issuer_does_not_accept_is_pointed_out(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "claims.json").write_text(json.dumps(claims(aud="sts.amazonaws.com")))
    _, out, _ = explain(capsys, folder, "--claims", str(folder / "claims.json"))
    assert "a real exchange would be refused" in out[2]


def test_an_unconfigured_iss_or_a_missing_issuer_is_a_usage_error(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "claims.json").write_text(json.dumps(claims(iss="https://evil.example")))
    status, _, err = explain(capsys, folder, "--claims", str(folder / "claims.json"))
    assert status == 2
    assert "'https://evil.example' is not a configured issuer" in err
    status, _, err = kubegate(capsys, "explain", "--claims", str(folder / "claims.json"),
                              "--mappings", str(folder))
    assert status == 2
    assert "give --config" in err


def test_something_that_is_not_a_jwt_is_a_usage_error(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "token").write_text("not-a-token")
    status, _, err = explain(capsys, folder, "--token", str(folder / "token"))
    assert status == 2
    assert "not a JWT kubegate accepts" in err


# -- what `kubectl get trustmappings -o yaml` prints ----------------------------------------


def as_resource(text: str, generation: int) -> dict[str, object]:
    """A mapping document as the API server returns it: server metadata and a status."""
    document: dict[str, Any] = yaml.safe_load(text)
    document["metadata"].update({
        "namespace": "kubegate", "generation": generation, "resourceVersion": "4711",
        "uid": "0b9e5d1c-0000-4000-8000-000000000000",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply",
                           "apiVersion": "kubegate.io/v1alpha1", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:spec": {}}}]})
    document["status"] = {"conditions": [{
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "in effect",
        "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:01Z"}]}
    return document


INVALID = WEB.replace("web-deploy", "broken").replace("serviceAccount: deployer",
                                                      "serviceAccount: De_ployer")


def kubectl_list(*texts: str) -> str:
    items = [as_resource(text, number) for number, text in enumerate(texts, 1)]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items,
                           "metadata": {"resourceVersion": ""}})


def test_validate_takes_a_kubectl_list_and_judges_each_item(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "listed.yaml"
    path.write_text(kubectl_list(WEB, INVALID, WEB_ANY_BRANCH))
    status, out, err = kubegate(capsys, "validate", "--config", str(folder / "config.yaml"),
                                str(path))
    assert status == 1
    errors = [line for line in out if ": error: " in line]
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: document 1: items[1] (broken): error: "
                                "spec.grant.serviceAccount: 'De_ployer' is not a DNS-1123")
    assert "3 mapping document(s), 1 error(s)" in err
    path.write_text(kubectl_list(WEB, WEB_ANY_BRANCH))
    status, out, err = kubegate(capsys, "validate", str(path))
    assert (status, out) == (0, [])
    assert "2 mapping document(s), 0 error(s)" in err


def test_explain_takes_a_kubectl_list_and_leaves_out_only_the_invalid_item(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "listed.yaml").write_text(kubectl_list(INVALID, WEB))
    (folder / "claims.json").write_text(json.dumps(claims()))
    status, out, _ = kubegate(capsys, "explain", "--mappings", str(folder / "listed.yaml"),
                              "--config", str(folder / "config.yaml"),
                              "--claims", str(folder / "claims.json"))
    assert status == 0
    left_out = [line for line in out if line.startswith("invalid, left out: ")]
    assert len(left_out) == 1
    assert "document 1: items[0] (broken)" in left_out[0]
    assert "spec.grant.serviceAccount" in left_out[0]
    assert out[-1].startswith("decision: would grant web-deploy:")


def test_explain_leaves_out_an_invalid_document_of_a_folder_not_the_folder(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mappings = folder / "mappings"
    mappings.mkdir()
    (mappings / "a-broken.yaml").write_text(INVALID)
    (mappings / "web.yaml").write_text(WEB + "---\n" + WEB_ANY_BRANCH.replace(
        "web-any-branch", "web-deploy"))  # the name again: the later one is left out
    (folder / "claims.json").write_text(json.dumps(claims()))
    status, out, _ = kubegate(capsys, "explain", "--mappings", str(mappings),
                              "--config", str(folder / "config.yaml"),
                              "--claims", str(folder / "claims.json"))
    assert status == 0
    left_out = [line for line in out if line.startswith("invalid, left out: ")]
    assert [line.split(": ")[1] for line in left_out] == [
        "a-broken.yaml", "web.yaml"], left_out
    assert "duplicate mapping name" in left_out[1]
    assert out[-1].startswith("decision: would grant web-deploy:")


# -- blast radius and diff (against a real API server: tests/integration/test_mappings_diff.py)


def test_explain_needs_a_token_claims_or_blast_radius(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "web.yaml").write_text(WEB)
    status, _, err = kubegate(capsys, "explain", "--mappings", str(folder / "web.yaml"))
    assert status == 2
    assert "give --token FILE or --claims FILE (or --blast-radius)" in err


def test_diff_refuses_an_invalid_mapping_rather_than_call_it_removed(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "old.yaml").write_text(WEB)
    (folder / "new.yaml").write_text(WEB.replace("namespace: web", "namespace: Web!"))
    status, out, err = kubegate(capsys, "diff", str(folder / "old.yaml"),
                                str(folder / "new.yaml"), "--kubeconfig",
                                str(folder / "none"))
    assert (status, out) == (2, [])
    assert "NEW" in err and "holds invalid mappings" in err


def test_diff_with_an_unusable_kubeconfig_exits_2_naming_it(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "web.yaml").write_text(WEB)
    (folder / "broken.kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    status, out, err = kubegate(capsys, "diff", str(folder / "web.yaml"),
                                str(folder / "web.yaml"), "--kubeconfig",
                                str(folder / "broken.kubeconfig"), "--format", "json")
    assert (status, out) == (2, [])
    assert "KUBECONFIG_UNUSABLE" in err and "broken.kubeconfig" in err
