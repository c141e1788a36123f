"""`kubegate sessions play` and the commands typed in `kubegate sessions show`: timing with
--speed and --idle-limit (the sleep injected), line editing, recordings without an exchanger."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from exchanger.gateway.recording.asciicast import CastWriter
from exchanger.gateway.recording.replay import Cast, commands_typed, play
from exchanger.gateway.recording.store import create_recording
from kubegate.cli import main
from kubegate.commands.session_replay import run_play

T0 = 1_780_000_000.0


def cast_of(*events: tuple[float, str, str]) -> Cast:
    return Cast(path=Path("x.cast"), header={"version": 2, "timestamp": int(T0)},
                events=tuple(events))


@pytest.mark.parametrize(("typed", "commands"), [
    (["ls -l\r"], ["ls -l"]),
    (["l", "s", "\r", "\n", "pwd\n"], ["ls", "pwd"]),  # CR LF is one end, not two commands
    (["cat /etc/pa", "\x7f\x7f", "hosts\r"], ["cat /etc/hosts"]),
    (["rm -rf /\x15echo safe\r"], ["echo safe"]),  # ^U drops the line
    (["kill 1\x03", "uptime\r"], ["uptime"]),  # ^C abandons it
    (["git push origin\x17main\r"], ["git push main"]),  # ^W deletes a word
    (["\x1b[A\x1b[A\r"], []),  # arrow keys: history recall is not input
    (["echo \x1b[1;5Dhi\x1bOA\r"], ["echo hi"]),  # CSI with parameters, SS3
    (["\x1b[200~kubectl get pods\x1b[201~\r"], ["kubectl get pods"]),  # bracketed paste
    (["vi\tfile\x08\x08\x08\x08ile\r"], ["viile"]),  # a tab is skipped; BS
    (["  \r", "\r"], []),
])
def test_commands_typed(typed: list[str], commands: list[str]) -> None:
    cast = cast_of(*((1.0 + i, "i", text) for i, text in enumerate(typed)),
                   (0.5, "o", "ignored\r"))
    assert [c.text for c in commands_typed(cast)] == commands


def test_a_command_is_timed_when_it_was_ended() -> None:
    cast = cast_of((1.0, "i", "l"), (2.5, "i", "s\r"))
    [command] = commands_typed(cast)
    assert command.at == T0 + 2.5


def test_play_keeps_the_pauses_divided_by_speed_and_cut_by_idle_limit() -> None:
    cast = cast_of((0.5, "o", "a"), (1.0, "i", "x"), (2.5, "o", "b"), (30.0, "o", "c"),
                   (30.0, "r", "10x10"))
    slept: list[float] = []
    written: list[str] = []
    total = play(cast, written.append, sleep=slept.append, speed=2.0, idle_limit=5.0)
    assert written == ["a", "b", "c"]
    assert slept == [0.25, 1.0, 2.5]  # 0.5/2, 2.0/2, min(27.5, 5)/2
    assert total == pytest.approx(3.75)
    slept.clear()
    play(cast, written.append, sleep=slept.append, timed=False)
    assert slept == []
    with pytest.raises(ValueError, match="speed"):
        play(cast, written.append, sleep=slept.append, speed=0)


def record(root: Path, session: str, stdout: bytes, typed: str, at: float = T0) -> Path:
    opened = create_recording(root, session, "exec", at, raw=True)
    writer = CastWriter(opened.cast, opened.raw, started=at, title=f"session {session}")
    writer.resize(80, 24, at)
    writer.data("stdin", typed.encode(), at + 0.5)
    writer.data("stdout", stdout, at + 1)
    writer.close(at + 2)
    return opened.cast.path


def test_play_writes_the_output_byte_for_byte(tmp_path: Path,
                                              capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    record(tmp_path, "s-1", "first → ✓\r\n".encode(), "ls\r")
    record(tmp_path, "s-1", b"second\r\n", "pwd\r", at=T0 + 60)
    assert main(["sessions", "play", "s-1", "--recordings", str(tmp_path)]) == 0
    assert capfdbinary.readouterr().out == "first → ✓\r\nsecond\r\n".encode()
    assert main(["sessions", "play", "s-1", "--recordings", str(tmp_path), "--file", "2"]) == 0
    assert capfdbinary.readouterr().out == b"second\r\n"


def test_play_on_a_terminal_sleeps_with_speed(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    record(tmp_path, "s-1", b"out", "ls\r")
    slept: list[float] = []
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    args = argparse.Namespace(id="s-1", recordings=str(tmp_path), speed=4.0, idle_limit=None,
                              file=None)
    assert run_play(args, sleep=slept.append) == 0
    assert slept == [0.25]  # output at 1 s, at 4x


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["--speed", "0"], 2, "--speed and --idle-limit must be above 0"),
    (["--file", "3"], 1, "session s-1 has 1 recordings, not a number 3"),
])
def test_play_refuses_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                argv: list[str], status: int, message: str) -> None:
    record(tmp_path, "s-1", b"out", "ls\r")
    assert main(["sessions", "play", "s-1", "--recordings", str(tmp_path), *argv]) == status
    assert capsys.readouterr().err == f"kubegate sessions: {message}\n"


def test_play_without_recordings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEGATE_RECORDINGS", str(tmp_path))
    assert main(["sessions", "play", "s-none"]) == 1
    assert "no recording of session s-none to play" in capsys.readouterr().err
    assert main(["sessions", "play", "../x"]) == 1
    assert "not a plain name" in capsys.readouterr().err


def test_show_lists_commands_when_the_exchanger_is_unreachable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    record(tmp_path, "s-1", b"out", "kubectl get pods\r\x1b[Aexit\r")
    monkeypatch.setenv("ALICE", "not-a-real-token")
    argv = ["sessions", "show", "s-1", "--server", "127.0.0.1:1", "--plaintext",
            "--token-env", "ALICE", "--recordings", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("kubegate sessions: ")  # the exchanger's failure, said
    assert "2026-05-28T20:26:40Z  kubectl get pods" in captured.out
    assert "2026-05-28T20:26:40Z  exit" in captured.out
    assert "not-a-real-token" not in captured.out + captured.err
    assert main([*argv, "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out.splitlines()[-1])
    [recording] = document["recordings"]
    assert [c["command"] for c in recording["commands"]] == ["kubectl get pods", "exit"]


def test_show_without_recordings_is_the_exchanger_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALICE", "not-a-real-token")
    argv = ["sessions", "show", "s-1", "--server", "127.0.0.1:1", "--plaintext",
            "--token-env", "ALICE", "--recordings", str(tmp_path)]
    assert main(argv) == 1
    assert capsys.readouterr().out == ""


def test_a_command_line_is_bounded() -> None:
    from exchanger.gateway.recording.replay import MAX_LINE

    [command] = commands_typed(cast_of((1.0, "i", "x" * (MAX_LINE + 100) + "\n")))
    assert command.text == "x" * MAX_LINE
