"""The rules a request head's raw bytes must keep before h11 parses them. Where h11 is lenient
(RFC 9112 lets a server be), a proxy must not be, because the server behind it may read the
same bytes differently; that difference is request smuggling (CVE-2019-18802 in Envoy,
CVE-2023-25690 in Apache, the 2019 "HTTP Desync" family). Pure functions of bytes; each rule
closes a leniency of h11 0.16, and tests/unit/kubegate/test_http_smuggling.py pins them all.

Rules of this module:
- lines end in CRLF only: a bare LF or bare CR anywhere in the head is refused (h11 accepts a
  bare LF as a line end), as soon as it arrives;
- no obsolete line folding (RFC 9112 5.2): a header line starting with SP or HT is refused
  (h11 unfolds it);
- the request line is `method SP target SP HTTP/1.1` (or 1.0), nothing else (h11 accepts any
  `HTTP/d.d`, such as `HTTP/2.0`);
- a header name is a token followed directly by `:` (RFC 9112 5.1), a value has no control
  character but HT (h11 accepts DEL and several other controls in values);
- framing is unambiguous and spelled plainly: at most one `Transfer-Encoding` line, whose value
  is exactly `chunked` (any case) after at most one SP, and only in HTTP/1.1 (RFC 9112 6.1);
  `Content-Length` values are digits after at most one SP, all equal (repeats of one value
  are allowed, as RFC 9110 8.6 allows, and forwarded as one); never both headers (h11 accepts
  both and lets chunked win, and strips tabs and trailing spaces around `chunked`);
  `Transfer_Encoding` and `Content_Length` are refused too (CGI-style servers read `_` as `-`);
- every failure is a `BadRequestError` (`HeadTooLargeError` past the bound) whose detail names
  the rule, never the offending bytes.
"""

from __future__ import annotations

import re

from kubegate.http.errors import BadRequestError, HeadTooLargeError

HEAD_END = b"\r\n\r\n"
_REQUEST_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e\x80-\xff]+ HTTP/1\.([01])")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BARE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")  # lookbehind sees bytes before `pos`
_CHUNKED = re.compile(rb" ?chunked", re.IGNORECASE)
_LENGTH = re.compile(rb" ?([0-9]{1,18})")
_LOOKALIKES = frozenset({b"transfer_encoding", b"content_length"})


def scan_head(buffer: bytes | bytearray, limit: int, checked: int = 0) -> tuple[int, int]:
    """Where the head at the start of buffer ends: (its length, blank line included, or -1
    while incomplete; how many bytes are now checked). Pass the second value back as checked
    with the grown buffer, so each byte is scanned once. Refuses bare line ends as soon as they
    arrive, and heads over limit bytes."""
    end = buffer.find(HEAD_END, max(0, checked - len(HEAD_END) + 1))
    if end >= 0:
        stop = end + len(HEAD_END)
    else:  # a CR at the end may yet be followed by its LF
        stop = len(buffer) - 1 if buffer.endswith(b"\r") else len(buffer)
    if _BARE_LINE_END.search(buffer, checked, stop):
        raise BadRequestError("bare LF or CR in the request head")
    if stop > limit:
        raise HeadTooLargeError(f"request head over {limit} bytes")
    return (stop if end >= 0 else -1), stop


def check_request_head(head: bytes) -> None:
    """Refuse head (request line to blank line, CRLF only) unless it keeps every rule above."""
    lines = head.removesuffix(HEAD_END).split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if not request_line:
        raise BadRequestError("malformed request line")
    fields = [_split_field(line) for line in lines[1:]]
    _check_framing(fields, http10=request_line[1] == b"0")


def _split_field(line: bytes) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise BadRequestError("obsolete line folding")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise BadRequestError("malformed header name")
    if _CONTROL.search(value):
        raise BadRequestError("control character in a header value")
    return name.lower(), value


def _check_framing(fields: list[tuple[bytes, bytes]], *, http10: bool) -> None:
    if {name for name, _ in fields} & _LOOKALIKES:
        raise BadRequestError("a framing header spelled with an underscore")
    encodings = [value for name, value in fields if name == b"transfer-encoding"]
    lengths = [value for name, value in fields if name == b"content-length"]
    if encodings and lengths:
        raise BadRequestError("both Transfer-Encoding and Content-Length")
    if encodings and http10:
        raise BadRequestError("Transfer-Encoding in an HTTP/1.0 request")
    if len(encodings) > 1 or (encodings and not _CHUNKED.fullmatch(encodings[0])):
        raise BadRequestError("Transfer-Encoding other than one plain chunked")
    parsed = {match[1] if (match := _LENGTH.fullmatch(value)) else None for value in lengths}
    if None in parsed or len({int(n) for n in parsed if n is not None}) > 1:
        raise BadRequestError("invalid or conflicting Content-Length")
