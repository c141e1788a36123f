"""Request-smuggling and malformed-head spellings, shared by the HTTP engine's unit tests, the
sidecar proxy's unit tests and the proxy's end-to-end test: each must be refused with 400 and
nothing may reach an upstream. `SMUGGLING` values are header lines inserted into a POST head;
`MALFORMED_HEADS` values are whole heads."""

from __future__ import annotations

SMUGGLING = {
    # both framings: RFC 9112 6.1 lets a server drop Content-Length; a proxy must refuse
    "CL then TE": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "TE then CL": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    "CL then TE, other case": b"content-length: 5\r\nTRANSFER-ENCODING: chunked\r\n",
    # lengths that disagree or are not plain digits
    "two differing CL": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "CL list": b"Content-Length: 5, 6\r\n",
    "CL list of equal values": b"Content-Length: 5, 5\r\n",
    "CL with plus sign": b"Content-Length: +5\r\n",
    "CL negative": b"Content-Length: -1\r\n",
    "CL hex": b"Content-Length: 0x5\r\n",
    "CL with inner space": b"Content-Length: 4 2\r\n",
    "CL tab-prefixed": b"Content-Length:\t5\r\n",
    "CL trailing space": b"Content-Length: 5 \r\n",
    "CL empty": b"Content-Length:\r\n",
    # obfuscated Transfer-Encoding
    "TE chunked with trailing junk": b"Transfer-Encoding: chunked x\r\n",
    "TE chunked with trailing space": b"Transfer-Encoding: chunked \r\n",
    "TE chunked with trailing tab": b"Transfer-Encoding: chunked\t\r\n",
    "TE xchunked": b"Transfer-Encoding: xchunked\r\n",
    "TE chunkedx": b"Transfer-Encoding: chunkedx\r\n",
    "TE chunked, identity": b"Transfer-Encoding: chunked, identity\r\n",
    "TE identity, chunked": b"Transfer-Encoding: identity, chunked\r\n",
    "TE gzip, chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "TE twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "TE identity then chunked": b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
    "TE space before colon": b"Transfer-Encoding : chunked\r\n",
    "TE tab before colon": b"Transfer-Encoding\t: chunked\r\n",
    "TE tab-prefixed value": b"Transfer-Encoding:\tchunked\r\n",
    "TE two spaces": b"Transfer-Encoding:  chunked\r\n",
    "TE vertical tab": b"Transfer-Encoding: \x0bchunked\r\n",
    "TE form feed": b"Transfer-Encoding: chunked\x0c\r\n",
    "TE quoted": b'Transfer-Encoding: "chunked"\r\n',
    "TE empty": b"Transfer-Encoding:\r\n",
    "TE with an underscore": b"Transfer_Encoding: chunked\r\n",
    "CL with an underscore": b"Content-Length: 5\r\nContent_Length: 6\r\n",
    # obsolete line folding (RFC 9112 5.2): a line starting with SP or HT
    "obs-fold with space": b"X-Note: a\r\n folded\r\n",
    "obs-fold with tab": b"X-Note: a\r\n\tfolded\r\n",
    "TE value on a folded line": b"Transfer-Encoding:\r\n chunked\r\n",
    "folded line that looks like TE": b"X-Note: a\r\n Transfer-Encoding: chunked\r\n",
    "space before the first header": b" Transfer-Encoding: chunked\r\n",
    # line ends other than CRLF
    "bare LF after a header": b"X-Note: a\nTransfer-Encoding: chunked\r\n",
    "bare CR after a header": b"X-Note: a\rTransfer-Encoding: chunked\r\n",
    "bare LF inside the blank line": b"Content-Length: 5\r\n\n",
    # bytes a value may not hold
    "NUL in a value": b"X-Note: a\x00b\r\n",
    "CR in a value": b"X-Note: a\rb\r\n",
    "DEL in a value": b"X-Note: a\x7fb\r\n",
    "SOH in a value": b"X-Note: a\x01b\r\n",
    "ESC in a value": b"X-Note: \x1b[31m\r\n",
    # header names that are not tokens
    "space in a name": b"Bad Header: x\r\n",
    "empty name": b": x\r\n",
    "no colon": b"X-Note x\r\n",
    "parenthesis in a name": b"X(a): x\r\n",
    "control in a name": b"X-A\x01: x\r\n",
    "non-ASCII in a name": b"X-\xe9: x\r\n",
}

MALFORMED_HEADS = {
    "HTTP/2.0": b"GET /api HTTP/2.0\r\nHost: x\r\n\r\n",
    "HTTP/1.2": b"GET /api HTTP/1.2\r\nHost: x\r\n\r\n",
    "lower-case version": b"GET /api http/1.1\r\nHost: x\r\n\r\n",
    "no version": b"GET /api\r\nHost: x\r\n\r\n",
    "two spaces": b"GET  /api HTTP/1.1\r\nHost: x\r\n\r\n",
    "tab separator": b"GET\t/api HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF request line": b"GET /api HTTP/1.1\nHost: x\r\n\r\n",
    "all bare LF": b"POST /api HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
    "leading empty line": b"\r\nGET /api HTTP/1.1\r\nHost: x\r\n\r\n",
    "asterisk target": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "authority target": b"GET 10.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    "no Host in HTTP/1.1": b"GET /api HTTP/1.1\r\n\r\n",  # RFC 9112 3.2
    # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing
    "chunked in HTTP/1.0": b"POST /api HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}
