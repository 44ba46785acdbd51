"""stream-start benchmark: `StreamSession.start()` begins -> the app receives `start` (BENCHMARKS.md, target:
<= 50 ms p99, loopback).

`count` sequential starts (one every `interval` s, each stream stopped `hold` s later), with the
same three processes as the relay benchmark: the relay worker times `start()` (CLOCK_MONOTONIC) and
the sink timestamps the `start` message's arrival. What a start includes: the WebSocket connect to
the app (TCP + HTTP upgrade, websockets' ClientProtocol), registering with the relay, the `uuid_audio_fork`
api round trip to the FreeSWITCH stand-in, mod_audio_fork's connect + upgrade to the relay (token
check, subprotocol), and the `start` message through the app writer.
Second row: the same while `background` other streams relay audio (8 kHz, one-way).
"""
from __future__ import annotations

import time

from bench import common

COUNT = 200


def run_case(count: int, background: int = 0, interval: float = 0.03, hold: float = 0.3) -> dict:
    from bench.relay import Rig

    rig = Rig()
    try:
        rig.loadgen.call("go")  # forks send audio as soon as they connect
        if background:
            st = rig.relay.call("start", timeout=300, n=background, sink_url=rig.sink_url, prefix="bg")
            time.sleep(1.0)
        r = rig.relay.call("starts", timeout=600, count=count, sink_url=rig.sink_url, interval=interval,
                           hold=hold)
        time.sleep(0.3)
        arrived = rig.sink.call("stats")["start_at"]
        to_app = [(arrived[sid] - t0) / 1e6 for sid, t0 in r["begin"].items() if sid in arrived]
        returned = [(r["returned"][sid] - t0) / 1e6 for sid, t0 in r["begin"].items() if sid in r["returned"]]
        p = common.pct(to_app, (50, 99, 100))
        q = common.pct(returned, (50, 99, 100))
        if background:
            rig.loadgen.call("stop_all")
            rig.relay.call("stop_all", timeout=120)
        return {"count": count, "background": background, "arrived": len(to_app), "failed": r["failed"],
                "errors": r["errors"], "p50": p[0], "p99": p[1], "max": p[2], "ret_p50": q[0],
                "ret_p99": q[1], "ret_max": q[2]}
    finally:
        rig.close()


def table(rows: list, title: str) -> str:
    head = ["streams running meanwhile", "starts", "start msg at app p50 ms", "p99 ms", "max ms",
            "start() returns p50 ms", "p99 ms", "failed"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        lines.append("| " + " | ".join([str(r["background"]), f"{r['arrived']}/{r['count']}", f(r["p50"]),
                                         f(r["p99"]), f(r["max"]), f(r["ret_p50"]), f(r["ret_p99"]),
                                         str(r["failed"])]) + " |")
    return "\n".join(lines)


def run(quick: bool = False, log=print) -> list:
    count = 100 if quick else COUNT
    rows = []
    for bg in ((0, 50) if quick else (0, 100)):
        log(f"stream-start: {count} sequential starts, {bg} streams running meanwhile")
        try:
            rows.append(run_case(count, background=bg))
        except Exception as exc:  # noqa: BLE001
            log(f"  ! failed: {exc!r}")
            continue
        log("  " + str({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items()}))
    t = table(rows, "stream start: StreamSession.start() -> `start` at the app (loopback)")
    log(t + "\n")
    return [("stream-start", t, rows)]
