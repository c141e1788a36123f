"""One exchange, start to end: read the subject token from its source, exchange it (retrying
only transient failures), return the credential. `kubegate exchange` and `kubegate sidecar
--once` are this function plus what they do with the credential.

Rules of this module:
- failures leave as kubegate errors only: `SubjectTokenError` (no token), `ExchangeError`
  (refused or unreachable; `describe()` gives the one line to show), `UsageError` (a CA file
  that cannot be read);
- nothing here prints, logs or writes files.
"""

from __future__ import annotations

from kubegate.client.rpc import ExchangeClient
from kubegate.client.settings import ExchangeSettings, token_source
from kubegate.credential import Credential
from kubegate.errors import UsageError


def exchange_once(settings: ExchangeSettings, *, token: str | None = None,
                  timeout: float = 10.0, attempts: int = 4,
                  retry_budget: float = 30.0) -> Credential:
    """token: the subject token when the caller already read it from the settings' source."""
    if token is None:
        token = token_source(settings.token_source).read()
    try:
        with ExchangeClient(settings.target, ca_file=settings.ca_file,
                            plaintext=settings.plaintext, timeout=timeout, attempts=attempts,
                            retry_budget=retry_budget) as client:
            return client.exchange(token, role=settings.role, lifetime=settings.lifetime,
                                   audiences=settings.audiences)
    except OSError as error:  # e.g. the CA file became unreadable
        raise UsageError(f"cannot read {error.filename or settings.ca_file}: "
                         f"{error.strerror}") from None
