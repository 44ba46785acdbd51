"""memory benchmark: resident memory of the callfork process per live call and per live stream.

The processes of the calls benchmark (bench/calls.py: switch = simulator + driver, callfork = the
Service, app = the HTTP app) plus bench/common.py's WebSocket sink. VmRSS of the callfork process
(/proc/self/status, read by the process itself, after a `gc.collect()`; the median of 5 readings
over 1 s):
- idle (after a warm-up of a few calls of each kind, so imports and caches are loaded);
- with K live calls parked in `<Speak>x</Speak><Wait length="3600"/>` (answered, waiting);
- with K live one-way streams: `<Stream keepCallAlive="true">ws://sink/...</Stream>`: the
  simulator's mod_audio_fork emulation forks the call's audio (8 kHz L16, 50 frames/s) to callfork's
  relay, which sends Vobiz `media` messages to the sink.
MB per call / per stream = the least-squares slope of RSS over K (the idle point included). After
each series every call is hung up and the RSS read again ("after": what is not given back).
"""
from __future__ import annotations

import json
import time

from bench.calls import Rig

WAIT_DOC = '<Response><Speak>x</Speak><Wait length="3600"/></Response>'
STREAM_DOC = '<Response><Stream keepCallAlive="true">{url}</Stream></Response>'
KS = (50, 200)
QUICK_KS = (50, 200)


def _rss(rig: Rig, n: int = 5, every: float = 0.2) -> float:
    vals = []
    for _ in range(n):
        vals.append(rig.callfork.call("gc")["rss_kb"] / 1024)
        time.sleep(every)
    vals.sort()
    return vals[len(vals) // 2]


def _slope(points: list) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(k for k, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((k - mx) ** 2 for k, _ in points)
    return sum((k - mx) * (v - my) for k, v in points) / den if den else None


def _wait_for(pred, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(every)


def series(rig: Rig, kind: str, to: str, ks, settle: float, log=print) -> dict:
    rig.wait_idle()
    idle = _rss(rig)
    points = [(0, idle)]
    live = 0
    detail = []
    for k in ks:
        rig.switch.call("place", timeout=300, k=k - live, to=to, rate=50.0)
        live = k
        if kind == "stream":
            ok = _wait_for(lambda: rig.callfork.call("state")["streams"] >= k, 60)
        else:
            ok = _wait_for(lambda: rig.switch.call("live")["executing"] >= k, 60)
        time.sleep(settle)
        s0, w0 = rig.callfork.call("state"), rig.switch.call("cpu")
        rss = _rss(rig)
        s1, w1 = rig.callfork.call("state"), rig.switch.call("cpu")
        wall = (s1["t_ns"] - s0["t_ns"]) / 1e9
        row = {"k": k, "rss_mb": rss, "calls": s1["calls"], "streams": s1["streams"], "reached": bool(ok),
               "cores": ((s1["user"] - s0["user"]) + (s1["sys"] - s0["sys"])) / wall,
               "switch_cores": ((w1["user"] - w0["user"]) + (w1["sys"] - w0["sys"])) / wall,
               "fps_per_stream": ((s1["frames_in"] - s0["frames_in"]) / wall / k) if kind == "stream" else None}
        detail.append(row)
        points.append((k, rss))
        log("  " + json.dumps({a: (round(b, 2) if isinstance(b, float) else b) for a, b in row.items()}))
    rig.switch.call("hangup_all", timeout=120)
    rig.wait_idle()
    after = _rss(rig)
    return {"kind": kind, "idle": idle, "points": points, "detail": detail, "after": after,
            "slope_mb": _slope(points)}


def table(results: list, title: str) -> str:
    head = ["what", "idle RSS MB", "RSS at K (MB)", "MB per item (slope)", "KB per item", "callfork / switch cores at max K",
            "after hangup MB"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        at = ", ".join(f"K={d['k']}: {d['rss_mb']:.1f}" + ("" if d["reached"] else " (not all up)")
                       + (f" ({d['fps_per_stream']:.0f} frames/s/stream)" if d["fps_per_stream"] is not None else "")
                       for d in r["detail"])
        what = "live calls in `<Wait>`" if r["kind"] == "call" else "live calls each with a one-way `<Stream>`"
        s = r["slope_mb"]
        lines.append("| " + " | ".join([what, f"{r['idle']:.1f}", at, "-" if s is None else f"{s:.3f}",
                                         "-" if s is None else f"{s * 1024:.0f}",
                                         f"{r['detail'][-1]['cores']:.2f} / {r['detail'][-1]['switch_cores']:.2f}"
                                         if r["detail"] else "-",
                                         f"{r['after']:.1f}"]) + " |")
    if len(results) == 2 and all(r["slope_mb"] is not None for r in results):
        extra = results[1]["slope_mb"] - results[0]["slope_mb"]
        lines.append("")
        lines.append(f"A stream's own share (stream call - parked call): **{extra * 1024:.0f} KB per stream**; "
                     f"a parked call: **{results[0]['slope_mb'] * 1024:.0f} KB per call**.")
    return "\n".join(lines)


def run(quick: bool = False, ks=None, log=print) -> list:
    ks = tuple(ks or (QUICK_KS if quick else KS))
    settle = 2.0 if quick else 4.0
    results = []
    for kind, to in (("call", "2000"), ("stream", "3000")):
        # a fresh set of processes per series: the first series' high-water mark (memory the
        # allocator keeps after its calls ended) would otherwise hide the second one's growth
        log(f"memory: live {kind}s, K = {', '.join(map(str, ks))} (fresh processes, warm-up: 5 {kind}s)")
        rig = Rig(numbers={"2000": "/answer-wait", "3000": "/answer-stream"}, sink=True)
        try:
            rig.app.call("doc", path="/answer-wait", text=WAIT_DOC)
            rig.app.call("doc", path="/answer-stream", text=STREAM_DOC.format(url=rig.sink.info["url"] + "/mem"))
            rig.switch.call("place", timeout=60, k=5, to=to, rate=50.0)
            time.sleep(2.0)
            rig.switch.call("hangup_all", timeout=60)
            results.append(series(rig, kind, to, ks, settle, log=log))
        except Exception as exc:  # noqa: BLE001 - one broken series must not lose the other
            log(f"  ! failed: {exc!r}")
        finally:
            rig.close()
    t = table(results, "memory: VmRSS of the callfork process, idle and with K live calls / streams")
    log(t + "\n")
    return [("memory", t, results)]
