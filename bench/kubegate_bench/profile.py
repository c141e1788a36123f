"""Sampling a server process with py-spy while a benchmark loads it (`bench/run --profile`),
and a plain-text summary of where the samples fell: self and inclusive shares per function.
Only the thread holding the GIL is sampled (`--gil`): on a GIL-bound server that is where the
CPU goes; threads waiting on locks, the pool's queue or I/O are left out.

    spy = profile.start(pid, out / "profile-b1-exchange.txt", seconds)
    ...  # drive the load
    spy.finish()   # waits for py-spy, writes the summary beside the raw stacks (.raw)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass
class Spy:
    popen: subprocess.Popen[bytes] | None
    raw: Path
    summary: Path

    def finish(self) -> None:
        if self.popen is None:
            return
        self.popen.wait(timeout=120)
        if self.raw.exists():
            self.summary.write_text(summarise(self.raw.read_text()))


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def start(pid: int, summary: Path, seconds: float, rate: int = 200) -> Spy:
    binary = py_spy()
    raw = summary.with_suffix(".raw")
    if binary is None:
        summary.write_text("py-spy is not installed: pip install -e '.[bench]'\n")
        return Spy(None, raw, summary)
    popen = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", str(rate), "--gil", "--format", "raw", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Spy(popen, raw, summary)


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match.group('func')} ({file})"


def summarise(raw: str, top: int = 30) -> str:
    """Self and inclusive sample shares per function, from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "self time (top functions):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time (top functions):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
