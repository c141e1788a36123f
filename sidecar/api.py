"""The sidecar's local API: HTTP/1.1 on a Unix socket.

    GET /v1/credential       the credential as JSON (token, expires_at, token_id, session_id,
                             mapping, cluster)
    GET /v1/exec-credential  client.authentication.k8s.io/v1 ExecCredential, expiry 60 s early
    GET /v1/kubeconfig       a kubeconfig whose user runs `kubegate credential --socket PATH`
                             (YAML; `?format=json` for JSON); it holds no secret
    GET /metrics             Prometheus text
    GET /healthz             200 while the process runs
    GET /readyz              200 while a credential may be served, else 503 with the reason

Rules of this module:
- every request but the two probes must carry `X-Kubegate-Request: true`, else 403: a
  confused local HTTP client (SSRF) cannot forge that header;
- with allowed uids configured, a peer whose uid (SO_PEERCRED) is not listed gets 403 (the
  probes excepted: they reveal nothing);
- the socket is created 0600 (umask held while binding, then chmod), or 0660 and owned by the
  configured group; a stale socket from an earlier run is replaced, a live one never is;
- its folder is made, tightened or refused by `sidecar.socketfolder` before the bind;
- /v1/* answer 503 with a JSON error saying why when no credential may be served;
- `SocketApi.handle` decides every answer; the HTTP handler only moves bytes.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import socketserver
import stat
import struct
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kubegate import kubeconfig
from kubegate.credential import Credential, credential_json
from kubegate.errors import Code, MessageError
from kubegate.socketapi import REQUEST_HEADER
from sidecar.keeper import KeeperState
from sidecar.socketfolder import prepare_socket_folder

log = logging.getLogger("kubegate.sidecar.api")

JSON = "application/json"
PROBES = frozenset({"/healthz", "/readyz"})
_UCRED = struct.Struct("3i")  # pid, uid, gid
MAX_DISCARDED_BODY = 64 * 1024


class CredentialCache(Protocol):
    def current(self) -> Credential | None: ...

    def state(self) -> KeeperState: ...


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: int, document: Any, **headers: str) -> Response:
    return Response(status=status, body=(json.dumps(document, indent=2) + "\n").encode(),
                    headers=headers)


class SocketApi:
    """What the socket answers: a pure function of the request, the keeper's cache and the
    clock."""

    def __init__(self, cache: CredentialCache, *, socket_path: Path,
                 plugin_command: Sequence[str], clock: Callable[[], float],
                 registry: CollectorRegistry | None = None,
                 allowed_uids: frozenset[int] | None = None) -> None:
        self._cache, self._socket_path = cache, socket_path
        self._plugin_command, self._clock = tuple(plugin_command), clock
        self._registry, self._allowed_uids = registry, allowed_uids

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               peer_uid: int | None) -> Response:
        url = urlsplit(target)
        if method not in ("GET", "HEAD"):
            return json_response(405, {"error": f"{method} is not allowed; use GET"},
                                 Allow="GET, HEAD")
        if url.path == "/healthz":
            return json_response(200, {"status": "ok"})
        if url.path == "/readyz":
            return self._readyz()
        refused = self._refusal(headers, peer_uid)
        if refused is not None:
            return refused
        return self._route(url.path, parse_qs(url.query))

    def _refusal(self, headers: Mapping[str, str], peer_uid: int | None) -> Response | None:
        if self._allowed_uids is not None and peer_uid not in self._allowed_uids:
            return json_response(403, {"error": f"uid {peer_uid} may not use this socket"})
        value = next((v for k, v in headers.items() if k.lower() == REQUEST_HEADER.lower()), "")
        if value.strip().lower() != "true":
            return json_response(403, {"error": f"missing header {REQUEST_HEADER}: true "
                                                "(kubegate refuses requests without it)"})
        return None

    def _route(self, path: str, query: Mapping[str, list[str]]) -> Response:
        if path == "/metrics":
            if self._registry is None:
                return json_response(404, {"error": "no metrics here"})
            return Response(status=200, body=generate_latest(self._registry),
                            content_type=CONTENT_TYPE_LATEST)
        routes: dict[str, Callable[[Credential], Response]] = {
            "/v1/credential": self._credential,
            "/v1/exec-credential": self._exec_credential,
            "/v1/kubeconfig": lambda c: self._kubeconfig(c, query),
        }
        if path not in routes:
            return json_response(404, {"error": f"no such endpoint {path}",
                                       "endpoints": sorted(routes) + ["/metrics", *PROBES]})
        credential = self._cache.current()
        if credential is None:
            return self._unavailable()
        return routes[path](credential)

    def _unavailable(self) -> Response:
        state = self._cache.state()
        reason = state.last_error or "no credential yet: the first exchange has not finished"
        return json_response(503, {"error": f"no credential to serve: {reason}",
                                   "status": state.status}, **{"Retry-After": "1"})

    def _readyz(self) -> Response:
        state = self._cache.state()
        if state.ready:
            return json_response(200, {"ready": True, "status": state.status,
                                       "expires_in": int(state.expires_in or 0)})
        return json_response(503, {"ready": False, "status": state.status,
                                   "reason": state.last_error or "no credential yet"})

    def _credential(self, credential: Credential) -> Response:
        return json_response(200, credential_json(credential, now=self._clock()))

    def _exec_credential(self, credential: Credential) -> Response:
        return json_response(200, kubeconfig.exec_credential(credential, now=self._clock()))

    def _kubeconfig(self, credential: Credential, query: Mapping[str, list[str]]) -> Response:
        command = [*self._plugin_command, "credential", "--socket", str(self._socket_path)]
        document = kubeconfig.exec_kubeconfig(
            credential, command,
            install_hint="kubegate credential talks to the kubegate sidecar's socket; run "
            "the job in a pod with the kubegate sidecar")
        as_json = query.get("format", [""])[-1] == "json"
        return Response(status=200, body=kubeconfig.render_kubeconfig(document, as_json=as_json),
                        content_type=JSON if as_json else "application/yaml")


# -- the socket -----------------------------------------------------------------------------


class SocketInUseError(MessageError, OSError):
    """The socket path is taken by a live server, or by something that is not a socket."""

    code = Code.FAILED_PRECONDITION
    reason_name = "SOCKET_IN_USE"


def remove_stale_socket(path: Path) -> None:
    """Remove a socket nobody listens on; refuse to touch a live one or a non-socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUseError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise SocketInUseError(f"{path}: another process is serving on this socket")


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, api: SocketApi, *, mode: int, group: int | None) -> None:
        self.api, self.socket_path, self.mode, self.group = api, path, mode, group
        super().__init__(str(path), _Handler)

    def server_bind(self) -> None:
        remove_stale_socket(self.socket_path)
        previous = os.umask(0o777 & ~self.mode)
        try:
            super().server_bind()
        finally:
            os.umask(previous)
        if self.group is not None:
            os.chown(self.socket_path, -1, self.group)
        os.chmod(self.socket_path, self.mode)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hung up mid-answer: not worth a traceback on stderr
        error = sys.exc_info()[1]
        log.debug("connection ended with %s: %s", type(error).__name__, error)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubegate-sidecar"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is closed after this
    server: _UnixServer

    def setup(self) -> None:
        super().setup()
        try:
            raw = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            self.peer_uid: int | None = _UCRED.unpack(raw)[1]
        except OSError:
            self.peer_uid = None

    def do_GET(self) -> None:  # http.server dispatches on do_<METHOD>
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # all answered 405

    def _answer(self, *, send_body: bool) -> None:
        self._discard_body()
        response = self.server.api.handle(self.command, self.path, dict(self.headers.items()),
                                          self.peer_uid)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def _discard_body(self) -> None:
        """No endpoint takes a body; read a small one so it is not taken for the next
        request, and close the connection after anything else."""
        length = self.headers.get("Content-Length", "0")
        if self.headers.get("Transfer-Encoding") or not length.isdigit() or \
                int(length) > MAX_DISCARDED_BODY:
            self.close_connection = True
        elif int(length):
            self.rfile.read(int(length))

    def address_string(self) -> str:
        return f"uid {self.peer_uid}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ApiServer:
    """The socket API, served by a thread of its own until stop()."""

    def __init__(self, api: SocketApi, path: Path, *, mode: int = 0o600,
                 group: int | None = None) -> None:
        prepare_socket_folder(path.parent, group=group)
        self.path = path
        self._server = _UnixServer(path, api, mode=mode, group=group)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="kubegate-socket-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
        self.path.unlink(missing_ok=True)
