"""cluster cost: what a call costs one callfork worker, in CPU, as a cluster node (records and
webhook outbox in PostgreSQL, live registry in Redis) against the same worker on its own SQLite,
at one offered rate both can carry, so the cluster engines' part of a call can be followed.

Each row is one open-loop calls row (bench/calls.py run_row) of one worker on the lean switch
(bench/workers.py CallsRig): callfork's CPU per call, and for the cluster rows the CPU of
redis-server and PostgreSQL (bench/workers.py Engines) per call. The stores alternate row by row,
ROUNDS times, so both see the same load from the rest of the machine; the table gives each row and
the ratio cluster / SQLite of the medians.

`--base DIR` measures an older tree too (DIR holds a whole checkout, e.g. from `git archive <commit>
| tar -x -C DIR`; its children run from DIR through CALLFORK_BENCH_OVERLAY, as bench/harness_cost.py
does), alternating with this one, and the table adds the ratio this / base per store.
`python -m bench cluster-cost [--base DIR] [--duration S]`.
"""
from __future__ import annotations

import json
import statistics

from bench import calls, workers
from bench.harness_cost import _tree

RATE = 30          # calls/s: far below what one worker carries with either store (BENCHMARKS.md)
ROUNDS = 2


def one_row(engines, store: str, rate: float, duration: float, tree: str | None) -> dict:
    with _tree(tree):
        rig = workers.CallsRig(1, engines.urls() if store == workers.CLUSTER else None)
    try:
        rig.switch.call("run", timeout=120, mode="closed", value=5, duration=1.5)   # warm-up
        rig.wait_idle()
        e0 = engines.cpu()
        r = calls.run_row(rig, "open", rate, duration)
        r["engine_ms_call"] = (engines.cpu() - e0) / max(1, r["placed"]) * 1e3 if store == workers.CLUSTER else None
    finally:
        rig.close()
    r["store"] = store
    return r


def _median(rows: list, tree: str, store: str, key: str):
    values = [r[key] for r in rows if r["tree"] == tree and r["store"] == store and r.get(key) is not None]
    return statistics.median(values) if values else None


def table(rows: list, trees: list, rate: float, duration: float) -> str:
    lines = [f"**cluster cost: one worker, lean switch, {rate:g} calls/s open loop, {duration:g} s per row, "
             f"{ROUNDS} rounds, stores (and trees) alternating row by row**", "",
             "| tree | store | ok/placed | achieved CPS | overhead p99 ms | callfork CPU ms/call | "
             "Redis+PostgreSQL CPU ms/call |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        engine = "-" if r["engine_ms_call"] is None else f"{r['engine_ms_call']:.2f}"
        lines.append(f"| {r['tree']} | {r['store']} | {r['ok']}/{r['placed']} | {calls._f(r['cps'])} | "
                     f"{calls._f(r['over_p99'])} | {r['cpu_ms_call']:.2f} | {engine} |")
    lines += ["", "| tree | callfork ms/call, SQLite (median) | cluster (median) | cluster / SQLite | "
              "Redis+PostgreSQL ms/call (median) |", "|---|---|---|---|---|"]
    for tree, _ in trees:
        lite = _median(rows, tree, workers.SQLITE, "cpu_ms_call")
        pg = _median(rows, tree, workers.CLUSTER, "cpu_ms_call")
        eng = _median(rows, tree, workers.CLUSTER, "engine_ms_call")
        ratio = f"**{pg / lite:.2f}x**" if lite and pg else "-"
        lines.append(f"| {tree} | {calls._f(lite, '.2f')} | {calls._f(pg, '.2f')} | {ratio} | {calls._f(eng, '.2f')} |")
    if len(trees) == 2:
        lines += ["", "| store | this / base, callfork CPU per call | this / base, Redis+PostgreSQL CPU per call |",
                  "|---|---|---|"]
        for store in (workers.SQLITE, workers.CLUSTER):
            a, b = _median(rows, "base", store, "cpu_ms_call"), _median(rows, "this", store, "cpu_ms_call")
            ea, eb = _median(rows, "base", store, "engine_ms_call"), _median(rows, "this", store, "engine_ms_call")
            lines.append(f"| {store} | {b / a:.2f}x | {'-' if not ea else f'{eb / ea:.2f}x'} |")
    return "\n".join(lines)


def run(quick: bool = False, duration: float | None = None, base: str | None = None, log=print) -> list:
    duration = duration or (6.0 if quick else 10.0)
    trees = [("base", base), ("this", None)] if base else [("this", None)]
    rows = []
    engines = workers.Engines()
    try:
        for _ in range(ROUNDS):
            for name, tree in trees:
                for store in (workers.SQLITE, workers.CLUSTER):
                    log(f"cluster cost: {store}, {name} tree, {RATE} CPS for {duration:g} s")
                    r = one_row(engines, store, RATE, duration, tree)
                    r["tree"] = name
                    log("  " + json.dumps({k: r.get(k) for k in ("ok", "placed", "cps", "over_p99", "cpu_ms_call",
                                                                 "engine_ms_call")}, default=str))
                    rows.append(r)
    finally:
        engines.close()
    t = table(rows, trees, RATE, duration)
    log(t + "\n")
    return [("cluster cost", t, rows)]
