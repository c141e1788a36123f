"""The token endpoint (RFC 6749 section 4.1.3, 5, 6; RFC 8628 section 3.4): the forms we send
and the replies we accept.

Rules of this module:
- a public client sends its `client_id` in the form; a confidential one authenticates with
  client_secret_basic (`transport.BasicAuth`) instead;
- a reply is accepted only as a JSON object; an error reply (any status with `error`) is an
  `OAuthError` carrying the OAuth error code, so callers can tell `invalid_grant` from the
  rest; a success must hold an `id_token` (we asked for `openid`);
- pure; nothing here holds a secret in a repr.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kubegate.login.errors import LoginError, OAuthError
from kubegate.login.transport import BasicAuth, Reply

__all__ = ["DEVICE_GRANT", "TokenReply", "client_auth", "code_form", "device_form",
           "parse_json_reply", "parse_token_reply", "refresh_form"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True, kw_only=True)
class TokenReply:
    id_token: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)


def client_auth(client_id: str, client_secret: str) -> tuple[dict[str, str], BasicAuth | None]:
    """(form fields, basic auth) that identify the client."""
    if client_secret:
        return {}, BasicAuth(user=client_id, password=client_secret)
    return {"client_id": client_id}, None


def code_form(code: str, redirect_uri: str, verifier: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier}


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token}


def device_form(device_code: str) -> dict[str, str]:
    return {"grant_type": DEVICE_GRANT, "device_code": device_code}


def parse_json_reply(reply: Reply, where: str) -> dict[str, object]:
    """The reply's JSON object; an OAuthError for an error reply; LoginError for junk."""
    try:
        document = json.loads(reply.body)
    except (UnicodeDecodeError, ValueError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        description = document.get("error_description")
        raise OAuthError(where, document["error"],
                         description if isinstance(description, str) else "")
    if not isinstance(document, dict):
        raise LoginError(f"{where}: HTTP {reply.status} without a JSON answer")
    if not 200 <= reply.status < 300:
        raise LoginError(f"{where}: HTTP {reply.status}")
    return document


def parse_token_reply(reply: Reply, where: str) -> TokenReply:
    document = parse_json_reply(reply, where)
    id_token, refresh_token = document.get("id_token"), document.get("refresh_token", "")
    if not isinstance(id_token, str) or not id_token:
        raise LoginError(f"{where}: the reply has no id_token (is `openid` among --scopes?)")
    if not isinstance(refresh_token, str):
        raise LoginError(f"{where}: the reply's refresh_token is not a string")
    return TokenReply(id_token=id_token, refresh_token=refresh_token)
