"""Shared pieces of the benchmarks: the control plane between processes, a lean mod_audio_fork load
generator, and a real WebSocket sink app.

Process layout of a relay run (each box is its own OS process, so `getrusage` of the relay process
is callfork's CPU and nothing else):

    orchestrator (python -m bench, plain blocking sockets, no gevent)
      |-- control (JSON lines over TCP) --> sink     (python -m bench.common sink)
      |-- control ----------------------> loadgen  (python -m bench.common loadgen)
      `-- control ----------------------> relay    (python -m bench.relay worker): audio_fork.Relay +
                                                    StreamSession, the real code
    relay --api "uuid_audio_fork ..." (line protocol)--> loadgen  (the stand-in for FreeSWITCH)
    loadgen fork clients --WS, audio.drachtio.org, L16 frames--> relay --WS, Vobiz JSON--> sink

Load generator: one greenlet per fork connects to the URL of the `start` command with subprotocol
`audio.drachtio.org` and sends the metadata text frame; once `go`, one greenlet for all forks (Pacer)
sends each fork's binary L16 frame every 20 ms on absolute deadlines (random phase per fork), one
non-blocking send per frame on the raw socket, the frame built once per fork and only its stamp
rewritten. The first 12 bytes of every frame's samples carry `STAMP` = (send time as
CLOCK_MONOTONIC ns, frame sequence number); CLOCK_MONOTONIC is system-wide, so the sink (another
process) recovers it from the base64 payload and computes the added latency. Client frames use the
all-zero masking key (legal in RFC 6455; it makes masking a no-op), so the generator spends its CPU
on pacing and syscalls, not on XOR.

Sink: gevent StreamServer; websockets' sans-I/O `ServerProtocol` does the opening handshake
(`ws_accept`); after it each connection's frames are read by a callback on the hub's event loop
(SinkConn: one recv per readiness into a shared buffer, frame headers parsed in place, masked frames
unmasked by websockets' C speedup); no protocol object and no greenlet switch per message, and no
json.loads or base64 decode of the audio: a `media` message is found by its `"payload":"` key, its
first 16 base64 characters give back STAMP (latency: recv() return time - send time), its sequence
number is checked against the stream's last (gaps, repeats), its payload length against the
stream's first. The load generator's forks read the relay's frames (bidirectional rows) with
`audio_fork.wsframes.FrameReader`.

What the harness costs per frame and per call, before and after a change: bench/harness_cost.py.
"""


def harness_process() -> None:
    """Called first by the harness's own processes (load generator, sink, lean switch, app, the
    simulator's driver; never callfork's): numpy (percentiles, the simulator's media) starts
    OpenBLAS's threads, which spin on a core after each use; none of these does linear algebra."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


if __name__ == "__main__":
    harness_process()
    from gevent import monkey

    monkey.patch_all()

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from array import array  # noqa: E402
from binascii import a2b_base64  # noqa: E402
from pathlib import Path  # noqa: E402

FRAME_MS = 20
FRAME_NS = FRAME_MS * 1_000_000
SUBPROTOCOL = "audio.drachtio.org"
STAMP = struct.Struct("<qI")  # 12 bytes -> exactly 16 base64 characters
STAMP_B64 = 16
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
ROOT = Path(__file__).resolve().parent.parent

try:
    from websockets.speedups import apply_mask  # noqa: E402
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask  # noqa: E402
LOG_DIR = Path(os.environ.get("CALLFORK_BENCH_LOGS", "/tmp/callfork-bench"))


def now_ns() -> int:
    return time.monotonic_ns()


def cpu_times() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": ru.ru_utime, "sys": ru.ru_stime, "t_ns": time.monotonic_ns()}


def machine_busy() -> tuple:
    """(busy, total) jiffies of all CPUs from /proc/stat (to see load from outside the benchmark)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return (0, 0)
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v) - idle, sum(v))


def pct(values, ps=(50, 99, 100)) -> list:
    """Percentiles (nearest-rank on a sorted copy) of a sequence; [] -> Nones."""
    import numpy as np

    if len(values) == 0:
        return [None for _ in ps]
    a = np.asarray(values, dtype=np.float64)
    return [float(np.percentile(a, p, method="higher")) for p in ps]

# --- WebSocket wire helpers ----------------------------------------------------------------------


def frame_header(opcode: int, length: int, masked: bool) -> bytes:
    """FIN + opcode, length; `masked` adds the all-zero masking key (client frames)."""
    b0 = 0x80 | opcode
    m = 0x80 if masked else 0
    if length < 126:
        head = bytes((b0, m | length))
    elif length < 65536:
        head = bytes((b0, m | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + length.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"")


def client_frame(opcode: int, payload: bytes) -> bytes:
    return frame_header(opcode, len(payload), True) + payload


def server_frame(opcode: int, payload: bytes) -> bytes:
    return frame_header(opcode, len(payload), False) + payload


def ws_accept(sock, first_subprotocol: bool = False):
    """Server side of the opening handshake with websockets' `ServerProtocol`: read the request and
    accept it (with the first subprotocol the client offers when `first_subprotocol`, else none).
    Returns (the protocol object, now open, and the request), or None when the client went away or
    the request was refused. A client sends frames only after our 101, so all that follows on the
    socket is frames."""
    from websockets.server import ServerProtocol

    choose = (lambda _proto, offered: offered[0] if offered else None) if first_subprotocol else None
    proto = ServerProtocol(select_subprotocol=choose, max_size=None)
    events = []
    while not events:
        data = sock.recv(65536)
        if not data:
            return None
        proto.receive_data(data)
        events = proto.events_received()
        if not events and proto.handshake_exc is not None:
            sock.sendall(b"".join(proto.data_to_send()))
            return None
    request = events[0]
    response = proto.accept(request)
    proto.send_response(response)
    sock.sendall(b"".join(proto.data_to_send()))
    return (proto, request) if response.status_code == 101 else None


def ws_client_connect(url: str, subprotocol: str | None = SUBPROTOCOL, timeout: float = 10.0):
    """Open a client WebSocket the way libwebsockets does for mod_audio_fork. Returns (sock, rest)."""
    assert url.startswith("ws://"), url
    hostport, _, path = url[5:].partition("/")
    host, _, port = hostport.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET /{path} HTTP/1.1", "Pragma: no-cache", "Cache-Control: no-cache", f"Host: {host}",
             f"Origin: http://{host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}"]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines.append("Sec-WebSocket-Version: 13")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("EOF during the WebSocket handshake")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    if accept not in head:
        raise ConnectionError("bad Sec-WebSocket-Accept")
    sock.settimeout(None)
    return sock, rest

# --- control plane ---------------------------------------------------------------------------------


def _exit_with_parent() -> None:
    """Our stdin is a pipe from the orchestrator: EOF means it is gone, so this process goes too
    (a real thread blocks on it, not the gevent hub)."""
    from gevent import monkey

    start = monkey.get_original("_thread", "start_new_thread")

    fd = sys.stdin.fileno()

    def watch():
        # the raw fd, not sys.stdin.buffer: a thread blocked inside the buffered reader holds its
        # lock, which makes a normal interpreter exit abort ("_enter_buffered_busy")
        try:
            while os.read(fd, 65536):
                pass
        finally:
            os._exit(0)

    start(watch, ())


def harness_heap() -> None:
    """For the harness's own processes (load generator, sink, lean switch, app; never callfork's),
    once started: their start-up objects leave the collector's generations (gc.freeze), so a
    collection during a window does not walk them again."""
    import gc

    gc.collect()
    gc.freeze()


def serve_control(handlers: dict, extra: dict | None = None):
    """Child side: a JSON-lines control server on 127.0.0.1; prints {"control": port, **extra} on
    stdout (the parent reads that line), then serves until a command `exit`."""
    import gevent
    from gevent.event import Event
    from gevent.server import StreamServer

    done = Event()

    def handle(sock, _peer):
        f = sock.makefile("rwb")
        for line in f:
            req = json.loads(line)
            cmd = req.pop("cmd")
            try:
                if cmd == "exit":
                    res = {"ok": True}
                    done.set()
                else:
                    res = handlers[cmd](**req)
            except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
                import traceback

                traceback.print_exc()
                res = {"error": f"{type(exc).__name__}: {exc}"}
            f.write((json.dumps(res) + "\n").encode())
            f.flush()
            if done.is_set():
                break

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    _exit_with_parent()
    info = {"control": server.address[1], "pid": os.getpid()}
    info.update(extra or {})
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    done.wait()
    gevent.sleep(0.05)
    server.stop(timeout=0.5)


class Child:
    """Parent side: spawn `python -m <module> <args>`, read its info line, call commands."""

    def __init__(self, module: str, *args: str, name: str | None = None):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name or module.rsplit(".", 1)[-1]
        self.log_path = LOG_DIR / f"{self.name}.log"
        self._log = open(self.log_path, "ab")
        # CALLFORK_BENCH_OVERLAY=/some/dir containing a modified audio_fork/ (prototypes, before/after)
        path = [p for p in (os.environ.get("CALLFORK_BENCH_OVERLAY"), str(ROOT), os.environ.get("PYTHONPATH")) if p]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        # CALLFORK_BENCH_WRAP_<NAME>="py-spy record -o out.svg --" runs that child under a profiler
        wrap = os.environ.get(f"CALLFORK_BENCH_WRAP_{self.name.upper()}", "").split()
        self.proc = subprocess.Popen([*wrap, sys.executable, "-m", module, *args], stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE,  # closed when we exit: the child follows
                                     stderr=self._log, cwd=path[0], env=env)  # sys.path[0] = cwd
        line = self.proc.stdout.readline()
        while line and not line.startswith(b"{"):  # a wrapper's own chatter
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} did not start (see {self.log_path})")
        self.info = json.loads(line)
        self.pid = self.info["pid"]
        self.sock = socket.create_connection(("127.0.0.1", self.info["control"]), timeout=300)
        self.f = self.sock.makefile("rwb")

    def call(self, cmd: str, timeout: float = 120.0, **kw):
        self.sock.settimeout(timeout)
        self.f.write((json.dumps(dict(cmd=cmd, **kw)) + "\n").encode())
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise RuntimeError(f"{self.name}: control connection closed (see {self.log_path})")
        res = json.loads(line)
        if isinstance(res, dict) and "error" in res:
            raise RuntimeError(f"{self.name}: {cmd}: {res['error']} (see {self.log_path})")
        return res

    def close(self) -> None:
        try:
            self.call("exit", timeout=5)
        except Exception:  # noqa: BLE001 - it may be wedged: killed below
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait(timeout=5)
        self._log.close()
        try:
            self.sock.close()
        except OSError:
            pass

# --- the load generator (mod_audio_fork stand-in) -------------------------------------------------


class Window:
    """The measurement window, [t0, t1) in CLOCK_MONOTONIC ns, set by the orchestrator."""

    def __init__(self):
        self.t0 = 1 << 62
        self.t1 = 1 << 62


class Fork:
    """One simulated mod_audio_fork connection."""

    def __init__(self, gen, stream_id: str, url: str, metadata: str | None, rate: int, channels: int,
                 bidi: bool):
        self.gen = gen
        self.stream_id = stream_id
        self.url = url
        self.metadata = metadata
        self.rate = rate
        self.channels = channels
        self.bidi = bidi
        self.sock = None
        self.stopping = False
        self.sent = 0
        self.sent_window = 0
        self.down_window = 0
        self.down_total = 0
        self.texts = 0
        self.error = None
        self.connected = False
        self.seq = 0
        self.deadline = 0
        self.done = False       # the Pacer is done with it
        self.reader = self.drainer = None
        self.backlog = None     # bytes the kernel did not take yet (bytearray), sent in order by _drain
        self.frame = None
        self.stamp_at = 0
        self.raw = None

    def run(self) -> None:
        import gevent

        gen = self.gen
        try:
            self.sock, _rest = ws_client_connect(self.url)
        except Exception as exc:  # noqa: BLE001 - counted
            self.error = repr(exc)
            gen.failed += 1
            return
        self.connected = True
        sock = self.sock
        if self.metadata is not None:
            sock.sendall(client_frame(OP_TEXT, self.metadata.encode()))
        self.reader = gevent.spawn(self._read) if self.bidi else None
        gen.go.wait()  # audio starts when every stream is up (start storms are stream-start's job)
        nbytes = self.rate // 50 * 2 * self.channels
        head = frame_header(OP_BINARY, nbytes, True)
        self.frame = bytearray(head + bytes(STAMP.size) + os.urandom(nbytes - STAMP.size))
        self.stamp_at = len(head)
        self.raw = sock._sock   # gevent's socket wraps a non-blocking stdlib one: its send is one syscall
        gen.pacer.add(self, now_ns() + random.randrange(FRAME_NS))   # random phase, as real calls have

    def tick(self, t: int) -> bool:
        """Send the frame due at self.deadline (now is `t`) and move the deadline on; True when the
        Pacer's order changes (this fork is done, or resynced). Called by the Pacer only."""
        gen = self.gen
        if self.stopping or self.seq >= gen.max_frames:
            self.done = True
            gen.spawn(self._finish)
            return True
        deadline = self.deadline
        window = gen.window
        if window.t0 <= t < window.t1:  # counted before the send: a frame waiting in the backlog is "sent at t"
            self.sent_window += 1
            gen.late_ns.append(t - deadline)
        frame = self.frame
        _pack_stamp(frame, self.stamp_at, t, self.seq)
        self.seq += 1
        self.deadline = deadline + FRAME_NS
        if self.backlog is None:
            try:
                k = self.raw.send(frame)
            except BlockingIOError:
                k = 0
            except OSError:   # the relay closed us (stop)
                self.stopping = self.done = True
                gen.spawn(self._finish)
                return True
            if k < len(frame):   # the kernel's buffer is full (the relay is behind): the rest waits, in order
                self.backlog = bytearray(frame[k:])
                self.drainer = gen.spawn(self._drain)
        else:
            self.backlog += frame
        if t - self.deadline > 1_000_000_000:  # hopelessly behind (generator starved): resync
            gen.resyncs += 1
            self.deadline = t
            return True
        return False

    def _drain(self) -> None:
        """Blocking sends (cooperative) of the backlog until it is empty; tick() appends meanwhile."""
        try:
            while self.backlog:
                data = bytes(self.backlog)
                k = self.sock.send(data)
                del self.backlog[:k]
        except OSError:
            self.stopping = True
        self.backlog = None

    def _finish(self) -> None:
        self.sent = self.seq
        self.stopping = True
        if self.drainer is not None:
            self.drainer.join(timeout=2)
        sock = self.sock
        try:
            sock.sendall(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        except OSError:
            pass
        if self.reader is not None:
            self.reader.join(timeout=2)
        try:
            sock.close()
        except OSError:
            pass

    def _read(self) -> None:
        from audio_fork.wsframes import FrameReader

        sock = self.sock
        parser = FrameReader()
        window = self.gen.window
        gaps = self.gen.down_gaps_ns
        last = 0
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                t = now_ns()
                for op, _fin, payload in parser.feed(data):
                    if op == OP_BINARY:
                        self.down_total += 1
                        if window.t0 <= t < window.t1:
                            self.down_window += 1
                            if last:
                                gaps.append(t - last)
                        last = t
                    elif op == OP_TEXT:
                        self.texts += 1
                    elif op == OP_CLOSE:
                        return
        except OSError:
            return

    def stop(self) -> None:
        self.stopping = True


class Pacer:
    """Sends every fork's frames on their absolute deadlines from one greenlet, one non-blocking send
    on the raw socket per frame (the stamp packed into the fork's one frame buffer). Every fork's
    period is the same 20 ms, so once sorted by deadline the forks stay in that order cycle after
    cycle: a cursor walks the sorted list, re-sorted only when a fork is added, ends or resyncs.
    (One greenlet per fork, as before, cost a greenlet switch, a timer and gevent's socket wrapper
    per frame: about as much as the send itself.)"""

    YIELD_EVERY = 200   # frames sent back to back (behind schedule) before the hub gets a turn

    def __init__(self):
        self.forks: list = []
        self.dirty = False
        self.greenlet = None

    def add(self, fork, deadline: int) -> None:
        import gevent

        fork.deadline = deadline
        self.forks.append(fork)
        self.dirty = True
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        import gevent

        sleep = gevent.sleep
        order: list = []
        i = burst = 0
        while True:
            if self.dirty:
                self.dirty = False
                self.forks = order = sorted((f for f in self.forks if not f.done), key=lambda f: f.deadline)
                i = 0
            if not order:
                sleep(0.005)
                continue
            fork = order[i]
            t = now_ns()
            if fork.deadline > t:
                burst = 0
                sleep((fork.deadline - t) / 1e9)
                continue
            if fork.tick(t):   # it ended or resynced: the order changes
                self.dirty = True
            i += 1
            if i == len(order):
                i = 0
            burst += 1
            if burst >= self.YIELD_EVERY:
                burst = 0
                sleep(0)


class LoadGen:
    def __init__(self):
        self.window = Window()
        self.forks: dict = {}          # (uuid, bugname) -> Fork
        self.late_ns = array("q")
        self.down_gaps_ns = array("q")
        self.failed = 0
        self.resyncs = 0
        self.max_frames = 50 * 3600
        self.commands = 0
        import gevent
        from gevent.event import Event

        self.go = Event()
        self.pacer = Pacer()
        self.spawn = gevent.spawn

    # the FreeSWITCH stand-in: `uuid_audio_fork` as mod_audio_fork parses it (tokens never contain
    # spaces: callfork encodes metadata without any)
    def api(self, cmd: str) -> str:
        import gevent

        self.commands += 1
        argv = cmd.split(" ")
        if argv[0] != "uuid_audio_fork" or len(argv) < 3:
            return "-ERR Command not found"
        uuid, action = argv[1], argv[2]
        if action == "start":
            url, mix, rate, bug = argv[3], argv[4], argv[5], argv[6]
            metadata = argv[7] if len(argv) > 7 and argv[7] not in ("", "''") else None
            bidi = len(argv) > 10 and argv[8] == "true" and argv[9] == "true"
            rate_hz = {"8k": 8000, "16k": 16000}.get(rate) or int(rate)
            channels = 2 if mix == "stereo" else 1
            sid = url.split("/fork/", 1)[1].split("?", 1)[0]
            fork = Fork(self, sid, url, metadata, rate_hz, channels, bidi)
            self.forks[(uuid, bug)] = fork
            gevent.spawn(fork.run)
            return "+OK Success"
        if action == "stop":
            fork = self.forks.get((uuid, argv[3] if len(argv) > 3 else "audio_fork"))
            if fork is not None:
                fork.stop()
            return "+OK Success"
        return "-ERR Operation Failed"

    def serve_switch(self, sock, _peer) -> None:
        """The relay's `api` channel: lines `<id> <command>` -> `<id> <reply>`."""
        import gevent
        from gevent.lock import Semaphore

        lock = Semaphore()
        f = sock.makefile("rb")

        def one(rid, cmd):
            reply = self.api(cmd)
            with lock:
                sock.sendall(f"{rid} {reply}\n".encode())

        for line in f:
            rid, _, cmd = line.decode().rstrip("\n").partition(" ")
            gevent.spawn(one, rid, cmd)

    # control commands
    def c_window(self, t0: int, t1: int) -> dict:
        self.window.t0, self.window.t1 = t0, t1
        return {"ok": True}

    def c_stats(self) -> dict:
        forks = list(self.forks.values())
        late = [v / 1e6 for v in self.late_ns]
        gaps = [v / 1e6 for v in self.down_gaps_ns]
        lp = pct(late, (50, 99, 100))
        gp = pct(gaps, (1, 50, 99, 100))
        return {"forks": len(forks), "connected": sum(f.connected for f in forks), "failed": self.failed,
                "errors": [f.error for f in forks if f.error][:3],
                "sent_window": sum(f.sent_window for f in forks),
                "per_stream_sent": {f.stream_id: f.sent_window for f in forks},
                "late_ms": lp, "resyncs": self.resyncs,
                "down_window": sum(f.down_window for f in forks), "down_gap_ms": gp,
                "cpu": cpu_times()}

    def c_stop_all(self) -> dict:
        for f in self.forks.values():
            f.stop()
        return {"ok": True}

    def c_go(self, hold: bool = False) -> dict:
        if hold:
            self.go.clear()
        else:
            self.go.set()
        return {"ok": True, "connected": sum(f.connected for f in self.forks.values())}

    def c_cpu(self) -> dict:
        return cpu_times()


def loadgen_main() -> None:
    from gevent.server import StreamServer

    gen = LoadGen()
    switch = StreamServer(("127.0.0.1", 0), gen.serve_switch)
    switch.start()
    harness_heap()
    serve_control({"window": gen.c_window, "stats": gen.c_stats, "stop_all": gen.c_stop_all,
                   "cpu": gen.c_cpu, "go": gen.c_go}, {"switch": switch.address[1]})

# --- the sink app ------------------------------------------------------------------------------------


_PAYLOAD = b'"payload":"'
_START = b'"event":"start"'
_unstamp = STAMP.unpack
_pack_stamp = STAMP.pack_into
_RECV_BUF = bytearray(262144)
_a2b = a2b_base64


class Sink:
    def __init__(self):
        self.window = Window()
        self.latency_ns = array("q")
        self.streams: dict = {}         # stream id -> [window count, total, last seq, seq gaps, reordered]
        self.start_at: dict = {}        # stream id -> arrival ns of `start`
        self.connections = 0
        self.bidi = None                # (bytes of one playAudio frame, interval ns) when the app talks back
        self.play_msgs = 0
        self.other = 0
        import gevent

        self.spawn = gevent.spawn

    def configure(self, bidi_rate: int = 0, speed: float = 2.0, chunk_ms: int = 20,
                  checkpoint_every: int = 50) -> dict:
        if bidi_rate:
            pcm = os.urandom(bidi_rate // 1000 * chunk_ms * 2 * int(speed))
            msg = json.dumps({"event": "playAudio", "media": {
                "contentType": "audio/x-l16", "sampleRate": bidi_rate,
                "payload": base64.b64encode(pcm).decode()}}, separators=(",", ":")).encode()
            cp = b'{"event":"checkpoint","name":"cp"}'
            self.bidi = (server_frame(OP_TEXT, msg), server_frame(OP_TEXT, cp), chunk_ms * 1_000_000,
                         checkpoint_every)
        else:
            self.bidi = None
        return {"ok": True}

    def handle(self, sock, _peer) -> None:
        """One app connection: the handshake in this greenlet, then SinkConn's read callback on the
        hub's event loop (no greenlet switch per frame) until the connection ends."""
        import gevent
        from gevent.event import Event
        from gevent.lock import Semaphore

        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted = ws_accept(sock)
        if accepted is None:
            sock.close()
            return
        sid = accepted[1].path.rsplit("/", 1)[-1]
        st = self.streams.setdefault(sid, [0, 0, -1, 0, 0, 0, 0])
        self.connections += 1
        conn = SinkConn(self, sock, sid, st, Semaphore(), Event())
        watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        watcher.start(conn.on_read)
        try:
            conn.done.wait()
        finally:
            watcher.stop()
            watcher.close()
            if conn.sender is not None:
                conn.sender.kill(block=False)
            try:
                sock.close()
            except OSError:
                pass

    def _talk(self, sock, lock) -> None:
        """playAudio at `speed` x real time (one message of speed*chunk_ms every chunk_ms, absolute
        deadlines), a checkpoint every `checkpoint_every` messages: how pipecat-style apps behave."""
        import gevent

        frame, cp, interval, every = self.bidi
        deadline = now_ns()
        k = 0
        try:
            while True:
                t = now_ns()
                if deadline > t:
                    gevent.sleep((deadline - t) / 1e9)
                with lock:
                    sock.sendall(frame)
                    k += 1
                    self.play_msgs += 1
                    if every and k % every == 0:
                        sock.sendall(cp)
                deadline += interval
        except OSError:
            return

    def c_window(self, t0: int, t1: int) -> dict:
        self.window.t0, self.window.t1 = t0, t1
        return {"ok": True}

    def c_stats(self) -> dict:
        lat = [v / 1e6 for v in self.latency_ns]
        return {"connections": self.connections, "streams": len(self.streams),
                "recv_window": sum(s[0] for s in self.streams.values()),
                "per_stream_recv": {k: s[0] for k, s in self.streams.items()},
                "recv_total": sum(s[1] for s in self.streams.values()),
                "seq_gaps": sum(s[3] for s in self.streams.values()),
                "reordered": sum(s[4] for s in self.streams.values()),
                "bad": sum(s[5] for s in self.streams.values()),
                "latency_ms": pct(lat, (50, 99, 99.9, 100)), "samples": len(lat),
                "play_msgs": self.play_msgs, "start_at": self.start_at, "cpu": cpu_times()}

    def c_cpu(self) -> dict:
        return cpu_times()


class SinkConn:
    """The data path of one app connection, run as a read callback on the hub's loop: one recv per
    readiness, the frames parsed in place (one header parse and, for a masked frame, one unmask), and
    per `media` message: the 16 base64 characters of STAMP decoded (send time, sequence number), the
    sequence checked against the stream's last (a gap counts its missing frames, a repeat or step back
    counts as reordered), and the payload's length checked against the stream's first (a closing quote
    where the first one had it; else `bad`): no json.loads and no decode of the audio.
    Stream state `st` (shared by reconnections of a stream id): [frames sent in the window received,
    all received, last seq, missing (gaps), reordered, bad, payload length in base64 characters]."""

    __slots__ = ("sink", "sock", "raw", "sid", "st", "lock", "done", "rest", "sender")

    def __init__(self, sink, sock, sid: str, st: list, lock, done):
        self.sink, self.sock, self.raw, self.sid, self.st = sink, sock, sock._sock, sid, st
        self.lock, self.done = lock, done
        self.rest = b""
        self.sender = None

    def on_read(self) -> None:
        try:   # into one buffer all connections share (callbacks do not nest): recv(262144) would
            k = self.raw.recv_into(_RECV_BUF)   # allocate (mmap) and shrink (mremap) 256 KiB per frame
        except BlockingIOError:
            return
        except OSError:
            self.done.set()
            return
        if not k:
            self.done.set()
            return
        t = now_ns()
        data = _RECV_BUF[:k]
        buf = self.rest + data if self.rest else data
        n = len(buf)
        pos = 0
        st = self.st
        sink = self.sink
        window = sink.window
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                start = pos + 10
            else:
                start = pos + 2
            if b1 & 0x80:
                start += 4
            end = start + ln
            if end > n:
                break
            op = b0 & 0x0F
            if b1 & 0x80:   # client frames are masked (RFC 6455 5.3): unmask this one
                payload = apply_mask(buf[start:end], buf[start - 4:start])
                i0, i1 = 0, ln
            else:
                payload, i0, i1 = buf, start, end
            pos = end
            if not b0 & 0x80 or op == OP_CONT:   # fragments: no relay of ours sends them
                st[5] += 1
            elif op == OP_TEXT:
                i = payload.find(_PAYLOAD, i0, i1)
                if i >= 0:
                    i += 11
                    try:
                        sent, seq = _unstamp(_a2b(payload[i:i + STAMP_B64]))
                    except (ValueError, struct.error):   # binascii.Error is a ValueError
                        st[5] += 1
                        continue
                    if st[6] == 0:   # the stream's first media message sets the payload length
                        st[6] = payload.find(b'"', i, i1) - i
                    j = i + st[6]
                    if j >= i1 or payload[j] != 34:   # '"': this payload's length differs
                        st[5] += 1
                    st[1] += 1
                    last = st[2]
                    if seq != last + 1:
                        if seq > last + 1:
                            st[3] += seq - last - 1
                        else:
                            st[4] += 1
                    st[2] = seq
                    if window.t0 <= sent < window.t1:
                        st[0] += 1
                        sink.latency_ns.append(t - sent)
                elif payload.find(_START, i0, i1) >= 0:
                    sink.start_at[self.sid] = t
                    if sink.bidi is not None and self.sender is None:
                        self.sender = sink.spawn(sink._talk, self.sock, self.lock)
                else:
                    sink.other += 1
            elif op == OP_CLOSE:
                sink.spawn(self._send, server_frame(OP_CLOSE, bytes(payload[i0:i0 + 2])), True)
                self.rest = b""
                return
            elif op == OP_PING:
                sink.spawn(self._send, server_frame(OP_PONG, bytes(payload[i0:i1])), False)
        self.rest = buf[pos:] if pos < n else b""

    def _send(self, frame: bytes, last: bool) -> None:
        try:
            with self.lock:
                self.sock.sendall(frame)
        except OSError:
            pass
        if last:
            self.done.set()


def lost_frames(per_stream_sent: dict, per_stream_recv: dict) -> int:
    """Frames the load generator sent in the window (per stream id) that the sink did not get from
    the window (its count of media messages whose STAMP falls in it): a stream the sink never saw
    lost all of its frames. Extra frames of one stream (repeats) cannot hide another's loss."""
    return sum(max(0, sent - per_stream_recv.get(sid, 0)) for sid, sent in per_stream_sent.items())


def sink_main() -> None:
    from gevent.server import StreamServer

    sink = Sink()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    server = StreamServer(lsock, sink.handle)
    server.start()
    harness_heap()
    serve_control({"window": sink.c_window, "stats": sink.c_stats, "configure": sink.configure,
                   "cpu": sink.c_cpu}, {"url": f"ws://127.0.0.1:{lsock.getsockname()[1]}/app"})


def machine() -> dict:
    import platform

    commit = None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "audio_fork"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += " (audio_fork/ has uncommitted changes)"
    except Exception:  # noqa: BLE001 - no git: no commit
        pass
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
            "cpu": cpu, "python": platform.python_version(), "commit": commit,
            "loadavg": os.getloadavg()[0]}


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "loadgen":
        loadgen_main()
    elif role == "sink":
        sink_main()
    else:
        sys.exit("usage: python -m bench.common loadgen|sink")
