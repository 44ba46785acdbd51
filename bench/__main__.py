"""python -m bench [relay|stream-start|calls|memory|latency|http|workers|all|harness|cluster-cost] [--record] [--quick] [--duration S]
                   [--sizes 50,200] [--switch lean|sim] [--base DIR] [--core-quota Q]

Benchmarks, not tests: they print tables; `--record` appends them to BENCHMARKS.md with the date,
the machine and the git commit. Every run stops by itself (bounded loops, 127.0.0.1 only).
Child-process logs go to $CALLFORK_BENCH_LOGS (default /tmp/callfork-bench).
"""
from __future__ import annotations

import argparse
import sys
import time

from bench import common


def _relay(args):
    from bench import relay

    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
    return relay.run(quick=args.quick, duration=args.duration, sizes=sizes, all_sizes=args.all_sizes)


def _calls(args):
    from bench import calls

    return calls.run(quick=args.quick, duration=args.duration, all_sizes=args.all_sizes, switch=args.switch)


def _memory(args):
    from bench import memory

    return memory.run(quick=args.quick)


def _latency(args):
    from bench import latency

    return latency.run(quick=args.quick)


def _http(args):
    from bench import http_keepalive

    return http_keepalive.run(quick=args.quick)


def _workers(args):
    from bench import workers

    # in `all` (make bench) its quick form: the full ladders would add minutes to the run; and the
    # per-core scaling ladders at ALL_CORE_QUOTA (skipped with a line where no CPU cgroup can be made)
    quota = args.core_quota if args.core_quota is not None else (ALL_CORE_QUOTA if args.which == "all" else None)
    return workers.run(quick=args.quick or args.which == "all", duration=args.duration, core_quota=quota)


ALL_CORE_QUOTA = 0.4


def _harness(args):
    from bench import harness_cost

    return harness_cost.run(quick=args.quick, duration=args.duration, base=args.base)


def _cluster_cost(args):
    from bench import cluster_cost

    return cluster_cost.run(quick=args.quick, duration=args.duration, base=args.base)


def _stream_start(args):
    from bench import stream_start

    return stream_start.run(quick=args.quick)


# name -> runner(args) -> [(title, markdown table, rows)]
BENCHMARKS = {
    "relay": _relay,
    "stream-start": _stream_start,
    "calls": _calls,
    "memory": _memory,
    "latency": _latency,
    "http": _http,
    "workers": _workers,
}
# run only when named (not by `all`): the benchmarks' own harness, and an A/B of the cluster engines'
# cost per call (`--base`), which `workers` already covers in its Redis+PG rows
EXTRA = {"harness": _harness, "cluster-cost": _cluster_cost}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="callfork benchmarks (see BENCHMARKS.md)")
    p.add_argument("which", nargs="?", default="all", choices=["all", *BENCHMARKS, *EXTRA])
    p.add_argument("--record", action="store_true", help="append the tables to BENCHMARKS.md")
    p.add_argument("--quick", action="store_true",
                   help="fewer sizes, shorter windows (relay --quick: about 2 min, 45 s of it I/O floor rows)")
    p.add_argument("--duration", type=float, default=None,
                   help="relay, workers: measurement window per N (s); calls, cluster-cost: seconds per row")
    p.add_argument("--sizes", default=None, help="relay: comma-separated N (default 50,100,200,500,1000)")
    p.add_argument("--all-sizes", action="store_true",
                   help="relay/calls: run every N (offered rate) even after a smaller one was already overloaded (slow)")
    p.add_argument("--switch", choices=["lean", "sim"], default="lean",
                   help="calls: the FreeSWITCH stand-in: lean = bench/lean_switch.py (captured frames, 2-3 ms "
                        "CPU per call, first app at once), sim = the simulator (switch_sim, 8-11 ms per call, "
                        "0-20 ms park tick); memory always uses the simulator")
    p.add_argument("--base", default=None,
                   help="harness, cluster-cost: a directory holding an older tree (bench/; for cluster-cost the "
                        "whole checkout) to measure beside this one, row by row")
    p.add_argument("--core-quota", type=float, default=None, metavar="Q",
                   help="workers: also the scaling ladders with every worker process held to Q cores by a CFS "
                        "quota (cgroup; skipped with a note where none can be made), in a table of their own; "
                        "`all` (make bench) runs them at 0.4 unless this is given")
    args = p.parse_args(argv)
    names = list(BENCHMARKS) if args.which == "all" else [args.which]
    info = common.machine()
    print(f"callfork bench: {info['date']}, {info['cores']} cores ({info['cpu']}), Python {info['python']}, "
          f"commit {info['commit']}, load average {info['loadavg']:.2f}", flush=True)
    t0 = time.monotonic()
    results = []
    for name in names:
        results += {**BENCHMARKS, **EXTRA}[name](args)
    elapsed = time.monotonic() - t0
    print(f"done in {elapsed:.0f} s")
    if args.record:
        path = common.ROOT / "BENCHMARKS.md"
        with open(path, "a") as f:
            f.write(f"\n### Run {info['date']}: `python -m bench {' '.join(argv or sys.argv[1:])}`\n\n")
            f.write(f"{info['cores']} cores ({info['cpu']}), Python {info['python']}, commit {info['commit']}, "
                    f"load average at start {info['loadavg']:.2f}, {elapsed:.0f} s.\n\n")
            for _title, table, _rows in results:
                f.write(table + "\n\n")
        print(f"recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
