"""The RFC 8693 exchange as bytes, both ways, pure: the form a client posts to an exchanger's
token endpoint, and what it answered as kubegate values, a `Credential` (RFC 8693 §2.2.1 and
kubegate's fields beside it) or an `ExchangeError`.

A refusal gets the code the gRPC client would have got for the same refusal, so that the
sidecar's keeper retries exactly the same answers on either route (`Code.transient`):

    answer (`error`, HTTP status; `kubegate_reason`)     code
    temporarily_unavailable 429                          RESOURCE_EXHAUSTED  (retried)
    temporarily_unavailable 503                          UNAVAILABLE         (retried)
    temporarily_unavailable 504                          DEADLINE_EXCEEDED   (retried)
    invalid_request 400, a subject-token reason          UNAUTHENTICATED
    invalid_request, invalid_scope, invalid_target,
      unsupported_grant_type 400                         INVALID_ARGUMENT
      (AUDIENCE_NOT_ALLOWED)                             PERMISSION_DENIED
    access_denied 403                                    PERMISSION_DENIED
      (a reason of a cluster's refusal, UNKNOWN_CLUSTER) FAILED_PRECONDITION
    server_error 500                                     INTERNAL
    HTTP itself: 408 DEADLINE_EXCEEDED (retried); 413, 431 RESOURCE_EXHAUSTED (as gRPC's
      receive limit); 404 NOT_FOUND; 400, 405 INVALID_ARGUMENT
    no kubegate answer (a proxy or balancer spoke), gRPC's own mapping of HTTP statuses
      (grpc/doc/http-grpc-status-mapping.md): 400 INTERNAL, 401 UNAUTHENTICATED,
      403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429 502 503 504 UNAVAILABLE, else UNKNOWN
    a redirect (3xx): never followed, UNKNOWN

The server's own table is `exchanger.oauth.errors`; the two statuses it gives two codes
(400: INVALID_ARGUMENT or UNAUTHENTICATED; 403: PERMISSION_DENIED or FAILED_PRECONDITION) are
told apart by the stable reason (`SUBJECT_TOKEN_REASONS` is verification's list,
`exchanger.verify.reasons`; a unit test keeps the two equal).

Rules of this module:
- standard library only; nothing here touches the network;
- an error's message is the server's public `error_description` (printable, at most 300
  characters, the subject token blanked should it ever appear) or fixed words: never the
  body of an answer that is not kubegate's, never a token;
- an answer that does not have the shape of a kubegate answer is INTERNAL MALFORMED_ANSWER,
  naming the field, never its value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from kubegate.credential import ClusterInfo, Credential
from kubegate.errors import Code, ExchangeError

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a token type name
MAX_DESCRIPTION = 300

SUBJECT_TOKEN_REASONS = frozenset({
    "TOKEN_TOO_LARGE", "MALFORMED_TOKEN", "ENCRYPTED_TOKEN", "NESTED_TOKEN",
    "FORBIDDEN_HEADER", "INVALID_HEADER", "WRONG_TOKEN_TYPE", "DISALLOWED_ALGORITHM",
    "UNKNOWN_ISSUER", "UNKNOWN_KEY", "AMBIGUOUS_KEY", "ALGORITHM_KEY_MISMATCH",
    "BAD_SIGNATURE", "TOKEN_REVOKED", "MISSING_CLAIM", "INVALID_CLAIM", "WRONG_ISSUER",
    "WRONG_AUDIENCE", "TOKEN_EXPIRED", "TOKEN_NOT_YET_VALID", "ISSUED_IN_FUTURE",
    "LIFETIME_TOO_LONG"})
PRECONDITION_REASONS = frozenset({"UNKNOWN_CLUSTER", "KUBEGATE_FORBIDDEN", "OBJECT_NOT_FOUND",
                                  "CONFLICT", "REJECTED_BY_CLUSTER"})
_BY_REASON = {"AUDIENCE_NOT_ALLOWED": Code.PERMISSION_DENIED,
              "REQUEST_TIMEOUT": Code.DEADLINE_EXCEEDED,
              "REQUEST_TOO_LARGE": Code.RESOURCE_EXHAUSTED,
              "HEAD_TOO_LARGE": Code.RESOURCE_EXHAUSTED, "NOT_FOUND": Code.NOT_FOUND}
_BY_ANSWER = {
    ("temporarily_unavailable", 429): Code.RESOURCE_EXHAUSTED,
    ("temporarily_unavailable", 503): Code.UNAVAILABLE,
    ("temporarily_unavailable", 504): Code.DEADLINE_EXCEEDED,
    ("invalid_request", 400): Code.INVALID_ARGUMENT,
    ("invalid_request", 405): Code.INVALID_ARGUMENT,
    ("invalid_scope", 400): Code.INVALID_ARGUMENT,
    ("invalid_target", 400): Code.INVALID_ARGUMENT,
    ("unsupported_grant_type", 400): Code.INVALID_ARGUMENT,
    ("access_denied", 403): Code.PERMISSION_DENIED,
    ("server_error", 500): Code.INTERNAL,
}
_BY_HTTP_STATUS = {400: Code.INTERNAL, 401: Code.UNAUTHENTICATED, 403: Code.PERMISSION_DENIED,
                   404: Code.UNIMPLEMENTED, 429: Code.UNAVAILABLE, 502: Code.UNAVAILABLE,
                   503: Code.UNAVAILABLE, 504: Code.UNAVAILABLE}


def exchange_form(subject_token: str, *, role: str = "", lifetime: int = 0,
                  audiences: Sequence[str] = ()) -> bytes:
    """The body of `POST /oauth2/token` (RFC 8693 §2.1): role is `scope`, lifetime
    `requested_lifetime` (whole seconds), each audience one `audience`."""
    fields = [("grant_type", GRANT_TYPE), ("subject_token_type", JWT_TOKEN_TYPE),
              ("subject_token", subject_token)]
    if role:
        fields.append(("scope", role))
    if lifetime:
        fields.append(("requested_lifetime", str(int(lifetime))))
    fields.extend(("audience", audience) for audience in audiences)
    return urlencode(fields).encode("ascii")


def refusal(status: int, body: bytes, *, subject_token: str = "") -> ExchangeError:
    """The ExchangeError for an answer that is not 200 (the table above)."""
    if 300 <= status < 400:
        return ExchangeError(Code.UNKNOWN, "", f"the exchanger's address answered a "
                             f"redirect (HTTP {status}); redirects are not followed")
    answer = _kubegate_refusal(body)
    if answer is None:
        return ExchangeError(_BY_HTTP_STATUS.get(status, Code.UNKNOWN), "",
                             f"the exchanger's address answered HTTP {status} without a "
                             "token endpoint's answer")
    error, reason, description = answer
    return ExchangeError(_code(error, status, reason), reason,
                         _shown(description, subject_token))


def credential(body: bytes) -> Credential:
    """The credential of a 200 answer; ExchangeError INTERNAL MALFORMED_ANSWER otherwise."""
    document = _object(_json(body), "the answer")
    cluster = _object(document.get("cluster"), "cluster")
    try:
        authority = base64.b64decode(_text(cluster, "certificate_authority_data"),
                                     validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("cluster.certificate_authority_data") from None
    groups = cluster.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise _malformed("cluster.groups")
    expires_at = document.get("expires_at")
    if not isinstance(expires_at, int) or isinstance(expires_at, bool) or expires_at <= 0:
        raise _malformed("expires_at")
    token = _text(document, "access_token")
    if not token:
        raise _malformed("access_token")
    return Credential(
        token=token, token_type=_text(document, "issued_token_type"), expires_at=expires_at,
        token_id=_text(document, "token_id"), session_id=_text(document, "session_id"),
        mapping=_text(document, "mapping"),
        cluster=ClusterInfo(
            name=_text(cluster, "name"), server=_text(cluster, "server"),
            certificate_authority_data=authority, namespace=_text(cluster, "namespace"),
            service_account=_text(cluster, "service_account"), user=_text(cluster, "user"),
            groups=tuple(groups)))


def _code(error: str, status: int, reason: str) -> Code:
    if reason in _BY_REASON:
        return _BY_REASON[reason]
    code = _BY_ANSWER.get((error, status), _BY_HTTP_STATUS.get(status, Code.UNKNOWN))
    if code is Code.INVALID_ARGUMENT and error == "invalid_request" and \
            reason in SUBJECT_TOKEN_REASONS:
        return Code.UNAUTHENTICATED
    if code is Code.PERMISSION_DENIED and reason in PRECONDITION_REASONS:
        return Code.FAILED_PRECONDITION
    return code


def _kubegate_refusal(body: bytes) -> tuple[str, str, str] | None:
    """(error, kubegate_reason, error_description) of an RFC 6749 §5.2 answer with kubegate's
    reason, else None."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    error, reason = document.get("error"), document.get("kubegate_reason")
    description = document.get("error_description", "")
    if not (isinstance(error, str) and isinstance(reason, str) and
            isinstance(description, str) and reason.isascii() and reason.isprintable()):
        return None
    return error, reason[:64], description


def _shown(description: str, subject_token: str) -> str:
    if subject_token and subject_token in description:
        description = description.replace(subject_token, "[subject token]")
    text = "".join(c if c.isprintable() else " " for c in description)
    return " ".join(text.split())[:MAX_DESCRIPTION] or "no description"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _malformed("the answer (not JSON)") from None


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(name)
    return value


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name, "")
    if not isinstance(value, str):
        raise _malformed(name)
    return value


def _malformed(field: str) -> ExchangeError:
    return ExchangeError(Code.INTERNAL, "MALFORMED_ANSWER",
                         f"the exchanger's answer is not a token exchange answer ({field})")
