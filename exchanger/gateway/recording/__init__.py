"""Recordings of the gateway's interactive streams (exec, attach, port-forward): sans-IO parsers
of the wire (WebSocket, SPDY/3.1, the Kubernetes channel protocols), an asciicast v2 writer,
the files they go to, the proxy's `TapFactory`, and what replays them.

Layers, each importing only those before it: `errors` -> `websocket`, `spdy` (frames) ->
`channels` (what the frames carry) -> `asciicast`, `store` (what is written, and where) ->
`taps` (the seam) -> `replay` (reading casts back: play, commands typed).
"""

from exchanger.gateway.recording.taps import RecordingTaps

__all__ = ["RecordingTaps"]
