"""OAuth 2.0 Authorization Server Metadata (RFC 8414) of the token endpoint, served at
`GET /.well-known/oauth-authorization-server`.

Rules of this module: `issuer` is the configured public URL (`httpPublicUrl`), an https URL
without a path (RFC 8414 §2), so the metadata lives at the root's well-known path (§3); the
endpoint authenticates no client (`none`): the subject token is the only proof.
"""

from __future__ import annotations

import json
from typing import Any

from exchanger.backends.base import JWT_TOKEN_TYPE, SERVICE_ACCOUNT_TOKEN_TYPE
from exchanger.exchange import ACCEPTED_TOKEN_TYPES
from exchanger.oauth.form import GRANT_TYPE

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path
METADATA_PATH = "/.well-known/oauth-authorization-server"


def metadata(issuer: str) -> dict[str, Any]:
    """The metadata document of the token endpoint whose public URL is issuer."""
    return {
        "issuer": issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],  # no authorization endpoint
        "kubegate_subject_token_types_supported": sorted(t for t in ACCEPTED_TOKEN_TYPES if t),
        "kubegate_issued_token_types_supported": [JWT_TOKEN_TYPE, SERVICE_ACCOUNT_TOKEN_TYPE],
    }


def metadata_bytes(issuer: str) -> bytes:
    return json.dumps(metadata(issuer), indent=1).encode()
