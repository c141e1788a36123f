"""Parsing of a compact JWS (RFC 7515 §7.1) into header, payload, signing input and signature.

Pure: no keys, no clock, no network. Parsing trusts nothing and verifies nothing; it only
refuses every shape the verifier should never have to reason about.

Invariants:
- the size cap is checked before anything else touches the token;
- only `[A-Za-z0-9_.-]` and exactly three segments pass: JSON serialisation, JWE (five
  segments), whitespace and padding are refused (RFC 8725bis "check JWT format type");
- base64url is strict and canonical: one token has exactly one accepted spelling;
- header and payload are UTF-8 JSON objects without duplicate keys or NaN/Infinity;
- the header names an algorithm kubegate supports (exact names, see algorithms.py) and none of
  the parameters that pull keys or semantics from the token itself (`jku`, `x5u`, `jwk`, `x5c`,
  `crit`, `b64`, `cty`, `enc`, `zip`);
- an error's detail never contains token bytes, only what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exchanger.verify import reasons
from exchanger.verify.algorithms import SUPPORTED_ALGORITHMS

DEFAULT_MAX_TOKEN_BYTES = 16384
MAX_KID_LENGTH = 256

_COMPACT_ALPHABET = re.compile(r"[A-Za-z0-9_.\-]+")
_ALGORITHM_NAME = re.compile(r"[A-Za-z0-9+_\-]{1,16}")
# Parameters that would let the token choose its own key or change how it must be processed.
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "b64", "zip"})
# `typ` is optional; when present it must say JWT (RFC 7519 §5.1, compared case-insensitively).
_ACCEPTED_TYPES = frozenset({"jwt", "application/jwt"})


@dataclass(frozen=True, kw_only=True)
class ParsedToken:
    """A syntactically valid compact JWS. Nothing in it is verified yet."""

    header: Mapping[str, Any]
    payload: Mapping[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def algorithm(self) -> str:
        return str(self.header["alg"])

    @property
    def key_id(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    def __repr__(self) -> str:  # never show token material, even in a debugger or a log
        return f"ParsedToken(alg={self.algorithm!r}, kid={self.key_id!r})"


def parse_compact(token: str, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> ParsedToken:
    """Split, decode and sanity-check a compact JWS; raise InvalidTokenError on any problem."""
    check_size(token, max_bytes)
    header_b64, payload_b64, signature_b64 = _split(token)
    header = _decode_object(header_b64, "header")
    _check_header(header)
    signature = _decode_segment(signature_b64, "signature")
    if not signature:
        raise reasons.rejected(reasons.MALFORMED_TOKEN, "the signature segment is empty")
    payload = _decode_object(payload_b64, "payload")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return ParsedToken(
        header=header, payload=payload, signing_input=signing_input, signature=signature
    )


def check_size(token: str, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> None:
    """Refuse a token above the cap (or not a string) before any other work is spent on it."""
    if not isinstance(token, str):
        raise reasons.rejected(reasons.MALFORMED_TOKEN, "the token is not a string")
    if len(token) > max_bytes:
        raise reasons.rejected(
            reasons.TOKEN_TOO_LARGE, f"token is {len(token)} characters, cap is {max_bytes}"
        )


def _split(token: str) -> tuple[str, str, str]:
    if token.startswith("{"):
        raise reasons.rejected(reasons.MALFORMED_TOKEN, "JSON serialisation is not accepted")
    if not _COMPACT_ALPHABET.fullmatch(token):
        raise reasons.rejected(
            reasons.MALFORMED_TOKEN, "the token has characters outside [A-Za-z0-9_.-]"
        )
    segments = token.split(".")
    if len(segments) == 5:
        raise reasons.rejected(reasons.ENCRYPTED_TOKEN, "five segments: a JWE")
    if len(segments) != 3:
        raise reasons.rejected(
            reasons.MALFORMED_TOKEN, f"{len(segments)} segments, a compact JWS has 3"
        )
    return segments[0], segments[1], segments[2]


def _decode_segment(segment: str, what: str) -> bytes:
    """Strict, canonical base64url without padding (RFC 7515 §2).

    The caller has checked the whole token against the base64url alphabet (plus dots), so a
    segment holds only alphabet characters. Canonical means the unused low bits of the last
    character are zero: otherwise several spellings would decode to the same bytes."""
    remainder = len(segment) % 4
    if remainder == 1 or (remainder and _UNUSED_BITS[segment[-1]] & _LOW_BITS[remainder]):
        raise reasons.rejected(
            reasons.MALFORMED_TOKEN, f"the {what} is not canonical base64url"
        )
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as error:
        raise reasons.rejected(
            reasons.MALFORMED_TOKEN, f"the {what} is not base64url"
        ) from error


# The value of each base64url character, and the bits a last character must leave zero when
# the segment's length is 2 or 3 (mod 4): 4 and 2 unused bits respectively.
_UNUSED_BITS = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
_LOW_BITS = {2: 0b1111, 3: 0b11}


def _decode_object(segment: str, what: str) -> dict[str, Any]:
    raw = _decode_segment(segment, what)
    try:
        value = loads_strict_json(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise reasons.rejected(reasons.MALFORMED_TOKEN, f"the {what} is not UTF-8") from error
    except (ValueError, RecursionError) as error:
        raise reasons.rejected(
            reasons.MALFORMED_TOKEN, f"the {what} is not valid JSON: {_json_problem(error)}"
        ) from error
    if not isinstance(value, dict):
        raise reasons.rejected(reasons.MALFORMED_TOKEN, f"the {what} is not a JSON object")
    return value


def loads_strict_json(text: str) -> Any:
    """json.loads that refuses duplicate keys and NaN/Infinity (ValueError). One decoder,
    built at import, serves every call (json.loads would build one per call with hooks);
    a leading BOM is refused as json.loads refuses it."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM", text, 0)
    return _STRICT_DECODER.decode(text)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_duplicates,
                                   parse_constant=_refuse_constant)


def _json_problem(error: BaseException) -> str:
    """Describe a JSON error without quoting the document (json's messages carry no content)."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at position {error.pos}"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error)


def _check_header(header: Mapping[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise reasons.rejected(reasons.INVALID_HEADER, "the header has no string alg")
    if "enc" in header:
        raise reasons.rejected(reasons.ENCRYPTED_TOKEN, "the header has enc: a JWE")
    if alg not in SUPPORTED_ALGORITHMS:
        raise reasons.rejected(
            reasons.DISALLOWED_ALGORITHM, f"alg {_printable_name(alg)} is not supported"
        )
    forbidden = sorted(_FORBIDDEN_HEADERS.intersection(header))
    if forbidden:
        raise reasons.rejected(reasons.FORBIDDEN_HEADER, f"header parameters {forbidden}")
    _check_content_type(header)
    _check_key_id(header)


def _printable_name(value: str) -> str:
    """An algorithm name for the audit log: short names as they are, anything else elided."""
    return repr(value) if _ALGORITHM_NAME.fullmatch(value) else "(unprintable)"


def _check_content_type(header: Mapping[str, Any]) -> None:
    if "cty" in header:
        cty = header["cty"]
        if isinstance(cty, str) and cty.lower() in _ACCEPTED_TYPES:
            raise reasons.rejected(reasons.NESTED_TOKEN, "cty says the payload is a JWT")
        raise reasons.rejected(reasons.FORBIDDEN_HEADER, "header parameter cty")
    typ = header.get("typ")
    if typ is not None and not (isinstance(typ, str) and typ.lower() in _ACCEPTED_TYPES):
        raise reasons.rejected(reasons.WRONG_TOKEN_TYPE, "typ is present and not JWT")


def _check_key_id(header: Mapping[str, Any]) -> None:
    if "kid" not in header:
        return
    kid = header["kid"]
    if not isinstance(kid, str) or not kid:
        raise reasons.rejected(reasons.INVALID_HEADER, "kid is not a non-empty string")
    if len(kid) > MAX_KID_LENGTH or not kid.isprintable():
        raise reasons.rejected(
            reasons.INVALID_HEADER, f"kid is longer than {MAX_KID_LENGTH} or not printable"
        )
