"""The gRPC servicer: wire messages in, domain values to the Exchanger, wire messages out.

This is the one boundary where errors become statuses: a KubegateError travels as its own
status with its public message and a google.rpc.ErrorInfo (domain kubegate.io, its reason);
anything else becomes INTERNAL with a log id, so no call reaches a client as UNKNOWN and no
exception text (which could hold anything) leaves the process.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from exchanger.backends.base import IssuedCredential
from exchanger.exchange import ExchangeInput, Exchanger
from exchanger.mappings.model import TrustMapping
from exchanger.v1 import exchange_pb2, exchange_pb2_grpc
from kubegate.errors import ERROR_DOMAIN, Code, KubegateError

log = logging.getLogger(__name__)


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
        self, request: exchange_pb2.ExchangeRequest, context: grpc.ServicerContext,
    ) -> exchange_pb2.ExchangeResponse:
        try:
            credential, mapping = self._exchanger.exchange(to_input(request, context.peer()))
            return to_response(credential, mapping)
        except KubegateError as error:
            context.abort_with_status(error_status(error))
        except Exception:
            log_id = uuid.uuid4().hex[:12]
            log.exception("exchange failed unexpectedly (log id %s)", log_id)
            context.abort_with_status(internal_status(log_id))
        raise AssertionError("unreachable: abort_with_status raises")
