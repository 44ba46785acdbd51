"""Webhook soak (not part of `python -m bench`; minutes to hours): nothing lost through a long receiver
outage, and memory flat while it lasts. Results are recorded in docs/internals.md ("webhooks").

    python -m bench.webhook_soak outage [--minutes 10] [--rate 2] [--kill-every 120] [--doc record|hangup]
    python -m bench.webhook_soak memory [--minutes 10] [--rate 300] [--dead refused|hang]

outage: real processes. The FreeSWITCH simulator (in this process) places calls at `--rate` calls/s
on `callfork serve` (a subprocess, short backoffs, a retry window longer than the run) whose
document records the session (Record, Hangup and RecordStop webhooks per call; `--doc hangup`:
`<Hangup/>` at once, the Hangup webhook only, for high call rates) while the receiver is down
(connection refused). A kill -9 with `--kill-every 0` never comes. Every `--kill-every` s callfork is killed with -9 and started again.
After `--minutes` the calls stop, the receiver comes back, and the run waits until every webhook
stored in the database is delivered, then checks: each idempotency key answered 200 exactly once,
each call's webhooks in the order they were stored. VmRSS of callfork is sampled every 10 s.

memory: the outbox alone (webhooks.Outbox in this process, the service's settings) takes `--rate`
webhooks/s (100 calls/s x 3) for a receiver that is down: `refused` (no listener) or `hang`
(accepts, never answers: each attempt holds a slot until the read timeout). Prints VmRSS (after a
gc.collect()) and the queue every 30 s: memory must stay flat while the rows pile up in SQLite.

Exit status 0 when the checks pass. Everything binds 127.0.0.1 and stops by itself.
"""
if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import parse_qsl  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HANGUP_DOC = "<Response><Hangup/></Response>"
DOC = """<Response>
  <Record recordSession="true" fileFormat="wav" redirect="false" maxLength="60"
          action="{hooks}/rec-action" callbackUrl="{hooks}/rec-stop"/>
  <Wait length="1"/>
</Response>"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid="self") -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Receiver:
    """The user's app: serves the document, records each webhook (key, event, call), answers 200."""

    def __init__(self, port: int, doc: str):
        self.port, self.doc = port, doc
        self.seen = []          # (key, call_uuid, event) in arrival order
        self.server = None

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ.get("PATH_INFO") == "/answer":
            start_response("200 OK", [("Content-Type", "application/xml")])
            return [self.doc.encode()]
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        key = environ.get("HTTP_X_CALLFORK_IDEMPOTENCY_KEY")
        if key:
            self.seen.append((key, form.get("CallUUID", ""), form.get("Event", "")))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    def start(self):
        self.server = WSGIServer(("127.0.0.1", self.port), self.app, log=None, error_log=None)
        self.server.start()

    def stop(self):
        if self.server is not None:
            self.server.stop(timeout=1)
            self.server = None


class Serve:
    """`callfork serve` as a subprocess."""

    def __init__(self, config: Path, http_port: int):
        self.config, self.http_port, self.proc = config, http_port, None

    def start(self):
        log = open(self.config.parent / "serve.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "callfork.cli", "--config", str(self.config), "serve"],
                                     cwd=str(self.config.parent), stdout=log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            gevent.sleep(0.1)
        raise RuntimeError("callfork serve did not become healthy (see serve.log)")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def stored_rows(db: str) -> list:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute("SELECT id, call_uuid, event, idempotency_key, status FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


def count_rows(db: str) -> int:
    try:
        conn = sqlite3.connect(db, timeout=10)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def outage(args) -> int:
    from switch_sim import CallScript, Simulator

    work = Path(tempfile.mkdtemp(prefix="callfork-soak-"))
    ports = {name: free_port() for name in ("esl", "outbound", "http", "relay", "app", "hooks")}
    doc = HANGUP_DOC if args.doc == "hangup" else DOC.format(hooks=f"http://127.0.0.1:{ports['hooks']}")
    app = Receiver(ports["app"], doc)
    hooks = Receiver(ports["hooks"], "")
    app.start()
    config = work / "callfork.toml"
    config.write_text(f"""[freeswitch]
esl_port = {ports['esl']}
[server]
outbound_listen = "127.0.0.1:{ports['outbound']}"
http_listen = "127.0.0.1:{ports['http']}"
relay_listen = "127.0.0.1:{ports['relay']}"
auth_token = "soak"
data_dir = "{work / 'var'}"
[webhooks]
retry_window_s = {args.minutes * 60 * 4 + 3600}
backoff_base_s = 0.5
backoff_max_s = 30
[[numbers]]
number = "*"
answer_url = "http://127.0.0.1:{ports['app']}/answer"
hangup_url = "http://127.0.0.1:{ports['hooks']}/hangup"
""")
    db = str(work / "var" / "callfork.sqlite3")
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    serve = Serve(config, ports["http"]).start()
    print(f"soak in {work}: receiver down for {args.minutes} min, {args.rate} calls/s, kill -9 every "
          f"{args.kill_every} s", flush=True)
    started = time.monotonic()
    next_kill = started + args.kill_every if args.kill_every > 0 else float("inf")
    next_sample = started
    placed = kills = 0
    samples = []
    while time.monotonic() - started < args.minutes * 60:
        sim.place_call(CallScript(to="1000", hangup_after=30))
        placed += 1
        now = time.monotonic()
        if now >= next_sample:
            samples.append((round(now - started), round(rss_mb(serve.proc.pid), 1), count_rows(db)))
            print(f"  t={samples[-1][0]:>5} s  callfork VmRSS {samples[-1][1]:>6} MB  rows {samples[-1][2]}",
                  flush=True)
            next_sample = now + 10
        if now >= next_kill:
            serve.kill9()
            kills += 1
            serve = Serve(config, ports["http"]).start()
            next_kill = time.monotonic() + args.kill_every
        placed_by_now = int((time.monotonic() - started) * args.rate)
        if placed >= placed_by_now:
            gevent.sleep(1.0 / args.rate)
    gevent.sleep(5)    # the last calls end (Wait 1 s) and store their webhooks
    rows = stored_rows(db)
    hooks.start()
    back = time.monotonic()
    while True:
        rows = stored_rows(db)
        if rows and all(r[4] == "delivered" for r in rows):
            break
        if time.monotonic() - back > max(600, args.minutes * 60):
            print("not everything was delivered in time", flush=True)
            break
        gevent.sleep(1)
    drained = time.monotonic() - back
    gevent.sleep(2)    # nothing more may arrive
    serve.stop()
    sim.stop()
    hooks.stop()
    app.stop()

    counts = collections.Counter(key for key, _, _ in hooks.seen)
    duplicates = sum(1 for n in counts.values() if n > 1)
    missing = [r for r in rows if r[3] not in counts]
    by_call = collections.defaultdict(list)
    for r in rows:
        by_call[r[1]].append(r[3])
    first_arrival = {}
    for i, (key, _, _) in enumerate(hooks.seen):
        first_arrival.setdefault(key, i)
    out_of_order = sum(1 for keys in by_call.values()
                       if [first_arrival.get(k, -1) for k in keys] != sorted(first_arrival.get(k, -1) for k in keys))
    rss = [s[1] for s in samples]
    print(f"""
| calls placed | kill -9 | webhooks stored | delivered | duplicate keys | missing | calls out of order | drain after the receiver came back | callfork VmRSS min / max |
|---|---|---|---|---|---|---|---|---|
| {placed} | {kills} | {len(rows)} | {len(counts)} | {duplicates} | {len(missing)} | {out_of_order} | {drained:.1f} s | {min(rss):.1f} / {max(rss):.1f} MB |""",
          flush=True)
    return 0 if not duplicates and not missing and not out_of_order and rows else 1


def memory(args) -> int:
    from webhooks import Outbox

    work = Path(tempfile.mkdtemp(prefix="callfork-soak-memory-"))
    port = free_port()
    hang = acceptor = None
    if args.dead == "hang":     # accepts, reads, never answers
        hang = socket.socket()
        hang.bind(("127.0.0.1", port))
        hang.listen(4096)
        held = []

        def accept():
            while True:
                conn, _ = hang.accept()
                held.append(conn)
        acceptor = gevent.spawn(accept)
    url = f"http://127.0.0.1:{port}/hook"
    box = Outbox(str(work / "callfork.sqlite3"), auth_token="soak", retry_window_s=21600, backoff_base_s=2,
                 backoff_max_s=300, concurrency=64, per_host_concurrency=8, retention_s=259200)
    box.start()
    print(f"memory soak in {work}: {args.rate} webhooks/s for {args.minutes} min to a receiver that is down "
          f"({args.dead})", flush=True)
    print("| t (s) | VmRSS (MB) | webhooks waiting | oldest (s) | enqueue lag (s) | CPU since last (%) |\n"
          "|---|---|---|---|---|---|", flush=True)
    params = {"CallUUID": "", "Event": "Hangup", "HangupCause": "NORMAL_CLEARING", "Duration": "12",
              "From": "15551230001", "To": "15557654321", "Direction": "inbound", "BillDuration": "60"}
    started = time.monotonic()
    sent = 0
    next_report = started
    rows = []
    cpu_before, wall_before = time.process_time(), started
    while time.monotonic() - started < args.minutes * 60:
        now = time.monotonic()
        due = int((now - started) * args.rate)
        while sent < due:
            call = "call-%d" % (sent // 3)
            box.enqueue(call, url, "POST", dict(params, CallUUID=call, Seq=str(sent)), event="Hangup")
            sent += 1
        if now >= next_report:
            gc.collect()
            stats = box.stats()
            lag = (now - started) - sent / args.rate
            cpu = 100 * (time.process_time() - cpu_before) / (now - wall_before) if now - wall_before > 1 else 0
            cpu_before, wall_before = time.process_time(), now
            rows.append((round(now - started), round(rss_mb(), 1), stats["depth"],
                         round(stats["oldest_pending_age_s"]), round(lag, 2), round(cpu)))
            print("| %d | %.1f | %d | %d | %.2f | %d |" % rows[-1], flush=True)
            next_report = now + 30
        gevent.sleep(0.01)
    box.close()
    if hang is not None:
        acceptor.kill()
        hang.close()
    first, last = rows[min(2, len(rows) - 1)], rows[-1]
    print(f"\nVmRSS {first[1]} MB at t={first[0]} s -> {last[1]} MB at t={last[0]} s "
          f"({last[2]} webhooks waiting in SQLite)", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.webhook_soak", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("outage", help="real processes, kill -9, the receiver down, then back")
    o.add_argument("--minutes", type=float, default=10)
    o.add_argument("--rate", type=float, default=2, help="calls per second")
    o.add_argument("--kill-every", type=float, default=120, help="seconds between kill -9 of callfork (0: none)")
    o.add_argument("--doc", choices=("record", "hangup"), default="record",
                   help="the calls' document: a session recording (3 webhooks) or an immediate hangup (1)")
    m = sub.add_parser("memory", help="the outbox alone at a webhook rate, the receiver down")
    m.add_argument("--minutes", type=float, default=10)
    m.add_argument("--rate", type=float, default=300, help="webhooks per second (100 calls/s x 3)")
    m.add_argument("--dead", choices=("refused", "hang"), default="refused")
    args = p.parse_args(argv)
    return outage(args) if args.mode == "outage" else memory(args)


if __name__ == "__main__":
    sys.exit(main())
