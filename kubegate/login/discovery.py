"""OpenID Connect discovery (OpenID Connect Discovery 1.0, section 4): which issuer URLs are
allowed, and what a discovery document must hold before anything is sent to its endpoints.

Rules of this module:
- an issuer is an https URL without query or fragment; plain http only to a loopback host
  (127.0.0.0/8, ::1, `localhost`: `kubegate.addresses.HostPort.is_local`), so nothing that
  could be intercepted on a network ever carries a code or a token;
- the document's `issuer` equals the URL we asked, byte for byte (section 4.3);
- `authorization_endpoint`, `token_endpoint`, `jwks_uri` (and for the device grant
  `device_authorization_endpoint`) are required, each under the same https rule;
- a refusal is a `UsageError` (configuration) for the URL we were given, and a `LoginError`
  for what the provider published; pure: the caller fetches the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubegate.addresses import HostPort
from kubegate.errors import UsageError
from kubegate.grammar import shown
from kubegate.login.errors import LoginError

__all__ = ["ProviderMetadata", "check_issuer_url", "discovery_url", "is_allowed_url",
           "parse_provider_metadata"]

WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True, kw_only=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    device_authorization_endpoint: str = ""


def is_allowed_url(url: str) -> bool:
    """https, or http to a loopback host; a host is required."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    host = parts.hostname
    if not host or parts.scheme not in ("https", "http"):
        return False
    return parts.scheme == "https" or HostPort(host=host, port=0).is_local


def check_issuer_url(issuer: str) -> None:
    """UsageError unless issuer may be used."""
    parts = urlsplit(issuer)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UsageError("--issuer: must not hold a user name or password (not shown here)")
    if parts.query or parts.fragment or "#" in issuer or "?" in issuer:
        raise UsageError(f"--issuer {shown(issuer)}: must not have a query or fragment")
    if not is_allowed_url(issuer):
        raise UsageError(f"--issuer {shown(issuer)}: must be an https URL (http only for "
                         "127.0.0.1, ::1 or localhost)")


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


def parse_provider_metadata(body: bytes, issuer: str, *, device: bool) -> ProviderMetadata:
    where = f"discovery document of {issuer}"
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise LoginError(f"the {where} is not JSON") from None
    if not isinstance(document, dict):
        raise LoginError(f"the {where} is not a JSON object")
    if document.get("issuer") != issuer:
        raise LoginError(f"the {where} names issuer {shown(document.get('issuer'))}, not "
                         "the URL it was fetched for (give --issuer exactly as the provider "
                         "writes it)")
    required = ["authorization_endpoint", "token_endpoint", "jwks_uri"]
    if device:
        required.append("device_authorization_endpoint")
    missing = [name for name in required
               if not isinstance(document.get(name), str) or not document[name]]
    if missing:
        raise LoginError(f"the {where} has no {', '.join(missing)}"
                         + (" (the provider may not offer the device grant)"
                            if "device_authorization_endpoint" in missing else ""))
    for name in required:
        if not is_allowed_url(document[name]):
            raise LoginError(f"the {where}: {name} {shown(document[name])} is not https")
    return ProviderMetadata(
        issuer=issuer, authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"], jwks_uri=document["jwks_uri"],
        device_authorization_endpoint=document.get("device_authorization_endpoint", "")
        if isinstance(document.get("device_authorization_endpoint"), str) else "")
