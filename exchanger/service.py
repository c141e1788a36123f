"""The gRPC servicer: wire messages in, domain values to the Exchanger, wire messages out.

This is the one boundary where errors become statuses: a KubegateError travels as its own
status with its public message and a google.rpc.ErrorInfo (domain kubegate.io, its reason);
anything else becomes INTERNAL with a log id, so no call reaches a client as UNKNOWN and no
exception text (which could hold anything) leaves the process.

Rules of this module:
- the service is registered with `add_exchange_service`, which hands the servicer the raw
  request bytes: grpc's own deserializer would answer a malformed message with INTERNAL
  "Exception deserializing request!" and a traceback, outside this boundary;
- bytes that are not an ExchangeRequest (corrupt wire format, a string that is not UTF-8, a
  known field with the wrong wire type) are a denial like any other: INVALID_ARGUMENT
  MALFORMED_REQUEST, one audit line, counted; unknown fields are ignored (a newer client).
"""

from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import any_pb2, message, unknown_fields
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from exchanger.backends.base import IssuedCredential
from exchanger.exchange import ExchangeInput, Exchanger
from exchanger.mappings.model import TrustMapping
from exchanger.v1 import exchange_pb2, exchange_pb2_grpc
from kubegate.errors import ERROR_DOMAIN, Code, InvalidRequestError, KubegateError

log = logging.getLogger(__name__)

METHOD = "Exchange"
MALFORMED_MESSAGE = "the request is not a valid exchanger.v1.ExchangeRequest message"


def _misread_fields(parsed: message.Message) -> list[str]:
    """Known fields the parser set aside as unknown: they came with the wrong wire type."""
    known = parsed.DESCRIPTOR.fields_by_number
    unknown = unknown_fields.UnknownFieldSet(parsed)
    numbers = {int(unknown[index].field_number) for index in range(len(unknown))}
    names = [f"{parsed.DESCRIPTOR.name}.{known[number].name}"
             for number in sorted(numbers & set(known))]
    for field, value in parsed.ListFields():
        if field.message_type is not None and not field.is_repeated:
            names += _misread_fields(value)
    return names


def parse_request(raw: bytes) -> exchange_pb2.ExchangeRequest:
    """`raw` as an ExchangeRequest, strictly; InvalidRequestError MALFORMED_REQUEST when it is
    not one. The detail names no byte of the message (it may hold a token)."""
    try:
        request = exchange_pb2.ExchangeRequest.FromString(raw)
    except message.DecodeError:
        raise InvalidRequestError(
            "MALFORMED_REQUEST", f"{len(raw)} bytes that do not parse as an ExchangeRequest",
            public_message=MALFORMED_MESSAGE) from None
    misread = _misread_fields(request)
    if misread:
        raise InvalidRequestError(
            "MALFORMED_REQUEST", f"wrong wire type for {', '.join(misread)}",
            public_message=MALFORMED_MESSAGE)
    return request


def to_input(request: exchange_pb2.ExchangeRequest, peer: str) -> ExchangeInput:
    lifetime = request.requested_lifetime.seconds if request.HasField("requested_lifetime") else 0
    return ExchangeInput(
        subject_token=request.subject_token, subject_token_type=request.subject_token_type,
        role=request.role, requested_lifetime=lifetime, audiences=tuple(request.audiences),
        peer=peer,
    )


def to_response(credential: IssuedCredential,
                mapping: TrustMapping) -> exchange_pb2.ExchangeResponse:
    cluster = credential.cluster
    response = exchange_pb2.ExchangeResponse(
        credential=credential.token, credential_type=credential.token_type,
        token_id=credential.token_id, session_id=credential.session_id, mapping=mapping.name,
        cluster=exchange_pb2.ClusterAccess(
            name=cluster.name, server=cluster.server,
            certificate_authority_data=cluster.certificate_authority_data,
            namespace=cluster.namespace, service_account=cluster.service_account,
            user=cluster.user, groups=list(cluster.groups),
        ),
    )
    response.expires_at.FromSeconds(credential.expires_at)
    return response


def grpc_code(code: Code) -> grpc.StatusCode:
    """The gRPC status a transport-neutral code travels as (they share their names)."""
    return grpc.StatusCode[code.name]


def error_status(error: KubegateError) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
    return rpc_status.to_status(status_pb2.Status(
        code=grpc_code(error.code).value[0], message=error.public_message, details=[info],
    ))


def internal_status(log_id: str) -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error (log id {log_id})",
    ))


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):  # type: ignore[misc]
    def __init__(self, exchanger: Exchanger) -> None:
        self._exchanger = exchanger

    def Exchange(  # noqa: N802 - the generated interface's name
        self, request: bytes | exchange_pb2.ExchangeRequest, context: grpc.ServicerContext,
    ) -> exchange_pb2.ExchangeResponse:
        """`request` is raw bytes (`add_exchange_service`) or, registered by the generated
        code, a message grpc has parsed."""
        try:
            peer = context.peer()
            parsed = self._read(request, peer)
            credential, mapping = self._exchanger.exchange(to_input(parsed, peer))
            return to_response(credential, mapping)
        except KubegateError as error:
            context.abort_with_status(error_status(error))
        except Exception:
            log_id = uuid.uuid4().hex[:12]
            log.exception("exchange failed unexpectedly (log id %s)", log_id)
            context.abort_with_status(internal_status(log_id))
        raise AssertionError("unreachable: abort_with_status raises")

    def _read(self, request: bytes | exchange_pb2.ExchangeRequest,
              peer: str) -> exchange_pb2.ExchangeRequest:
        if not isinstance(request, bytes):
            return request
        try:
            return parse_request(request)
        except InvalidRequestError as error:
            self._exchanger.refuse(ExchangeInput(subject_token="", peer=peer), error)
            raise


def add_exchange_service(servicer: ExchangeServicer, server: grpc.Server) -> None:
    """Register the servicer for exchanger.v1.ExchangeService, taking requests as bytes."""
    handlers = {METHOD: grpc.unary_unary_rpc_method_handler(
        servicer.Exchange, request_deserializer=None,
        response_serializer=exchange_pb2.ExchangeResponse.SerializeToString)}
    service = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
