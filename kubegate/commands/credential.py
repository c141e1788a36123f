"""`kubegate credential`: the kubectl exec credential plugin. It asks the sidecar's socket for
an ExecCredential and prints it for kubectl.

Rules of this module:
- kubectl runs it before every command, so it imports little of the standard library (not
  even http.client) and nothing else: no grpc, no Kubernetes client, no YAML, nothing from
  kubegate but `kubegate.socketapi` and `kubegate.errors`; a unit test checks this in a fresh
  interpreter;
- the socket is `--socket`, else `KUBEGATE_SOCKET`, else `DEFAULT_SOCKET_PATH`
  (`/var/run/kubegate/kubegate.sock`: mount an emptyDir at /var/run/kubegate in both the
  sidecar and the job container);
- every request carries `X-Kubegate-Request: true` (the sidecar refuses requests without it);
- a failure is one line on stderr, which kubectl shows, and exit status 1; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

from kubegate.errors import Code, MessageError
from kubegate.socketapi import (
    DEFAULT_SOCKET_PATH,
    EXEC_CREDENTIAL_PATH,
    READY_PATH,
    REQUEST_HEADER,
    SOCKET_ENV,
)

TIMEOUT_SECONDS = 5.0
MAX_REPLY_BYTES = 1024 * 1024
PROG = "kubegate credential"


class PluginError(MessageError):
    """One line for kubectl's user: what went wrong, and what to check."""

    code = Code.UNAVAILABLE
    reason_name = "SIDECAR_UNAVAILABLE"


class ReplyError(PluginError):
    """The answer on the socket is not the HTTP the sidecar speaks."""


def get(socket_path: str, path: str, *, timeout: float = TIMEOUT_SECONDS) -> tuple[int, bytes]:
    """GET path from the sidecar with kubegate's request header: (status, body).

    A minimal HTTP/1.1 client for the one server it talks to (importing http.client alone
    costs about a fifth of the plugin's start): one request with `Connection: close`, the
    answer read to its end.
    """
    request = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{REQUEST_HEADER}: true\r\n"
               "Connection: close\r\n\r\n").encode("ascii")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(request)
        reply = _read_to_end(sock)
    return parse_reply(reply)


def _read_to_end(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := sock.recv(65536):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise ReplyError(f"the answer is larger than {MAX_REPLY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_reply(reply: bytes) -> tuple[int, bytes]:
    """(status, body) of a whole HTTP/1.1 answer; the body cut at its Content-Length."""
    head, separator, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(None, 2)
    if not separator or len(status) < 2 or not status[0].startswith(b"HTTP/1.") \
            or not status[1].isdigit():
        raise ReplyError("the answer is not HTTP")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value)
            if len(body) < length:
                raise ReplyError("the answer ended early")
            body = body[:length]
    return int(status[1]), body


def fetch_exec_credential(socket_path: str, timeout: float = TIMEOUT_SECONDS) -> bytes:
    """The sidecar's ExecCredential document, or PluginError saying why not."""
    status, body = fetch(socket_path, EXEC_CREDENTIAL_PATH, timeout)
    if status != 200:
        raise PluginError(f"the sidecar gave no credential: {_error_text(body)} "
                          f"(HTTP {status})")
    return body


def check_ready(socket_path: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """Nothing when the sidecar holds a credential it may serve; PluginError otherwise.
    For a native sidecar's startup probe: `kubegate credential --ready`."""
    status, body = fetch(socket_path, READY_PATH, timeout)
    if status != 200:
        raise PluginError(f"the sidecar is not ready: {_error_text(body)} (HTTP {status})")


def fetch(socket_path: str, path: str, timeout: float) -> tuple[int, bytes]:
    """GET path from the sidecar, every transport failure turned into one PluginError line."""
    try:
        return get(socket_path, path, timeout=timeout)
    except FileNotFoundError:
        raise PluginError(f"no socket at {socket_path}: is the kubegate sidecar running "
                          "(and is its socket folder mounted here)?") from None
    except ConnectionRefusedError:
        raise PluginError(f"nothing listens on {socket_path}: is the kubegate sidecar "
                          "running?") from None
    except PermissionError:
        raise PluginError(f"permission denied on {socket_path}: this user may not use the "
                          "sidecar's socket") from None
    except TimeoutError:
        raise PluginError(f"the sidecar at {socket_path} did not answer within "
                          f"{timeout:g}s") from None
    except (OSError, ReplyError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PluginError(f"cannot talk to the sidecar at {socket_path}: {reason}") from None


def _error_text(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return "unexpected reply"
    error = document.get("error") if isinstance(document, dict) else None
    return " ".join(str(error).split()) if error else "unexpected reply"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH",
                        help=f"the sidecar's socket (default: ${SOCKET_ENV}, else "
                        f"{DEFAULT_SOCKET_PATH})")
    parser.add_argument("--ready", action="store_true",
                        help="print nothing; exit 0 when the sidecar holds a credential it may "
                        "serve, 1 otherwise (a startup probe for the native sidecar)")


def run(args: argparse.Namespace) -> int:
    socket_path = args.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET_PATH
    try:
        if args.ready:
            check_ready(socket_path)
            return 0
        body = fetch_exec_credential(socket_path)
    except PluginError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(body.decode("utf-8", errors="replace").rstrip("\n") + "\n")
    return 0
