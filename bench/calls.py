"""calls benchmark: new calls per second through the answer-URL fetch to the first verb (BENCHMARKS.md, target:
>= 100 calls/s on one core, setup overhead p99 <= 20 ms beyond the app's own response time).

Three processes besides the orchestrator, so `getrusage` of the callfork process is callfork's CPU
and nothing else:

    switch  `--switch lean` (default):         bench/lean_switch.py: a lean FreeSWITCH stand-in
            (python -m bench.lean_switch)       (captured frames, 2-3 ms CPU per call) + the call
                                               driver; it runs the first app at once (no park tick)
            `--switch sim`:                    switch_sim.Simulator in-process + the call driver:
            (python -m bench.calls switch)     it places calls (`place_call`, the same path as
                                               `sim_call`); 8-11 ms CPU per call, 0-20 ms park tick
            Both timestamp, per call: created, the socket to callfork opening (sim: the dialplan's
            `socket` app starting), the first `sendmsg execute` arriving from callfork, the
            CHANNEL_EXECUTE of that app, the end (CHANNEL_HANGUP_COMPLETE)
    callfork (python -m bench.calls callfork)  callfork.service.Service, the real thing (config ->
                                               start(), then freeze_startup_heap()), logging at INFO
                                               to a file, as `callfork serve`
    app     (python -m bench.calls app)        a small gevent HTTP/1.1 keep-alive server: answers
                                               /answer with a fixed document and timestamps, per
                                               CallUUID, the first byte of the request and the end
                                               of its response (the app's own time); 200 to the rest
                                               (hangup webhooks)

Per call: overhead = (first verb's CHANNEL_EXECUTE - call created) - the app's own time for that
call's answer request; "(to sendmsg)" the same up to callfork's `sendmsg` reaching the switch
(callfork's part: with the simulator the rest is the parked channel waiting for its next 20 ms media
tick; the lean switch has none, so its overhead is callfork's part plus loopback).
The document is `<Response><Speak>x</Speak></Response>`: its first app is `answer` (no audio time
before it), then a short `speak`, then the document ends -> callfork hangs up (Vobiz 4010), so each
call lives ~0.15 s and the test measures setup.

Two load shapes, on one set of processes (warmed up first):
- open loop: calls placed at an offered rate R (absolute schedule) for `duration` seconds, at most
  200 in flight; once a rate is overloaded (< 90% set up) higher rates are skipped (`all_sizes`);
- closed loop: N callers, each placing its next call as soon as its previous one ended: N calls in
  flight all the time (N=1 is the unloaded latency; large N finds the maximum rate).
Logged per row besides the table: callfork's run-queue wait (/proc/self/schedstat: runnable but
no CPU free, per call and as a share of the row), how many calls were still in setup when each
call arrived, and the inter-arrival gaps (p50 far below the mean = calls arrive in bursts, as the
closed loop's in-phase callers do).
callfork CPU per call = its user+sys over the row (placing the first call -> every call ended and
its hangup webhook delivered) / calls; switch CPU per call = the switch process's over its `run`.
A call the lean switch could not model (a command, API or app it does not know) counts as failed.
"""
if __name__ == "__main__":
    import sys

    if sys.argv[1:2] in (["app"], ["switch"]):   # the harness's processes: see bench/common.py harness_process
        import os

        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import common  # noqa: E402

DOCUMENT = "<Response><Speak>x</Speak></Response>"
RATES = (25, 50, 100, 150, 200)
QUICK_RATES = (25, 100, 200)
CONCURRENCY = (1, 10, 50, 100)
QUICK_CONCURRENCY = (1, 10, 50)
TARGET_P99_MS = 20.0


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

# --- the call driver (shared by the simulator and the lean switch) -------------------------------------

CALL_KEYS = ("uuid", "created", "socket", "sendmsg", "exec", "app", "ended", "cause", "error")


def drive(place, wait_end, mode: str, value: float, duration: float, max_inflight: int = 200) -> dict:
    """Place calls with `place() -> state dict` and wait for each with `wait_end(state)`.
    mode "open": `value` calls/s on an absolute schedule for `duration` s (at most `max_inflight`
    in flight); "closed": `value` callers, each placing its next call when its last one ended."""
    import gevent
    from gevent.pool import Group

    calls: list = []
    group = Group()
    c0 = common.cpu_times()
    t0 = time.monotonic()
    end = t0 + duration
    held = 0

    def one():
        st = place()
        calls.append(st)
        wait_end(st)

    if mode == "open":
        i = 0
        while True:
            at = t0 + i / value
            if at >= end:
                break
            d = at - time.monotonic()
            if d > 0:
                gevent.sleep(d)
            while len(group) >= max_inflight and time.monotonic() < end:
                gevent.sleep(0.005)  # bounded: an overloaded callfork must not pile up calls
            if time.monotonic() >= end:
                held = int(duration * value) - i   # offered in the window but never placed
                break
            group.spawn(one)
            i += 1
    else:
        def caller():
            while time.monotonic() < end:
                one()

        for _ in range(int(value)):
            group.spawn(caller)
    group.join(timeout=duration + 90)
    c1 = common.cpu_times()
    out = [{k: st.get(k) for k in CALL_KEYS} for st in calls]
    return {"calls": out, "held": held, "cpu": [c0, c1], "wall": time.monotonic() - t0, "states": calls}

# --- the switch: simulator + call driver ------------------------------------------------------------


class Driver:
    def __init__(self):
        import logging

        from switch_sim import Simulator
        from switch_sim.channel import Channel

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        self.sim = Simulator(esl=("127.0.0.1", 0), socket_target=("127.0.0.1", 9))  # target: set_target
        self.sim.start()
        self.calls: list = []
        now = common.now_ns

        fire = Channel.fire_event

        def fire_event(ch, name, extra_headers=(), *a, **kw):
            st = ch.__dict__.get("_bench")
            if st is not None and name == "CHANNEL_EXECUTE":
                app = extra_headers[0][1]
                if app == "socket":
                    st.setdefault("socket", now())
                elif "exec" not in st:
                    st["exec"] = now()
                    st["app"] = app
            return fire(ch, name, extra_headers, *a, **kw)

        queue = Channel.queue_message

        def queue_message(ch, msg):
            st = ch.__dict__.get("_bench")
            if st is not None and "sendmsg" not in st:
                st["sendmsg"] = now()
            return queue(ch, msg)

        Channel.fire_event = fire_event
        Channel.queue_message = queue_message

    def c_target(self, host: str, port: int) -> dict:
        self.sim.socket_target = (host, int(port))
        return {"ok": True, "esl": self.sim.esl_address[1]}

    def _place(self, to: str, variables=None) -> dict:
        from switch_sim import CallScript

        st = {"created": common.now_ns()}
        call = self.sim.place_call(CallScript(to=to, variables=variables or {}))
        call.channel._bench = st
        st["uuid"] = call.uuid
        st["call"] = call
        return st

    def _wait_end(self, st: dict, timeout: float = 60.0) -> None:
        ch = st["call"].channel
        ch.gone.wait(timeout)
        st["ended"] = common.now_ns()
        st["cause"] = ch.hangup_cause

    def c_run(self, mode: str, value: float, duration: float, to: str = "1000", max_inflight: int = 200) -> dict:
        """mode "open": `value` calls/s for `duration` s; "closed": `value` callers back to back."""
        res = drive(lambda: self._place(to), self._wait_end, mode, value, duration, max_inflight)
        res.pop("states")
        res["live"] = len(self.sim.channels)
        return res

    # memory benchmark: park calls
    def c_place(self, k: int, to: str, rate: float = 50.0) -> dict:
        import gevent

        for _ in range(k):
            st = self._place(to)
            self.calls.append(st)
            gevent.sleep(1.0 / rate)
        return {"placed": k, "live": len(self.sim.channels)}

    def c_live(self) -> dict:
        return {"live": len(self.sim.channels),
                "executing": sum(1 for st in self.calls if "exec" in st and not st["call"].channel.hungup),
                "forks": _fork_count(self.sim)}

    def c_hangup_all(self, timeout: float = 30.0) -> dict:
        import gevent

        for st in self.calls:
            st["call"].channel.hangup("NORMAL_CLEARING")
        gevent.wait([st["call"].channel.gone for st in self.calls], timeout=timeout)
        self.calls = []
        return {"live": len(self.sim.channels)}

    def c_cpu(self) -> dict:
        return common.cpu_times()


def _fork_count(sim) -> int:
    n = 0
    for ch in list(sim.channels.values()):
        n += sum(1 for name in ch.media_bugs if "fork" in name.lower() or "stream" in name.lower())
    return n


def switch_main() -> None:
    d = Driver()
    common.serve_control({"target": d.c_target, "run": d.c_run, "place": d.c_place, "live": d.c_live,
                          "hangup_all": d.c_hangup_all, "cpu": d.c_cpu}, {"esl": d.sim.esl_address[1]})

# --- the app: a fast HTTP server -------------------------------------------------------------------


class App:
    def __init__(self):
        self.docs = {b"/answer": DOCUMENT.encode()}   # path -> document
        self.answers: dict = {}   # CallUUID -> [first byte ns, response sent ns]
        self.other = 0
        self.connections = 0

    def handle(self, sock, _peer) -> None:
        from urllib.parse import parse_qs

        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        buf = b""
        now = common.now_ns
        try:
            while True:
                t0 = now() if buf else None
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if t0 is None:
                        t0 = now()
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ", 2)[:2]
                n = 0
                close = False
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        n = int(v)
                    elif k == b"connection" and v.strip().lower() == b"close":
                        close = True
                while len(rest) < n:
                    data = sock.recv(65536)
                    if not data:
                        return
                    rest += data
                body, buf = rest[:n], rest[n:]
                doc = self.docs.get(path.partition(b"?")[0])
                if doc is not None:
                    form = parse_qs(body.decode()) if method == b"POST" else parse_qs(path.partition(b"?")[2].decode())
                    uuid = (form.get("CallUUID") or [""])[0]
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(doc), doc))
                    self.answers[uuid] = [t0, now()]
                else:
                    self.other += 1
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK")
                if close:
                    return
        except OSError:
            return
        finally:
            sock.close()

    def c_doc(self, text: str, path: str = "/answer") -> dict:
        self.docs[path.encode()] = text.encode()
        return {"ok": True}

    def c_take(self) -> dict:
        out, self.answers = self.answers, {}
        return {"answers": out, "other": self.other, "connections": self.connections}

    def c_cpu(self) -> dict:
        return common.cpu_times()


def app_main() -> None:
    from gevent.server import StreamServer

    app = App()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    server = StreamServer(lsock, app.handle)
    server.start()
    common.harness_heap()
    common.serve_control({"doc": app.c_doc, "take": app.c_take, "cpu": app.c_cpu},
                         {"url": f"http://127.0.0.1:{lsock.getsockname()[1]}"})

# --- callfork: the Service ------------------------------------------------------------------------


def callfork_main(spec_json: str) -> None:
    import logging

    from esl_app import load_config
    from callfork.service import Service

    spec = json.loads(spec_json)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,   # as `callfork serve` (cli._setup_logging)
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    data_dir = spec["data_dir"]
    ports = spec["ports"]
    env = {
        "CALLFORK_FREESWITCH_ESL_HOST": "127.0.0.1",
        "CALLFORK_FREESWITCH_ESL_PORT": str(spec["esl"]),
        "CALLFORK_FREESWITCH_ESL_PASSWORD": "ClueCon",
        "CALLFORK_SERVER_OUTBOUND_LISTEN": f"127.0.0.1:{ports['outbound']}",
        "CALLFORK_SERVER_HTTP_LISTEN": f"127.0.0.1:{ports['http']}",
        "CALLFORK_SERVER_RELAY_LISTEN": f"127.0.0.1:{ports['relay']}",
        "CALLFORK_SERVER_PUBLIC_URL": f"http://127.0.0.1:{ports['http']}",
        "CALLFORK_SERVER_DATA_DIR": data_dir,
        "CALLFORK_SERVER_AUTH_TOKEN": "bench-token",
        "CALLFORK_AUDIO_FORK_FLAVOR": "jambonz",
        # bench/workers.py: more than one callfork process on the same socket app port (SO_REUSEPORT)
        "CALLFORK_SERVER_WORKERS": str(spec.get("workers", 1)),
    }
    cluster = spec.get("cluster")
    if cluster:   # bench/workers.py's cluster rows: Redis and PostgreSQL instead of SQLite
        env.update({"CALLFORK_CLUSTER_REDIS_URL": cluster["redis_url"],
                    "CALLFORK_STORE_POSTGRES_DSN": cluster["postgres_dsn"],
                    "CALLFORK_CLUSTER_NODE_ID": cluster["node_id"]})
    path = os.path.join(data_dir, "callfork.toml")
    with open(path, "w") as f:
        for number, answer in spec["numbers"].items():
            f.write(f'[[numbers]]\nnumber = "{number}"\nanswer_url = "{answer}"\n'
                    f'hangup_url = "{spec["hangup_url"]}"\n')
    config = load_config(path, env=env)
    service = Service(config).start()
    if not service.control.wait_connected(10):
        raise RuntimeError("callfork did not connect to the simulator's event socket")
    freeze = getattr(sys.modules["callfork.service"], "freeze_startup_heap", None)
    if freeze is not None:   # as `callfork serve` does after start-up (absent in older overlays)
        freeze()

    def c_state() -> dict:
        out = common.cpu_times()
        with open("/proc/self/schedstat") as f:   # ns on a CPU, ns runnable but waiting for one, slices
            out["runq_wait_ns"] = int(f.read().split()[1])
        out.update(rss_kb=rss_kb(), calls=len(service.calls), outbox=service.outbox.depth(),
                   streams=getattr(service.relay, "streams_live", 0),
                   frames_in=getattr(service.relay, "frames_in", 0))
        return out

    def c_gc() -> dict:
        import gc

        gc.collect()
        return {"rss_kb": rss_kb()}

    profiler = []

    def c_profile(on: bool, path: str | None = None) -> dict:
        """cProfile of this process's CPU time (every greenlet runs in its one thread; time waiting
        in the hub is not counted): on, or off with the stats dumped to `path` (pstats), for finding
        where a row's CPU per call goes."""
        import cProfile

        if on:
            profiler[:] = [cProfile.Profile(time.process_time)]
            profiler[0].enable()
        elif profiler:
            profiler[0].disable()
            profiler.pop().dump_stats(path)
        return {"ok": True}

    common.serve_control({"state": c_state, "cpu": c_state, "gc": c_gc, "profile": c_profile},
                         {"outbound": ports["outbound"], "relay": ports["relay"]})

# --- orchestrator -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SWITCH_NAMES = {"sim": "the simulator (switch_sim; 0-20 ms park tick before the first app)",
                "lean": "the lean switch (bench/lean_switch.py; first app at once, no park tick)"}
SWITCHES = {"sim": ("bench.calls", "switch"), "lean": ("bench.lean_switch",)}


class Rig:
    """app + switch + callfork, fresh processes. `numbers`: to-number -> app path; `switch`: "sim"
    (switch_sim + driver, what the memory benchmark needs) or "lean" (bench/lean_switch.py)."""

    def __init__(self, numbers: dict | None = None, sink: bool = False, switch: str = "sim"):
        self.switch_kind = switch
        self.data_dir = tempfile.mkdtemp(prefix="callfork-bench-")
        self.children = []
        try:
            self.sink = common.Child("bench.common", "sink", name="sink") if sink else None
            if self.sink:
                self.children.append(self.sink)
            self.app = common.Child("bench.calls", "app", name="app")
            self.children.append(self.app)
            self.switch = common.Child(*SWITCHES[switch], name="switch")
            self.children.append(self.switch)
            url = self.app.info["url"]
            numbers = numbers or {"*": "/answer"}
            spec = {"data_dir": self.data_dir, "esl": self.switch.info["esl"],
                    "ports": {k: free_port() for k in ("outbound", "http", "relay")},
                    "numbers": {k: url + v for k, v in numbers.items()}, "hangup_url": url + "/hangup"}
            self.callfork = common.Child("bench.calls", "callfork", json.dumps(spec), name="callfork")
            self.children.append(self.callfork)
            self.switch.call("target", host="127.0.0.1", port=spec["ports"]["outbound"])
        except Exception:
            self.close()
            raise

    def wait_idle(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = self.callfork.call("state")
            if (st["calls"] == 0 and st["outbox"] == 0) or time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def close(self) -> None:
        for c in reversed(self.children):
            c.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _cpu(a: dict, b: dict) -> float:
    return (b["user"] - a["user"]) + (b["sys"] - a["sys"])


def run_row(rig: Rig, mode: str, value: float, duration: float) -> dict:
    rig.wait_idle()
    rig.app.call("take")
    m0 = common.machine_busy()
    k0, a0 = rig.callfork.call("state"), rig.app.call("cpu")
    r = rig.switch.call("run", timeout=duration + 200, mode=mode, value=value, duration=duration)
    k1 = rig.wait_idle()   # every call over and its hangup webhook delivered
    a1 = rig.app.call("cpu")
    m1 = common.machine_busy()
    wall = (k1["t_ns"] - k0["t_ns"]) / 1e9
    answers = rig.app.call("take")["answers"]
    calls = r["calls"]
    ok = [c for c in calls if c.get("exec") and c["uuid"] in answers and not c.get("error")]
    errors = [f"{c['uuid']}: {c['error']}" for c in calls if c.get("error")] + r.get("control_errors", [])
    over, over_cf, app_ms, sim_ms, tick_ms = [], [], [], [], []
    for c in ok:
        t_app0, t_app1 = answers[c["uuid"]]
        app = (t_app1 - t_app0) / 1e6
        app_ms.append(app)
        over.append((c["exec"] - c["created"]) / 1e6 - app)
        if c.get("sendmsg"):
            over_cf.append((c["sendmsg"] - c["created"]) / 1e6 - app)
            tick_ms.append((c["exec"] - c["sendmsg"]) / 1e6)
        if c.get("socket"):
            sim_ms.append((c["socket"] - c["created"]) / 1e6)
    # per call, how many calls were still in setup (created, first app not yet executed) when it
    # was created: a closed loop's callers stay in phase (equal call lengths) and arrive in bursts
    spans = sorted((c["created"], c.get("exec") or c["created"]) for c in calls)
    in_setup = [sum(1 for a, b in spans[max(0, i - 400):i] if b > t) for i, (t, _) in enumerate(spans)]
    gaps = [(b - a) / 1e6 for (a, _), (b, _) in zip(spans, spans[1:])]   # inter-arrival, ms
    first = min((c["created"] for c in calls), default=0)
    last = max((c["exec"] for c in ok), default=first)
    span = (last - first) / 1e9
    placed_span = (max((c["created"] for c in calls), default=0) - first) / 1e9
    cf_cpu = _cpu(k0, k1)
    sw_cpu = _cpu(*r["cpu"])
    causes: dict = {}
    for c in calls:
        causes[c.get("cause")] = causes.get(c.get("cause"), 0) + 1
    p = common.pct(over, (50, 99, 100))
    q = common.pct(over_cf, (50, 99))
    busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (os.cpu_count() or 1)
    return {
        "mode": mode, "value": value, "duration": duration, "placed": len(calls), "ok": len(ok),
        "failed": len(calls) - len(ok), "held": r["held"], "causes": causes,
        "not_modelled": len(errors), "errors": errors[:5],
        "cps": len(ok) / span if span > 0 else None,
        "placed_cps": (len(calls) - 1) / placed_span if placed_span > 0 else None,
        "over_p50": p[0], "over_p99": p[1], "over_max": p[2],
        "cf_p50": q[0], "cf_p99": q[1], "in_setup_at_arrival_p50": common.pct(in_setup, (50,))[0],
        "arrival_gap_p50_ms": common.pct(gaps, (50,))[0], "arrival_gap_mean_ms": sum(gaps) / len(gaps) if gaps else None,
        "tick_p50": common.pct(tick_ms, (50,))[0], "sim_p99": common.pct(sim_ms, (99,))[0],
        "app_p50": common.pct(app_ms, (50,))[0], "app_p99": common.pct(app_ms, (99,))[0],
        "cpu_ms_call": cf_cpu / len(calls) * 1e3 if calls else None,
        "sw_ms_call": sw_cpu / len(calls) * 1e3 if calls else None,
        "cf_core": cf_cpu / wall, "sw_core": sw_cpu / r["wall"], "app_core": _cpu(a0, a1) / wall,
        "other_core": busy - (cf_cpu + _cpu(a0, a1)) / wall - sw_cpu / r["wall"],
        "rss_mb": k1["rss_kb"] / 1024, "wall": wall,
        # callfork runnable but waiting for a CPU (the machine's other processes had it), per call
        "cf_runq_wait_ms_call": (k1["runq_wait_ns"] - k0["runq_wait_ns"]) / 1e6 / len(calls) if calls else None,
        "cf_runq_wait_share": (k1["runq_wait_ns"] - k0["runq_wait_ns"]) / 1e9 / wall,
    }


def _f(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def table(rows: list, title: str) -> str:
    head = ["load", "calls ok/placed", "placed CPS", "achieved CPS", "overhead p50 ms", "p99 ms", "max ms",
            "(to sendmsg) p50 / p99 ms", "park tick wait p50 ms", "app own p50 / p99 ms",
            "callfork CPU ms/call", "(= CPS/core)", "switch CPU ms/call", "callfork cores", "switch+app cores",
            "other load (cores)"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        load = f"{r['value']:g} CPS offered" if r["mode"] == "open" else f"N={r['value']:g} in flight"
        failed = f"{r['ok']}/{r['placed']}" + (f" ({r['held']} never placed: 200 in flight)" if r["held"] else "")
        if r.get("not_modelled"):
            failed += f" ({r['not_modelled']} not modelled by the lean switch: see its log)"
        lines.append("| " + " | ".join([
            load, failed, _f(r["placed_cps"]), _f(r["cps"]), _f(r["over_p50"]), _f(r["over_p99"]), _f(r["over_max"]),
            f"{_f(r['cf_p50'])} / {_f(r['cf_p99'])}", _f(r["tick_p50"]),
            f"{_f(r['app_p50'], '.2f')} / {_f(r['app_p99'], '.2f')}", _f(r["cpu_ms_call"], ".2f"),
            _f(1e3 / r["cpu_ms_call"] if r["cpu_ms_call"] else None, ".0f"), _f(r.get("sw_ms_call"), ".2f"),
            _f(r["cf_core"], ".2f"),
            f"{r['sw_core']:.2f}+{r['app_core']:.2f}", _f(r["other_core"], ".2f")]) + " |")
    return "\n".join(lines)


def best(rows: list, key: str = "over_p99") -> dict | None:
    good = [r for r in rows if r["failed"] == 0 and r[key] is not None and r[key] <= TARGET_P99_MS and r["cps"]]
    return max(good, key=lambda r: r["cps"]) if good else None


def _load(r: dict) -> str:
    return f"offered {r['value']:g} CPS" if r["mode"] == "open" else f"N={r['value']:g} in flight"


def summary(rows: list) -> str:
    out = []
    for key, what in (("over_p99", "p99 overhead"), ("cf_p99", "p99 of callfork's part (to sendmsg)")):
        b = best(rows, key)
        if b is None:
            out.append(f"No row had {what} <= {TARGET_P99_MS:.0f} ms without failed calls.")
        else:
            out.append(f"Highest rate with {what} <= {TARGET_P99_MS:.0f} ms and no failed call: **{b['cps']:.1f} CPS** "
                       f"({_load(b)}; p99 {b[key]:.1f} ms, callfork {b['cf_core']:.2f} cores, "
                       f"{b['cpu_ms_call']:.2f} ms CPU/call).")
    return "\n".join(out)


def run(quick: bool = False, duration: float | None = None, log=print, all_sizes: bool = False,
        switch: str = "lean") -> list:
    duration = duration or (4.0 if quick else 8.0)
    rates = QUICK_RATES if quick else RATES
    conc = QUICK_CONCURRENCY if quick else CONCURRENCY
    rows = []
    rig = Rig(switch=switch)
    try:
        log(f"calls: switch {switch}; warm-up (1.5 s, 5 in flight); document {DOCUMENT}")
        rig.switch.call("run", timeout=120, mode="closed", value=5, duration=1.5)
        rig.wait_idle()
        for mode, values in (("open", rates), ("closed", conc)):
            overloaded = None
            for v in values:
                if overloaded and not all_sizes:
                    log(f"  skipping {v} CPS: {overloaded}; --all-sizes runs it anyway")
                    continue
                log(f"calls: {'offered ' + str(v) + ' CPS' if mode == 'open' else 'N=' + str(v) + ' in flight'}"
                    f" for {duration:.0f} s")
                try:
                    r = run_row(rig, mode, v, duration)
                except Exception as exc:  # noqa: BLE001 - one broken row must not lose the others
                    log(f"  ! failed: {exc!r}")
                    continue
                rows.append(r)
                if mode == "open" and (r["cps"] or 0) < 0.9 * v:
                    overloaded = f"only {r['cps']:.0f} of {v} CPS offered were set up (overloaded)"
                log("  " + json.dumps({k: (round(x, 2) if isinstance(x, float) else x) for k, x in r.items()
                                       if k not in ("mode", "value", "duration")}))
    finally:
        rig.close()
    title = (f"calls: answer-URL fetch to the first verb, `{DOCUMENT}`; {duration:.0f} s per row; "
             f"switch: {SWITCH_NAMES[switch]}; "
             f"overhead = (first verb's CHANNEL_EXECUTE - call created) - the app's own time")
    t = table(rows, title) + "\n\n" + summary(rows)
    log(t + "\n")
    return [("calls", t, rows)]


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "switch":
        switch_main()
    elif role == "app":
        app_main()
    elif role == "callfork" and len(sys.argv) > 2:
        callfork_main(sys.argv[2])
    else:
        sys.exit("usage: python -m bench.calls switch|app|callfork <spec>   (use python -m bench calls)")
