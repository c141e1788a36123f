"""The exchanger's public client API: what the sidecar and `kubegate exchange` use.

It speaks gRPC to an exchanger and turns answers into plain values: a `Credential`, or an
`ExchangeError` (kubegate.errors) carrying the code, the stable reason from
google.rpc.ErrorInfo, and the server's public message. Only transient failures (UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED) are retried, with exponential backoff and
jitter; a denial never is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from exchanger.v1 import exchange_pb2, exchange_pb2_grpc
from kubegate.credential import ClusterInfo, Credential
from kubegate.errors import Code, ExchangeError

__all__ = ["ExchangeClient", "ExchangeError", "channel_for", "from_response",
           "to_exchange_error"]


def to_exchange_error(error: grpc.RpcError) -> ExchangeError:
    status = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    code = Code[status.name] if status.name in Code.__members__ else Code.UNKNOWN
    message = error.details() if hasattr(error, "details") else ""
    reason = ""
    details = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    for detail in details.details if details else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return ExchangeError(code, reason, message or "")


def from_response(response: exchange_pb2.ExchangeResponse) -> Credential:
    cluster = response.cluster
    return Credential(
        token=response.credential, token_type=response.credential_type,
        expires_at=response.expires_at.seconds, token_id=response.token_id,
        session_id=response.session_id, mapping=response.mapping,
        cluster=ClusterInfo(
            name=cluster.name, server=cluster.server,
            certificate_authority_data=cluster.certificate_authority_data,
            namespace=cluster.namespace, service_account=cluster.service_account,
            user=cluster.user, groups=tuple(cluster.groups)),
    )


def channel_for(target: str, *, ca_file: Path | None = None,
                plaintext: bool = False) -> grpc.Channel:
    """A channel to target: TLS trusting ca_file (or system roots), or plaintext if asked."""
    if plaintext:
        return grpc.insecure_channel(target)
    roots = ca_file.read_bytes() if ca_file else None
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))


class ExchangeClient:
    def __init__(self, target: str, *, ca_file: Path | None = None, plaintext: bool = False,
                 timeout: float = 10.0, attempts: int = 4, retry_budget: float = 30.0) -> None:
        self._channel = channel_for(target, ca_file=ca_file, plaintext=plaintext)
        self._stub = exchange_pb2_grpc.ExchangeServiceStub(self._channel)
        self._timeout, self._attempts, self._budget = timeout, attempts, retry_budget

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def exchange(self, subject_token: str, *, role: str = "", lifetime: int = 0,
                 audiences: Sequence[str] = (), timeout: float | None = None) -> Credential:
        """One exchange, retried on transient failures only. `timeout` (seconds per attempt)
        overrides the client's default for this call."""
        request = exchange_pb2.ExchangeRequest(
            subject_token=subject_token, role=role, audiences=list(audiences))
        if lifetime:
            request.requested_lifetime.FromSeconds(lifetime)
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, ExchangeError) and e.transient),
            stop=stop_after_attempt(self._attempts) | stop_after_delay(self._budget),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0), reraise=True,
        )
        return retrying(self._exchange_once, request, timeout or self._timeout)

    def _exchange_once(self, request: exchange_pb2.ExchangeRequest,
                       timeout: float) -> Credential:
        try:
            return from_response(self._stub.Exchange(request, timeout=timeout))
        except grpc.RpcError as error:
            raise to_exchange_error(error) from None
