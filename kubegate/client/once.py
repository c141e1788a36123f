"""One exchange, start to end: read the subject token from its source, exchange it (retrying
only transient failures), return the credential. `kubegate exchange` and `kubegate sidecar
--once` are this function plus what they do with the credential.

Rules of this module:
- failures leave as kubegate errors only: `SubjectTokenError` (no token), `ExchangeError`
  (refused or unreachable; `describe()` gives the one line to show), `UsageError` (a CA file
  that cannot be read);
- nothing here prints, logs or writes files;
- the client of the settings' transport is imported when it is used, and only it: gRPC's
  (`kubegate.client.rpc`) or HTTPS's (`kubegate.client.https_exchange`, no grpc).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubegate.client.settings import ExchangeSettings, token_source
from kubegate.credential import Credential
from kubegate.errors import UsageError

if TYPE_CHECKING:
    from kubegate.client.https_exchange import HttpsExchangeClient
    from kubegate.client.rpc import ExchangeClient


def exchange_once(settings: ExchangeSettings, *, token: str | None = None,
                  timeout: float = 10.0, attempts: int = 4,
                  retry_budget: float = 30.0) -> Credential:
    """token: the subject token when the caller already read it from the settings' source."""
    if token is None:
        token = token_source(settings.token_source).read()
    try:
        with client_for(settings, timeout=timeout, attempts=attempts,
                        retry_budget=retry_budget) as client:
            return client.exchange(token, role=settings.role, lifetime=settings.lifetime,
                                   audiences=settings.audiences)
    except OSError as error:  # e.g. the CA file became unreadable
        raise UsageError(f"cannot read {error.filename or settings.ca_file}: "
                         f"{error.strerror}") from None


def client_for(settings: ExchangeSettings, *, timeout: float = 10.0, attempts: int = 4,
               retry_budget: float = 30.0) -> ExchangeClient | HttpsExchangeClient:
    """The exchange client of settings' transport; only its own module is imported, so the
    HTTPS route never loads grpc. OSError when the CA file cannot be read."""
    if settings.transport == "https":
        from kubegate.client.https_exchange import HttpsExchangeClient

        return HttpsExchangeClient(settings.target, ca_file=settings.ca_file, timeout=timeout,
                                   attempts=attempts, retry_budget=retry_budget)
    from kubegate.client.rpc import ExchangeClient

    return ExchangeClient(settings.target, ca_file=settings.ca_file,
                          plaintext=settings.plaintext, timeout=timeout, attempts=attempts,
                          retry_budget=retry_budget)
