"""latency benchmark: what a voice agent feels (BENCHMARKS.md), on a real FreeSWITCH and on the simulator.

- upstream: the caller says something -> the app receives it (its first 20 ms frame);
- downstream: the app sends `playAudio` -> the caller hears its first frame (callfork's playout,
  mod_audio_fork's prebuffer and the channel's next written frame included);
- barge-in: the app sends `clearAudio` while the caller hears it -> the caller hears silence.
p50 / p95 / p99 over `trials` of each, in ms.

Processes: callfork (`python -m bench.calls callfork`: the Service, configured as `callfork serve`)
in its own process; this one runs the app (the answer document over HTTP and the stream's
WebSocket), the probe and, for the simulator, the simulator. Every time is this process's
CLOCK_MONOTONIC when a message arrives here.

The probe is what the caller hears and says:
- FreeSWITCH (CALLFORK_FS_ESL=host:port:password, its dialplan sending `callfork<N>` to callfork on
  127.0.0.1:8084): the caller is the A leg of `loopback/callfork1`, sending silence between its
  words (send_silence_when_idle) as a phone sends RTP; its words are a 1 kHz burst played on the A
  leg (uuid_broadcast). Two more mod_audio_fork bugs, mono, go straight to the probe: one on the
  A leg (what it reads = what the caller hears), one on the B leg, callfork's channel (what it
  reads = what the caller said, as FreeSWITCH got it). Upstream is the app's arrival minus the
  probe's arrival of the same frame: callfork's relay and the app's socket; the module's own send
  is in both and cancels out. Downstream and barge-in include the probe fork's send (a few ms).
- simulator: the caller model itself (its heard frames and the frames it sends, stamped at the
  channel's 20 ms media tick, in this process).

Trial: upstream (a 120 ms burst), downstream (one playAudio of 300 ms at 1.6 kHz), barge-in (2 s
at 600 Hz, clearAudio 300 ms after the caller first hears it), 0.5 s apart.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile
import time
import uuid as uuidlib
from collections import deque

import numpy as np

from bench import common
from bench.calls import free_port

RATE = 8000
FRAME = 160
SAY_HZ, PLAY_HZ, BARGE_HZ = 1000, 1600, 600


def _tone(hz: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _has(frame: np.ndarray, hz: float) -> bool:
    """Mostly `hz`, and loud enough (one 20 ms frame)."""
    x = frame.astype(np.float64)
    energy = float(np.sum(x * x))
    if energy < (300.0 ** 2) * len(x):
        return False
    t = np.arange(len(x)) / RATE
    power = float(np.dot(x, np.cos(2 * np.pi * hz * t)) ** 2 + np.dot(x, np.sin(2 * np.pi * hz * t)) ** 2)
    return power / (energy * len(x) / 2) >= 0.5


class Timeline:
    """Frames with their arrival times; `wait_for(hz, after)` -> the first arrival at or after `after`."""

    def __init__(self):
        self.frames: deque = deque(maxlen=3000)   # (t, int16 frame)

    def add(self, t: float, pcm: np.ndarray) -> None:
        """One message's frames: the last one arrived at `t`, an earlier one 20 ms before each (a
        sender that fell behind sends several frames at once; the first of them is older)."""
        n = len(pcm) // FRAME
        for i in range(n):
            self.frames.append((t - (n - 1 - i) * 0.020, pcm[i * FRAME:(i + 1) * FRAME]))

    def first(self, hz: float, after: float, present: bool = True, timeout: float = 3.0):
        import gevent
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            items = list(self.frames)
            for t, frame in items:
                if t >= after and _has(frame, hz) == present:
                    return t
            seen = len(items)
            gevent.sleep(0.005)
        return None if seen >= 0 else None


def _serve_ws(sock, on_message, on_request) -> None:
    """One server-side WebSocket connection (websockets' sans-I/O ServerProtocol): the upgrade is
    accepted (with the first subprotocol offered: mod_audio_fork asks for one), `on_request(target,
    send_text)` is told, then `on_message(arrival time, str | bytes)` gets each whole message until
    the peer closes (pings are answered, a Close echoed)."""
    from gevent.lock import Semaphore
    from websockets.frames import Opcode

    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accepted = common.ws_accept(sock, first_subprotocol=True)
    if accepted is None:
        return
    proto, request = accepted
    lock = Semaphore()

    def write():
        data = b"".join(proto.data_to_send())
        if data:
            sock.sendall(data)

    def send(text):
        with lock:
            proto.send_text(text.encode())
            write()
    on_request(request.path, send)
    kind, parts = None, []
    while True:
        data = sock.recv(65536)
        now = time.monotonic()
        if not data:
            return
        proto.receive_data(data)
        for frame in proto.events_received():
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                kind = frame.opcode
            elif frame.opcode is not Opcode.CONT:
                continue
            parts.append(frame.data)
            if frame.fin:
                payload = b"".join(parts)
                on_message(now, payload.decode() if kind is Opcode.TEXT else payload)
                parts = []
        with lock:
            write()
        if proto.close_expected():   # the peer's Close (echoed) or a frame that failed the connection
            return


# -- the app: answer document + the stream's WebSocket ------------------------------------------------

class App:
    def __init__(self, stream_timeout: int = 600):
        import gevent.pywsgi
        from gevent.server import StreamServer

        self.ws_server = StreamServer(("127.0.0.1", 0), self._ws)
        self.ws_server.start()
        self.ws_url = f"ws://127.0.0.1:{self.ws_server.server_port}/agent"
        self.doc = (f'<Response><Stream bidirectional="true" keepCallAlive="true" streamTimeout="{stream_timeout}">'
                    f'{self.ws_url}</Stream></Response>').encode()
        self.http = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), self._http, log=None)
        self.http.start()
        self.answer_url = f"http://127.0.0.1:{self.http.server_port}/answer"
        self.heard = Timeline()          # what the app receives (the caller's audio)
        self.stream_id = None
        self._send = None

    def _http(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "application/xml")])
        return [self.doc if environ["PATH_INFO"] == "/answer" else b"<Response/>"]

    def _ws(self, sock, _peer):
        def on_message(now, msg):
            msg = json.loads(msg) if isinstance(msg, str) else {}
            if msg.get("event") == "start":
                self.stream_id = msg["start"]["streamId"]
            elif msg.get("event") == "media":
                self.heard.add(now, np.frombuffer(base64.b64decode(msg["media"]["payload"]), dtype="<i2"))

        def on_request(_target, send):
            self._send = send
        _serve_ws(sock, on_message, on_request)

    def play(self, samples: np.ndarray) -> float:
        msg = {"event": "playAudio", "streamId": self.stream_id,
               "media": {"contentType": "audio/x-l16", "sampleRate": RATE,
                         "payload": base64.b64encode(samples.astype("<i2").tobytes()).decode()}}
        text = json.dumps(msg)
        t = time.monotonic()
        self._send(text)
        return t

    def clear(self) -> float:
        t = time.monotonic()
        self._send(json.dumps({"event": "clearAudio", "streamId": self.stream_id}))
        return t

    def close(self):
        self.ws_server.stop(timeout=1)
        self.http.stop(timeout=1)


# -- probes --------------------------------------------------------------------------------------

class FreeSwitchCaller:
    """The A leg of a loopback call; two plain mod_audio_fork probes straight to this process: one
    on the A leg (what it reads = what the caller hears), one on the B leg (what callfork's channel
    reads = what the caller said, as FreeSWITCH got it). A stereo fork cannot be the probe: it
    pairs a read with a write frame, and on a leg that once read without writing, the read side
    then lags for good."""

    def __init__(self, esl: str, work: str):
        from gevent.server import StreamServer

        from esl_app import ControlConnection
        host, port, password = esl.split(":", 2)
        self.control = ControlConnection(host, int(port), password)
        self.control.start()
        if not self.control.wait_connected(10):
            raise RuntimeError("no ESL connection to FreeSWITCH")
        self.hears, self.says = Timeline(), Timeline()
        self.server = StreamServer(("127.0.0.1", 0), self._probe)
        self.server.start()
        self.burst = os.path.join(work, "say.wav")
        import soundfile
        soundfile.write(self.burst, _tone(SAY_HZ, 0.12), RATE, subtype="PCM_16")
        self.uuid = str(uuidlib.uuid4())

    def call(self, to: str) -> None:
        reply = self.control.bgapi(f"originate {{origination_uuid={self.uuid},origination_caller_id_number=15551230001}}"
                                   f"loopback/callfork{to}/default 'set:send_silence_when_idle=-1,park' inline",
                                   timeout=30)
        if not reply.startswith("+OK"):
            raise RuntimeError(f"originate: {reply.strip()}")
        b_leg = self.control.api(f"uuid_getvar {self.uuid} other_loopback_leg_uuid").strip()
        base = f"ws://127.0.0.1:{self.server.server_port}"
        for uuid, path in ((self.uuid, "hears"), (b_leg, "says")):
            reply = self.control.api(f"uuid_audio_fork {uuid} start {base}/{path} mono 8k probe_{path} {{}}")
            if not reply.startswith("+OK"):
                raise RuntimeError(f"probe fork: {reply.strip()}")

    def _probe(self, sock, _peer):
        timeline = []

        def on_request(target, _send):
            timeline.append(self.hears if target.endswith("hears") else self.says)

        def on_message(now, data):
            if isinstance(data, bytes) and timeline:
                timeline[0].add(now, np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2"))
        _serve_ws(sock, on_message, on_request)

    def say(self) -> None:
        self.control.api(f"uuid_broadcast {self.uuid} {self.burst} aleg")

    def hangup(self) -> None:
        self.control.api(f"uuid_kill {self.uuid}")
        self.control.stop()
        self.server.stop(timeout=1)


class SimCaller:
    """The simulator's caller model, timestamped at its channel's media tick."""

    def __init__(self, sim):
        from switch_sim import CallScript
        from switch_sim.caller import CallerModel

        self.sim = sim
        self.hears, self.says = Timeline(), Timeline()
        self.pending = deque()
        outer = self

        class Probe(CallerModel):
            def read_frame(self):
                frame = outer.pending.popleft() if outer.pending else np.zeros(FRAME, dtype=np.int16)
                outer.says.add(time.monotonic(), frame)
                return frame

            def tick(self, ch, write, elapsed):
                outer.hears.add(time.monotonic(), np.asarray(write, dtype=np.int16))
                super().tick(ch, write, elapsed)

        self.model = Probe(CallScript(to="1"))
        self.channel = None

    def call(self, to: str) -> None:
        self.channel = self.sim.create_channel(direction="inbound", caller_number="15551230001", destination=to,
                                               caller=self.model)

    def say(self) -> None:
        burst = _tone(SAY_HZ, 0.12)
        for i in range(0, len(burst), FRAME):
            self.pending.append(burst[i:i + FRAME])

    def hangup(self) -> None:
        if self.channel is not None:
            self.channel.hangup("NORMAL_CLEARING")


# -- one run -----------------------------------------------------------------------------------------

def run_case(switch: str, trials: int, esl: str | None = None) -> dict:
    import gevent

    work = tempfile.mkdtemp(prefix="callfork-bench-latency-")
    os.chmod(work, 0o777)
    app = App()
    sim = None
    ports = {k: free_port() for k in ("http", "relay")}
    if switch == "freeswitch":
        esl_port = int(esl.split(":")[1])
        ports["outbound"] = 8084
    else:
        from switch_sim import Simulator
        esl_port = free_port()
        ports["outbound"] = free_port()
        sim = Simulator(esl=("127.0.0.1", esl_port), password="ClueCon",
                        socket_target=("127.0.0.1", ports["outbound"]), flavor="jambonz")
        sim.start()
    spec = {"data_dir": work, "ports": ports, "esl": esl_port, "hangup_url": app.answer_url.replace("answer", "hangup"),
            "numbers": {"*": app.answer_url}}
    callfork = common.Child("bench.calls", "callfork", json.dumps(spec), name="callfork-latency")
    caller = FreeSwitchCaller(esl, work) if switch == "freeswitch" else SimCaller(sim)
    up, down, barge, lost = [], [], [], 0
    try:
        caller.call("1")
        deadline = time.monotonic() + 15
        while app.stream_id is None and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if app.stream_id is None:
            raise RuntimeError("the stream did not start")
        gevent.sleep(1.0)
        for _ in range(trials):
            # upstream
            t0 = time.monotonic()
            caller.say()
            lost += _sample(up, caller.says.first(SAY_HZ, t0), app.heard.first(SAY_HZ, t0))
            gevent.sleep(0.3)
            # downstream, first audio
            sent = app.play(_tone(PLAY_HZ, 0.3))
            lost += _sample(down, sent, caller.hears.first(PLAY_HZ, sent))
            gevent.sleep(0.5)
            # barge-in
            sent = app.play(_tone(BARGE_HZ, 2.0))
            heard = caller.hears.first(BARGE_HZ, sent)
            if heard is None:
                lost += 1
                continue
            gevent.sleep(max(0.0, heard + 0.3 - time.monotonic()))
            cleared = app.clear()
            lost += _sample(barge, cleared, caller.hears.first(BARGE_HZ, cleared, present=False))
            gevent.sleep(0.5)
    finally:
        caller.hangup()
        gevent.sleep(0.5)
        callfork.close()
        app.close()
        if sim is not None:
            sim.stop()
    return {"switch": switch, "trials": trials, "lost": lost,
            "up": common.pct(up, (50, 95, 99)), "down": common.pct(down, (50, 95, 99)),
            "barge": common.pct(barge, (50, 95, 99)), "n": (len(up), len(down), len(barge))}


def _sample(into: list, start, end) -> int:
    """One trial's ms into `into`; 1 (lost) when a time is missing."""
    if start is None or end is None:
        return 1
    into.append((end - start) * 1000)
    return 0


def table(rows: list, title: str) -> str:
    head = ["switch", "trials (up/down/barge)", "upstream p50", "p95", "p99", "downstream first audio p50",
            "p95", "p99", "barge-in p50", "p95", "p99"]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    for r in rows:
        lines.append("| " + " | ".join([r["label"], "/".join(map(str, r["n"])), *map(f, r["up"]),
                                         *map(f, r["down"]), *map(f, r["barge"])]) + " |")
    return "\n".join(lines)


def run(quick: bool = False, trials: int | None = None, log=print) -> list:
    trials = trials or (15 if quick else 60)
    rows = []
    esl = os.environ.get("CALLFORK_FS_ESL")
    cases = [("sim", None, "simulator")]
    if esl:
        cases.insert(0, ("freeswitch", esl, "FreeSWITCH 1.10.12, jambonz mod_audio_fork 30f21899"))
    for switch, where, label in cases:
        log(f"latency: {label}, {trials} trials ...")
        # its own process: the app, the probe and the simulator run on gevent (patched at start)
        out = subprocess.run([sys.executable, "-m", "bench.latency", switch, str(trials), where or ""],
                             cwd=str(common.ROOT), capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"bench.latency {switch}: {out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["label"] = label
        rows.append(r)
        log(f"  upstream p50/p95/p99 {r['up']}, downstream {r['down']}, barge-in {r['barge']} ms "
            f"(lost {r['lost']})")
    title = ("Voice-agent latency, ms (targets on FreeSWITCH: upstream p99 <= 40, downstream first audio "
             "p99 <= 120, barge-in p99 <= 60)")
    text = table(rows, title)
    log(text + "\n")
    return [(title, text, rows)]


if __name__ == "__main__":
    print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]), sys.argv[3] or None)), flush=True)
