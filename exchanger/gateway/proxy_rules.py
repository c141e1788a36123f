"""The gateway's request rules, pure: who the client says it is (its bearer token), what it may
not say (any `Impersonate-*` header), what the API server is told instead (the gateway's own
token and the session's impersonation headers), the Kubernetes verb a request is, and the
gateway's own answers as Kubernetes `Status` objects.

Rules of this module:
- a client never chooses who the API server sees: its `Authorization`, `Proxy-Authorization`
  and every `Impersonate-*` header (any case, any spelling of the suffix) are dropped by the
  shared rewrite (`kubegate.http.headers`), and a request that carries an `Impersonate-*`
  header at all is refused (`IMPERSONATION_REFUSED`) before anything goes upstream;
- the gateway never impersonates a `system:` user or group, whatever a grant says (the API
  server's own identities: nodes, controllers, masters), nor a name that is not printable
  ASCII (a header value cannot carry it faithfully);
- the session id travels as the user extra `kubegate.io/session`, whose header name is
  percent-encoded as the API server decodes it (`Impersonate-Extra-kubegate.io%2fsession`);
- an answer's body never holds a token or a header's value: reason codes and fixed words.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from urllib.parse import parse_qs, quote, urlsplit

import h11

from exchanger.gateway.session import GatewayRefusal, GatewaySession
from kubegate.http.engine import RequestHead
from kubegate.http.headers import (
    IMPERSONATE_PREFIX,
    Headers,
    header_values,
    rewrite_request_headers,
)

SESSION_EXTRA = "kubegate.io/session"
SYSTEM_PREFIX = "system:"
PUBLIC_PREFIX = "kubegate gateway: "
_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*) *")  # scheme: any case
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
# What the API server calls each refusal in a Status (`reason`), by HTTP status.
_STATUS_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden",
                   408: "Timeout", 429: "TooManyRequests", 502: "InternalError",
                   503: "ServiceUnavailable", 504: "Timeout"}


def refuse_impersonation(headers: Headers) -> None:
    """Refuse a request that asks to impersonate anyone: the gateway decides who is
    impersonated, and a client's `Impersonate-*` header is an attempt to choose."""
    if any(name.lower().startswith(IMPERSONATE_PREFIX) for name, _ in headers):
        raise GatewayRefusal(403, "IMPERSONATION_REFUSED",
                             "Impersonate-* headers are refused by the gateway")


def bearer_token(headers: Headers) -> str:
    """The one bearer token of the request's `Authorization`; anything else is a 401."""
    values = header_values(headers, "authorization")
    if not values:
        raise GatewayRefusal(401, "NO_CREDENTIAL", "a bearer token is required")
    match = _BEARER.fullmatch(values[0]) if len(values) == 1 else None
    if match is None:
        raise GatewayRefusal(401, "MALFORMED_CREDENTIAL",
                             "Authorization must be one bearer token")
    return match.group(1)


def impersonation_headers(session: GatewaySession) -> Headers:
    """What the API server is told about who acts: the session's user, its groups in order,
    and its id as the user extra `kubegate.io/session`."""
    for name in (session.user, *session.groups):
        if name.lower().startswith(SYSTEM_PREFIX):
            raise GatewayRefusal(403, "SYSTEM_IDENTITY_REFUSED",
                                 "the gateway never impersonates system: users or groups")
        if not _PRINTABLE.fullmatch(name):
            raise GatewayRefusal(403, "IMPERSONATION_REFUSED",
                                 "the session's user or a group is not a printable name")
    if not session.user or not _PRINTABLE.fullmatch(session.id):
        raise GatewayRefusal(403, "IMPERSONATION_REFUSED", "the session names no user")
    return (("Impersonate-User", session.user),
            *(("Impersonate-Group", group) for group in session.groups),
            (extra_header(SESSION_EXTRA), session.id))


def extra_header(key: str) -> str:
    """The header carrying user extra `key`: its name percent-encoded (RFC 3986 unreserved
    characters kept, `/` as `%2F`), which is how the API server decodes it."""
    return "Impersonate-Extra-" + quote(key, safe="")


def upstream_headers(head: RequestHead, session: GatewaySession, *, token: str,
                     host: str) -> Headers:
    """The request's headers as the API server receives them: the client's, minus identity,
    impersonation, hop-by-hop and framing (`rewrite_request_headers`), with the gateway's
    own bearer token (none when token is "": it presents a client certificate) and the
    session's impersonation headers."""
    impersonation = impersonation_headers(session)
    rewritten = rewrite_request_headers(head.headers, token=token or "certificate", host=host,
                                        upgrade=head.upgrade, framing=head.framing)
    if not token:  # the gateway authenticates with its client certificate
        rewritten = tuple(h for h in rewritten if h[0] != "Authorization")
    return (*rewritten, *impersonation)


def kube_verb(method: str, target: str) -> str:
    """The Kubernetes verb of a request, as the API server's audit log names it (get, list,
    watch, create, update, patch, delete, deletecollection), or the method in lower case for
    what is not a resource (discovery, /version, /openapi)."""
    parts = urlsplit(target)
    segments = [s for s in parts.path.split("/") if s]
    lower = method.lower()
    watch = parse_qs(parts.query).get("watch", [""])[0] in ("1", "true")
    if len(segments) > 2 and segments[2] == "watch" and segments[0] == "api":
        return "watch"
    if len(segments) > 3 and segments[3] == "watch" and segments[0] == "apis":
        return "watch"
    resource = _resource_segments(segments)
    if resource is None:
        return lower
    collection = len(resource) == 1
    if lower in ("get", "head"):
        return "watch" if watch else ("list" if collection else "get")
    if lower == "delete":
        return "deletecollection" if collection else "delete"
    return {"post": "create", "put": "update", "patch": "patch"}.get(lower, lower)


def _resource_segments(segments: list[str]) -> list[str] | None:
    """The resource part of an API path (`pods`, `pods/x`, `pods/x/exec`), None otherwise."""
    if segments[:1] == ["api"] and len(segments) >= 3:
        rest = segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        rest = segments[3:]
    else:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        return rest[2:]
    return rest


def status_body(status: int, reason: str, message: str) -> bytes:
    """A Kubernetes `Status` as the API server writes one, so kubectl prints the message."""
    return json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"{PUBLIC_PREFIX}{reason}: {message}",
        "reason": _STATUS_REASONS.get(status, "Unknown"),
        "details": {"causes": [{"reason": reason, "message": message}]}, "code": status,
    }).encode()


def refusal_answer(refusal: GatewayRefusal) -> bytes:
    """A whole HTTP/1.1 answer for a refusal, with `Connection: close`."""
    return status_answer(refusal.status, refusal.reason, refusal.message)


def status_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer of the gateway's own: a `Status` body, `Connection: close`,
    and for a 401 the `WWW-Authenticate` challenge (RFC 6750 3)."""
    body = status_body(status, reason, message)
    connection = h11.Connection(h11.SERVER)
    headers = [(b"Content-Type", b"application/json"),
               (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
    if status == 401:
        headers.append((b"WWW-Authenticate", b'Bearer realm="kubegate"'))
    try:
        phrase = HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    return b"".join((
        connection.send(h11.Response(status_code=status, reason=phrase,
                                     headers=headers)) or b"",
        connection.send(h11.Data(data=body)) or b"",
        connection.send(h11.EndOfMessage()) or b"",
    ))
