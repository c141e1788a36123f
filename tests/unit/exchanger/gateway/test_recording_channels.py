"""The Kubernetes stream protocols: which bytes are stdin, stdout, stderr, error, resize or
port data, for every transport kubectl and the kubelet speak."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanger.gateway.recording.channels import (
    Closed,
    Data,
    Event,
    PortData,
    Resize,
    SpdyStreams,
    WebSocketChannels,
)
from exchanger.gateway.recording.errors import ProtocolViolation
from tests.unit.exchanger.gateway.test_recording_spdy import GO_FRAMER_EXEC
from tests.unit.exchanger.gateway.test_recording_wire import (
    TEXT,
    SpdyEncoder,
    data,
    rst_stream,
    ws_frame,
    ws_message,
)

KEY = b"\x11\x22\x33\x44"


def joined(events: list[Event]) -> list[Event]:
    """Consecutive data of one stream joined (a split may cut a message)."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Data) and isinstance(last, Data) and last.stream == event.stream:
            out[-1] = Data(stream=event.stream, data=last.data + event.data)
        else:
            out.append(event)
    return out


def exec_v5() -> list[tuple[bool, bytes]]:
    """(from client, bytes) of a `kubectl exec -it` over v5.channel.k8s.io."""
    return [
        (True, ws_message(b"\x04" + b'{"Width":132,"Height":43}', mask=KEY)),
        (False, ws_message(b"\x01$ ", pieces=2)),
        (True, ws_message(b"\x00ls\r", mask=KEY)),
        (False, ws_message(b"\x01ls\r\nfile\r\n")),
        (False, ws_message(b"\x02warn\n")),
        (True, ws_message(b"\xff\x00", mask=KEY)),
        (False, ws_message(b'\x03{"status":"Success"}')),
    ]


EXPECTED_V5: list[Event] = [
    Resize(width=132, height=43), Data(stream="stdout", data=b"$ "),
    Data(stream="stdin", data=b"ls\r"), Data(stream="stdout", data=b"ls\r\nfile\r\n"),
    Data(stream="stderr", data=b"warn\n"), Closed(what="stdin"),
    Data(stream="error", data=b'{"status":"Success"}'),
]


def test_v5_channels_with_resize_and_close() -> None:
    decoder = WebSocketChannels("v5.channel.k8s.io", portforward=False)
    events: list[Event] = []
    for from_client, wire in exec_v5():
        events += decoder.feed(wire, from_client=from_client)
    assert joined(events) == EXPECTED_V5


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=20))
def test_v5_channels_fed_in_any_pieces(sizes: list[int]) -> None:
    decoder = WebSocketChannels("v5.channel.k8s.io", portforward=False)
    events: list[Event] = []
    for from_client, wire in exec_v5():
        at = 0
        for size in [*sizes, len(wire)]:
            events += decoder.feed(wire[at:at + size], from_client=from_client)
            at += size
            if at >= len(wire):
                break
    assert joined(events) == EXPECTED_V5


def test_v4_has_no_close_signal() -> None:
    decoder = WebSocketChannels("v4.channel.k8s.io", portforward=False)
    assert decoder.feed(ws_message(b"\xff\x00"), from_client=False) == []


def test_base64_channels() -> None:
    decoder = WebSocketChannels("v4.base64.channel.k8s.io", portforward=False)
    wire = ws_message(b"1" + base64.b64encode(b"\x00\xffhi"), opcode=TEXT, pieces=3)
    assert decoder.feed(wire, from_client=False) == [Data(stream="stdout", data=b"\x00\xffhi")]
    with pytest.raises(ProtocolViolation, match="base64"):
        decoder.feed(ws_message(b"1!!!", opcode=TEXT), from_client=False)


@pytest.mark.parametrize("resize", [b"[1,2]", b'{"Width":"80","Height":24}', b"{nope",
                                    b'{"Width":80,"Height":70000}'])
def test_bad_resize_messages_are_violations(resize: bytes) -> None:
    decoder = WebSocketChannels("v5.channel.k8s.io", portforward=False)
    with pytest.raises(ProtocolViolation, match="resize"):
        decoder.feed(ws_message(b"\x04" + resize, mask=KEY), from_client=True)


def test_websocket_port_forward_learns_ports_from_the_server() -> None:
    decoder = WebSocketChannels("v4.channel.k8s.io", portforward=True)
    port = struct.pack("<H", 8080)
    events = decoder.feed(ws_message(b"\x00" + port) + ws_message(b"\x01" + port),
                          from_client=False)
    events += decoder.feed(ws_message(b"\x00GET / HTTP/1.1\r\n", mask=KEY), from_client=True)
    events += decoder.feed(ws_message(b"\x00HTTP/1.1 200 OK\r\n") + ws_message(b"\x01refused"),
                           from_client=False)
    assert events == [
        PortData(port=8080, error=False, from_client=True, data=b"GET / HTTP/1.1\r\n"),
        PortData(port=8080, error=False, from_client=False, data=b"HTTP/1.1 200 OK\r\n"),
        PortData(port=8080, error=True, from_client=False, data=b"refused"),
    ]


def test_spdy_exec_written_by_the_go_framer() -> None:
    events = SpdyStreams(tunnelled=False).feed(GO_FRAMER_EXEC, from_client=True)
    assert events == [Data(stream="stdin", data=b"echo hi\r"), Resize(width=100, height=30),
                      Data(stream="stdout", data=b"hi\r\n"), Closed(what="stdout"),
                      Closed(what="stderr")]


def test_spdy_resize_split_across_frames() -> None:
    client = SpdyEncoder()
    decoder = SpdyStreams(tunnelled=False)
    wire = client.syn_stream(1, {"streamtype": "resize"}) + data(1, b'{"Width":9')
    assert decoder.feed(wire, from_client=True) == []
    assert decoder.feed(data(1, b',"Height":8}\n{"Width":7,"Height":6}\n'),
                        from_client=True) == [Resize(width=9, height=8), Resize(width=7, height=6)]


def test_spdy_port_forward_tunnelled_in_websocket() -> None:
    """kubectl port-forward with WebSockets: SPDY/3.1+portforward.k8s.io."""
    client, server = SpdyEncoder(), SpdyEncoder()
    decoder = SpdyStreams(tunnelled=True)
    opening = (client.syn_stream(1, {"streamtype": "error", "port": "5432", "requestid": "0"})
               + client.syn_stream(3, {"streamtype": "data", "port": "5432", "requestid": "0"}))
    events = decoder.feed(ws_frame(opening, mask=KEY), from_client=True)
    answer = ws_frame(server.syn_reply(3, {}) + data(3, b"pong"))
    events += decoder.feed(answer[:7], from_client=False)
    events += decoder.feed(answer[7:], from_client=False)
    events += decoder.feed(ws_frame(data(3, b"ping") + rst_stream(1), mask=KEY),
                           from_client=True)
    assert joined(events) == [
        PortData(port=5432, error=False, from_client=False, data=b"pong"),
        PortData(port=5432, error=False, from_client=True, data=b"ping"),
        Closed(what="port 5432 error"),
    ]


def test_a_bad_port_header_is_a_violation() -> None:
    client = SpdyEncoder()
    with pytest.raises(ProtocolViolation, match="port"):
        SpdyStreams(tunnelled=False).feed(
            client.syn_stream(1, {"streamtype": "data", "port": "99999"}), from_client=True)
