"""The TrustMapping CRD is generated from the file schema: the committed file is exactly what
scripts/gen-crd writes, its structural schema is the file schema plus status, and the sample
resource in deploy/examples is a valid mapping file too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from exchanger.mappings import parse_documents
from exchanger.mappings.crd import render_crd
from exchanger.mappings.schema import SPEC_SCHEMA, TRUST_MAPPING_SCHEMA

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "deploy" / "base" / "crd-trustmapping.yaml"
REGENERATE = "run scripts/gen-crd and commit deploy/base/crd-trustmapping.yaml"


def test_the_committed_crd_is_what_gen_crd_writes(tmp_path: Path) -> None:
    fresh = tmp_path / "crd.yaml"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-crd"), str(fresh)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == render_crd()
    assert COMMITTED.read_text() == fresh.read_text(), REGENERATE


def test_the_structural_schema_is_the_file_schema_plus_status() -> None:
    crd = yaml.safe_load(COMMITTED.read_text())
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"] == SPEC_SCHEMA
    assert {k: v for k, v in schema["properties"].items() if k != "status"} == \
        TRUST_MAPPING_SCHEMA["properties"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_the_crd_is_namespaced_with_a_status_subresource_and_printer_columns() -> None:
    crd = yaml.safe_load(COMMITTED.read_text())
    assert crd["metadata"]["name"] == "trustmappings.kubegate.io"
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Issuer": ".spec.issuer", "Cluster": ".spec.grant.cluster",
        "Namespace": ".spec.grant.namespace", "ServiceAccount": ".spec.grant.serviceAccount",
        "User": ".spec.grant.user",
        "Accepted": '.status.conditions[?(@.type=="Accepted")].status',
        "Age": ".metadata.creationTimestamp"}


def test_the_sample_resource_is_a_valid_mapping_file() -> None:
    path = ROOT / "deploy" / "examples" / "trustmapping.yaml"
    mappings = parse_documents(path.read_text(), path.name)
    assert [m.name for m in mappings] == ["web-deploy"]
