"""The servicer reads request bytes itself: bytes that are not an ExchangeRequest are a denial
like any other (INVALID_ARGUMENT MALFORMED_REQUEST with ErrorInfo, one audit line, counted),
never grpc's INTERNAL "Exception deserializing request!"."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from exchanger.audit.record import AuditRecord
from exchanger.exchange import Exchanger
from exchanger.identity import Identity
from exchanger.mappings import MappingSet
from exchanger.service import ExchangeServicer, parse_request
from exchanger.v1 import exchange_pb2
from kubegate.errors import InvalidRequestError

MALFORMED = {
    "truncated varint": b"\x0a\x80\x80",
    "truncated string": b"\x0a\x05ab",
    "wrong wire type": b"\x08\x01",
    "wrong wire type in requested_lifetime": b"\x22\x05\x0d\x01\x02\x03\x04",
    "invalid UTF-8": b"\x0a\x05\xff\xfe.\x80.",
    "huge length prefix": b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 10,
    "field number 0": b"\x00\x01",
    "end group without start": b"\x0c",
}


@pytest.mark.parametrize("case", MALFORMED)
def test_bytes_that_are_not_a_request_are_malformed_request(case: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_request(MALFORMED[case])
    error = refused.value
    assert (error.reason, error.code.name) == ("MALFORMED_REQUEST", "INVALID_ARGUMENT")
    assert "ExchangeRequest" in error.public_message
    assert "\\x" not in error.detail and "ab" not in error.detail.split()  # no input bytes


def test_a_valid_request_and_unknown_fields_of_a_newer_client_are_read() -> None:
    request = exchange_pb2.ExchangeRequest(subject_token="a.b.c", role="web")
    request.requested_lifetime.FromSeconds(600)
    newer = request.SerializeToString() + b"\x48\x01"  # field 9, a varint: unknown here
    parsed = parse_request(newer)
    assert (parsed.subject_token, parsed.role, parsed.requested_lifetime.seconds) == (
        "a.b.c", "web", 600)


class Aborted(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise Aborted


class NeverCalled:
    def verify(self, token: str) -> Identity:
        raise AssertionError("a malformed request never reaches verification")


class Recorder:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.observed: list[dict[str, Any]] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)

    def observe(self, **fields: Any) -> None:
        self.observed.append(fields)


def test_the_servicer_denies_audits_and_counts_a_malformed_message() -> None:
    recorder = Recorder()
    exchanger = Exchanger(verifier=NeverCalled(), mappings=MappingSet(mappings=()), backends={},
                          audit=recorder, clock=time.time, observer=recorder)
    context = Context()
    with pytest.raises(Aborted):
        ExchangeServicer(exchanger).Exchange(MALFORMED["invalid UTF-8"], context)
    assert context.status is not None and context.status.code == grpc.StatusCode.INVALID_ARGUMENT
    [details] = [value for key, value in context.status.trailing_metadata
                 if key == "grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    assert status_pb2.Status.FromString(details).details[0].Unpack(info)
    assert (info.domain, info.reason) == ("kubegate.io", "MALFORMED_REQUEST")
    [record] = recorder.records
    assert (record.decision, record.reason, record.status, record.peer) == (
        "deny", "MALFORMED_REQUEST", "INVALID_ARGUMENT", "ipv4:127.0.0.1:40000")
    assert [(o["result"], o["reason"]) for o in recorder.observed] == [
        ("deny", "MALFORMED_REQUEST")]
