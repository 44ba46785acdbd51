"""workers benchmark: what one machine carries with 1 and with 2 callfork worker processes
(`callfork serve --workers N`, callfork/workers.py), measured in one run, and the ratio.

- **relay streams without loss**: the relay benchmark's harness (bench/relay.py, bench/common.py:
  one load generator standing in for FreeSWITCH + mod_audio_fork, one sink app), with W relay
  processes (`python -m bench.relay worker`: callfork's Relay + StreamSession) instead of one; the N
  streams are split evenly over them, as the kernel spreads calls over the workers. A ladder of N
  (8 kHz one-way, Vobiz dialect), from START_N up by STEP_N (QUICK_STEP_N in quick runs); the
  result is the largest N carried: no frame lost (frames sent in the window - frames the sink got
  from them), p99 added latency within MAX_P99_MS, while the load generator kept its schedule
  (`carried`).
- **calls/s**: the calls benchmark (bench/calls.py: the lean switch, the app, the document
  `<Response><Speak>x</Speak></Response>`), open loop, with W callfork services (callfork.service.Service,
  `[server] workers = W`: their socket app port bound with SO_REUSEPORT, so the kernel spreads the
  switch's connections over them). Two stores: **SQLite**, each worker its own data_dir (as one
  `callfork serve` keeps it), and **Redis+PG**, the W services as cluster nodes (`[cluster] redis_url`,
  `[store] postgres_dsn`, node ids `bench-<W>w-w<i>`) on a real redis-server and PostgreSQL started as
  the cluster tests start them (tests/cluster_servers.py; each rig its own Redis database and
  PostgreSQL database), whose CPU (redis-server, the postmaster and its backends) is measured per row:
  what the cluster engines cost per call. Offered rates up from 60 CPS (the Redis+PG ladders at
  CLUSTER_QUICK_RATES in quick runs); the result is the highest achieved rate of a row that
  sustained its offered rate (`sustained`: no failed call, >= 95 % set up, p99 setup overhead within
  MAX_P99_MS; the calls benchmark's own 20 ms target is too tight to tell 1 from 2 workers on a
  shared machine).

A ladder ends at its second miss (a step missed for the first time is measured again at once: a
burst of other load on a shared machine must not end it). 1 and 2 workers run interleaved at each N
and each rate (fresh relay processes per row; the calls rigs kept up side by side), so both see the
same load from the rest of the machine. Every other process (load generator, sink, switch, app,
Redis, PostgreSQL) runs on the same machine.

**What the machine allows** (the bound column). On K cores (K = 2 here), let the 1-worker row at its
best step (relay: the largest N carried; calls: the best sustained row) give, per unit of work (a
stream, i.e. 50 frames/s; or one call per second), in cores: c = the worker's CPU, and h = the sum of
the rest: h_p for each other part p (load generator and sink; switch, app, and Redis+PostgreSQL on the
cluster ladder). Assume these costs per unit stay what they were in that row when the load is split
over W workers. CPU alone then bounds the load x (streams, or calls/s) W workers can carry by:
- each worker is one process (one core at most) and gets x/W:        x * c / W <= 1
- each single-process part p (load generator, sink, switch, app):    x * h_p <= 1
- everything shares the K cores:                                      x * (c + h) <= K
so x <= B_W = min(W / c, 1 / h_p for each p, K / (c + h)). With K = W = 2, 2/c > 2/(c + h), hence
B_2 = min(2 / (c + h), 1 / h_p), and B_1 = min(1 / c, 1 / h_p, 2 / (c + h)). When neither harness
process binds: if c >= h, one worker is bound by its own core (B_1 = 1/c) and B_2 / B_1 = 2c / (c + h),
which is 2 only when h is nothing beside c (1.9 needs h <= c / 19); if c < h the box binds both and
B_2 / B_1 = 1. So on a machine shared with the harness "twice the streams of one worker" is out of reach
by construction; what the table shows is the measured ratio beside B_2 / B_1 and their quotient
(measured / bound: 1 = the workers got all the box allows). c and h fall somewhat as the load grows
(more frames per wake-up), and the 1-worker ladder ends on latency (p99) before its core is full, so
measured / bound can exceed 1; other users' load (the "other load" column) takes from K as well.
`python -m bench workers`.

**Per-core scaling** (`--core-quota Q`, run_quota, after the table above and in a table of its own):
what the bound leaves out is whether the workers themselves scale, i.e. share no bottleneck. Every
worker process (each relay process of the relay ladder, each callfork service process of the calls
ladder; not the load generator, sink, switch, app, Redis or PostgreSQL) is held to Q of a core by a
CFS quota in a CPU cgroup of its own (bench/core_quota.py, 10 ms period), so with 2Q + h(x) < K the
harness always has the rest of the machine and a worker is bound by its quota alone. Step k offers W
workers W x the same per-worker load (Q x 250.. streams, Q x 50.. calls/s per core of quota), 1 and
2 workers interleaved, carried / sustained as above; the ratio 2 / 1 is then 2 when nothing is shared
between the workers, which is what `--workers N` gives on a machine with a core per worker, and not
what this box carries unthrottled. A saturated worker's CPU sits at ~Q, its group throttled in most
periods (both in the table). Where no CPU cgroup can be made (no root, a read-only cgroup file
system), the mode is skipped with one log line saying why.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from bench import calls, common, relay

START_N, MAX_N = 300, 1500
STEP_N, QUICK_STEP_N = 100, 200
MAX_P99_MS = 100.0   # a step is carried only while the p99 (added latency, call setup overhead) stays within this
RATES = (60, 100, 140, 180, 220, 260, 300, 340, 380, 420)
CLUSTER_QUICK_RATES = (60, 100, 140, 220, 300, 380)   # the Redis+PG ladders in quick runs (make bench)


# -- relay streams ------------------------------------------------------------------------------------

class RelayRig:
    """sink + load generator + `workers` relay processes, fresh; with `groups` (bench/core_quota.py
    Groups) each relay process, and nothing else, is held to the groups' quota."""

    def __init__(self, workers: int, groups=None):
        self.groups, self.held, self.relays = groups, [], []
        self.sink = common.Child("bench.common", "sink", name="sink")
        try:
            self.loadgen = common.Child("bench.common", "loadgen", name="loadgen")
        except Exception:
            self.sink.close()
            raise
        try:
            switch = str(self.loadgen.info["switch"])
            for i in range(workers):
                self.relays.append(common.Child("bench.relay", "worker", switch, name=f"relay-w{i}"))
                if groups is not None:
                    self.held.append(groups.hold(self.relays[-1].pid, f"relay-w{i}"))
            self.sink.call("configure", bidi_rate=0)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        for c in (*self.relays, self.loadgen, self.sink):
            c.close()
        for g in self.held:
            self.groups.release(g)


def relay_row(workers: int, n: int, duration: float, warmup: float, log=print, groups=None) -> dict:
    rig = RelayRig(workers, groups)
    try:
        share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
        started = 0
        for i, (child, k) in enumerate(zip(rig.relays, share)):
            st = child.call("start", timeout=300, n=k, sink_url=rig.sink.info["url"], rate=8000, bidi=False,
                            prefix=f"w{i}s")
            started += st["started"]
        go = rig.loadgen.call("go")
        if go["connected"] < started:
            log(f"  ! only {go['connected']} of {started} forks connected")
        time.sleep(warmup)
        t0 = common.now_ns() + 300_000_000
        t1 = t0 + int(duration * 1e9)
        for c in (rig.loadgen, rig.sink):
            c.call("window", t0=t0, t1=t1)
        time.sleep(max(0.0, (t0 - common.now_ns()) / 1e9))
        m0 = common.machine_busy()
        q0 = [g.stat() for g in rig.held]
        c0 = [r.call("cpu") for r in rig.relays]
        g0, s0 = rig.loadgen.call("cpu"), rig.sink.call("cpu")
        time.sleep(max(0.0, (t1 - common.now_ns()) / 1e9))
        c1 = [r.call("cpu") for r in rig.relays]
        g1, s1 = rig.loadgen.call("cpu"), rig.sink.call("cpu")
        q1 = [g.stat() for g in rig.held]
        m1 = common.machine_busy()
        quota = _quota_fields(rig.held, [r.pid for r in rig.relays], q0, q1)
        time.sleep(1.5)   # frames of the window still in flight
        sink, gen = rig.sink.call("stats"), rig.loadgen.call("stats")
        rig.loadgen.call("stop_all")
        for r in rig.relays:
            r.call("stop_all", timeout=120)
        wall = (g1["t_ns"] - g0["t_ns"]) / 1e9
        lost = common.lost_frames(gen["per_stream_sent"], sink["per_stream_recv"])
        cores = [relay._delta_cpu(a, b) / wall for a, b in zip(c0, c1)]
        gen_core, sink_core = relay._delta_cpu(g0, g1) / wall, relay._delta_cpu(s0, s1) / wall
        busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (os.cpu_count() or 1)
        return {"workers": workers, "n": n, "started": started, "sent": gen["sent_window"], "lost": lost,
                "lat_p50": sink["latency_ms"][0], "lat_p99": sink["latency_ms"][1], "relay_cores": cores,
                "seq_gaps": sink["seq_gaps"], "reordered": sink["reordered"], "bad": sink.get("bad", 0),
                "gen_core": gen_core, "sink_core": sink_core,
                # everything else on the machine (other users' work) during the window, in cores
                "other_core": busy - sum(cores) - gen_core - sink_core,
                "gen_late_p99": gen["late_ms"][1], **quota}
    finally:
        rig.close()


def _quota_fields(held: list, pids: list, q0: list, q1: list) -> dict:
    """For rows whose workers are held to a quota: the share of CFS periods in which each worker's
    group was throttled (near 1 = it wanted more than its quota all the window) and whether each
    group held exactly its worker (`held_ok`: no other process in it, none forked by the worker)."""
    if not held:
        return {}
    return {"quota": held[0].quota,
            "throttled": [(b["throttled"] - a["throttled"]) / max(1, b["periods"] - a["periods"])
                          if a and b else None for a, b in zip(q0, q1)],
            "held_ok": all(g.members() == [pid] for g, pid in zip(held, pids))}


def carried(r: dict, duration: float) -> bool:
    """No frame lost (none missing from the window, no gap, repeat or malformed message in any
    stream's sequence, bench/common.py SinkConn), the p99 added latency within MAX_P99_MS (TCP buffers hide an overloaded relay's
    backlog as delay, not loss), and the load generator kept its schedule (sent >= 99 % of N x 50
    frames/s in the window): when it falls behind, the machine is full and fewer frames are offered
    than N streams send."""
    return (r["lost"] == 0 and not r.get("seq_gaps") and not r.get("reordered") and not r.get("bad")
            and r["started"] >= r["n"] and r["sent"] >= 0.99 * r["n"] * 50 * duration
            and r["lat_p99"] is not None and r["lat_p99"] <= MAX_P99_MS)


def sustained(r: dict) -> bool:
    """A calls row whose offered rate was carried: no failed call, >= 95 % of it set up, p99 setup
    overhead within MAX_P99_MS."""
    return (r["failed"] == 0 and (r["cps"] or 0) >= 0.95 * r["value"] and r["over_p99"] is not None
            and r["over_p99"] <= MAX_P99_MS)


def relay_ladders(duration: float, warmup: float, step: int = STEP_N, log=print, groups=None,
                  per_worker: list | None = None) -> tuple:
    """1 and 2 workers interleaved at each N (both see the same load from the rest of the machine),
    each until it stops carrying N; ({workers: largest N carried, 0 if none}, rows). With `groups`
    (bench/core_quota.py) every relay process is held to its quota and step k offers W workers
    W x per_worker[k] streams (the same load per worker: the scaling ladder); else N runs from
    START_N by `step` for both."""
    steps = list(per_worker) if per_worker else list(range(START_N, MAX_N + 1, step))
    rows, best, going = [], {1: 0, 2: 0}, {1, 2}
    misses = {1: 0, 2: 0}
    for load in steps:
        if not going:
            break
        for w in sorted(going):
            n = w * load if per_worker else load
            for attempt in (1, 2):   # a step missed once is measured again: one burst of other load
                held = f", each worker held to {groups.quota:g} core" if groups is not None else ""
                log(f"workers: relay, {w} worker(s){held}, N={n} ({duration:.0f} s window)")   # must not end a ladder
                try:
                    r = relay_row(w, n, duration, warmup, log, groups)
                except Exception as exc:  # noqa: BLE001 - an overloaded rig answers its control calls too late
                    log(f"  ! failed: {exc!r}")
                    r = None
                if r is not None:
                    r["carried"] = carried(r, duration)
                    rows.append(r)
                    log("  " + json.dumps(r, default=str))
                    if r["carried"]:
                        best[w] = n
                        break
                misses[w] += 1
                if misses[w] > 1:
                    going.discard(w)
                    break
    return best, rows


# -- calls/s --------------------------------------------------------------------------------------------

class Callforks:
    """W callfork children seen as one for bench.calls.run_row: `state` sums their CPU, calls,
    webhook queues and memory."""

    def __init__(self, children: list):
        self.children = children

    def call(self, cmd: str, **kw) -> dict:
        states = [c.call(cmd, **kw) for c in self.children]
        out = dict(states[0])
        for key in ("user", "sys", "calls", "outbox", "rss_kb", "runq_wait_ns", "streams", "frames_in"):
            out[key] = sum(s.get(key, 0) for s in states)
        out["t_ns"] = max(s["t_ns"] for s in states)
        return out


class Engines:
    """A real redis-server and PostgreSQL for the calls ladders' cluster rows, started as the cluster
    tests start them (tests/cluster_servers.py: free loopback ports, temporary directories, trust
    auth); each rig gets a Redis database and a PostgreSQL database of its own (`urls`), so rigs up at
    the same time are not one cluster. `cpu()`: their CPU seconds so far (redis-server, and the
    postmaster with its backends and what it reaped)."""

    def __init__(self):
        tests = str(common.ROOT / "tests")
        if tests not in sys.path:
            sys.path.insert(0, tests)
        from cluster_servers import PostgresServer, RedisServer

        self.redis = RedisServer()
        self.pg = PostgresServer()
        try:
            self.redis.start()
            self.pg.start()
        except Exception:
            self.close()
            raise
        self.n = 0

    def urls(self) -> dict:
        import pg8000.native

        self.n += 1
        name = f"callfork_rig{self.n}"
        conn = pg8000.native.Connection("callfork", host="127.0.0.1", port=self.pg.port, database="postgres",
                                        timeout=10)
        try:
            conn.run(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return {"redis_url": self.redis.url.rsplit("/", 1)[0] + f"/{self.n}",
                "postgres_dsn": self.pg.dsn.rsplit("/", 1)[0] + f"/{name}"}

    def cpu(self) -> float:
        return tree_cpu([p.proc.pid for p in (self.redis, self.pg) if p.proc is not None])

    def close(self) -> None:
        for server in (self.pg, self.redis):
            try:
                server.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - the other one is still stopped
                pass


def tree_cpu(pids: list) -> float:
    """User + system CPU seconds of processes `pids`, their live descendants, and the children
    they reaped (cutime/cstime), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) if int(d) in pids
                             else int(fields[11]) + int(fields[12]))
    total, todo, seen = 0, list(pids), set()
    children: dict = {}
    for pid, (ppid, _t) in stats.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total / tick


class CallsRig(calls.Rig):
    """bench.calls.Rig with `workers` callfork services on one socket app port (lean switch); with
    `cluster` ({redis_url, postgres_dsn}) they are cluster nodes on those servers instead of SQLite;
    with `groups` (bench/core_quota.py) each callfork service process, and nothing else, is held to
    the groups' quota (`held`: their groups, in worker order)."""

    def __init__(self, workers: int, cluster: dict | None = None, groups=None):   # noqa: super().__init__ not called
        self.switch_kind = "lean"
        self.groups, self.held = groups, []
        self.data_dir = tempfile.mkdtemp(prefix="callfork-bench-workers-")
        self.children = []
        try:
            self.sink = None
            self.app = common.Child("bench.calls", "app", name="app")
            self.children.append(self.app)
            self.switch = common.Child(*calls.SWITCHES["lean"], name="switch")
            self.children.append(self.switch)
            url = self.app.info["url"]
            outbound = calls.free_port()
            procs = []
            for i in range(workers):
                data_dir = f"{self.data_dir}/w{i}"
                os.makedirs(data_dir)
                spec = {"data_dir": data_dir, "esl": self.switch.info["esl"], "workers": workers,
                        "ports": {"outbound": outbound, "http": calls.free_port(), "relay": calls.free_port()},
                        "numbers": {"*": url + "/answer"}, "hangup_url": url + "/hangup"}
                if cluster:
                    spec["cluster"] = dict(cluster, node_id=f"bench-{workers}w-w{i}")
                child = common.Child("bench.calls", "callfork", json.dumps(spec), name=f"callfork-w{i}")
                self.children.append(child)
                procs.append(child)
                if groups is not None:
                    self.held.append(groups.hold(child.pid, f"callfork-w{i}"))
            self.callfork = Callforks(procs)
            self.switch.call("target", host="127.0.0.1", port=outbound)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        for c in reversed(self.children):
            c.close()
        for g in self.held:
            self.groups.release(g)
        shutil.rmtree(self.data_dir, ignore_errors=True)


SQLITE, CLUSTER = "SQLite", "Redis+PG"


def calls_ladders(duration: float, log=print, cluster: bool = True, quick: bool = False, groups=None,
                  per_worker: list | None = None) -> tuple:
    """1 and 2 workers interleaved at each offered rate, each until it misses `sustained` twice: with
    SQLite (each worker its own file, as bench/calls.py) and, with `cluster`, as nodes on one real
    Redis and PostgreSQL (Engines; CLUSTER_QUICK_RATES only when `quick`). ({(store, workers): the
    best row or None}, rows); a row of a cluster ladder has the engines' CPU (`engine_core`,
    `engine_ms_call`). With `groups` (bench/core_quota.py) every callfork service process is held to
    its quota and step k offers W workers W x per_worker[k] calls/s (the scaling ladder; every step,
    quick or not); a row then has each worker's cores (`worker_cores`) and throttled share."""
    keys = [(SQLITE, 1), (SQLITE, 2)]
    rows, best, rigs, engines = [], {}, {}, None
    steps = list(per_worker) if per_worker else list(RATES)
    try:
        if cluster:
            try:
                engines = Engines()
                keys += [(CLUSTER, 1), (CLUSTER, 2)]
            except Exception as exc:  # noqa: BLE001 - the SQLite ladders stand without them
                log(f"  ! Redis/PostgreSQL did not start ({exc!r}): no {CLUSTER} rows")
        for key in keys:
            rigs[key] = CallsRig(key[1], engines.urls() if key[0] == CLUSTER else None, groups)
            rigs[key].switch.call("run", timeout=120, mode="closed", value=5, duration=1.5)   # warm-up
            rigs[key].wait_idle()
        going, misses = set(keys), {k: 0 for k in keys}
        for load in steps:
            for key in keys:
                if key not in going or (key[0] == CLUSTER and quick and not per_worker
                                        and load not in CLUSTER_QUICK_RATES):
                    continue
                rate = key[1] * load if per_worker else load
                rig = rigs[key]
                for attempt in (1, 2):   # as in relay_ladders: a step missed once is measured again
                    held = f", each worker held to {groups.quota:g} core" if groups is not None else ""
                    log(f"workers: calls, {key[1]} worker(s){held}, {key[0]}, offered {rate:g} CPS for "
                        f"{duration:.0f} s")
                    e0 = engines.cpu() if key[0] == CLUSTER else None
                    try:
                        rig.wait_idle()
                        q0, w0 = [g.stat() for g in rig.held], [c.call("cpu") for c in rig.callfork.children]
                        r = calls.run_row(rig, "open", rate, duration)
                        w1, q1 = [c.call("cpu") for c in rig.callfork.children], [g.stat() for g in rig.held]
                    except Exception as exc:  # noqa: BLE001 - one broken row must not lose the others
                        log(f"  ! failed: {exc!r}")
                        r = None
                    if r is not None:
                        r["store"], r["workers"] = key
                        r["worker_cores"] = [calls._cpu(a, b) / ((b["t_ns"] - a["t_ns"]) / 1e9) for a, b in zip(w0, w1)]
                        r.update(_quota_fields(rig.held, [c.pid for c in rig.callfork.children], q0, q1))
                        if e0 is not None:
                            e = engines.cpu() - e0
                            r["engine_core"] = e / r["wall"]
                            r["engine_ms_call"] = e / max(1, r["placed"]) * 1e3
                        r["sustained"] = sustained(r)
                        rows.append(r)
                        log("  " + json.dumps({k: r.get(k) for k in ("ok", "placed", "cps", "over_p50", "over_p99",
                                                                     "cf_core", "worker_cores", "throttled", "sw_core",
                                                                     "app_core", "engine_core", "cpu_ms_call")},
                                              default=str))
                        if r["sustained"]:
                            break
                    misses[key] += 1
                    if misses[key] > 1:
                        going.discard(key)   # overloaded (twice): higher rates only fail more
                        break
            if not going:
                break
    finally:
        for rig in rigs.values():
            rig.close()
        if engines is not None:
            engines.close()
    for key in keys:
        ok = [r for r in rows if (r["store"], r["workers"]) == key and r["sustained"]]
        best[key] = max(ok, key=lambda r: r["cps"]) if ok else None
    return best, rows


# -- what 2 cores allow ---------------------------------------------------------------------------------

def bound(c: float, workers: int, others: dict, single: tuple, cores: int) -> tuple:
    """The most `workers` workers can carry (units/s: streams or calls/s), CPU alone, and what binds:
    min(workers / c, cores / (c + sum(others)), 1 / others[p] for p in `single`); see the docstring."""
    limits = {f"{workers} worker core{'s' if workers > 1 else ''}": workers / c,
              f"{cores} cores": cores / (c + sum(others.values()))}
    for p in single:
        if others.get(p):
            limits[f"{p}'s core"] = 1 / others[p]
    what = min(limits, key=limits.get)
    return limits[what], what


def relay_bound(best: dict, rows: list, cores: int) -> dict | None:
    """The relay ladders' bound from the 1-worker row at its largest N carried (per stream, cores)."""
    r = next((r for r in rows if r["workers"] == 1 and r["n"] == best.get(1) and r["carried"]), None)
    if r is None:
        return None
    n = r["n"]
    c = r["relay_cores"][0] / n
    others = {"load generator": r["gen_core"] / n, "sink": r["sink_core"] / n}
    return _bounds(c, others, ("load generator", "sink"), cores, best.get(1, 0), best.get(2, 0),
                   unit_us=1e6 / 50)   # per frame: a stream is 50 frames/s


def calls_bound(best: dict, store: str, cores: int) -> dict | None:
    """A calls ladder's bound from its 1-worker best row (per call, CPU seconds)."""
    r1, r2 = best.get((store, 1)), best.get((store, 2))
    if r1 is None:
        return None
    c = r1["cpu_ms_call"] / 1e3
    others = {"switch": r1["sw_ms_call"] / 1e3, "app": r1["app_core"] * r1["wall"] / max(1, r1["placed"])}
    single = ("switch", "app")
    if r1.get("engine_ms_call") is not None:
        others["Redis+PostgreSQL"] = r1["engine_ms_call"] / 1e3
    return _bounds(c, others, single, cores, r1["cps"], r2["cps"] if r2 else None, unit_us=1e6)


def _bounds(c, others, single, cores, got1, got2, unit_us) -> dict:
    b1, why1 = bound(c, 1, others, single, cores)
    b2, why2 = bound(c, 2, others, single, cores)
    measured = got2 / got1 if got1 and got2 else None
    return {"c_us": c * unit_us, "h_us": {k: v * unit_us for k, v in others.items()},
            "b1": b1, "why1": why1, "b2": b2, "why2": why2, "bound_ratio": b2 / b1,
            "got1": got1, "got2": got2, "measured": measured,
            "of_bound": measured / (b2 / b1) if measured else None}


# -- the table ------------------------------------------------------------------------------------------

def _f(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def table(relay_best: dict, relay_rows: list, calls_best: dict, calls_rows: list, duration: float,
          step: int, cores: int) -> str:
    r1, r2 = relay_best.get(1, 0), relay_best.get(2, 0)
    lines = [f"**workers: one machine with 1 and with 2 callfork workers, one run** (relay: 8 kHz one-way, "
             f"{duration:.0f} s window per N, N up by {step} from {START_N} while no frame is lost, p99 added "
             f"latency <= {MAX_P99_MS:.0f} ms and the load generator keeps its schedule; calls/s: open loop, "
             f"the lean switch, the highest offered rate >= 95 % set up with no failed call and p99 setup "
             f"overhead <= {MAX_P99_MS:.0f} ms, with SQLite (each worker its own) and as cluster nodes on one "
             f"Redis + PostgreSQL; 1 and 2 workers interleaved at each step)", "",
             "| | 1 worker | 2 workers | 2 / 1 |", "|---|---|---|---|",
             f"| relay streams carried without loss | {r1} | {r2} | {_f(r2 / r1 if r1 else None, '.2f')}x |"]
    stores = [s for s in (SQLITE, CLUSTER) if (s, 1) in calls_best]
    for store in stores:
        cps1, cps2 = (c["cps"] if c else None for c in (calls_best.get((store, 1)), calls_best.get((store, 2))))
        lines.append(f"| calls/s, {store} | {_f(cps1)} | {_f(cps2)} | "
                     f"{_f(cps2 / cps1 if cps1 and cps2 else None, '.2f')}x |")
    lines += ["", f"**what {cores} cores allow** (bench/workers.py docstring: from the 1-worker row at its "
                  f"best step, c = its CPU per unit, h = the rest's; bound = CPU alone, W workers <= "
                  f"min(W/c, {cores}/(c+h), 1/h_p of each single-process part p); measured / bound = how much "
                  f"of the box's 2 / 1 the workers got)", "",
              "| ladder | c: worker CPU per unit | h: the rest per unit | 1 worker bound (what binds) | "
              "2 workers bound (what binds) | bound 2 / 1 | measured 1 → 2 | measured 2 / 1 | measured / bound |",
              "|---|---|---|---|---|---|---|---|---|"]
    bounds = [("relay streams", relay_bound(relay_best, relay_rows, cores), "us/frame", ".1f", ".0f")]
    bounds += [(f"calls/s, {store}", calls_bound(calls_best, store, cores), "ms/call", ".2f", ".0f")
               for store in stores]
    for name, b, unit, spec, nspec in bounds:
        if b is None:
            lines.append(f"| {name} | - | - | - | - | - | - | - | no 1-worker step carried |")
            continue
        scale = 1e-3 if unit == "ms/call" else 1.0
        h = " + ".join(f"{k} {v * scale:{spec}}" for k, v in b["h_us"].items())
        lines.append(f"| {name} | {b['c_us'] * scale:{spec}} {unit} | {h} | {b['b1']:{nspec}} ({b['why1']}) | "
                     f"{b['b2']:{nspec}} ({b['why2']}) | {b['bound_ratio']:.2f}x | {_f(b['got1'], nspec)} → "
                     f"{_f(b['got2'], nspec)} | {_f(b['measured'], '.2f')}x | {_f(b['of_bound'], '.2f')} |")
    lines += ["", "| relay row: workers, N | lost | lat p50/p99 ms | relay cores (each) | loadgen+sink cores | "
                  "harness us/frame | other load (cores) |", "|---|---|---|---|---|---|---|"]
    for r in relay_rows:
        hf = (r["gen_core"] + r["sink_core"]) / (r["n"] * 50) * 1e6
        gaps = f", {r['seq_gaps']} missing" if r.get("seq_gaps") else ""
        bad = f", {r['bad']} malformed" if r.get("bad") else ""
        lines.append(f"| {r['workers']}, {r['n']} | {r['lost']} of {r['sent']}{gaps}{bad}"
                     f"{'' if r['carried'] else ' (not carried)'} | {_f(r['lat_p50'], '.2f')}/"
                     f"{_f(r['lat_p99'], '.2f')} | {'+'.join(_f(c, '.2f') for c in r['relay_cores'])} | "
                     f"{r['gen_core']:.2f}+{r['sink_core']:.2f} | {hf:.1f} | {_f(r['other_core'], '.2f')} |")
    lines += ["", "| calls row: workers, store, offered CPS | ok/placed | achieved CPS | overhead p50 / p99 ms | "
                  "callfork cores (all) | CPU ms/call | switch+app cores | Redis+PG cores (ms/call) | "
                  "other load (cores) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in calls_rows:
        eng = (f"{r['engine_core']:.2f} ({r['engine_ms_call']:.2f})" if r.get("engine_core") is not None else "-")
        lines.append(f"| {r['workers']}, {r['store']}, {r['value']:g} | {r['ok']}/{r['placed']}"
                     f"{'' if r['sustained'] else ' (not sustained)'} | {_f(r['cps'])} | "
                     f"{_f(r['over_p50'])} / {_f(r['over_p99'])} | {_f(r['cf_core'], '.2f')} | "
                     f"{_f(r['cpu_ms_call'], '.2f')} | {r['sw_core']:.2f}+{r['app_core']:.2f} | {eng} | "
                     f"{_f(r['other_core'], '.2f')} |")
    return "\n".join(lines)


# -- per-core scaling: every worker held to a fixed share of a core -----------------------------------

# per-worker loads of the scaling ladders, per core of quota (x Q): streams, and calls/s. They start
# below what a held worker carries: under its quota a worker's CPU per unit was higher than unthrottled
# (first run at Q = 0.4: 9 ms per call against 5-6; the relay already at its quota at 160 streams)
QUOTA_RELAY_PER_CORE, QUOTA_RELAY_QUICK_PER_CORE = range(250, 1601, 50), range(250, 1601, 100)
QUOTA_CALLS_PER_CORE, QUOTA_CALLS_QUICK_PER_CORE = range(50, 401, 10), range(50, 401, 20)


def per_worker_loads(q: float, per_core) -> list:
    """The per-worker steps of a scaling ladder at quota `q`: q x each per-core load, rounded."""
    return sorted({max(1, round(q * x)) for x in per_core})


def _ends(rows: list, workers: int, ok: str, load: str) -> tuple:
    """(the row at the largest load carried, the first row above it that was not: the step that
    ended the ladder, its last attempt), either None."""
    mine = [r for r in rows if r["workers"] == workers]
    good = [r for r in mine if r[ok]]
    top = max(good, key=lambda r: r[load]) if good else None
    above = [r for r in mine if not r[ok] and (top is None or r[load] > top[load])]
    miss = None
    if above:
        first = min(r[load] for r in above)
        miss = [r for r in above if r[load] == first][-1]
    return top, miss


def quota_table(q: float, relay_rows: list, calls_rows: list, duration: float, where: str) -> str:
    """The scaling table: each ladder's 1- and 2-worker results at quota `q` per worker, their ratio
    (and the range one step either side allows), the workers' CPU and throttled share at the best
    step and at the step that ended the ladder, the harness's CPU and the other load."""
    lines = [f"**workers held to {q:g} core each (CFS quota, {where}, 10 ms period): how the workers scale "
             f"with the CPU they are given, not what this box carries unthrottled (table above)**. Every "
             f"worker process (each relay process; each callfork service process), and nothing else, is held "
             f"to {q:g} of a core; the load generator, sink, switch, app and Redis/PostgreSQL use the rest of "
             f"the machine. Step k offers W workers W x the same per-worker load (relay: 8 kHz one-way, "
             f"{duration:.0f} s window; calls/s: open loop, lean switch), 1 and 2 workers interleaved at each "
             f"step, carried / sustained as above. 2 workers at {q:g} each against 1 at {q:g}: 2x means no "
             f"shared bottleneck between workers, which is what `--workers N` gives on a machine with a core "
             f"per worker. A saturated worker sits at ~{q:g} core, throttled in most periods.", "",
             f"| ladder | 1 worker at {q:g} | 2 workers at {q:g} | 2 / 1 | 2 / 1 within (one step either side) | "
             f"worker cores, 1 worker: best / next step | worker cores (each), 2 workers: best / next step | "
             f"throttled share of periods at the next step (1; 2 workers) | harness cores at the 2-worker best | "
             f"other load (cores) at the 2-worker best |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cores(r, key):
        return "-" if r is None else "+".join(_f(c, ".2f") for c in r[key])

    def thr(r):
        return "-" if r is None or not r.get("throttled") else "+".join(_f(t, ".2f") for t in r["throttled"])

    ladders = [("relay streams", relay_rows, "carried", "n", "n", "relay_cores",
                lambda r: r["gen_core"] + r["sink_core"], "{:.0f}", "loadgen+sink")]
    for store in (SQLITE, CLUSTER):
        mine = [r for r in calls_rows if r["store"] == store]
        if mine:
            ladders.append((f"calls/s, {store}", mine, "sustained", "value", "cps", "worker_cores",
                            lambda r: r["sw_core"] + r["app_core"] + (r.get("engine_core") or 0), "{:.1f}",
                            "switch+app" + ("+Redis+PG" if store == CLUSTER else "")))
    for name, rows, ok, load, got, wc, harness, fmt, hname in ladders:
        t1, m1 = _ends(rows, 1, ok, load)
        t2, m2 = _ends(rows, 2, ok, load)
        g1, g2 = (t[got] if t else None for t in (t1, t2))
        ratio = g2 / g1 if g1 and g2 else None
        lo = t2[load] / m1[load] if t2 and m1 else None   # 1 worker just below its miss, 2 at their best
        hi = m2[load] / t1[load] if m2 and t1 else None
        within = (f"{_f(lo, '.2f')}-{_f(hi, '.2f')}x" if lo and hi else
                  f">= {lo:.2f}x" if lo else f"<= {hi:.2f}x" if hi else "-")
        lines.append(f"| {name} | {fmt.format(g1) if g1 else '-'} | {fmt.format(g2) if g2 else '-'} | "
                     f"{_f(ratio, '.2f')}x | {within} | {cores(t1, wc)} / {cores(m1, wc)} | "
                     f"{cores(t2, wc)} / {cores(m2, wc)} | {thr(m1)}; {thr(m2)} | "
                     f"{_f(harness(t2) if t2 else None, '.2f')} ({hname}) | "
                     f"{_f(t2['other_core'] if t2 else None, '.2f')} |")
    lines += ["", f"| relay row at {q:g} core/worker: workers, N | lost | lat p50/p99 ms | worker cores (each) | "
                  "throttled share (each) | loadgen+sink cores | other load (cores) | groups held only the workers |",
              "|---|---|---|---|---|---|---|---|"]
    for r in relay_rows:
        lines.append(f"| {r['workers']}, {r['n']} | {r['lost']} of {r['sent']}"
                     f"{'' if r['carried'] else ' (not carried)'} | {_f(r['lat_p50'], '.2f')}/"
                     f"{_f(r['lat_p99'], '.2f')} | {cores(r, 'relay_cores')} | {thr(r)} | "
                     f"{r['gen_core']:.2f}+{r['sink_core']:.2f} | {_f(r['other_core'], '.2f')} | "
                     f"{'yes' if r.get('held_ok') else 'NO'} |")
    lines += ["", f"| calls row at {q:g} core/worker: workers, store, offered CPS | ok/placed | achieved CPS | "
                  "overhead p50 / p99 ms | worker cores (each) | throttled share (each) | CPU ms/call | "
                  "switch+app cores | Redis+PG cores | other load (cores) | groups held only the workers |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in calls_rows:
        lines.append(f"| {r['workers']}, {r['store']}, {r['value']:g} | {r['ok']}/{r['placed']}"
                     f"{'' if r['sustained'] else ' (not sustained)'} | {_f(r['cps'])} | "
                     f"{_f(r['over_p50'])} / {_f(r['over_p99'])} | {cores(r, 'worker_cores')} | {thr(r)} | "
                     f"{_f(r['cpu_ms_call'], '.2f')} | {r['sw_core']:.2f}+{r['app_core']:.2f} | "
                     f"{_f(r.get('engine_core'), '.2f')} | {_f(r['other_core'], '.2f')} | "
                     f"{'yes' if r.get('held_ok') else 'NO'} |")
    return "\n".join(lines)


def run_quota(q: float, quick: bool, duration: float, log=print, cluster: bool = True) -> list:
    """The scaling ladders with every worker held to `q` cores (bench/core_quota.py). Quick: relay
    steps of 100 streams per core of quota and calls steps of 20 calls/s per core, SQLite only; else
    50 and 10, and the Redis+PG calls ladders too. Skipped, with one log line saying why, where no CPU
    cgroup can be made (not an error)."""
    from bench import core_quota

    ok, where = core_quota.available()
    if not ok:
        log(f"workers: --core-quota {q:g} skipped: {where}")
        return []
    groups = core_quota.Groups(q)
    try:
        relay_per = per_worker_loads(q, QUOTA_RELAY_QUICK_PER_CORE if quick else QUOTA_RELAY_PER_CORE)
        calls_per = per_worker_loads(q, QUOTA_CALLS_QUICK_PER_CORE if quick else QUOTA_CALLS_PER_CORE)
        _best, relay_rows = relay_ladders(duration, 1.5, log=log, groups=groups, per_worker=relay_per)
        _best, calls_rows = calls_ladders(duration, log, cluster=cluster and not quick, groups=groups,
                                          per_worker=calls_per)
    finally:
        left = groups.close()
        if left:
            log(f"  ! cgroups not removed: {left}")
    t = quota_table(q, relay_rows, calls_rows, duration, where)
    log(t + "\n")
    return [(f"workers at {q:g} core each", t, relay_rows + calls_rows)]


def run(quick: bool = False, duration: float | None = None, log=print, cluster: bool = True,
        core_quota: float | None = None) -> list:
    """Quick: 4 s windows, N up by 200 and the cluster ladders at CLUSTER_QUICK_RATES (what
    `python -m bench all` runs); else 6 s, N by 100, every rate. With `core_quota` Q, then the
    scaling ladders with every worker held to Q cores (run_quota), in a table of their own."""
    duration = duration or (4.0 if quick else 6.0)
    step = QUICK_STEP_N if quick else STEP_N
    relay_best, relay_rows = relay_ladders(duration, 1.5, step, log)
    calls_best, calls_rows = calls_ladders(duration, log, cluster=cluster, quick=quick)
    t = table(relay_best, relay_rows, calls_best, calls_rows, duration, step, os.cpu_count() or 1)
    log(t + "\n")
    out = [("workers", t, relay_rows + calls_rows)]
    if core_quota:
        out += run_quota(core_quota, quick, duration, log, cluster)
    return out
