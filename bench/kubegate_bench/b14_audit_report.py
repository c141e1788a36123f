"""Benchmark 14: `kubegate audit report` over a large Kubernetes audit log, streamed.

The log is generated: audit.k8s.io/v1 JSON lines shaped like the ones the tests' real
kube-apiserver writes (watches in two stages, lease updates by the controller manager, the
kubelet's status patches, controllers' service accounts), with 2% of the events made by
kubegate credentials (a ServiceAccount token whose jti is in a matching kubegate audit log:
deployments, pods, logs, an exec and a Secret read now and then, a refused request), and
bypasses: an admin client certificate, a legacy token Secret, a token kubegate did not issue
for the account it grants; one line cut short. Full run about 1 GB (about a million events),
quick 100 MB, smoke 3 MB.

Measured: `kubegate audit report --kubegate-log K --cluster-log F -o json --out R` as its
own process: wall time and peak RSS (VmHWM of /proc/PID/status, polled). Baseline, same run,
same file: `jq -c` selecting the same events (the last stage of requests whose credential id
is one kubegate issued; each line parsed on its own, `-R` and `fromjson?`, so the cut line is
skipped as the report skips it), output to a file; the selection count is checked against
the report's. Targets: RSS < 300 MiB and report time at most 1.5x jq's. Without jq the
baseline row says so (bench/run installs Debian's jq when it can).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from kubegate_bench.common import Context, Outcome, Row
from kubegate_bench.procs import KUBEGATE, peak_rss_mib

TITLE = "audit report over a large Kubernetes audit log (streamed)"
TARGET_BYTES = {"full": 1_000_000_000, "quick": 100_000_000, "smoke": 3_000_000}
MAX_RSS_MIB, MAX_TO_JQ = 300.0, 1.5
KUBEGATE_SHARE = 50  # one event in 50 is a kubegate credential's
SESSION_SECONDS = 900
START = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
DAY = 86_400.0
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
KUBECTL = "kubectl/v1.37.2 (linux/amd64) kubernetes/$Format"


def run(ctx: Context) -> Outcome:
    outcome = Outcome(bench="14", title=TITLE)
    folder = ctx.work / "b14"
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = generate(folder, TARGET_BYTES[ctx.mode])
    generated = time.perf_counter() - started
    report = _timed([*KUBEGATE, "audit", "report", "--kubegate-log", str(log.kubegate_log),
                     "--cluster-log", str(log.cluster_log), "-o", "json",
                     "--out", str(folder / "report.json")], stdout=folder / "report.stdout")
    document = json.loads((folder / "report.json").read_text())
    joined = int(document["counts"]["joined"])
    jq = _jq(folder, log)
    size_mb = log.bytes / 1e6
    facts = (f"{size_mb:,.0f} MB, {log.events:,} events ({joined:,} by {log.sessions} "
             f"kubegate sessions), {len(document['findings'])} findings, "
             f"{len(document['problems'])} problems; generated in {generated:.0f} s")
    outcome.rows += [
        Row(bench="14", name="audit report, peak RSS", value=report.peak_rss_mib, unit="MiB",
            check="value<=", target=MAX_RSS_MIB, note=facts),
        _time_row(report, jq, joined),
        Row(bench="14", name="audit report, throughput", value=log.events / report.seconds,
            unit="events/s", note=f"{size_mb / report.seconds:,.0f} MB/s"),
    ]
    outcome.data["audit_report"] = {"bytes": log.bytes, "events": log.events,
                                    "report_s": report.seconds, "rss_mib": report.peak_rss_mib,
                                    "jq_s": jq.seconds if jq else None}
    return outcome


def _time_row(report: Measured, jq: Measured | None, joined: int) -> Row:
    if jq is None:
        return Row(bench="14", name="audit report, wall time", value=report.seconds * 1000,
                   unit="ms", baseline="jq -c (not installed: no baseline)",
                   note="install jq (apt-get install jq) for the same-run baseline")
    agree = "same selection" if jq.selected == joined else (
        f"SELECTIONS DIFFER: jq {jq.selected:,}, report {joined:,}")
    return Row(bench="14", name="audit report, wall time", value=report.seconds * 1000,
               unit="ms", baseline="jq -c selecting the same events",
               baseline_value=jq.seconds * 1000, check="ratio<=", target=MAX_TO_JQ,
               note=f"{agree}; jq peak RSS {jq.peak_rss_mib:.0f} MiB")


# -- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Measured:
    seconds: float
    peak_rss_mib: float
    selected: int = 0


def _timed(argv: Sequence[str], stdout: Path | None = None) -> Measured:
    """Run argv to its end: wall time, and its peak RSS from /proc/PID/status VmHWM read
    every 10 ms (the high-water mark never falls, so the last read before the exit holds the
    peak unless it came in the last 10 ms). Not wait4's ru_maxrss: Linux carries the RSS of
    the process that forked over exec, so it would report the benchmark runner's size."""
    errors = stdout.with_suffix(".stderr") if stdout else Path(os.devnull)
    with open(stdout or os.devnull, "wb") as sink, open(errors, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), stdout=sink, stderr=err)  # noqa: S603
        peak = 0.0
        while process.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):  # exiting: no memory map
                peak = max(peak, peak_rss_mib(process.pid))
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        text = errors.read_text(errors="replace")[-2000:] if stdout else ""
        raise RuntimeError(f"{argv[0]} exited {process.returncode}: {text}")
    return Measured(seconds=seconds, peak_rss_mib=peak)


def _jq(folder: Path, log: GeneratedLog) -> Measured | None:
    jq = shutil.which("jq")
    if jq is None:
        return None
    ids = json.dumps({f"JTI={token}": True for token in log.token_ids})
    # -R with fromjson?: a line cut short is skipped and jq goes on, as the report does
    program = (f'fromjson? | select(.stage == "ResponseComplete" and '
               f'($ids[(.user.extra["{CREDENTIAL_ID}"] // [])[0] // ""] != null))')
    out = folder / "jq.out"
    measured = _timed([jq, "-c", "-R", "--argjson", "ids", ids, program,
                       str(log.cluster_log)], stdout=out)
    with out.open("rb") as selected:
        count = sum(1 for _ in selected)
    return Measured(seconds=measured.seconds, peak_rss_mib=measured.peak_rss_mib,
                    selected=count)


# -- the logs -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GeneratedLog:
    cluster_log: Path
    kubegate_log: Path
    bytes: int
    events: int  # lines (the cut line included)
    sessions: int
    token_ids: tuple[str, ...]


def generate(folder: Path, target_bytes: int) -> GeneratedLog:
    """A Kubernetes audit log of about `target_bytes` and the kubegate log of its sessions."""
    count = max(2000, target_bytes // 890)  # the events below average about 890 bytes
    sessions = [_session(number, count) for number in range(max(4, count // 1000))]
    kubegate_log = folder / "kubegate-audit.log"
    kubegate_log.write_text("".join(json.dumps(_allow_line(s)) + "\n" for s in sessions))
    cluster_log = folder / "cluster-audit.log"
    with cluster_log.open("w", buffering=1 << 20) as out:
        written = _write_events(out, count, sessions)
    return GeneratedLog(cluster_log=cluster_log, kubegate_log=kubegate_log,
                        bytes=cluster_log.stat().st_size, events=written,
                        sessions=len(sessions), token_ids=tuple(s.token_id for s in sessions))


@dataclass(frozen=True, kw_only=True)
class _Session:
    number: int
    token_id: str
    issued_at: float
    run_id: str
    lifetime: float


def _session(number: int, count: int) -> _Session:
    """Sessions one after the other over the day, each live until the next one is issued
    (at least `SESSION_SECONDS`), so every kubegate event falls in a live session."""
    spacing = DAY / max(4, count // 1000)
    return _Session(number=number, token_id=str(uuid.UUID(int=number + 1)),
                    issued_at=START + number * spacing, run_id=str(9_000_000 + number),
                    lifetime=max(SESSION_SECONDS, spacing + 1))


def _allow_line(session: _Session) -> dict[str, Any]:
    return {"time": _rfc3339(session.issued_at), "decision": "allow", "reason": "OK",
            "status": "OK", "issuer": "github", "role": "web-deploy", "mapping": "web-deploy",
            "caller": {"iss": "https://token.actions.githubusercontent.com",
                       "sub": "repo:octo-org/web:ref:refs/heads/main",
                       "jti": f"gh-{session.number}"},
            "grant": {"cluster": "bench", "namespace": "web", "service_account": "deployer",
                      "user": "", "groups": [], "audiences": [], "lifetime_seconds": 900},
            "token_id": session.token_id, "session_id": f"session-{session.number:06d}",
            "expires_at": _rfc3339(session.issued_at + session.lifetime), "peer": "",
            "detail": "", "trace_id": "",
            "ci": {"run_id": session.run_id, "run_attempt": "1", "sha": "0123abcd" * 5}}


def _write_events(out: TextIO, count: int, sessions: Sequence[_Session]) -> int:
    step = DAY / count
    cut_at = count // 2
    written = 0
    for index, line in enumerate(_events(count, sessions, step)):
        out.write(line[: len(line) // 2] + "\n" if index == cut_at else line + "\n")
        written += 1
    return written


def _events(count: int, sessions: Sequence[_Session], step: float) -> Iterator[str]:
    spacing = DAY / len(sessions)
    for index in range(count):
        t = START + index * step
        if index % KUBEGATE_SHARE == 7:
            session = sessions[min(int((t - START) / spacing), len(sessions) - 1)]
            yield _kubegate_event(index, t, session)
        else:
            yield _other_event(index, t)


def _kubegate_event(index: int, t: float, session: _Session) -> str:
    user = {"username": "system:serviceaccount:web:deployer", "uid": "6c1f7e4e",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:web",
                       "system:authenticated"],
            "extra": {CREDENTIAL_ID: [f"JTI={session.token_id}"]}}
    kind = index // KUBEGATE_SHARE % 20
    if kind == 0:
        return _event(index, t, "create", user, "/api/v1/namespaces/web/pods/web-1/exec"
                      "?command=sh&container=web&stdin=true&stdout=true&tty=true",
                      {"resource": "pods", "namespace": "web", "name": "web-1",
                       "apiVersion": "v1", "subresource": "exec"}, 101, KUBECTL)
    if kind == 1:
        return _event(index, t, "get", user, "/api/v1/namespaces/web/secrets/db-password",
                      {"resource": "secrets", "namespace": "web", "name": "db-password",
                       "apiVersion": "v1"}, 403 if index % 3 else 200, KUBECTL)
    if kind < 8:
        return _event(index, t, "patch", user, "/apis/apps/v1/namespaces/web/deployments/web",
                      {"resource": "deployments", "namespace": "web", "name": "web",
                       "apiGroup": "apps", "apiVersion": "v1"}, 200, KUBECTL)
    return _event(index, t, "list", user, "/api/v1/namespaces/web/pods?limit=500",
                  {"resource": "pods", "namespace": "web", "apiVersion": "v1"}, 200, KUBECTL)


_NODE = {"username": "system:node:worker-3", "groups": ["system:nodes",
                                                         "system:authenticated"]}
_CONTROLLER_MANAGER = {"username": "system:kube-controller-manager",
                       "groups": ["system:authenticated"]}
_REPLICASET = {"username": "system:serviceaccount:kube-system:replicaset-controller",
               "uid": "0d2c8f8e", "groups": ["system:serviceaccounts",
                                             "system:serviceaccounts:kube-system",
                                             "system:authenticated"],
               "extra": {CREDENTIAL_ID: ["JTI=3e1f0c2a-9b7d-4d55-8a36-0f6f6c5b9e21"]}}
_ADMIN = {"username": "admin", "groups": ["system:masters", "system:authenticated"],
          "extra": {CREDENTIAL_ID: ["X509SHA256=a7a29593ac266639e3d9ea70bac08ee95e52d1c974e93"
                                    "7d1f6c0daf05a6b722b"]}}
_LEGACY = {"username": "system:serviceaccount:web:legacy-ci", "uid": "5a0b1c2d",
           "groups": ["system:serviceaccounts", "system:serviceaccounts:web",
                      "system:authenticated"]}
_UNBROKERED = {"username": "system:serviceaccount:web:deployer", "uid": "6c1f7e4e",
               "groups": ["system:serviceaccounts", "system:serviceaccounts:web",
                          "system:authenticated"],
               "extra": {CREDENTIAL_ID: ["JTI=ffffffff-0000-4000-8000-00000000beef"]}}


def _other_event(index: int, t: float) -> str:
    kind = index % 100
    if kind < 30:
        return _event(index, t, "update", _CONTROLLER_MANAGER,
                      "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                      "kube-controller-manager?timeout=5s",
                      {"resource": "leases", "namespace": "kube-system",
                       "name": "kube-controller-manager", "apiGroup": "coordination.k8s.io",
                       "apiVersion": "v1"}, 200,
                      "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/$Format/"
                      "leader-election")
    if kind < 60:
        return _event(index, t, "patch", _NODE, "/api/v1/namespaces/web/pods/web-1/status",
                      {"resource": "pods", "namespace": "web", "name": "web-1",
                       "apiVersion": "v1", "subresource": "status"}, 200,
                      "kubelet/v1.37.2 (linux/amd64) kubernetes/$Format")
    if kind < 96:
        stage = "ResponseStarted" if kind % 2 else "ResponseComplete"
        return _event(index, t, "watch", _REPLICASET,
                      "/apis/apps/v1/replicasets?allowWatchBookmarks=true&resourceVersion="
                      f"{index}&timeout=7m47s&timeoutSeconds=467&watch=true",
                      {"resource": "replicasets", "apiGroup": "apps", "apiVersion": "v1"},
                      200, "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/$Format/"
                      "system:serviceaccount:kube-system:replicaset-controller", stage=stage)
    user = (_ADMIN, _LEGACY, _UNBROKERED, _ADMIN)[kind - 96]
    return _event(index, t, "get", user, "/api/v1/namespaces/web/secrets/db-password",
                  {"resource": "secrets", "namespace": "web", "name": "db-password",
                   "apiVersion": "v1"}, 200, "Python-urllib/3.11")


def _event(index: int, t: float, verb: str, user: dict[str, Any], uri: str,
           ref: dict[str, str], code: int, agent: str, *,
           stage: str = "ResponseComplete") -> str:
    event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
             "auditID": str(uuid.UUID(int=(index << 32) | 0x4000_8000)), "stage": stage,
             "requestURI": uri, "verb": verb, "user": user, "sourceIPs": ["10.0.3.17"],
             "userAgent": agent, "objectRef": ref,
             "responseStatus": {"metadata": {}, "code": code},
             "requestReceivedTimestamp": _rfc3339(t), "stageTimestamp": _rfc3339(t + 0.0021),
             "annotations": {"authorization.k8s.io/decision":
                             "forbid" if code == 403 else "allow",
                             "authorization.k8s.io/reason": ""}}
    return json.dumps(event, separators=(",", ":"))


def _rfc3339(t: float) -> str:
    text = datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"
