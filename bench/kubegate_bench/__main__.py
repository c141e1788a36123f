"""`python -m kubegate_bench [--quick | --smoke] [--only 1,3] [--out DIR] [--profile]`:
run the benchmarks, print the table, write DIR/results.json and DIR/bench.png.

Order: the in-process ones (4, 2), the self-issued load (1), scale (7), exec plugin (8), the
audit report over a large log (14), kubegate against its peer Dex with a Go load generator (15),
then the ones that need the real control plane (3, 5, 9, 13), then memory (6, from what 1 and 5
recorded). A benchmark that breaks is reported as an error and the rest still run; the exit
status is 1 then. Missing a target is a result, not an error.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from kubegate_bench import (
    b1_throughput,
    b2_verify,
    b3_tokenrequest,
    b4_mappings,
    b5_sidecar,
    b6_memory,
    b7_scale,
    b8_exec_cache,
    b9_trustmappings,
    b10_people_plugin,
    b11_https,
    b12_tracing,
    b13_session_index,
    b14_audit_report,
    b15_peer,
    b17_gateway,
    kube_env,
    report,
)
from kubegate_bench.common import SIZES, Context, Mode, Outcome

ALL = ("4", "2", "12", "1", "7", "8", "10", "11", "14", "15", "3", "5", "9", "13", "17", "6")
NEEDS_CLUSTER = ("3", "5", "9", "13", "17")
TITLES = {"1": b1_throughput.TITLE, "2": b2_verify.TITLE, "3": b3_tokenrequest.TITLE,
          "4": b4_mappings.TITLE, "5": b5_sidecar.TITLE, "6": b6_memory.TITLE,
          "7": b7_scale.TITLE, "8": b8_exec_cache.TITLE, "9": b9_trustmappings.TITLE,
          "10": b10_people_plugin.TITLE, "11": b11_https.TITLE, "12": b12_tracing.TITLE,
          "13": b13_session_index.TITLE, "14": b14_audit_report.TITLE,
          "15": b15_peer.TITLE, "17": b17_gateway.TITLE}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "out"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small sizes: under two minutes")
    sizes.add_argument("--smoke", action="store_true",
                       help="a handful of iterations each: checks the plumbing only")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the servers of benchmark 1 at the top concurrency "
                        "(and an audit-fsync-off diagnosis); summaries in OUT/profile-*.txt")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    mode: Mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    selected = [b for b in ALL if not args.only or b in args.only.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kubegate-bench-"))
    ctx = Context(mode=mode, sizes=SIZES[mode], work=work, out=args.out, profile=args.profile)
    started = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    env: kube_env.KubeEnv | None = None
    env_error = ""
    try:
        for bench in selected:
            if bench in NEEDS_CLUSTER and env is None and not env_error:
                env, env_error = _kube_env(work)
            outcomes[bench] = _run(bench, functools.partial(_dispatch, bench, ctx, env,
                                                            env_error, outcomes))
    finally:
        if env is not None:
            env.stop()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    print(f"\nkubegate benchmarks ({mode}, {seconds:.0f} s)\n")
    print(report.table(outcomes))
    report.write_json(args.out / "results.json", mode, outcomes, seconds)
    from kubegate_bench import plot

    plot.draw(outcomes, args.out / "bench.png", f"kubegate benchmarks ({mode} run)")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'bench.png'}")
    if args.keep_work:
        print(f"scratch folder kept: {work}")
    return 1 if any(o.error for o in outcomes.values()) else 0


def _kube_env(work: Path) -> tuple[kube_env.KubeEnv | None, str]:
    print("starting the control plane (etcd, kube-apiserver) ...", flush=True)
    try:
        return kube_env.start(work), ""
    except Exception:
        return None, traceback.format_exc()


def _dispatch(bench: str, ctx: Context, env: kube_env.KubeEnv | None, env_error: str,
              outcomes: dict[str, Outcome]) -> Outcome:
    if bench in NEEDS_CLUSTER:
        if env is None:
            raise RuntimeError(f"no control plane: {env_error.strip().splitlines()[-1]}")
        kube_runs = {"3": b3_tokenrequest.run, "5": b5_sidecar.run, "9": b9_trustmappings.run,
                     "13": b13_session_index.run, "17": b17_gateway.run}
        return kube_runs[bench](ctx, env)
    if bench == "6":
        return b6_memory.run(ctx, outcomes)
    runs: dict[str, Callable[[Context], Outcome]] = {
        "1": b1_throughput.run, "2": b2_verify.run, "4": b4_mappings.run, "7": b7_scale.run,
        "8": b8_exec_cache.run, "10": b10_people_plugin.run, "11": b11_https.run,
        "12": b12_tracing.run, "14": b14_audit_report.run, "15": b15_peer.run}
    return runs[bench](ctx)


def _run(bench: str, call: Callable[[], Outcome]) -> Outcome:
    print(f"[{bench}] {TITLES[bench]} ...", flush=True)
    started = time.monotonic()
    try:
        outcome = call()
    except Exception:
        outcome = Outcome(bench=bench, title=TITLES[bench], error=traceback.format_exc())
        print(outcome.error, file=sys.stderr, flush=True)
    outcome.seconds = time.monotonic() - started
    print(f"[{bench}] done in {outcome.seconds:.1f} s", flush=True)
    return outcome


if __name__ == "__main__":
    sys.exit(main())
