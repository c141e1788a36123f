"""A token-exchange request (RFC 8693 §2.1) from the body of `POST /oauth2/token`, strictly.

Parameters:
- `grant_type` must be `urn:ietf:params:oauth:grant-type:token-exchange`;
- `subject_token` and `subject_token_type` are required (the type is checked by the use
  case, like gRPC's: the JWT or the ID-token URN);
- `scope` names the trust mapping (gRPC's `role`): one scope token, or none (then exactly one
  mapping must match);
- `audience` (logical names) and `resource` (absolute URIs, RFC 8707) are the audiences of
  the issued credential together, each at most within the mapping's;
- `requested_token_type`: empty, `urn:ietf:params:oauth:token-type:jwt` (what `selfIssued`
  issues) or kubegate's `urn:kubegate:token-type:kubernetes-service-account` (TokenRequest);
- `requested_lifetime` (kubegate's, like gRPC's): whole seconds, clamped by the mapping;
- `actor_token` (delegation) is refused; other parameters are ignored (RFC 6749 §3.2).

Rules of this module:
- the content type is `application/x-www-form-urlencoded` (a `charset` parameter may only
  say UTF-8); the body is ASCII, every `%` starts a valid escape, every field is `name=value`,
  and the decoded text is UTF-8: anything else is MALFORMED_FORM, never guessed at;
- no parameter twice (RFC 6749 §3.2), except `audience` and `resource`, which RFC 8693 §2.1
  lets a client repeat;
- an error names a parameter only when it is one we know, never a value (it may be a token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from exchanger.backends.base import JWT_TOKEN_TYPE, SERVICE_ACCOUNT_TOKEN_TYPE
from kubegate.errors import InvalidRequestError

FORM_TYPE = "application/x-www-form-urlencoded"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
REQUESTED_TOKEN_TYPES = frozenset({"", JWT_TOKEN_TYPE, SERVICE_ACCOUNT_TOKEN_TYPE})
REPEATABLE = frozenset({"audience", "resource"})  # RFC 8693 §2.1
KNOWN = frozenset({"grant_type", "subject_token", "subject_token_type", "scope",
                   "requested_token_type", "requested_lifetime", "actor_token",
                   "actor_token_type"}) | REPEATABLE
MAX_FIELDS = 64
MAX_LIFETIME_DIGITS = 9
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3 scope-token


@dataclass(frozen=True, kw_only=True)
class TokenExchangeForm:
    subject_token: str = field(repr=False)  # a secret: never in repr, logs or errors
    subject_token_type: str
    scope: str = ""
    audiences: tuple[str, ...] = ()  # `audience` values, then `resource` values
    requested_token_type: str = ""
    requested_lifetime: int = 0


def check_content_type(values: list[str]) -> None:
    """One Content-Type header, the form media type, UTF-8 if it names a charset."""
    if len(values) != 1:
        raise _invalid("WRONG_CONTENT_TYPE", f"{len(values)} Content-Type headers",
                       f"Content-Type must be {FORM_TYPE}")
    media, *parameters = values[0].split(";")
    charsets = [value.strip().strip('"').lower() for name, _, value
                in (p.partition("=") for p in parameters) if name.strip().lower() == "charset"]
    if media.strip().lower() != FORM_TYPE or any(c != "utf-8" for c in charsets):
        raise _invalid("WRONG_CONTENT_TYPE", "not a UTF-8 form",
                       f"Content-Type must be {FORM_TYPE}")


def parse_form(body: bytes) -> TokenExchangeForm:
    """The token-exchange request in body; InvalidRequestError (with the reasons that
    `exchanger.oauth.errors` maps to OAuth error codes) when it is not one."""
    fields = _fields(body)
    grant_type = _one(fields, "grant_type", required=True)
    if grant_type != GRANT_TYPE:
        raise InvalidRequestError(
            "UNSUPPORTED_GRANT_TYPE", "a grant type other than token exchange",
            public_message=f"grant_type must be {GRANT_TYPE}")
    if "actor_token" in fields or "actor_token_type" in fields:
        raise _invalid("ACTOR_TOKEN_NOT_SUPPORTED", "actor_token given",
                       "delegation (actor_token) is not supported")
    if "subject_token" not in fields:
        raise _invalid("MISSING_SUBJECT_TOKEN", "no subject_token", "subject_token is required")
    return TokenExchangeForm(
        subject_token=_one(fields, "subject_token"),
        subject_token_type=_one(fields, "subject_token_type", required=True),
        scope=_scope(_one(fields, "scope")),
        audiences=_audiences(fields.get("audience", []), fields.get("resource", [])),
        requested_token_type=_requested_token_type(_one(fields, "requested_token_type")),
        requested_lifetime=_lifetime(_one(fields, "requested_lifetime")),
    )


def _fields(body: bytes) -> dict[str, list[str]]:
    if _BAD_ESCAPE.search(body):
        raise _malformed("an invalid percent-escape")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True,
                          encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise _malformed("bytes that are not ASCII, or escapes that are not UTF-8") from None
    except ValueError:
        raise _malformed("a field that is not name=value, or too many fields") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    for name, values in fields.items():
        if len(values) > 1 and name not in REPEATABLE:
            known = name if name in KNOWN else "a parameter"
            raise _invalid("DUPLICATE_PARAMETER", f"{known} repeated",
                           f"{known} is given more than once")
    return fields


def _one(fields: dict[str, list[str]], name: str, *, required: bool = False) -> str:
    values = fields.get(name)
    if not values or not values[0]:
        if required:
            raise _invalid("MISSING_PARAMETER", f"no {name}", f"{name} is required")
        return ""
    return values[0]


def _scope(scope: str) -> str:
    """One scope token: the trust mapping's name."""
    if not scope:
        return ""
    if not _SCOPE_TOKEN.fullmatch(scope):
        raise InvalidRequestError(
            "INVALID_SCOPE", "not a single scope token",
            public_message="scope must be one trust mapping name")
    return scope


def _audiences(audiences: list[str], resources: list[str]) -> tuple[str, ...]:
    for resource in resources:
        try:
            parts = urlsplit(resource)
        except ValueError:
            parts = None
        if parts is None or not parts.scheme or "#" in resource:
            raise InvalidRequestError(
                "INVALID_TARGET", "a resource that is not an absolute URI",
                public_message="resource must be an absolute URI without a fragment")
    return tuple(dict.fromkeys([*audiences, *resources]))


def _requested_token_type(value: str) -> str:
    if value not in REQUESTED_TOKEN_TYPES:
        raise _invalid("UNSUPPORTED_REQUESTED_TOKEN_TYPE", "an unknown requested_token_type",
                       f"requested_token_type must be {JWT_TOKEN_TYPE} or "
                       f"{SERVICE_ACCOUNT_TOKEN_TYPE}")
    return value


def _lifetime(value: str) -> int:
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_LIFETIME_DIGITS:
        raise _invalid("INVALID_LIFETIME", "requested_lifetime is not whole seconds",
                       "requested_lifetime must be whole seconds")
    return int(value)


def _malformed(detail: str) -> InvalidRequestError:
    return _invalid("MALFORMED_FORM", detail,
                    f"the body must be {FORM_TYPE} in UTF-8, without empty fields")


def _invalid(reason: str, detail: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(reason, detail, public_message=message)
