"""`kubegate demo`'s gateway scene: the real `kubegate gateway` (`start_gateway`, on the demo's
config) in front of a stand-in for kube-apiserver that the demo starts itself, since the demo
has no cluster. A plain HTTPS client (http.client, trusting the gateway's generated CA) shows:
alice's kubegate credential relayed as her, with her groups and session, under the gateway's
own token; the same credential with a client `Impersonate-User` refused before anything goes
upstream; a forged credential refused; a revoke of her session cutting her open watch and
refusing her next request; and the gateway's own hash-chained request log, verified.

`ApiServerStandIn` is HTTPS on 127.0.0.1 (a certificate from a throwaway `LocalCA`). It
accepts only the gateway's token (the file the demo's cluster entry names as the gateway's
credential) and answers `GET /api/v1/namespaces/ops/pods` with a small PodList carrying, under
`standIn`, the impersonation headers it received and whose token it was; with `?watch=1` it
sends one event and holds the stream until the gateway closes it. It is a demo prop: the
gateway is proven against the real API server in tests/integration/test_gateway.py.

Invariants: nothing here prints or records a token; `stop()` closes the listener and joins
every handler thread; `gateway_scene` stops the gateway before it returns.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from exchanger.audit.chain import verify_chain
from exchanger.config import Config
from exchanger.gateway.proxy_start import start_gateway
from exchanger.localtls import LocalCA
from kubegate.client.access import AccessClient
from kubegate.credential import Credential
from kubegate.files import write_secret_file

PODS_PATH = "/api/v1/namespaces/ops/pods"
SESSION_EXTRA_HEADER = "Impersonate-Extra-kubegate.io%2Fsession"
GATEWAYS_OWN = "the gateway's own"  # what the stand-in says of the token it was shown
CUT_BOUND_SECONDS = 1.0  # the bound of the gateway's own tests (README: 0.16-0.26 s measured)
HANDLER_TIMEOUT = 10.0  # a stand-in handler never blocks longer than this on a read
FORGED_GROUP = "kubegate:cluster-admins"


class ApiServerStandIn:
    """A stand-in for kube-apiserver on 127.0.0.1 (see the module). Use as a context manager."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.ca_file = folder / "apiserver-ca.crt"
        self.token_file = folder / "gateway-token"
        self._token = secrets.token_urlsafe(32)
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None
        self.requests: list[str] = []  # "METHOD path" of each request that reached it

    def start(self) -> Self:
        ca = LocalCA("kubegate demo API server CA")
        self._folder.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = ca.issue_server(("127.0.0.1", "localhost")).write(
            self._folder, "apiserver")
        ca.write(self.ca_file)
        write_secret_file(self.token_file, self._token.encode())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["http/1.1"])
        server = _TLSServer(("127.0.0.1", 0), _handler(self), context)
        self._server = server
        self._serving = threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, name="demo-apiserver", daemon=True)
        self._serving.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None and self._serving is not None:
            server.shutdown()
            server.server_close()  # joins the handler threads
            self._serving.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the API server stand-in is not started")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def whose(self, authorization: str | None) -> str:
        """Whose bearer token a request carried, in words that never hold it."""
        if authorization == f"Bearer {self._token}":
            return GATEWAYS_OWN
        return "none" if not authorization else "another"


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = False  # joined by server_close: the demo leaves no thread behind
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self._context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDLER_TIMEOUT)
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return
        with tls:
            super().finish_request(tls, client_address)


def _handler(stand_in: ApiServerStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            stand_in.requests.append(f"GET {self.path}")
            whose = stand_in.whose(self.headers.get("Authorization"))
            if whose != GATEWAYS_OWN:
                self._json(401, _status(401, "Unauthorized", "Unauthorized"))
                return
            parts = urlsplit(self.path)
            if parts.path != PODS_PATH:
                self._json(404, _status(404, "NotFound", "the server could not find the "
                                        "requested resource"))
                return
            acted_as = {"impersonateUser": self.headers.get("Impersonate-User", ""),
                        "impersonateGroup": self.headers.get_all("Impersonate-Group") or [],
                        "session": self.headers.get(SESSION_EXTRA_HEADER, ""),
                        "token": whose}
            if parse_qs(parts.query).get("watch") in (["1"], ["true"]):
                self._watch(acted_as)
            else:
                self._json(200, pod_list(acted_as))

        def _json(self, status: int, document: Mapping[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")  # one request per connection
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def _watch(self, acted_as: Mapping[str, Any]) -> None:
            event = json.dumps({"type": "ADDED", "object": _pod(), "standIn": acted_as})
            line = event.encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            try:  # hold the watch open until the gateway closes it (or the timeout)
                while self.rfile.read1(4096):
                    pass
            except OSError:
                pass
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # quiet: the demo prints what matters

    return Handler


def _pod() -> dict[str, Any]:
    return {"metadata": {"name": "web-0", "namespace": "ops"}, "status": {"phase": "Running"}}


def pod_list(acted_as: Mapping[str, Any]) -> dict[str, Any]:
    """The stand-in's answer: a PodList, plus who it was asked to act as (`standIn`)."""
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
            "items": [_pod()], "standIn": dict(acted_as)}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


# -- pure helpers ---------------------------------------------------------------------------


def forge(token: str, group: str = FORGED_GROUP) -> str:
    """`token` (a compact JWT) with `group` added to its `groups` claim and its signature
    kept: what someone editing a credential would present."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = [*claims.get("groups", []), group]
    edited = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{edited.rstrip(b'=').decode()}.{signature}"


def refusal_reason(document: Mapping[str, Any]) -> str:
    """The kubegate reason of a gateway `Status` ("" for anything else)."""
    causes = (document.get("details") or {}).get("causes") or [{}]
    return str(causes[0].get("reason", "")) if document.get("kind") == "Status" else ""


def request_line(record: Mapping[str, Any]) -> str:
    """One gateway audit record, compactly: verb, path, status, reason, session (no token:
    only the record's names and codes)."""
    facts = record.get("gateway") or {}
    ended = f" (cut: {facts['ended_by']})" if facts.get("ended_by") else ""
    return (f"{facts.get('verb', '-'):<5} {facts.get('path', '-'):<36} "
            f"{record.get('status', '-')} {record.get('reason', '-'):<21} "
            f"session {record.get('session_id') or '-'}{ended}")


# -- the scene ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    document: dict[str, Any]

    @property
    def reason(self) -> str:
        return refusal_reason(self.document)

    @property
    def said(self) -> str:
        return f"{self.status} {self.reason}".rstrip()


class _Client:
    """Plain HTTPS to the gateway (one connection per request, as the gateway answers). The
    gateway writes a request's record once its connection closed, so after each request the
    client waits for that record (`settle`): the log's order is the order of the requests."""

    def __init__(self, port: int, ca_file: Path, audit_log: Path) -> None:
        self._port = port
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._audit_log = audit_log
        self._lines = len(_read_lines(audit_log))

    def settle(self, timeout: float = 2.0) -> None:
        """Wait (at most timeout) until the gateway recorded one more request."""
        deadline = time.monotonic() + timeout
        while (len(_read_lines(self._audit_log)) <= self._lines
               and time.monotonic() < deadline):
            time.sleep(0.005)
        self._lines = len(_read_lines(self._audit_log))

    def open(self, path: str, token: str,
             headers: Mapping[str, str] | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPSConnection("127.0.0.1", self._port,
                                                 context=self._context, timeout=5)
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}",
                                                 "Accept": "application/json",
                                                 **(headers or {})})
        return connection.getresponse()

    def get(self, path: str, token: str, headers: Mapping[str, str] | None = None) -> Answer:
        with self.open(path, token, headers) as response:
            body = response.read()
        self.settle()
        try:
            document = json.loads(body) if body else {}
        except ValueError:
            document = {}
        return Answer(response.status, document if isinstance(document, dict) else {})


def gateway_scene(config: Config, *, stand_in: ApiServerStandIn, credential: Credential,
                  revoke_as: Callable[[], str], exchanger: tuple[str, Path | None],
                  number: int) -> bool:
    """The scene (see the module); True when every step went as expected. `revoke_as`: an
    ID token of the credential's owner, for the access API; `exchanger`: its target and CA."""
    settings = config.gateway
    if settings is None:
        raise ValueError("the demo's config has no gateway section")
    skip = len(_read_lines(settings.audit_log))
    running = start_gateway(config)
    try:
        ca_file = running.ca_file or settings.tls.cert_file
        print(f"\n[{number}] kubegate gateway: alice's credential through the identity-aware "
              "gateway (the same config, plus its gateway: section)")
        print(f"    gateway      {running.url} (HTTPS, CA {ca_file}); the client here is "
              "plain HTTPS, as kubectl would be with the gateway as its server")
        print(f"    upstream     {stand_in.url}: no cluster here, so a stand-in for "
              "kube-apiserver that echoes who it was asked to act as")
        client = _Client(running.server.port, ca_file, settings.audit_log)
        steps = _requests(client, stand_in, credential, revoke_as, exchanger)
    finally:
        running.stop()  # joins the connections: their records are written
    return _show_requests(settings.audit_log, skip, credential.token) and steps


def _requests(client: _Client, stand_in: ApiServerStandIn, credential: Credential,
              revoke_as: Callable[[], str], exchanger: tuple[str, Path | None]) -> bool:
    token, user, groups = credential.token, credential.cluster.user, credential.cluster.groups
    relayed = client.get(PODS_PATH, token)
    seen = relayed.document.get("standIn") or {}
    as_her = (relayed.status == 200 and seen.get("impersonateUser") == user
              and seen.get("impersonateGroup") == list(groups)
              and seen.get("session") == credential.session_id
              and seen.get("token") == GATEWAYS_OWN)
    print(f"    GET {PODS_PATH} with her credential -> {relayed.status}: the API server "
          f"was asked to act as {seen.get('impersonateUser') or '?'} "
          f"[{', '.join(seen.get('impersonateGroup') or [])}], session "
          f"{seen.get('session') or '?'}, and shown {seen.get('token', '?')} token, never "
          f"hers{'' if as_her else ' (UNEXPECTED)'}")
    reached = len(stand_in.requests)
    chosen = client.get(PODS_PATH, token, {"Impersonate-User": "system:admin"})
    untouched = len(stand_in.requests) == reached
    print(f"    the same plus Impersonate-User: system:admin -> {chosen.said} (expected "
          "403 IMPERSONATION_REFUSED), and " + ("nothing went upstream" if untouched
                                                else "it went upstream (UNEXPECTED)"))
    forged = client.get(PODS_PATH, forge(token))
    print(f"    her credential with {FORGED_GROUP} added to its groups -> {forged.said} "
          "(expected 401)")
    cut_after, revoked_state = _revoke_during_watch(client, credential, revoke_as, exchanger)
    after = client.get(PODS_PATH, token)
    cut = cut_after is not None and cut_after <= CUT_BOUND_SECONDS
    print(f"    kubegate sessions revoke {credential.session_id} (as alice) -> "
          f"{revoked_state}: "
          + (f"her open watch was cut {cut_after:.2f} s later" if cut_after is not None
             else "her watch never opened")
          + ("" if cut else f" (UNEXPECTED: expected a cut within {CUT_BOUND_SECONDS:g} s)"))
    print(f"    her credential again -> {after.said} (expected SESSION_ENDED)")
    return (as_her and untouched and cut and revoked_state == "revoked"
            and (chosen.status, chosen.reason) == (403, "IMPERSONATION_REFUSED")
            and forged.status == 401 and after.reason == "SESSION_ENDED"
            and after.status in (401, 403))


def _revoke_during_watch(client: _Client, credential: Credential,
                         revoke_as: Callable[[], str], exchanger: tuple[str, Path | None],
                         ) -> tuple[float | None, str]:
    """Open a watch as the credential, revoke its session through the access API (as
    `kubegate sessions revoke` does), and time how long the watch then lasts."""
    target, ca_file = exchanger
    with client.open(PODS_PATH + "?watch=1", credential.token) as watch:
        first = watch.readline() if watch.status == 200 else b""
        with AccessClient(target, token=revoke_as, ca_file=ca_file) as access:
            session = access.revoke_session(credential.session_id, reason="demo: done")
        revoked = time.monotonic()
        try:
            while watch.read1(4096):
                pass
        except (OSError, http.client.HTTPException):
            pass  # cut mid-stream: what a revoke does
        lasted = time.monotonic() - revoked
    client.settle()
    return (lasted if first else None), session.end_reason or "still active"


def _show_requests(audit_log: Path, skip: int, token: str) -> bool:
    lines = _read_lines(audit_log)
    records = [json.loads(line) for line in lines[skip:]]
    print(f"    gateway request log {audit_log} (one hash-chained line per request, decision "
          "gateway; no tokens), compactly:")
    for record in records:
        print("      " + request_line(record))
    report = verify_chain(lines)
    text = b"".join(lines).decode("utf-8", "replace")
    clean = token not in text and token.rsplit(".", 1)[1] not in text
    print(f"    gateway audit chain: {'ok' if report.ok else 'BROKEN'}, "
          f"{report.lines_checked} lines verified" + ("" if clean else "; A TOKEN IS IN IT"))
    return report.ok and clean and _as_expected(records)


def _as_expected(records: Sequence[Mapping[str, Any]]) -> bool:
    return ([(r.get("decision"), r.get("reason")) for r in records] == [
        ("gateway", "OK"), ("gateway", "IMPERSONATION_REFUSED"), ("gateway", "BAD_SIGNATURE"),
        ("gateway", "OK"), ("gateway", "SESSION_ENDED")]
        and (records[3].get("gateway") or {}).get("ended_by") == "revoked")


def _read_lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return []
