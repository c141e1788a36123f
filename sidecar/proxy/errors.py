"""The proxy's one error of its own: no credential to relay with. The HTTP ones (malformed
requests, upstream failures) are the engine's, in `kubegate.http.errors`.

Rules of this module:
- like every kubegate error it carries a code, not a status: `kubegate.http.http_status`
  turns it into one (UNAVAILABLE: 503) where the answer is written.
"""

from __future__ import annotations

from kubegate.errors import Code
from kubegate.http.errors import HttpError


class NoCredentialError(HttpError):
    """The keeper has no valid credential (yet, or any more): nothing to relay with."""

    code = Code.UNAVAILABLE
    reason_code = "NO_CREDENTIAL"
    default_message = "no valid credential yet"
