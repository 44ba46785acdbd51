"""harness cost: what the benchmarks' own stand-ins take of the machine, per unit of work, so a change
to them can be measured and the workers benchmark's bound (bench/workers.py) can be read.

- relay harness, per frame: the load generator's (bench/common.py LoadGen, the FreeSWITCH +
  mod_audio_fork stand-in) CPU over the window / frames it sent in the window, and the sink's
  (bench/common.py Sink, the app) CPU / frames it received from the window; one relay row
  (bench/relay.py run_one: callfork's relay, 8 kHz one-way) per N;
- calls harness, per call: the lean switch's (bench/lean_switch.py) CPU / calls placed, and the app's
  (bench/calls.py App) CPU / calls placed; one open-loop calls row (bench/calls.py run_row) per rate.

`--base DIR` measures an older copy of bench/ too (DIR holds bench/, e.g. from
`git archive <commit> bench tests/fixtures/fs-captures | tar -x -C DIR`: the lean switch reads its capture from there; its children run from DIR through
CALLFORK_BENCH_OVERLAY, everything else from this tree): the two trees alternate row by row in one
run, so both see the same load from the rest of the machine. `python -m bench harness [--base DIR]`.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager

from bench import calls, relay

SIZES = (200, 500)
RATES = (100, 200)


@contextmanager
def _tree(base: str | None):
    """Children started inside run from `base`'s bench/ (None: this tree)."""
    old = os.environ.get("CALLFORK_BENCH_OVERLAY")
    if base:
        os.environ["CALLFORK_BENCH_OVERLAY"] = base
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CALLFORK_BENCH_OVERLAY", None)
        else:
            os.environ["CALLFORK_BENCH_OVERLAY"] = old


def relay_cost(n: int, duration: float, base: str | None = None, log=print) -> dict:
    with _tree(base):
        r = relay.run_one(n, rate=8000, duration=duration, warmup=1.5, log=log)
    wall = r["wall"]
    return {"n": n, "lost": r["lost"], "sent": r["sent"], "lat_p99": r["lat_p99"],
            "gen_us_frame": r["gen_core"] * wall / r["sent"] * 1e6 if r["sent"] else None,
            "sink_us_frame": r["sink_core"] * wall / r["received"] * 1e6 if r["received"] else None,
            "relay_us_frame": r["cpu_us_frame"], "other_core": r["other_core"]}


def calls_cost(rate: float, duration: float, base: str | None = None, log=print) -> dict:
    with _tree(base):
        rig = calls.Rig(switch="lean")
    try:
        rig.switch.call("run", timeout=120, mode="closed", value=5, duration=1.5)   # warm-up
        rig.wait_idle()
        r = calls.run_row(rig, "open", rate, duration)
    finally:
        rig.close()
    placed = r["placed"] or 1
    return {"rate": rate, "ok": r["ok"], "placed": r["placed"], "sw_ms_call": r["sw_ms_call"],
            "app_ms_call": r["app_core"] * r["wall"] / placed * 1e3, "cf_ms_call": r["cpu_ms_call"],
            "other_core": r["other_core"]}


def _f(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def table(relay_rows: list, calls_rows: list, base: str | None, duration: float) -> str:
    lines = [f"**harness cost per frame and per call** (relay rows: callfork's relay, 8 kHz one-way, {duration:.0f} s "
             f"window; calls rows: open loop, lean switch, {duration:.0f} s"
             + (f"; `base` = bench/ from {base}, rows interleaved with this tree's" if base else "") + ")", "",
             "| tree | relay N | lost | loadgen us/frame | sink us/frame | harness us/frame | relay us/frame | "
             "other load (cores) |", "|---|---|---|---|---|---|---|---|"]
    for r in relay_rows:
        h = (r["gen_us_frame"] or 0) + (r["sink_us_frame"] or 0)
        lines.append(f"| {r['tree']} | {r['n']} | {r['lost']} of {r['sent']} | {_f(r['gen_us_frame'])} | "
                     f"{_f(r['sink_us_frame'])} | {h:.2f} | {_f(r['relay_us_frame'])} | {_f(r['other_core'])} |")
    lines += ["", "| tree | offered CPS | ok/placed | switch ms/call | app ms/call | harness ms/call | "
                  "callfork ms/call | other load (cores) |", "|---|---|---|---|---|---|---|---|"]
    for r in calls_rows:
        h = (r["sw_ms_call"] or 0) + (r["app_ms_call"] or 0)
        lines.append(f"| {r['tree']} | {r['rate']:g} | {r['ok']}/{r['placed']} | {_f(r['sw_ms_call'])} | "
                     f"{_f(r['app_ms_call'])} | {h:.2f} | {_f(r['cf_ms_call'])} | {_f(r['other_core'])} |")
    return "\n".join(lines)


def run(quick: bool = False, duration: float | None = None, base: str | None = None, log=print) -> list:
    duration = duration or (4.0 if quick else 6.0)
    trees = [("base", base), ("this", None)] if base else [("this", None)]
    relay_rows, calls_rows = [], []
    for n in SIZES:
        for name, tree in trees:
            log(f"harness: relay N={n}, {name} tree")
            r = relay_cost(n, duration, tree, log)
            r["tree"] = name
            log("  " + json.dumps(r, default=str))
            relay_rows.append(r)
    for rate in RATES:
        for name, tree in trees:
            log(f"harness: calls {rate} CPS, {name} tree")
            r = calls_cost(rate, duration, tree, log)
            r["tree"] = name
            log("  " + json.dumps(r, default=str))
            calls_rows.append(r)
    t = table(relay_rows, calls_rows, base, duration)
    log(t + "\n")
    return [("harness", t, relay_rows + calls_rows)]
