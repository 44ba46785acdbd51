"""relay benchmark: N concurrent simulated mod_audio_fork streams through callfork's relay
(`audio_fork.Relay` + `audio_fork.StreamSession`, the real code, alone in its own process) to a real
WebSocket sink app. See bench/common.py for the process layout and the wire format.

Per run (fresh processes): start N streams (the relay's `api` goes to the load generator, which
plays FreeSWITCH + mod_audio_fork), let them settle (`warmup`), then measure a window of `duration`
seconds defined on the forks' send clock:
- lost = frames sent in the window - frames the sink received from the window (after a grace period);
- added latency = sink recv() time - fork send time (both CLOCK_MONOTONIC), p50/p99/max;
- relay CPU = getrusage(RUSAGE_SELF) user+sys of the relay process over the window, per frame
  relayed (`Relay.frames_in`; bidirectional: frames_in + frames_out);
- floor = bench.floor measured afterwards in the same relay process; ratio = CPU / floor;
- I/O floor (one-way rows; in full runs only the 8 kHz table, to keep `python -m bench all` under
  10 minutes): right after the relay's row, the same N, rate, warm-up and window with fresh sink and
  load generator and bench/io_floor.py in place of the relay (the leanest relay for the same wire
  traffic: one epoll loop, one recv + one send per frame); its getrusage per frame, its lost and
  latency, recv/send syscalls and epoll wake-ups per frame, and its per-frame Python measured alone
  afterwards; "CPU/io floor" = the relay's CPU per frame / the I/O floor's.
- peer (8 kHz one-way rows of PEER_SIZES): right after the relay's row, the same N, rate, warm-up and
  window with bench/peer_relay.py in place of the relay: the relay a user would write first (asyncio
  and the `websockets` library); its lost, latency, cores and CPU per frame, and "peer CPU /
  callfork CPU" per frame.
Bidirectional: the sink sends playAudio at 2x real time (one 40 ms message every 20 ms, a
checkpoint every second), the relay paces it back to the fork; the fork records the gaps between
the frames it gets back.

The worker role (`python -m bench.relay worker <switch-port>`) is the relay process
(`python -m bench.io_floor <switch-port>` in I/O floor rows); once its relay has started, and before
any stream, it freezes its start-up heap (`callfork.service.freeze_startup_heap`) as `callfork serve`
does.
"""
if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from bench import common  # noqa: E402

SIZES = (50, 100, 200, 500, 1000)
QUICK_SIZES = (50, 200)
PEER_SIZES = (50, 200, 500)   # the peer relay's rows (8 kHz one-way): it takes a whole core at 500

# --- worker (the relay process) -------------------------------------------------------------------


class SwitchClient:
    """The `api` callable given to StreamSession: sends the command to the load generator (the
    FreeSWITCH stand-in) and returns its reply."""

    def __init__(self, port: int):
        import socket

        import gevent
        from gevent.lock import Semaphore

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.pending: dict = {}
        self.n = 0
        self.lock = Semaphore()
        gevent.spawn(self._read)

    def __call__(self, cmd: str) -> str:
        from gevent.event import AsyncResult

        self.n += 1
        rid = str(self.n)
        ar = AsyncResult()
        self.pending[rid] = ar
        with self.lock:
            self.sock.sendall(f"{rid} {cmd}\n".encode())
        return ar.get(timeout=30)

    def _read(self) -> None:
        for line in self.sock.makefile("rb"):
            rid, _, reply = line.decode().rstrip("\n").partition(" ")
            ar = self.pending.pop(rid, None)
            if ar is not None:
                ar.set(reply + "\n")


class Worker:
    def __init__(self, switch_port: int):
        import logging

        from audio_fork import Relay

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        self.relay = Relay(("127.0.0.1", 0), backlog=4096)
        self.relay.start()
        self.api = SwitchClient(switch_port)
        self.sessions: list = []
        self.events: dict = {}

    def _on_event(self, name, _detail) -> None:
        self.events[name] = self.events.get(name, 0) + 1

    def _session(self, sid: str, sink_url: str, rate: int, bidi: bool):
        import uuid

        from audio_fork import StreamSession, StreamSpec

        spec = StreamSpec(stream_id=sid, call_uuid=str(uuid.uuid4()), url=f"{sink_url}/{sid}",
                          account_id="MA_BENCH", sample_rate=rate, bidirectional=bidi, connect_timeout=20.0)
        return StreamSession(spec, self.relay, self.api, self._on_event)

    def c_start(self, n: int, sink_url: str, rate: int = 8000, bidi: bool = False, concurrency: int = 50,
                prefix: str = "s") -> dict:
        from gevent.pool import Pool

        errors = []
        t0 = time.monotonic()

        def one(i):
            s = self._session(f"{prefix}{i}", sink_url, rate, bidi)
            try:
                s.start()
                self.sessions.append(s)
            except Exception as exc:  # noqa: BLE001 - reported
                errors.append(repr(exc))

        Pool(concurrency).map(one, range(n))
        return {"started": n - len(errors), "failed": len(errors), "errors": errors[:3],
                "elapsed_s": time.monotonic() - t0}

    def c_cpu(self) -> dict:
        out = common.cpu_times()
        out.update(frames_in=self.relay.frames_in, frames_out=self.relay.frames_out,
                   streams_live=self.relay.streams_live)
        return out

    def c_stop_all(self) -> dict:
        from gevent.pool import Pool

        sessions, self.sessions = self.sessions, []
        out = {"app_dropped": sum(s.app_dropped for s in sessions),
               "protocol_errors": sum(s.protocol_errors for s in sessions),
               "playout_dropped": sum(s.playout.dropped_bytes for s in sessions),
               "events": dict(self.events)}
        import gevent

        pool = Pool(100)
        for s in sessions:
            pool.spawn(s.stop, "bench done")
        pool.join(timeout=30)  # bounded: a wedged stream must not hang the benchmark
        out["unstopped"] = sum(1 for s in sessions if not s.ended)
        gevent.sleep(0)
        return out

    def c_floor(self, frames: int, frame_bytes: int, play_messages: int = 0, play_bytes: int = 640,
                play_rate: int = 8000) -> dict:
        from bench import floor

        return floor.measure(frames, frame_bytes, play_messages, play_bytes, play_rate)

    def c_starts(self, count: int, sink_url: str, interval: float = 0.03, hold: float = 0.3,
                 prefix: str = "st") -> dict:
        """Stream-start benchmark: `count` sequential StreamSession.start() calls."""
        import gevent

        begins, returns, errors = {}, {}, []
        for i in range(count):
            sid = f"{prefix}{i}"
            s = self._session(sid, sink_url, 8000, False)
            begins[sid] = common.now_ns()
            try:
                s.start()
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
                continue
            returns[sid] = common.now_ns()
            gevent.spawn_later(hold, s.stop, "bench done")
            gevent.sleep(interval)
        gevent.sleep(hold + 0.2)
        return {"begin": begins, "returned": returns, "errors": errors[:3], "failed": len(errors)}


def worker_main(switch_port: int) -> None:
    from callfork.service import freeze_startup_heap

    w = Worker(switch_port)
    freeze_startup_heap()  # as `callfork serve` does once started: the streams start after this
    common.serve_control({"start": w.c_start, "cpu": w.c_cpu, "stop_all": w.c_stop_all,
                          "floor": w.c_floor, "starts": w.c_starts})

# --- orchestrator -----------------------------------------------------------------------------------


class Rig:
    """sink + load generator + relay worker (kind "relay"), the I/O floor relay (kind "io",
    bench/io_floor.py) or the peer relay (kind "peer", bench/peer_relay.py), fresh processes."""

    def __init__(self, bidi_rate: int = 0, kind: str = "relay"):
        self.sink = common.Child("bench.common", "sink", name="sink")
        self.loadgen = common.Child("bench.common", "loadgen", name="loadgen")
        switch = str(self.loadgen.info["switch"])
        if kind == "io":
            self.relay = common.Child("bench.io_floor", switch, name="io_floor")
        elif kind == "peer":
            self.relay = common.Child("bench.peer_relay", switch, name="peer_relay")
        else:
            self.relay = common.Child("bench.relay", "worker", switch, name="relay")
        self.sink.call("configure", bidi_rate=bidi_rate)
        self.sink_url = self.sink.info["url"]

    def close(self) -> None:
        for c in (self.relay, self.loadgen, self.sink):
            c.close()


def _delta_cpu(a: dict, b: dict) -> float:
    return (b["user"] - a["user"]) + (b["sys"] - a["sys"])


def run_one(n: int, rate: int = 8000, bidi: bool = False, duration: float = 10.0, warmup: float = 2.0,
            log=print, kind: str = "relay") -> dict:
    """One row: kind "relay" = callfork's relay (with the json floor measured afterwards in its
    process), "io" = the I/O floor relay (bench/io_floor.py, one-way only), "peer" = the relay a user
    would write first (bench/peer_relay.py: asyncio + websockets, one-way only), in the same harness."""
    rig = Rig(bidi_rate=8000 if bidi else 0, kind=kind)
    try:
        st = rig.relay.call("start", timeout=300, n=n, sink_url=rig.sink_url, rate=rate, bidi=bidi)
        if st["failed"]:
            log(f"  ! {st['failed']} of {n} streams failed to start: {st['errors']}")
        go = rig.loadgen.call("go")
        if go["connected"] < st["started"]:
            log(f"  ! only {go['connected']} of {st['started']} forks connected")
        time.sleep(warmup)
        t0 = common.now_ns() + 300_000_000
        t1 = t0 + int(duration * 1e9)
        for c in (rig.loadgen, rig.sink):
            c.call("window", t0=t0, t1=t1)
        time.sleep(max(0.0, (t0 - common.now_ns()) / 1e9))
        m0 = common.machine_busy()
        c0, s0, g0 = rig.relay.call("cpu"), rig.sink.call("cpu"), rig.loadgen.call("cpu")
        time.sleep(max(0.0, (t1 - common.now_ns()) / 1e9))
        c1, s1, g1 = rig.relay.call("cpu"), rig.sink.call("cpu"), rig.loadgen.call("cpu")
        m1 = common.machine_busy()
        time.sleep(1.5)  # grace: frames from the window still in flight
        sink = rig.sink.call("stats")
        gen = rig.loadgen.call("stats")
        rig.loadgen.call("stop_all")  # load off first, then the relay's own stop path
        stop = rig.relay.call("stop_all", timeout=120)
        wall = (c1["t_ns"] - c0["t_ns"]) / 1e9
        cpu = _delta_cpu(c0, c1)
        frames_in = c1["frames_in"] - c0["frames_in"]
        frames_out = c1["frames_out"] - c0["frames_out"]
        # the app sends one playAudio per 20 ms per stream: n * 50 * wall messages in the window
        play_msgs_window = int(n * 50 * wall) if bidi else 0
        if kind == "io":
            fl = {"up_json_s": 0.0, "up_template_s": 0.0, "down_s": 0.0}
            fl.update(rig.relay.call("python_work", timeout=120, frame_bytes=rate // 50 * 2))
        elif kind == "peer":   # no floor measured in it: its row compares CPU per frame with callfork's
            fl = {"up_json_s": 0.0, "up_template_s": 0.0, "down_s": 0.0}
        else:
            fl = rig.relay.call("floor", timeout=300, frames=frames_in, frame_bytes=rate // 50 * 2,
                                play_messages=play_msgs_window, play_bytes=640, play_rate=8000)
        floor_s = fl["up_json_s"] * frames_in + fl["down_s"] * play_msgs_window
        floor_tpl_s = fl["up_template_s"] * frames_in + fl["down_s"] * play_msgs_window
        relayed = frames_in + frames_out
        lost = common.lost_frames(gen["per_stream_sent"], sink["per_stream_recv"])
        row = {
            "n": n, "rate": rate, "bidi": bidi, "started": st["started"], "start_s": st["elapsed_s"],
            "sent": gen["sent_window"], "received": sink["recv_window"], "lost": lost,
            "seq_gaps": sink["seq_gaps"], "reordered": sink["reordered"], "bad": sink.get("bad", 0),
            "app_dropped": stop["app_dropped"],
            "lat_p50": sink["latency_ms"][0], "lat_p99": sink["latency_ms"][1], "lat_p999": sink["latency_ms"][2],
            "lat_max": sink["latency_ms"][3],
            "relay_core": cpu / wall, "relay_sys_share": ((c1["sys"] - c0["sys"]) / cpu) if cpu else 0.0,
            "frames_in": frames_in, "frames_out": frames_out,
            "cpu_us_frame": cpu / relayed * 1e6 if relayed else None,
            "floor_us_frame": floor_s / relayed * 1e6 if relayed else None,
            "ratio": cpu / floor_s if floor_s else None,
            "ratio_template": cpu / floor_tpl_s if floor_tpl_s else None,
            "floor": fl,
            "gen_core": _delta_cpu(g0, g1) / wall, "sink_core": _delta_cpu(s0, s1) / wall,
            # everything else on the machine (other users' work) during the window, in cores
            "other_core": (((m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (common.os.cpu_count() or 1))
                           - (cpu + _delta_cpu(g0, g1) + _delta_cpu(s0, s1)) / wall),
            "gen_late_p99": gen["late_ms"][1], "gen_resyncs": gen["resyncs"],
            "down_frames": gen["down_window"], "down_fps": gen["down_window"] / (n * wall) if bidi else None,
            "down_gap": gen["down_gap_ms"], "events": stop["events"], "wall": wall,
        }
        if kind == "io" and frames_in:
            # syscalls and wake-ups per frame: the I/O pattern the floor is made of
            row["per_frame"] = {k: (c1[k] - c0[k]) / frames_in for k in ("recvs", "sends", "wakeups")}
            row["python_us_frame"] = fl["python_s"] * 1e6
        return row
    finally:
        rig.close()


def _f(v, spec=".1f", none="-"):
    return none if v is None else format(v, spec)


def table(rows: list, title: str) -> str:
    bidi = any(r["bidi"] for r in rows)
    head = ["N", "frames sent", "lost", "lat p50 ms", "lat p99 ms", "lat max ms", "relay CPU (cores)",
            "CPU us/frame", "floor us/frame", "CPU/floor", "(vs template)", "loadgen+sink cores",
            "other load (cores)", "gen late p99 ms"]
    if bidi:
        head += ["down fps/stream", "down gap p1/p50/p99/max ms"]
    head += ["io floor us/frame (its Python part)", "CPU/io floor", "io floor lost", "io floor lat p50/p99 ms",
             "io floor cores (sys share)", "io floor recv/send/wake-up per frame"]
    peer = any("peer" in r for r in rows)
    if peer:
        head += ["peer relay us/frame", "peer CPU / callfork CPU", "peer lost", "peer lat p50/p99 ms", "peer cores"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["n"]), str(r["sent"]), f"{r['lost']}" + (f" (app q drop {r['app_dropped']})" if r["app_dropped"] else ""),
                 _f(r["lat_p50"], ".2f"), _f(r["lat_p99"], ".2f"), _f(r["lat_max"], ".1f"),
                 _f(r["relay_core"], ".2f"), _f(r["cpu_us_frame"], ".1f"), _f(r["floor_us_frame"], ".2f"),
                 _f(r["ratio"], ".1f") + "x", _f(r["ratio_template"], ".1f") + "x",
                 f"{r['gen_core']:.2f}+{r['sink_core']:.2f}", _f(r.get("other_core"), ".2f"),
                 _f(r["gen_late_p99"], ".2f")]
        if bidi:
            g = r["down_gap"]
            cells += [_f(r["down_fps"], ".1f"), "/".join(_f(x, ".1f") for x in g)]
        io = r.get("io")
        if r["bidi"]:
            cells += ["n/a (one-way only)"] + ["-"] * 5
        elif io is None:
            cells += ["not run (quick runs only)" if r.get("io_skipped") else "failed"] + ["-"] * 5
        else:
            pf = io.get("per_frame") or {}
            cells += [f"{_f(io['cpu_us_frame'], '.1f')} ({_f(io.get('python_us_frame'), '.1f')})",
                      _f(r.get("io_ratio"), ".1f") + "x", str(io["lost"]),
                      f"{_f(io['lat_p50'], '.2f')}/{_f(io['lat_p99'], '.2f')}",
                      f"{io['relay_core']:.2f} ({io['relay_sys_share']:.0%})",
                      "/".join(_f(pf.get(k), ".2f") for k in ("recvs", "sends", "wakeups"))]
        if peer:
            pr = r.get("peer")
            if pr is None:
                cells += [r.get("peer_skipped") or ("failed" if "peer" in r else "not run")] + ["-"] * 4
            else:
                cells += [_f(pr["cpu_us_frame"], ".1f"),
                          _f(pr["cpu_us_frame"] / r["cpu_us_frame"] if pr["cpu_us_frame"] and r["cpu_us_frame"] else None,
                             ".1f") + "x",
                          str(pr["lost"]) + (f" of {pr['sent']}" if pr["lost"] else ""),
                          f"{_f(pr['lat_p50'], '.2f')}/{_f(pr['lat_p99'], '.2f')}", _f(pr["relay_core"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_io_floor(n: int, rate: int, duration: float, warmup: float, log=print) -> dict | None:
    """The I/O floor row for the relay row just measured: same N, rate and window, fresh processes."""
    t = time.monotonic()
    try:
        io = run_one(n, rate=rate, duration=duration, warmup=warmup, log=log, kind="io")
    except Exception as exc:  # noqa: BLE001 - the relay row stands without it
        log(f"  ! io floor at N={n} failed: {exc!r}")
        return None
    log("  io floor: " + json.dumps({k: io[k] for k in ("lost", "lat_p50", "lat_p99", "relay_core", "cpu_us_frame",
                                                        "per_frame", "python_us_frame", "relay_sys_share",
                                                        "other_core")}, default=str)
        + f" ({time.monotonic() - t:.1f} s)")
    return io


def run_peer(n: int, rate: int, duration: float, warmup: float, log=print) -> dict | None:
    """The peer row for the relay row just measured: same N, rate and window, fresh processes."""
    t = time.monotonic()
    try:
        peer = run_one(n, rate=rate, duration=duration, warmup=warmup, log=log, kind="peer")
    except Exception as exc:  # noqa: BLE001 - the relay row stands without it
        log(f"  ! peer relay at N={n} failed: {exc!r}")
        return None
    log("  peer relay: " + json.dumps({k: peer[k] for k in ("lost", "lat_p50", "lat_p99", "relay_core",
                                                            "cpu_us_frame", "other_core")}, default=str)
        + f" ({time.monotonic() - t:.1f} s)")
    return peer


def run(quick: bool = False, duration: float | None = None, sizes=None, log=print, all_sizes: bool = False) -> list:
    """Runs the three relay tables; returns [(title, markdown table, rows)]. The 8 kHz one-way table
    has the peer relay's row beside each N of PEER_SIZES (bench/peer_relay.py), until it loses frames."""
    sizes = tuple(sizes or (QUICK_SIZES if quick else SIZES))
    duration = duration or (4.0 if quick else 10.0)
    out = []
    peer_overloaded = None
    for title, rate, bidi in (("relay, 8 kHz mono L16, one-way (Vobiz dialect)", 8000, False),
                              ("relay, 16 kHz mono L16, one-way (Vobiz dialect)", 16000, False),
                              ("relay, 8 kHz bidirectional: app playAudio at 2x real time, paced back", 8000, True)):
        rows = []
        overloaded = None
        for n in sizes:
            if overloaded and not all_sizes:
                log(f"  skipping N={n}: {overloaded}; --all-sizes runs it anyway")
                continue
            log(f"relay: {title}: N={n} ({duration:.0f} s window)")
            try:
                r = run_one(n, rate=rate, bidi=bidi, duration=duration, warmup=1.5 if quick else 2.0, log=log)
            except Exception as exc:  # noqa: BLE001 - one broken size must not lose the others
                log(f"  ! N={n} failed: {exc!r}")
                overloaded = f"N={n} failed (an overloaded relay answers its control calls too late)"
                continue
            if r["lost"] > 0.01 * max(1, r["sent"]):
                overloaded = f"the relay already lost frames at N={n} (overloaded)"
            elif bidi and (r["down_fps"] or 0) < 45:
                overloaded = f"the relay paced only {r['down_fps']:.1f} of 50 frames/s back at N={n} (overloaded)"
            log("  " + json.dumps({k: r[k] for k in ("lost", "lat_p50", "lat_p99", "lat_max", "relay_core",
                                                     "cpu_us_frame", "floor_us_frame", "ratio", "gen_core",
                                                     "sink_core", "gen_late_p99")}, default=str))
            if not bidi and not quick and rate != 8000:
                r["io"], r["io_skipped"] = None, True  # keeps `python -m bench all` under 10 minutes
            elif not bidi:
                r["io"] = run_io_floor(n, rate, duration, 1.5 if quick else 2.0, log)
                io = r["io"]
                r["io_ratio"] = (r["cpu_us_frame"] / io["cpu_us_frame"]
                                 if io and io["cpu_us_frame"] and r["cpu_us_frame"] else None)
            if not bidi and rate == 8000 and (n in PEER_SIZES or all_sizes):
                if peer_overloaded and not all_sizes:
                    r["peer_skipped"] = f"not run: {peer_overloaded}"
                else:
                    r["peer"] = run_peer(n, rate, duration, 1.5 if quick else 2.0, log)
                    pr = r["peer"]
                    if pr is None or pr["lost"] > 0.01 * max(1, pr["sent"]):
                        peer_overloaded = f"lost frames at N={n}"
            rows.append(r)
        t = table(rows, f"{title}; window {duration:.0f} s per N")
        log(t + "\n")
        out.append((title, t, rows))
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        worker_main(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.relay worker <switch-port>   (use python -m bench relay)")
