"""The recorder behind the proxy's `TapFactory` seam (exchanger/gateway/tap.py): one asciicast
(and raw copy) per exec or attach stream, one cast of markers per port-forward stream.

Rules of this module:
- only `/api/v1/namespaces/NS/pods/NAME/exec|attach|portforward` is recorded; the protocol is
  the one the 101 answer negotiated (`Upgrade`, `Sec-WebSocket-Protocol`,
  `X-Stream-Protocol-Version`); an upgrade it does not know still gets a cast, holding a
  marker that says it was not decoded;
- a tap never raises into the proxy and never blocks on anything but its own file: a malformed
  stream writes the marker "recording stopped: <reason>", logs the reason and decodes no more;
  calls from the two directions' threads are serialised by a lock;
- port-forward payloads (a database's wire protocol, a file copy) are not kept, only what a
  reviewer needs: which ports, when each first carried bytes, error text, bytes each way;
- no token, no header value but the negotiated protocol, ever reaches a recording or a log.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from exchanger.gateway.recording.asciicast import CastWriter
from exchanger.gateway.recording.channels import (
    Closed,
    Data,
    Decoder,
    Event,
    PortData,
    Resize,
    SpdyStreams,
    WebSocketChannels,
)
from exchanger.gateway.recording.errors import ProtocolViolation
from exchanger.gateway.recording.store import create_recording
from exchanger.gateway.session import GatewaySession
from exchanger.gateway.tap import StreamTap

log = logging.getLogger(__name__)
STREAM_PATH = re.compile(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/(exec|attach|portforward)")
TUNNEL_PREFIX = "SPDY/3.1+"
MAX_STATUS = 16 * 1024  # an error channel's Status is written as it is once this is held


class RecordingTaps:
    """A `TapFactory` writing under `root` (the `gateway.recordings` folder)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def open(self, *, session: GatewaySession, method: str, path: str,
             request_headers: Sequence[tuple[str, str]],
             response_headers: Sequence[tuple[str, str]],
             started: float) -> StreamTap | None:
        parts = urlsplit(path)
        match = STREAM_PATH.fullmatch(parts.path)
        if match is None:
            return None
        namespace, pod, kind = match.groups()
        query = parse_qs(parts.query)
        protocol, decoder = negotiated(response_headers, portforward=kind == "portforward")
        opened = create_recording(self._root, session.id, kind, started,
                                  raw=kind != "portforward")
        command = shlex.join(query.get("command", []))
        writer = CastWriter(opened.cast, opened.raw, started=started,
                            title=_title(session, kind, namespace, pod, query, command),
                            command=command)
        log.info("recording %s of session %s to %s (%s)", kind, session.id,
                 opened.cast.path, protocol or "no protocol")
        tap = RecordingTap(writer, decoder, portforward=kind == "portforward")
        if decoder is None:
            tap.stop(f"upgrade {protocol!r} is not a stream protocol kubegate decodes", started)
        return tap


def negotiated(response_headers: Sequence[tuple[str, str]], *,
               portforward: bool) -> tuple[str, Decoder | None]:
    """The protocol the answer chose, and a decoder for it (None: not one we know)."""
    headers = {name.lower(): value.strip() for name, value in response_headers}
    upgrade = headers.get("upgrade", "").lower()
    if upgrade == "websocket":
        protocol = headers.get("sec-websocket-protocol", "")
        if protocol.startswith(TUNNEL_PREFIX):
            return protocol, SpdyStreams(tunnelled=True)
        if protocol and not protocol.endswith("channel.k8s.io") and protocol not in (
                "portforward.k8s.io", "base64.portforward.k8s.io"):
            return protocol, None
        return protocol, WebSocketChannels(protocol, portforward=portforward)
    if upgrade.startswith("spdy/3.1"):
        return headers.get("x-stream-protocol-version", upgrade), SpdyStreams(tunnelled=False)
    return upgrade, None


def _title(session: GatewaySession, kind: str, namespace: str, pod: str,
           query: dict[str, list[str]], command: str) -> str:
    words = [f"session {session.id}", f"{kind} {namespace}/{pod}"]
    container = query.get("container", [""])[0]
    if container:
        words.append(f"container {container}")
    if query.get("tty", [""])[0] in ("1", "true"):
        words.append("tty")
    if query.get("ports"):
        words.append("ports " + ",".join(query["ports"]))
    if command:
        words.append(command)
    return ", ".join(words) + f" ({session.subject})"


class RecordingTap:
    def __init__(self, writer: CastWriter, decoder: Decoder | None, *,
                 portforward: bool) -> None:
        self._writer, self._decoder = writer, decoder
        self._ports = _PortLedger(writer) if portforward else None
        self._status = bytearray()  # the error channel's Status, until it is whole JSON
        self._lock = threading.Lock()
        self._closed = False

    def from_client(self, data: bytes, at: float) -> None:
        self._feed(data, at, from_client=True)

    def from_upstream(self, data: bytes, at: float) -> None:
        self._feed(data, at, from_client=False)

    def close(self, at: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._status:
                    self._writer.error_channel(bytes(self._status), at)
                if self._ports is not None:
                    self._ports.totals(at)
                self._writer.close(at)
            except Exception:  # a full disk, a closed descriptor: never into the proxy
                log.exception("closing a recording failed")

    def stop(self, reason: str, at: float) -> None:
        log.warning("recording stopped: %s", reason)
        self._decoder = None
        self._writer.marker(f"recording stopped: {reason}", at)

    def _feed(self, data: bytes, at: float, *, from_client: bool) -> None:
        with self._lock:
            if self._decoder is None or self._closed:
                return
            try:
                for event in self._decoder.feed(data, from_client=from_client):
                    self._apply(event, at)
            except ProtocolViolation as violation:
                self._safely_stop(str(violation), at)
            except Exception as error:  # a bug or a full disk: log it, keep the stream
                log.exception("recording failed")
                self._safely_stop(f"internal error ({type(error).__name__})", at)

    def _safely_stop(self, reason: str, at: float) -> None:
        try:
            self.stop(reason, at)
        except Exception:
            self._decoder = None
            log.exception("writing a recording's stop marker failed")

    def _apply(self, event: Event, at: float) -> None:
        if isinstance(event, Data):
            if event.stream == "error":
                self._error_channel(event.data, at)
            else:
                self._writer.data(event.stream, event.data, at)
        elif isinstance(event, Resize):
            self._writer.resize(event.width, event.height, at)
        elif isinstance(event, PortData) and self._ports is not None:
            self._ports.add(event, at)
        elif isinstance(event, Closed):
            self._writer.marker(f"closed: {event.what}", at)

    def _error_channel(self, data: bytes, at: float) -> None:
        """One marker per Status: the bytes may come in pieces (SPDY data frames, reads)."""
        self._status += data
        if len(self._status) < MAX_STATUS:
            if not self._status.rstrip().endswith(b"}"):
                return  # not whole yet (parsing only at a closing brace keeps this linear)
            try:
                json.loads(self._status)
            except ValueError:
                return
        self._writer.error_channel(bytes(self._status), at)
        self._status.clear()


class _PortLedger:
    """What a port-forward cast says: first bytes per port and way, error text, totals."""

    def __init__(self, writer: CastWriter) -> None:
        self._writer = writer
        self._bytes: dict[tuple[int, bool], int] = {}

    def add(self, event: PortData, at: float) -> None:
        if event.error:
            text = event.data.decode("utf-8", errors="replace")
            self._writer.marker(f"port {event.port} error: {text}", at)
            return
        key = (event.port, event.from_client)
        if key not in self._bytes:
            way = "from the client" if event.from_client else "from the pod"
            self._writer.marker(f"port {event.port}: first bytes {way}", at)
        self._bytes[key] = self._bytes.get(key, 0) + len(event.data)

    def totals(self, at: float) -> None:
        for port in sorted({port for port, _ in self._bytes}):
            sent = self._bytes.get((port, True), 0)
            received = self._bytes.get((port, False), 0)
            self._writer.marker(f"port {port}: {sent} bytes from the client, "
                                f"{received} bytes from the pod", at)
