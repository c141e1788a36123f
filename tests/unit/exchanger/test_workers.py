"""`kubegate serve --workers N`, the parts without a server: each worker's audit file and how
verify and the report find them, a worker's share of the rate limit and of the config, the
default count, the restart back-off, and the supervisor with real (tiny) worker processes."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from exchanger.audit.workerfiles import with_worker_logs, worker_log, worker_logs
from exchanger.auditreport.kubegate_log import read_sessions
from exchanger.config import load_config
from exchanger.prefork.parent import reserve
from exchanger.prefork.role import (
    WorkerRole,
    check_workers,
    default_workers,
    quota_cpus,
    worker_config,
    worker_rate_limit,
)
from exchanger.prefork.supervisor import Supervisor, WorkerStartError, backoff
from exchanger.prefork.worker import serve_as_worker
from exchanger.ratelimit import RateLimit
from kubegate.errors import ConfigError
from tests.support.auditlogs import lines_of, write_log
from tests.support.wait import poll

ROOT = Path(__file__).resolve().parents[3]


def test_each_worker_writes_its_own_file_beside_the_configured_one() -> None:
    assert worker_log(Path("/var/lib/kubegate/audit.log"), 0) == Path(
        "/var/lib/kubegate/audit.w0.log")
    assert worker_log(Path("/logs/audit"), 12) == Path("/logs/audit.w12")
    with pytest.raises(ValueError):
        worker_log(Path("audit.log"), -1)


def test_worker_files_are_found_beside_a_log_in_index_order(tmp_path: Path) -> None:
    for name in ("audit.w10.log", "audit.w2.log", "audit.w0.log", "audit.wx.log",
                 "other.w1.log", "audit.w1.log.torn-1"):
        (tmp_path / name).write_text("")
    base = tmp_path / "audit.log"
    found = [tmp_path / name for name in ("audit.w0.log", "audit.w2.log", "audit.w10.log")]
    assert worker_logs(base) == found
    assert with_worker_logs([base]) == found  # only ever written by workers
    base.write_text("")
    assert with_worker_logs([base]) == [base, *found]
    missing = tmp_path / "gone.log"
    assert with_worker_logs([missing]) == [missing]  # still reported as missing


def test_a_worker_gets_its_share_of_the_per_identity_limit() -> None:
    assert worker_rate_limit(RateLimit(rate=10, burst=100), 4) == RateLimit(rate=2.5,
                                                                             burst=25)
    assert worker_rate_limit(RateLimit(rate=10, burst=5), 2) == RateLimit(rate=5, burst=3)
    assert worker_rate_limit(RateLimit(rate=1, burst=1), 8).burst == 1


@pytest.mark.parametrize(("text", "cpus"), [
    ("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000", 2),
    ("50000 100000", 1), ("", None), ("a b", None), ("0 100000", None),
])
def test_a_cgroup_cpu_quota_caps_the_default_count(text: str, cpus: int | None) -> None:
    assert quota_cpus(text) == cpus


def test_the_default_count_is_the_usable_cpus_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert default_workers(tmp_path / "no-such-file") == affinity
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert default_workers(tmp_path / "cpu.max") == 1


@pytest.mark.parametrize(("index", "count"), [(0, 1), (2, 2), (-1, 3)])
def test_a_worker_role_is_an_index_below_a_count_of_at_least_two(index: int,
                                                                count: int) -> None:
    with pytest.raises(ValueError):
        WorkerRole(index=index, count=count)


def _config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0", "plaintext": True, "stateDir": str(tmp_path / "state"),
        "metricsListen": "127.0.0.1:9090", "healthListen": "127.0.0.1:8081",
        "rateLimit": {"perIdentity": {"rate": "10/s", "burst": 100}}, **extra}))
    return path


def test_a_worker_config_has_its_file_its_share_and_no_listener_of_the_parent(
    tmp_path: Path,
) -> None:
    config = load_config(_config(tmp_path), environ={})
    second = worker_config(config, WorkerRole(index=1, count=2), listen="127.0.0.1:4000",
                           http_listen="")
    assert second.listen == "127.0.0.1:4000" and second.http_listen == ""
    assert second.audit_log == tmp_path / "state" / "audit.w1.log"
    assert second.rate_limit == RateLimit(rate=5, burst=50)
    assert second.metrics_listen == "" and second.health_listen == ""
    assert dataclasses.replace(second, listen=config.listen, audit_log=config.audit_log,
                               rate_limit=config.rate_limit, metrics_listen=config.metrics_listen,
                               health_listen=config.health_listen) == config


def test_the_config_names_a_worker_count_or_leaves_it_to_serve(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path), environ={}).workers == 0
    assert load_config(_config(tmp_path, workers=3), environ={}).workers == 3


@pytest.mark.parametrize("value", [0, -1, 257, "2", 1.5, True, None])
def test_a_worker_count_that_is_no_whole_number_from_1_to_256_is_refused(
    tmp_path: Path, value: object,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"workers": value}))
    if value is None:  # `workers:` left empty is absent
        assert load_config(path, environ={}).workers == 0
        return
    with pytest.raises(ConfigError, match="workers: expected a whole number from 1 to 256"):
        load_config(path, environ={})


def test_several_workers_refuse_a_unix_socket_and_checkpoints(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, listen=f"unix:{tmp_path}/x.sock"), environ={})
    check_workers(config, 1)
    with pytest.raises(ConfigError, match="Unix socket, which workers cannot share"):
        check_workers(config, 2)
    with_checkpoints = dataclasses.replace(
        load_config(_config(tmp_path), environ={}), checkpoints=object())  # type: ignore
    with pytest.raises(ConfigError, match="audit.checkpoints signs one audit chain"):
        check_workers(with_checkpoints, 3)


def test_the_restart_back_off_doubles_from_half_a_second_to_thirty() -> None:
    assert [backoff(n) for n in range(0, 9)] == [0, 0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff(10_000) == 30


def _verify(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "audit", "verify",
                           *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)


def test_verify_checks_every_worker_file_of_the_log_it_is_given(tmp_path: Path) -> None:
    base = tmp_path / "audit.log"
    first, second = write_log(worker_log(base, 0), 3), write_log(worker_log(base, 1), 2)
    done = _verify(base)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{first}: ok, 3 lines", f"{second}: ok, 2 lines"]
    edited = lines_of(second)
    edited[0] = edited[0].replace(b"job-0", b"job-9")
    second.write_bytes(b"".join(edited))
    done = _verify(base)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == f"{first}: ok, 3 lines"
    assert done.stdout.splitlines()[1].startswith(f"{second}: line 1: ")


def _allow(session: str) -> str:
    return json.dumps({"decision": "allow", "session_id": session, "token_id": f"t-{session}",
                       "time": "2025-03-04T05:06:07Z", "grant": {"cluster": "prod"}})


def test_the_report_reads_every_worker_file_of_a_log(tmp_path: Path) -> None:
    base = tmp_path / "audit.log"
    worker_log(base, 0).write_text(_allow("s0") + "\n")
    worker_log(base, 1).write_text(_allow("s1") + "\n")
    problems: list[object] = []
    index = read_sessions([base], problems)  # type: ignore[arg-type]
    assert {session.session_id for session in index.sessions()} == {"s0", "s1"}
    assert problems == []


WORKER = textwrap.dedent("""
    import json, os, signal, sys, time
    if os.environ.get("IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(json.dumps({"event": "started", "port": 1, "index": int(sys.argv[1])}), flush=True)
    time.sleep(120)
""")


def _supervisor(script: str = WORKER, ended: list[int] | None = None,
                **env: str) -> Supervisor:
    return Supervisor(lambda index: [sys.executable, "-c", script, str(index)], 2,
                      {**os.environ, **env},
                      on_exit=(ended if ended is not None else []).append)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_killed_worker_is_started_again_and_stop_reaps_every_worker() -> None:
    ended: list[int] = []
    supervisor = _supervisor(ended=ended)
    try:
        assert supervisor.start(timeout=60)["index"] == 0
        first = supervisor.pids()
        assert len(first) == 2 and supervisor.counts() == (2, 0)
        os.kill(first[0], signal.SIGKILL)
        started_at = time.monotonic()

        def replaced() -> bool:
            supervisor.watch()
            pids = supervisor.pids()
            return len(pids) == 2 and first[0] not in pids and supervisor.counts()[0] == 2

        assert poll(replaced, 30, 0.02)
        assert time.monotonic() - started_at >= 0.5  # the back-off was kept
        assert supervisor.pids()[1] == first[1] and supervisor.restarts == 1
        assert ended == [first[0]]
    finally:
        supervisor.stop(grace=10)
    assert not any(_alive(pid) for pid in [*first, *supervisor.pids()])


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    supervisor = _supervisor(IGNORE_TERM="1")
    supervisor.start(timeout=60)
    pids = supervisor.pids()
    started = time.monotonic()
    supervisor.stop(grace=0.5)
    assert time.monotonic() - started < 10
    assert not any(_alive(pid) for pid in pids)


def test_a_worker_that_ends_at_start_fails_the_start_and_stops_the_others() -> None:
    script = "import sys, time\nif sys.argv[1] == '1':\n    sys.exit(3)\ntime.sleep(120)"
    supervisor = _supervisor(script)
    with pytest.raises(WorkerStartError) as failed:
        supervisor.start(timeout=60)
    assert (failed.value.index, failed.value.status) == (1, 3)
    assert supervisor.pids() == [] or not any(_alive(pid) for pid in supervisor.pids())


class _Readiness:
    def __init__(self) -> None:
        self.unmet: frozenset[str] = frozenset({"started"})


class _Running:
    """What `serve_as_worker` reads of a RunningExchanger."""

    def __init__(self) -> None:
        self.readiness, self.port, self.ca_file = _Readiness(), 4321, None
        self.discovery_port, self.http_public_url = 0, ""


class _Lines(io.StringIO):
    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


def test_a_worker_reports_started_then_each_readiness_change_and_stops_when_asked() -> None:
    running, out, stopping = _Running(), _Lines(), threading.Event()
    thread = threading.Thread(target=serve_as_worker,
                              args=(running, stopping, out, os.getppid()))
    thread.start()
    try:
        assert poll(lambda: len(out.lines()) == 1, 10, 0.01)
        running.readiness.unmet = frozenset()
        assert poll(lambda: len(out.lines()) == 2, 10, 0.01)
    finally:
        stopping.set()
        thread.join(10)
    assert not thread.is_alive()
    started, ready = out.lines()
    assert started == {"event": "started", "pid": os.getpid(), "port": 4321, "ca_file": "",
                       "discovery_port": 0, "http_public_url": "", "ready": False}
    assert ready == {"event": "ready", "ready": True}


def test_a_worker_whose_parent_is_gone_stops_by_itself() -> None:
    out = _Lines()
    thread = threading.Thread(target=serve_as_worker,
                              args=(_Running(), threading.Event(), out, os.getppid() + 1))
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and len(out.lines()) == 1


def test_the_parent_reserves_a_port_for_its_workers_and_refuses_one_in_use() -> None:
    address, holder = reserve("127.0.0.1:0")
    assert holder is not None
    try:
        port = int(address.rpartition(":")[2])
        assert address == f"127.0.0.1:{port}" and port > 0
        with socket.socket() as worker:  # a worker joins it with SO_REUSEPORT
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            with pytest.raises(OSError):  # and a second kubegate is refused
                reserve(address)
    finally:
        holder.close()
    assert reserve("unix:/run/x.sock") == ("unix:/run/x.sock", None)
    assert reserve("") == ("", None)


def test_verify_checks_a_worker_file_named_and_found_beside_its_log_once(
    tmp_path: Path,
) -> None:
    base = write_log(tmp_path / "audit.log", 1)
    first = write_log(worker_log(base, 0), 2)
    done = _verify(base, first)  # what `kubegate audit verify state/*.log` passes
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{base}: ok, 1 line", f"{first}: ok, 2 lines"]
