"""The proxy's one error of its own; the HTTP ones (malformed requests, upstream failures) are
the engine's, in `kubegate.http.errors`, each with the status it is answered with."""

from __future__ import annotations

from kubegate.errors import Code
from kubegate.http.errors import HttpError


class NoCredentialError(HttpError):
    """The keeper has no valid credential (yet, or any more): nothing to relay with."""

    code = Code.UNAVAILABLE
    status, phrase, reason_code = 503, "Service Unavailable", "NO_CREDENTIAL"
    default_message = "no valid credential yet"
