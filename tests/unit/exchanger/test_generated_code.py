"""The generated code in exchanger/v1 is exactly what the pinned generator makes of the proto
files, and the messages it defines survive a serialize/parse round trip."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from exchanger.v1 import exchange_pb2, exchange_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
GENERATED = Path("exchanger") / "v1"
REGENERATE = "run scripts/gen-proto (with grpcio-tools from the test extra) and commit the result"


def pinned_generator_version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [
        match.group(1)
        for requirement in project["project"]["optional-dependencies"]["test"]
        if (match := re.fullmatch(r"\s*grpcio-tools\s*==\s*([\w.]+)\s*", requirement))
    ]
    assert len(pins) == 1, "the test extra must pin grpcio-tools exactly once (grpcio-tools==X)"
    return pins[0]


def generated_files(root: Path) -> dict[str, bytes]:
    folder = root / GENERATED
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }


def test_installed_generator_is_the_pinned_version() -> None:
    assert version("grpcio-tools") == pinned_generator_version()


def test_committed_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-proto"), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, f"scripts/gen-proto failed:\n{result.stderr}"
    fresh, committed = generated_files(tmp_path), generated_files(ROOT)
    assert sorted(committed) == sorted(fresh), f"exchanger/v1 has the wrong files; {REGENERATE}"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"exchanger/v1/{', '.join(stale)} differ from the proto files; {REGENERATE}"


def test_exchange_request_round_trips() -> None:
    request = exchange_pb2.ExchangeRequest(
        subject_token="header.payload.signature",
        subject_token_type="urn:ietf:params:oauth:token-type:id_token",
        role="deploy-staging",
        requested_lifetime=Duration(seconds=900),
        audiences=["https://kubernetes.default.svc"],
    )
    parsed = exchange_pb2.ExchangeRequest.FromString(request.SerializeToString())
    assert parsed == request
    assert parsed.requested_lifetime.seconds == 900
    assert list(parsed.audiences) == ["https://kubernetes.default.svc"]


def test_exchange_response_round_trips() -> None:
    response = exchange_pb2.ExchangeResponse(
        credential="issued",
        credential_type="urn:kubegate:token-type:kubernetes-service-account",
        expires_at=Timestamp(seconds=1_700_000_600),
        token_id="jti-1",
        session_id="session-1",
        mapping="deploy-staging",
        cluster=exchange_pb2.ClusterAccess(
            name="staging", server="https://10.0.0.1:6443",
            certificate_authority_data=b"-----BEGIN CERTIFICATE-----\n",
            namespace="apps", service_account="deployer",
            user="system:serviceaccount:apps:deployer", groups=["system:serviceaccounts"],
        ),
    )
    parsed = exchange_pb2.ExchangeResponse.FromString(response.SerializeToString())
    assert parsed == response
    assert parsed.cluster.certificate_authority_data.startswith(b"-----BEGIN")


def test_unset_optional_fields_read_as_absent() -> None:
    parsed = exchange_pb2.ExchangeRequest.FromString(b"")
    assert parsed.subject_token_type == ""
    assert not parsed.HasField("requested_lifetime")


def test_service_stub_exposes_exchange() -> None:
    assert hasattr(exchange_pb2_grpc, "ExchangeServiceStub")
    assert hasattr(exchange_pb2_grpc, "add_ExchangeServiceServicer_to_server")
    method = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].methods_by_name["Exchange"]
    assert method.input_type.full_name == "exchanger.v1.ExchangeRequest"
    assert method.output_type.full_name == "exchanger.v1.ExchangeResponse"
