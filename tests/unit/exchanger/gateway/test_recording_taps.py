"""The TapFactory the proxy calls: which streams are recorded, what the files hold, and that a
broken stream or a failing disk never reaches the proxy."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from exchanger.gateway.recording.asciicast import CastWriter, read_raw
from exchanger.gateway.recording.channels import WebSocketChannels
from exchanger.gateway.recording.replay import commands_typed, read_cast, session_casts
from exchanger.gateway.recording.taps import RecordingTap, RecordingTaps
from exchanger.gateway.session import GatewaySession
from exchanger.gateway.tap import StreamTap, TapFactory
from tests.unit.exchanger.gateway.test_recording_wire import (
    SpdyEncoder,
    data,
    ws_frame,
    ws_message,
)

T0 = 1_780_000_000.0
KEY = b"\x0a\x0b\x0c\x0d"
SESSION = GatewaySession(id="s-0123", cluster="prod", user="vendor:alice", groups=("sre",),
                         mapping="vendor-sre", access_request="ar-1",
                         subject="https://idp.example alice", not_after=T0 + 3600)
EXEC = "/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=ls%20-l" \
       "&container=app&stdin=true&stdout=true&tty=true"


def open_tap(root: Path, path: str = EXEC, protocol: str = "v5.channel.k8s.io",
             upgrade: str = "websocket") -> StreamTap | None:
    factory: TapFactory = RecordingTaps(root)
    answer = [("Upgrade", upgrade), ("Connection", "Upgrade")]
    answer.append(("Sec-WebSocket-Protocol" if upgrade == "websocket"
                   else "X-Stream-Protocol-Version", protocol))
    return factory.open(session=SESSION, method="GET", path=path,
                        request_headers=[("Authorization", "Bearer never-recorded")],
                        response_headers=answer, started=T0)


def test_an_exec_stream_replays_byte_for_byte(tmp_path: Path) -> None:
    tap = open_tap(tmp_path)
    assert tap is not None
    sent = "héllo wörld → ✓\r\n".encode() * 50
    wire = ws_message(b"\x01" + sent, pieces=7)
    tap.from_client(ws_message(b'\x04{"Width":100,"Height":30}', mask=KEY), T0 + 0.01)
    for index in range(0, len(wire), 13):  # the proxy's reads cut anywhere
        tap.from_upstream(wire[index:index + 13], T0 + 0.1 + index / 1e5)
    for key in "ls -l\r":
        tap.from_client(ws_message(b"\x00" + key.encode(), mask=KEY), T0 + 1)
    tap.close(T0 + 2)
    [path] = session_casts(tmp_path, "s-0123")
    cast = read_cast(path)
    assert cast.header["width"] == 100 and cast.header["command"] == "sh -c 'ls -l'"
    assert cast.title == ("session s-0123, exec shop/web-0, container app, tty, sh -c 'ls -l' "
                          "(https://idp.example alice)")
    output = "".join(text for _, code, text in cast.events if code == "o")
    assert output.encode() == sent
    raw = read_raw(Path(str(path) + ".raw").read_bytes())
    assert b"".join(d for _, kind, d in raw if kind == "stdout") == sent
    assert [c.text for c in commands_typed(cast)] == ["ls -l"]
    assert b"never-recorded" not in path.read_bytes()


def test_spdy_exec_is_recorded(tmp_path: Path) -> None:
    tap = open_tap(tmp_path, upgrade="SPDY/3.1", protocol="v4.channel.k8s.io")
    assert tap is not None
    client = SpdyEncoder()
    tap.from_client(client.syn_stream(1, {"streamtype": "stdout"})
                    + client.syn_stream(3, {"streamtype": "stdin"}), T0)
    tap.from_upstream(data(1, b"pod$ "), T0 + 0.2)
    tap.from_client(data(3, b"id\r"), T0 + 0.3)
    tap.close(T0 + 1)
    cast = read_cast(session_casts(tmp_path, "s-0123")[0])
    assert cast.header["width"] == 80  # no resize came: the default
    assert [e[1:] for e in cast.events] == [("o", "pod$ "), ("i", "id\r")]


def test_only_pod_stream_paths_are_recorded(tmp_path: Path) -> None:
    assert open_tap(tmp_path, path="/api/v1/namespaces/shop/pods/web-0/log?follow=1") is None
    assert open_tap(tmp_path, path="/api/v1/namespaces/shop/pods/web-0") is None
    assert open_tap(tmp_path, path="/apis/x/v1/namespaces/a/pods/b/exec") is None
    assert not tmp_path.joinpath("s-0123").exists()


def test_port_forward_keeps_metadata_not_payloads(tmp_path: Path) -> None:
    path = "/api/v1/namespaces/db/pods/pg-0/portforward?ports=5432"
    tap = open_tap(tmp_path, path=path, protocol="v4.channel.k8s.io")
    assert tap is not None
    port = struct.pack("<H", 5432)
    tap.from_upstream(ws_message(b"\x00" + port) + ws_message(b"\x01" + port), T0)
    tap.from_client(ws_message(b"\x00secret-query", mask=KEY), T0 + 1)
    tap.from_upstream(ws_message(b"\x00rows"), T0 + 2)
    tap.close(T0 + 3)
    [file] = session_casts(tmp_path, "s-0123")
    assert "-portforward-1.cast" in file.name
    assert not Path(str(file) + ".raw").exists()
    cast = read_cast(file)
    assert [e[1:] for e in cast.events] == [
        ("m", "port 5432: first bytes from the client"),
        ("m", "port 5432: first bytes from the pod"),
        ("m", "port 5432: 12 bytes from the client, 4 bytes from the pod"),
    ]
    assert b"secret-query" not in file.read_bytes()


def test_a_malformed_stream_stops_the_recording_not_the_stream(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tap = open_tap(tmp_path)
    assert tap is not None
    tap.from_upstream(ws_message(b"\x01before"), T0 + 0.1)
    with caplog.at_level(logging.WARNING):
        tap.from_client(ws_frame(b"\x00unmasked"), T0 + 0.2)  # a client must mask
    tap.from_upstream(ws_message(b"\x01after"), T0 + 0.3)
    tap.close(T0 + 1)
    tap.close(T0 + 2)  # twice is harmless
    cast = read_cast(session_casts(tmp_path, "s-0123")[0])
    assert [e[1:] for e in cast.events] == [
        ("o", "before"), ("m", "recording stopped: a client frame is not masked")]
    assert "recording stopped: a client frame is not masked" in caplog.text


def test_an_unknown_upgrade_leaves_a_marker(tmp_path: Path) -> None:
    tap = open_tap(tmp_path, protocol="x.example.com")
    assert tap is not None
    tap.from_client(b"anything", T0)
    tap.close(T0 + 1)
    [line] = read_cast(session_casts(tmp_path, "s-0123")[0]).events
    assert line[1] == "m" and "'x.example.com' is not a stream protocol" in line[2]


class FullDisk:
    def write(self, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_failing_disk_never_raises_into_the_proxy(caplog: pytest.LogCaptureFixture) -> None:
    writer = CastWriter(FullDisk(), None, started=T0, title="t")
    tap = RecordingTap(writer, WebSocketChannels("v5.channel.k8s.io", portforward=False),
                       portforward=False)
    with caplog.at_level(logging.WARNING):
        tap.from_client(ws_message(b'\x04{"Width":80,"Height":24}', mask=KEY), T0)
        tap.from_upstream(ws_message(b"\x01x"), T0 + 1)
        tap.close(T0 + 3)
    assert "recording failed" in caplog.text
    assert "closing a recording failed" in caplog.text
