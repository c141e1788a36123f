"""The token endpoint's routes, pure: a whole `Request` in, an `Answer` out, the exchange
done by the same `Exchanger` (verification, rate limits, audit) that serves gRPC.

    POST /oauth2/token                          RFC 8693 token exchange (`form`), JSON answer
    GET  /.well-known/oauth-authorization-server RFC 8414 metadata (`metadata`)
    anything else                               404, or 405 with `Allow` on a known path

Rules of this module:
- this is the one boundary where the token endpoint's errors become answers: a KubegateError
  is answered as `errors.oauth_error` says; anything else is `server_error` with a log id,
  and no exception text leaves the process;
- a request that does not parse as a token exchange (content type, form, grant type) is a
  denial like any other: one audit line through `Exchanger.refuse`, as gRPC does for bytes
  that are not an ExchangeRequest; HTTP-level refusals (404, 405) are not exchanges;
- a query string on the token path is refused: parameters go in the body (RFC 6749 §3.2),
  where no access log records them;
- the answer (RFC 8693 §2.2.1) holds the token once, in `access_token`; logs never do.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from exchanger.backends.base import IssuedCredential
from exchanger.exchange import ExchangeInput
from exchanger.mappings.model import TrustMapping
from exchanger.oauth.errors import (
    MethodNotAllowedError,
    NotFoundError,
    OAuthError,
    internal_error,
    oauth_error,
)
from exchanger.oauth.form import TokenExchangeForm, check_content_type, parse_form
from exchanger.oauth.gate import requesting
from exchanger.oauth.metadata import METADATA_PATH, TOKEN_PATH, metadata_bytes
from exchanger.oauth.wire import Answer, Request
from kubegate.errors import InvalidRequestError, KubegateError

log = logging.getLogger(__name__)

# RFC 8693 §2.2.1: both credentials are bearer tokens for the API server
TOKEN_TYPE = "Bearer"  # noqa: S105 - a token type name


class ExchangeUseCase(Protocol):
    """What the endpoint needs of `exchanger.exchange.Exchanger`."""

    def exchange(self, request: ExchangeInput) -> tuple[IssuedCredential, TrustMapping]: ...

    def refuse(self, request: ExchangeInput, error: KubegateError) -> None: ...


class TokenEndpoint:
    def __init__(self, exchanger: ExchangeUseCase, *, issuer: str,
                 clock: Callable[[], float]) -> None:
        self._exchanger, self._clock = exchanger, clock
        self._metadata = metadata_bytes(issuer)

    def handle(self, request: Request, peer: str) -> Answer:
        """The answer to request from peer (`https:HOST:PORT`, the audit line's `peer`)."""
        try:
            if request.path == TOKEN_PATH:
                return self._token(request, peer)
            if request.path == METADATA_PATH:
                if request.method != "GET":
                    raise MethodNotAllowedError("GET")
                return Answer(status=200, body=self._metadata)
            raise NotFoundError(request.path[:64])
        except KubegateError as error:
            return error_answer(oauth_error(error), error)
        except Exception:
            log_id = uuid.uuid4().hex[:12]
            log.exception("token endpoint failed unexpectedly (log id %s)", log_id)
            return error_answer(internal_error(log_id))

    def _token(self, request: Request, peer: str) -> Answer:
        if request.method != "POST":
            raise MethodNotAllowedError("POST")
        try:
            form = read_form(request)
        except KubegateError as error:
            self._exchanger.refuse(ExchangeInput(subject_token="", peer=peer), error)
            raise
        with requesting(form.requested_token_type):
            credential, mapping = self._exchanger.exchange(to_input(form, peer))
        return Answer(status=200, body=json.dumps(
            token_response(credential, mapping, self._clock())).encode())


def read_form(request: Request) -> TokenExchangeForm:
    if "?" in request.target:
        raise InvalidRequestError(
            "QUERY_NOT_ALLOWED", "a query string on the token endpoint",
            public_message="parameters go in the request body, not the URL")
    check_content_type(request.header("content-type"))
    return parse_form(request.body)


def to_input(form: TokenExchangeForm, peer: str) -> ExchangeInput:
    return ExchangeInput(
        subject_token=form.subject_token, subject_token_type=form.subject_token_type,
        role=form.scope, requested_lifetime=form.requested_lifetime,
        audiences=form.audiences, peer=peer)


def token_response(credential: IssuedCredential, mapping: TrustMapping,
                   now: float) -> dict[str, Any]:
    """RFC 8693 §2.2.1, and what kubegate's gRPC answer says beside the token."""
    cluster = credential.cluster
    return {
        "access_token": credential.token,
        "issued_token_type": credential.token_type,
        "token_type": TOKEN_TYPE,
        "expires_in": max(0, credential.expires_at - int(now)),
        "scope": mapping.name,
        "expires_at": credential.expires_at,
        "token_id": credential.token_id,
        "session_id": credential.session_id,
        "mapping": mapping.name,
        "cluster": {
            "name": cluster.name, "server": cluster.server,
            "certificate_authority_data": base64.b64encode(
                cluster.certificate_authority_data).decode("ascii"),
            "namespace": cluster.namespace, "service_account": cluster.service_account,
            "user": cluster.user, "groups": list(cluster.groups),
        },
    }


def error_answer(error: OAuthError, cause: KubegateError | None = None) -> Answer:
    headers: list[tuple[str, str]] = []
    if error.retry_after is not None:
        headers.append(("Retry-After", str(error.retry_after)))
    if isinstance(cause, MethodNotAllowedError):
        headers.append(("Allow", cause.allow))
    return Answer(status=error.status, body=json.dumps(error.body()).encode(),
                  headers=tuple(headers))
