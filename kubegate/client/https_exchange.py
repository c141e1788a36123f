"""The exchange over HTTPS: OAuth 2.0 Token Exchange (RFC 8693) at an exchanger's
`POST /oauth2/token` (its `httpListen`), with the standard library only. Same interface and
same answers as the gRPC `kubegate.client.rpc.ExchangeClient`: a `Credential`, or an
`ExchangeError` coded as gRPC would code it (`kubegate.client.token_answers`), so callers
retry the same failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED) on
either route.

Rules of this module:
- standard library only (http.client, ssl, json): a sidecar on this route never imports grpc
  or google.protobuf, and holds about 20 MiB less;
- TLS as the gRPC client's: the CA file's certificates (else the system roots) are the only
  trust, the host name (or IP address) is verified, TLS 1.2 at least; no TLS only for an
  `http://` loopback exchanger (`kubegate.client.exchanger_url`);
- one connection per attempt (`Connection: close`): a sidecar exchanges every few minutes,
  longer than any server keeps a connection, and a fresh dial is what recovers from a
  restarted exchanger at once;
- every attempt ends within its timeout: connecting, and each read, wait at most the time
  left; an answer is read up to `MAX_ANSWER` bytes and no further; a redirect is an error,
  never followed;
- transport failures become ExchangeErrors here, with fixed words and the OS's or TLS's
  reason: no subject token, no answer body, in any of them.
"""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kubegate import __version__
from kubegate.client.exchanger_url import parse_exchanger_url
from kubegate.client.token_answers import TOKEN_PATH, credential, exchange_form, refusal
from kubegate.credential import Credential
from kubegate.errors import Code, ExchangeError

MAX_ANSWER = 1024 * 1024  # a credential with its cluster's CA is a few KiB
READ_SIZE = 16 * 1024
BACKOFF_INITIAL, BACKOFF_MAX = 0.2, 5.0


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Trust ca_file's certificates only (else the system roots); verify the host; TLS 1.2+.
    OSError (or ssl.SSLError) when the CA file cannot be read."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


class HttpsExchangeClient:
    """url: `https://HOST[:PORT]` (or `http://` on loopback); ValueError if it is not one.
    attempts and retry_budget (seconds) bound the retries of transient failures."""

    def __init__(self, url: str, *, ca_file: Path | None = None, timeout: float = 10.0,
                 attempts: int = 4, retry_budget: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = parse_exchanger_url(url)
        self._context = None if self._url.plaintext else tls_context(ca_file)
        self._timeout, self._attempts, self._budget = timeout, attempts, retry_budget
        self._clock, self._sleep = clock, sleep

    def close(self) -> None:
        """Nothing stays open between calls; here for the gRPC client's interface."""

    def __enter__(self) -> HttpsExchangeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def exchange(self, subject_token: str, *, role: str = "", lifetime: int = 0,
                 audiences: Sequence[str] = (), timeout: float | None = None) -> Credential:
        """One exchange, retried on transient failures only, with exponential back-off and
        jitter. `timeout` (seconds per attempt) overrides the client's default."""
        body = exchange_form(subject_token, role=role, lifetime=lifetime, audiences=audiences)
        started = self._clock()
        attempt = 1
        while True:
            try:
                return self._exchange_once(body, subject_token, timeout or self._timeout)
            except ExchangeError as error:
                delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (attempt - 1)
                            + random.uniform(0, BACKOFF_INITIAL))  # noqa: S311 - jitter
                if (not error.transient or attempt >= self._attempts
                        or self._clock() + delay - started >= self._budget):
                    raise
            self._sleep(delay)
            attempt += 1

    def _exchange_once(self, body: bytes, subject_token: str, timeout: float) -> Credential:
        deadline = self._clock() + timeout
        connection = self._connection(timeout)
        try:
            status, answer = self._post(connection, body, deadline)
        except ExchangeError:
            raise
        except TimeoutError:
            raise ExchangeError(Code.DEADLINE_EXCEEDED, "", f"no answer from {self._url} "
                                f"within {timeout:g}s") from None
        except ssl.SSLCertVerificationError as error:
            raise self._unavailable(f"its certificate is not trusted "
                                    f"({error.verify_message})") from None
        except ssl.SSLError as error:
            raise self._unavailable(f"TLS failed ({error.reason or 'handshake'})") from None
        except http.client.HTTPException:
            raise self._unavailable("it did not answer in HTTP/1.1") from None
        except OSError as error:
            raise self._unavailable(error.strerror or type(error).__name__) from None
        finally:
            connection.close()
        if status == 200:
            return credential(answer)
        raise refusal(status, answer, subject_token=subject_token)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        host, port = self._url.address.host, self._url.address.port
        if self._context is None:
            return http.client.HTTPConnection(host, port, timeout=timeout)
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)

    def _post(self, connection: http.client.HTTPConnection, body: bytes,
              deadline: float) -> tuple[int, bytes]:
        connection.request("POST", TOKEN_PATH, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json", "Connection": "close",
            "User-Agent": f"kubegate/{__version__}"})
        stream = connection.sock  # the response takes it over (`Connection: close`)
        self._wait(stream, deadline)
        response = connection.getresponse()
        try:
            return response.status, self._read(response, stream, deadline)
        finally:
            response.close()

    def _read(self, response: http.client.HTTPResponse, stream: socket.socket | None,
              deadline: float) -> bytes:
        if response.length is not None and response.length > MAX_ANSWER:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while not response.isclosed():  # closed (with its socket) once the body is in
            self._wait(stream, deadline)
            chunk = response.read(READ_SIZE)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_ANSWER:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _wait(self, stream: socket.socket | None, deadline: float) -> None:
        """The next read waits at most until deadline."""
        left = deadline - self._clock()
        if left <= 0:
            raise TimeoutError
        if stream is not None:
            stream.settimeout(left)

    def _unavailable(self, why: str) -> ExchangeError:
        return ExchangeError(Code.UNAVAILABLE, "", f"cannot exchange with {self._url}: {why}")

    def _too_large(self) -> ExchangeError:
        # gRPC's answer to a message over its receive limit
        return ExchangeError(Code.RESOURCE_EXHAUSTED, "", f"the answer of {self._url} is "
                             f"over {MAX_ANSWER // 1024} KiB")
