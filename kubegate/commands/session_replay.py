"""`kubegate sessions play ID` and the recordings part of `kubegate sessions show ID`: what the
gateway recorded of a session's exec, attach and port-forward streams, read from its
recordings folder (`--recordings DIR`, else `$KUBEGATE_RECORDINGS`); no exchanger needed.

    kubegate sessions play s-0123 --recordings /var/lib/kubegate/recordings --speed 2
    kubegate sessions show s-0123 --recordings /var/lib/kubegate/recordings

Rules of this module:
- play writes the recorded output, byte for byte as recorded, to stdout; with its pauses
  (divided by --speed, each cut to --idle-limit) only when stdout is a terminal;
- show lists, per cast, its title and the commands typed with their UTC time;
- failures are one line on stderr prefixed `kubegate sessions: `; exit 1 when there is nothing
  to play or a file is unreadable, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from exchanger.gateway.recording.errors import RecordingError
from exchanger.gateway.recording.replay import (
    Cast,
    commands_typed,
    play,
    read_cast,
    session_casts,
)

PROG = "kubegate sessions"
ENV = "KUBEGATE_RECORDINGS"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_recordings_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recordings", metavar="DIR",
                        help=f"the gateway's recordings folder (default: ${ENV})")


def add_play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID")
    add_recordings_flag(parser)
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="play X times as fast (default 1)")
    parser.add_argument("--idle-limit", type=float, default=None, metavar="S",
                        help="cut every pause to at most S seconds")
    parser.add_argument("--file", type=int, default=None, metavar="N",
                        help="only the N-th recording of the session (1: the first)")


def recordings_dir(args: argparse.Namespace) -> Path | None:
    value = getattr(args, "recordings", None) or os.environ.get(ENV, "")
    return Path(value) if value else None


def run_play(args: argparse.Namespace, *, sleep: Callable[[float], None] = time.sleep) -> int:
    if args.speed <= 0 or (args.idle_limit is not None and args.idle_limit <= 0):
        return _fail("--speed and --idle-limit must be above 0", EXIT_USAGE)
    try:
        casts = _casts(args)
    except (RecordingError, OSError) as error:
        return _fail(str(error), EXIT_FAILED)
    if not casts:
        return _fail(f"no recording of session {args.id} to play", EXIT_FAILED)
    out = sys.stdout
    timed = out.isatty()

    def write(text: str) -> None:
        out.buffer.write(text.encode("utf-8"))
        out.buffer.flush()

    try:
        for cast in casts:
            play(cast, write, sleep=sleep, speed=args.speed, idle_limit=args.idle_limit,
                 timed=timed)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    return EXIT_OK


def print_commands(args: argparse.Namespace, *, as_json: bool) -> bool:
    """The commands typed in the session's recordings, printed; False when there are none
    to read (no folder given, or nothing recorded)."""
    try:
        casts = _casts(args)
    except (RecordingError, OSError) as error:
        _fail(str(error), EXIT_FAILED)
        return False
    if as_json:
        import json

        print(json.dumps({"recordings": [_as_json(cast) for cast in casts]}))
    for cast in [] if as_json else casts:
        print(f"\nrecording {cast.path.name}: {cast.title}")
        commands = commands_typed(cast)
        for command in commands:
            print(f"  {_utc(command.at)}  {command.text}")
        if not commands:
            print("  (no commands typed)")
    return bool(casts)


def _casts(args: argparse.Namespace) -> list[Cast]:
    root = recordings_dir(args)
    if root is None:
        return []
    paths = session_casts(root, args.id)
    number = getattr(args, "file", None)
    if number is not None:
        if not 1 <= number <= len(paths):
            raise RecordingError(f"session {args.id} has {len(paths)} recordings, "
                                     f"not a number {number}")
        paths = [paths[number - 1]]
    return [read_cast(path) for path in paths]


def _as_json(cast: Cast) -> dict[str, object]:
    return {"file": str(cast.path), "title": cast.title, "started": _utc(cast.started),
            "commands": [{"at": _utc(c.at), "command": c.text} for c in commands_typed(cast)]}


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status
