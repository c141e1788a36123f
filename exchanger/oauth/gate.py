"""`requested_token_type` held against what a trust mapping's backend issues.

The token endpoint knows what the caller asked for; only the use case knows which mapping
matched and so which backend issues. A `TokenTypeGate` wraps each backend: when the request
in this thread named a token type (`requesting`), a backend issuing another type refuses
before anything is issued, inside the use case, so the refusal is audited like any other
(INVALID_ARGUMENT UNSUPPORTED_REQUESTED_TOKEN_TYPE). gRPC requests name none and pass.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from exchanger.backends.base import CredentialBackend, IssuedCredential, IssueRequest
from kubegate.errors import InvalidRequestError

_REQUESTED: contextvars.ContextVar[str] = contextvars.ContextVar("requested_token_type",
                                                               default="")


@contextmanager
def requesting(token_type: str) -> Iterator[None]:
    """Within the block, backends of this thread's exchange must issue token_type ("" any)."""
    reset = _REQUESTED.set(token_type)
    try:
        yield
    finally:
        _REQUESTED.reset(reset)


class TokenTypeGate:
    """A backend that issues `token_type`, refusing requests for another type."""

    def __init__(self, backend: CredentialBackend, token_type: str) -> None:
        self._backend, self._token_type = backend, token_type

    def issue(self, request: IssueRequest) -> IssuedCredential:
        wanted = _REQUESTED.get()
        if wanted and wanted != self._token_type:
            raise InvalidRequestError(
                "UNSUPPORTED_REQUESTED_TOKEN_TYPE",
                f"mapping {request.mapping} issues {self._token_type}",
                public_message=f"the trust mapping issues {self._token_type}, not the "
                               "requested_token_type")
        return self._backend.issue(request)

    def revoke(self, credential: IssuedCredential) -> None:
        self._backend.revoke(credential)
