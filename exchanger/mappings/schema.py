"""The TrustMapping document as an OpenAPI v3 schema, shaped to be a CRD's structural
`openAPIV3Schema` (the same document works as a file and as a custom resource).

Invariants (Kubernetes' structural-schema rules):
- every property and array item states a `type`, except the nodes that may hold several
  JSON types, which say `x-kubernetes-preserve-unknown-fields: true` (a claim name or path,
  an expected value, a grant's user or group: a name or `{claim, prefix}`) or
  `x-kubernetes-int-or-string: true` (maxLifetime);
- value validations (`oneOf`) hold only `required`, never a type or description;
- `metadata` is only `type: object` at the root (the API server owns its shape).

This schema is the coarse, structural check the API server can run; the loader (`load.py`)
is the authority and also checks what a schema cannot: claim-value types, glob and regex
syntax, duration syntax and bounds, known issuers and clusters, duplicate names, the shape
of a user or group taken from a claim and its prefix grammar, approvers' issuers, RFC 3339
times and IANA time zones of windows.
"""

from __future__ import annotations

from typing import Any, Final

from exchanger.mappings.conditions import MAX_PATTERN_LENGTH
from exchanger.mappings.model import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN

API_VERSION: Final = "kubegate.io/v1alpha1"
KIND: Final = "TrustMapping"

_ANY_SCALAR: Final[dict[str, Any]] = {
    "description": "A string, number or boolean; compared with its type (\"74\" is not 74).",
    "x-kubernetes-preserve-unknown-fields": True,
}


def _string(description: str, **constraints: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **constraints}


def _strings(description: str) -> dict[str, Any]:
    items = {"type": "string", "minLength": 1}
    return {"type": "array", "description": description, "items": items}


def _exactly_one(*names: str) -> list[dict[str, Any]]:
    return [{"required": [name]} for name in names]


_PATTERN: Final = {"minLength": 1, "maxLength": MAX_PATTERN_LENGTH}
_CLOCK: Final = "^([01][0-9]|2[0-3]):[0-5][0-9]$"

CONDITION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "One condition on a claim; exactly one operator.",
    "required": ["claim"],
    "properties": {
        "claim": {
            "description": "A top-level claim name (taken literally), or a list of names: a "
            "path into nested objects.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "equals": _ANY_SCALAR,
        "glob": _string("'*' any run and '?' one character, never '/' or ':'.", **_PATTERN),
        "regex": _string("A regular expression that must match the whole value.", **_PATTERN),
        "oneOf": {
            "type": "array",
            "description": "The claim equals one of these values (type included).",
            "minItems": 1,
            "items": _ANY_SCALAR,
        },
        "contains": {
            "description": "The claim is a list and one of its elements equals this string, "
            "number or boolean (type included), e.g. a group in an ID token's groups.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
    },
    "oneOf": _exactly_one("equals", "glob", "regex", "oneOf", "contains"),
}

GRANT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "What a matching identity receives.",
    "required": ["cluster", "namespace"],
    "properties": {
        "cluster": _string("A configured target cluster name.", minLength=1),
        "namespace": _string("The namespace.", maxLength=63,
                             pattern=f"^{DNS_LABEL_PATTERN.pattern}$"),
        "serviceAccount": _string("TokenRequest backend: the service account.", maxLength=253,
                                  pattern=f"^{DNS_SUBDOMAIN_PATTERN.pattern}$"),
        "user": {
            "description": "Self-issued backend: the user name, or {claim, prefix} to take it "
            "from a verified claim (a string), e.g. {claim: email, prefix: \"oidc:\"}.",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "groups": {
            "type": "array",
            "description": "Self-issued backend: the groups (only with user); each a name, or "
            "{claim, prefix} to take names from a verified claim (a string or a list).",
            "items": {"x-kubernetes-preserve-unknown-fields": True},
        },
        "audiences": _strings("Audiences of the issued token; default: the cluster's API."),
        "maxLifetime": {
            "description": "Cap on the issued lifetime: a duration such as 15m or 1h30m, or "
            "integer seconds; 10m to 24h; default 15m.",
            "x-kubernetes-int-or-string": True,
        },
    },
    "oneOf": _exactly_one("serviceAccount", "user"),
}

APPROVAL_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A match is not enough: the exchange also needs an approved access request "
    "of this identity (kubegate access request).",
    "required": ["approvers"],
    "properties": {
        "approvers": {
            "type": "object",
            "description": "Who may approve: conditions on the approver's verified token.",
            "required": ["issuer", "claims"],
            "properties": {
                "issuer": _string("A configured issuer name.", minLength=1),
                "claims": {"type": "array", "description": "Conditions that must all hold.",
                           "minItems": 1, "items": CONDITION_SCHEMA},
            },
        },
        "count": {"type": "integer", "description": "Distinct approvals needed; default 1.",
                  "minimum": 1, "maximum": 5},
        "allowSelfApproval": {"type": "boolean", "description": "Whether the requester's own "
                              "approval counts; default false."},
        "reasonRequired": {"type": "boolean", "description": "Default true."},
        "ticketPattern": _string("A regular expression a request's ticket must match whole.",
                                 **_PATTERN),
        "maxDuration": {
            "description": "The longest duration a request may ask for: a duration such as 1h "
            "or integer seconds; at most 24h; default 1h.",
            "x-kubernetes-int-or-string": True,
        },
        "reuse": _string("duration (default): any exchanges until the request ends; single: "
                         "one exchange.", enum=["duration", "single"]),
        "bindTo": _strings("Claims copied from the requester's token; an exchange's token "
                           "must carry the same values (e.g. run_id, run_attempt, sha)."),
    },
}

WINDOW_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A one-off window (start, end: RFC 3339) or a recurring one (days, from, "
    "to, timeZone: wall-clock times; to <= from crosses midnight).",
    "properties": {
        "start": _string("RFC 3339 date-time with an offset, e.g. 2026-12-05T22:00:00Z."),
        "end": _string("RFC 3339 date-time with an offset."),
        "days": {"type": "array", "description": "Days the window opens; default every day.",
                 "items": {"type": "string", "enum": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat",
                                                     "Sun"]}},
        "from": _string("Opening wall-clock time, HH:MM.", pattern=_CLOCK),
        "to": _string("Closing wall-clock time, HH:MM.", pattern=_CLOCK),
        "timeZone": _string("An IANA time zone such as Europe/Berlin; default UTC."),
    },
    "oneOf": [{"required": ["start", "end"]}, {"required": ["from", "to"]}],
}

SPEC_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["issuer", "claims", "grant"],
    "properties": {
        "issuer": _string("A configured issuer name.", minLength=1),
        "description": _string("Free text for people."),
        "claims": {
            "type": "array",
            "description": "Conditions that must all hold.",
            "minItems": 1,
            "items": CONDITION_SCHEMA,
        },
        "grant": GRANT_SCHEMA,
        "approval": APPROVAL_SCHEMA,
        "windows": {"type": "array", "description": "When the mapping may be used at all; "
                    "empty: always.", "items": WINDOW_SCHEMA},
    },
}

TRUST_MAPPING_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Which identities (issuer and claim conditions) may receive which grant. "
    "metadata.name is the role name.",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": SPEC_SCHEMA,
    },
}
"""The whole document (apiVersion, kind, metadata, spec); its `spec` is SPEC_SCHEMA."""
