"""Media scenarios that a real FreeSWITCH decides and the simulator must reproduce: when a channel
writes frames (and so when mod_audio_fork's bidirectional audio reaches the caller), media bug
order (what a recording holds of a stream's audio), what a stereo fork sends while nothing is
written, CNG from a silent caller in a `record`, killAudio, a hangup mid-fork, the module's send
buffer, and the timing of a playback's events.

One scenario = one call: a caller (on a real FreeSWITCH the A leg of `loopback/callfork90`, whose
inline `record_session` (RECORD_READ_ONLY) keeps what it hears; on the simulator a `sim_call` with
`save_heard`) dials `callfork90`, the B leg reaches the outbound socket server here, and the scenario
drives it with a callfork `CallSession` (api, execute) and a WebSocket server playing the app.
What it measures is JSON: counts and milliseconds, nothing that depends on the run's uuids.

    python tests/media_truth.py capture --esl 127.0.0.1:8021:ClueCon --out tests/fixtures/fs-captures/media-truth-jambonz.json
    python tests/media_truth.py sim [SCENARIO ...]          # the same on the simulator, printed

The capture runs against a FreeSWITCH set up as freeswitch/README.md says (its dialplan sends
`callfork<N>` to 127.0.0.1:8084; callfork itself must not be running then).
tests/test_sim_media_truth.py replays every scenario on the simulator and compares with the
capture, within the tolerances named per measurement in `TOLERANCES`.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from esl_app import ControlConnection, OutboundESLServer  # noqa: E402
from fork_ws_server import ForkWSServer  # noqa: E402
from harness import free_port  # noqa: E402
from stream_scenarios import tone  # noqa: E402
from waiting import wait_until, wav_complete  # noqa: E402

RATE = 8000
APP_HZ = 440          # what the app (the fork's server) plays
CALLER_HZ = 300       # what the caller says
FRAME = 160

# measurement -> (absolute tolerance, relative tolerance); the larger one applies. Booleans and
# strings must be equal. Absent = exact.
TOLERANCES = {
    "heard_app_ms": (120, 0.0),
    "heard_app_first_ms": (120, 0.0),
    "mark_after_ms": (150, 0.0),
    "upstream_frames_idle": (3, 0.0),
    "upstream_frames_writing": (10, 0.1),
    "upstream_caller_ms": (120, 0.0),
    "recording_app_ms": (120, 0.0),
    "recording_caller_ms": (160, 0.0),
    "record_ms": (160, 0.0),
    "record_wall_ms": (300, 0.0),
    "recording_length_ms": (250, 0.0),
    "heard_after_kill_ms": (80, 0.0),
    "playback_ms": (60, 0.0),
    "execute_to_start_ms": (40, 0.0),
    "stop_to_complete_ms": (40, 0.0),
    "overrun_after_ms": (600, 0.25),
    "frames_before_overrun": (15, 0.25),
    "close_code_after_hangup_ms": (200, 0.0),
}


# -- audio ---------------------------------------------------------------------------------------
def tone_frames(x: np.ndarray, hz: float, min_rms: float = 300.0, min_share: float = 0.5) -> np.ndarray:
    """Per 20 ms frame: True where `hz` carries most of a frame that is not silence."""
    n = len(x) // FRAME
    if n == 0:
        return np.zeros(0, dtype=bool)
    frames = x[:n * FRAME].astype(np.float64).reshape(n, FRAME)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    t = np.arange(FRAME) / RATE
    c, s = np.cos(2 * np.pi * hz * t), np.sin(2 * np.pi * hz * t)
    power = (frames @ c) ** 2 + (frames @ s) ** 2
    total = np.sum(frames ** 2, axis=1) * FRAME / 2 + 1e-9
    return (rms >= min_rms) & (power / total >= min_share)


def tone_ms(x: np.ndarray, hz: float) -> int:
    return int(tone_frames(x, hz).sum()) * 20


def first_tone_ms(x: np.ndarray, hz: float):
    hits = np.flatnonzero(tone_frames(x, hz))
    return int(hits[0]) * 20 if len(hits) else None


def read_wav(path) -> np.ndarray:
    data, _rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    return data


# -- where the calls go --------------------------------------------------------------------------
class RealFreeSWITCH:
    """A FreeSWITCH set up as freeswitch/README.md says: loopback callers, `callfork90` -> socket :8084."""

    name = "freeswitch"

    def __init__(self, esl: str, socket_port: int = 8084):
        host, port, password = esl.split(":", 2)
        self.esl = (host, int(port), password)
        self.socket_port = socket_port

    def start(self):
        return self

    def stop(self):
        pass

    def place_caller(self, control, work: Path, audio: np.ndarray | None, silent: bool) -> dict:
        a_uuid = str(uuidlib.uuid4())
        heard = work / f"heard-{a_uuid}.wav"
        apps = ["set:RECORD_READ_ONLY=true", f"record_session:{heard}"]
        if not silent:
            # a phone sends packets all the time: silence once its audio is done
            apps.append("set:send_silence_when_idle=-1")
        if audio is not None:
            path = work / f"caller-{a_uuid}.wav"
            soundfile.write(str(path), audio, RATE, subtype="PCM_16")
            apps.append(f"playback:{path}")
        apps.append("park")
        reply = control.bgapi(f"originate {{origination_uuid={a_uuid},origination_caller_id_number=15551230001}}"
                              f"loopback/callfork90/default '{','.join(apps)}' inline", timeout=30)
        if not reply.startswith("+OK"):
            raise RuntimeError(f"originate: {reply.strip()}")
        return {"uuid": a_uuid, "heard": heard}

    def heard(self, control, caller: dict) -> np.ndarray:
        wait_until(lambda: control.api(f"uuid_exists {caller['uuid']}").strip() != "true", 15, "caller gone")
        wait_until(lambda: wav_complete(caller["heard"]), 5, "the caller's recording finished")
        return read_wav(caller["heard"])[:, 0]


class Simulator:
    """The built-in simulator over TCP ESL; the caller is a `sim_call` (its heard audio saved)."""

    name = "simulator"

    def __init__(self, flavor: str = "jambonz"):
        self.flavor = flavor
        self.socket_port = free_port()
        self.esl = ("127.0.0.1", free_port(), "ClueCon")
        self.sim = None

    def start(self):
        from switch_sim import Simulator as Sim
        self.sim = Sim(esl=self.esl[:2], password=self.esl[2], socket_target=("127.0.0.1", self.socket_port),
                       flavor=self.flavor)
        self.sim.start()
        return self

    def stop(self):
        if self.sim is not None:
            self.sim.stop()

    def place_caller(self, control, work: Path, audio: np.ndarray | None, silent: bool) -> dict:
        heard = work / f"heard-{uuidlib.uuid4()}.wav"
        spec = {"to": "callfork90", "save_heard": str(heard), "vad": silent}
        if audio is not None:
            path = work / f"caller-{uuidlib.uuid4()}.wav"
            soundfile.write(str(path), audio, RATE, subtype="PCM_16")
            spec["audio"] = str(path)
        reply = control.api("sim_call " + json.dumps(spec))
        if not reply.startswith("+OK"):
            raise RuntimeError(f"sim_call: {reply.strip()}")
        return {"uuid": reply.split()[1], "heard": heard}

    def heard(self, control, caller: dict) -> np.ndarray:
        wait_until(lambda: wav_complete(caller["heard"]), 15, "the caller's heard audio saved")
        return read_wav(caller["heard"])[:, 0]


# -- the B leg, as a scenario drives it -------------------------------------------------------------
class BLeg:
    def __init__(self, session, ws: ForkWSServer, work: Path):
        self.session = session
        self.uuid = session.uuid
        self.ws = ws
        self.work = work
        self.events = []            # (monotonic, name, subclass, headers)
        self.t0 = time.monotonic()
        session.on_event("*", self._on_event)

    def _on_event(self, ev) -> None:
        self.events.append((time.monotonic(), ev.name, ev.subclass, dict(ev.headers)))

    def api(self, cmd: str) -> str:
        return self.session.api(cmd)

    def setvar(self, name: str, value: str) -> None:
        reply = self.api(f"uuid_setvar {self.uuid} {name} {value}")
        assert reply.startswith("+OK"), reply

    def execute(self, app: str, arg: str = "", timeout: float = 30):
        return self.session.execute(app, arg, timeout=timeout)

    def fork(self, mix: str = "mono", bidi: bool = True, path: str = "/mt"):
        extra = " true true 8000" if bidi else ""
        before = len(self.ws.connections)
        bug = "mt" if path == "/mt" else "mt_" + path.strip("/")   # one bug name per fork of the call
        reply = self.api(f"uuid_audio_fork {self.uuid} start {self.ws.url(path)} {mix} 8k {bug} {{}}{extra}")
        assert reply.startswith("+OK"), reply
        conn = self.ws.wait_connection(count=before + 1, timeout=5)
        assert conn is not None, "mod_audio_fork did not connect"
        return conn

    def event_times(self, name: str, subclass: str | None = None) -> list:
        return [t for t, n, sc, _h in self.events if n == name and (subclass is None or sc == subclass)]

    def record_stops(self, path) -> int:
        return sum(1 for _t, n, _sc, h in self.events if n == "RECORD_STOP" and h.get("Record-File-Path") == str(path))


def mark_times(conn) -> list:
    """(monotonic, name, event) of the module's mark messages."""
    out = []
    for t, kind, data in list(conn.messages):
        if kind == "text" and '"mark"' in data:
            msg = json.loads(data)
            out.append((t, msg["data"]["name"], msg["data"]["event"]))
    return out


def upstream_frames(conn, since=None, until=None) -> int:
    """20 ms frames the module sent (a message may carry several)."""
    size = None
    n = 0
    for t, kind, data in list(conn.messages):
        if kind != "binary" or (since is not None and t < since) or (until is not None and t > until):
            continue
        size = size or 320
        n += len(data) // size
    return n


def after_frames(conn, count: int, timeout: float = 10.0) -> None:
    """Wait `count` more 20 ms frames from the module: the switch's own media clock."""
    target = upstream_frames(conn) + count
    assert conn.wait_until(lambda: upstream_frames(conn) >= target, timeout), f"{count} frames not seen"


def quiet(conn, seconds: float = 0.1, timeout: float = 3.0) -> None:
    """Wait until the module has sent nothing for `seconds` (what was in flight has arrived)."""
    def settled():
        last = conn.messages[-1][0] if conn.messages else 0.0
        return time.monotonic() - last >= seconds
    wait_until(settled, timeout, "the module went quiet")


def upstream_audio(conn) -> np.ndarray:
    data = b"".join(d for _t, k, d in list(conn.messages) if k == "binary")
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")


# -- scenarios --------------------------------------------------------------------------------------
SCENARIOS = {}


def scenario(caller_audio=None, silent=False):
    def register(fn):
        SCENARIOS[fn.__name__] = (fn, caller_audio, silent)
        return fn
    return register


def _app_plays_tone(conn, seconds: float, mark: str | None = "m1") -> float:
    """The app sends `seconds` of APP_HZ in one message, then a mark; returns when it sent them."""
    sent = time.monotonic()
    conn.send_bytes(tone(APP_HZ, seconds).tobytes())
    if mark:
        conn.send_text(json.dumps({"type": "mark", "data": {"name": mark}}))
    return sent


def _fork_and_play(b: BLeg, set_silence_after_media: bool = False, sleeping: bool = False) -> dict:
    """A bidirectional fork whose app plays a second of tone at once (`set_silence_after_media`:
    send_silence_when_idle is set once the module's frames show the channel reads media, i.e.
    after park looked for it; `sleeping`: while the channel runs FreeSWITCH's `sleep`)."""
    conn = b.fork()
    if set_silence_after_media:
        after_frames(conn, 3)
        b.setvar("send_silence_when_idle", "-1")
    running = b.session.execute_async("sleep", "3000") if sleeping else None
    sent = _app_plays_tone(conn, 1.0)
    result = _bidi_result(b, conn, sent, 2.5)
    if running is not None:
        running.wait(5)
    return result


def _bidi_result(b: BLeg, conn, sent: float, wait_s: float) -> dict:
    """The mark, if it comes within `wait_s` (a channel that writes nothing never sends it)."""
    conn.wait_until(lambda: mark_times(conn), wait_s)
    marks = mark_times(conn)
    return {"mark_received": bool(marks),
            "mark_after_ms": int((marks[0][0] - sent) * 1000) if marks else None,
            "upstream_flows": upstream_frames(conn) >= 10}


@scenario()
def bidi_parked_without_send_silence(b: BLeg) -> dict:
    """Answered by the controller, send_silence_when_idle never set: park writes nothing, so the
    module mixes the app's audio into nothing; the caller hears none of it, no mark comes back."""
    b.execute("answer")
    return _fork_and_play(b)


@scenario()
def bidi_parked_with_send_silence_before_answer(b: BLeg) -> dict:
    """send_silence_when_idle=-1 set before answer: park writes zeros every 20 ms, the module mixes
    the app's audio into them; the caller hears the second of tone, the mark comes after it."""
    b.setvar("send_silence_when_idle", "-1")
    b.execute("answer")
    return _fork_and_play(b)


@scenario()
def bidi_parked_send_silence_set_after_answer(b: BLeg) -> dict:
    """The variable set only after media came up: park read it once already; nothing is heard."""
    b.execute("answer")
    return _fork_and_play(b, set_silence_after_media=True)


@scenario()
def bidi_sleep_without_send_silence(b: BLeg) -> dict:
    """`sleep` without the variable writes nothing either: nothing is heard, no mark."""
    b.execute("answer")
    return _fork_and_play(b, sleeping=True)


@scenario()
def bidi_sleep_after_answer(b: BLeg) -> dict:
    """The variable set after answer, then the `sleep` app: sleep reads it on every call and
    writes silence, so the app's audio is heard while it runs."""
    b.execute("answer")
    return _fork_and_play(b, set_silence_after_media=True, sleeping=True)


@scenario(caller_audio=tone(CALLER_HZ, 6.0))
def stereo_fork_while_nothing_is_written(b: BLeg) -> dict:
    """A stereo fork (read + write) on a parked channel that writes nothing gets nothing from
    switch_core_media_bug_read; once a playback writes, frames flow."""
    b.execute("answer")
    conn = b.fork(mix="stereo", bidi=False)
    idle_from = time.monotonic()
    gevent.sleep(1.5)   # a window in which nothing must arrive: there is nothing to wait for
    idle_until = time.monotonic()
    path = b.work / "one-second.wav"
    soundfile.write(str(path), tone(APP_HZ, 1.0), RATE, subtype="PCM_16")
    writing_from = time.monotonic()
    b.execute("playback", str(path))
    writing_until = time.monotonic()
    quiet(conn)
    return {"upstream_frames_idle": upstream_frames(conn, idle_from + 0.1, idle_until),
            "upstream_frames_writing": upstream_frames(conn, writing_from, writing_until + 0.1)}


def _record_session_and_fork(b: BLeg, record_first: bool) -> dict:
    b.setvar("send_silence_when_idle", "-1")
    b.execute("answer")
    path = b.work / f"rec-{b.uuid}.wav"
    b.setvar("RECORD_STEREO", "true")
    if record_first:
        b.execute("record_session", str(path))
    conn = b.fork()
    if not record_first:
        b.execute("record_session", str(path))
    sent = _app_plays_tone(conn, 1.0)
    result = _bidi_result(b, conn, sent, 2.0)
    b.execute("stop_record_session", str(path))
    wait_until(lambda: b.record_stops(path), 5, "RECORD_STOP")
    result["recording_app_ms"] = tone_ms(read_wav(path)[:, 1], APP_HZ)
    return result


@scenario()
def record_session_before_bidi_fork(b: BLeg) -> dict:
    """Media bugs run in attach order: the recording's bug, attached first, copies each written
    frame before the fork's WRITE_REPLACE mixes the app's audio in: the right channel (what the
    caller hears) lacks the app's tone."""
    return _record_session_and_fork(b, record_first=True)


@scenario()
def record_session_after_bidi_fork(b: BLeg) -> dict:
    """The fork first, then the recording: its bug comes after the fork's and records the app's
    audio in what the caller hears."""
    return _record_session_and_fork(b, record_first=False)


@scenario()
def record_session_appended_after_bidi_fork(b: BLeg) -> dict:
    """What callfork does when a stream starts after a recording: stop the recording and start it
    again on the same file with RECORD_APPEND (uuid_record): the file keeps what came before and
    gets the app's audio after."""
    b.setvar("send_silence_when_idle", "-1")
    b.execute("answer")
    path = b.work / f"rec-{b.uuid}.wav"
    b.setvar("RECORD_STEREO", "true")
    b.execute("record_session", str(path))
    # a second of recording before the stream, on the switch's clock: the frames of a read-only
    # fork (its bug neither copies nor changes what is written)
    clock = b.fork(mix="mono", bidi=False, path="/clock")
    after_frames(clock, 50)
    conn = b.fork()
    stop = b.api(f"uuid_record {b.uuid} stop {path}")
    start = b.api(f"uuid_record {b.uuid} start {path} 0 {{RECORD_APPEND=true,RECORD_STEREO=true}}")
    sent = _app_plays_tone(conn, 1.0)
    result = _bidi_result(b, conn, sent, 2.0)
    b.api(f"uuid_record {b.uuid} stop {path}")
    wait_until(lambda: b.record_stops(path) >= 2, 5, "the second RECORD_STOP")
    rec = read_wav(path)
    result.update({"uuid_record_stop": stop.strip(), "uuid_record_start": start.strip(),
                   "recording_app_ms": tone_ms(rec[:, 1], APP_HZ),
                   "recording_length_ms": int(len(rec) / RATE * 1000),
                   "recording_channels": int(rec.shape[1])})
    return result


def _voicemail(b: BLeg, fill_cng: str | None) -> dict:
    b.execute("answer")
    if fill_cng:
        b.setvar("record_fill_cng", fill_cng)
    path = b.work / f"vm-{b.uuid}.wav"
    started = time.monotonic()
    done = b.execute("record", f"{path} 10 200 2")
    wall = time.monotonic() - started
    return {"record_ms": int(done.get("variable_record_ms") or -1),
            "record_wall_ms": int(wall * 1000),
            "silence_hits_exhausted": done.get("variable_silence_hits_exhausted") == "true"}


@scenario(silent=True)
def record_from_a_caller_sending_nothing(b: BLeg) -> dict:
    """`record` keeps no CNG frame: a caller whose phone sends nothing while silent leaves a
    recording of 0 ms although it ran until the 2 s silence timeout."""
    return _voicemail(b, None)


@scenario(silent=True)
def record_fill_cng_from_a_caller_sending_nothing(b: BLeg) -> dict:
    """record_fill_cng writes a frame of fill for each CNG frame: the recording is as long as it ran."""
    return _voicemail(b, "65536")


@scenario(caller_audio=tone(CALLER_HZ, 0.6), silent=True)
def record_from_a_caller_who_talks_then_sends_nothing(b: BLeg) -> dict:
    """The caller talks for the first 0.6 s of the call, then sends nothing: only what they said is
    in the file."""
    return _voicemail(b, None)


@scenario()
def kill_audio_clears_the_module_buffer(b: BLeg) -> dict:
    """The app sends 3 s, then killAudio 1 s after: the module empties its playout buffer and the
    caller hears about a second; a mark that was queued comes back as cleared."""
    b.setvar("send_silence_when_idle", "-1")
    b.execute("answer")
    conn = b.fork()
    _app_plays_tone(conn, 3.0)
    after_frames(conn, 50)   # a second into the audio, on the switch's clock
    conn.send_text(json.dumps({"type": "killAudio"}))
    conn.wait_until(lambda: mark_times(conn), 3)
    marks = mark_times(conn)
    return {"marks": [m[2] for m in marks],
            "kill_audio_event": bool(b.event_times("CUSTOM", "mod_audio_fork::kill_audio"))}


@scenario()
def kill_audio_breaks_a_playback(b: BLeg) -> dict:
    """killAudio also sets CF_BREAK on the channel: a playback running at that moment ends."""
    b.setvar("send_silence_when_idle", "-1")
    b.execute("answer")
    conn = b.fork()
    path = b.work / "three-seconds.wav"
    soundfile.write(str(path), tone(600, 3.0), RATE, subtype="PCM_16")
    running = b.session.execute_async("playback", str(path))
    wait_until(lambda: b.event_times("PLAYBACK_START"), 5, "PLAYBACK_START")
    after_frames(conn, 50)   # a second into the playback
    conn.send_text(json.dumps({"type": "killAudio"}))
    done = running.wait(5)
    ended = time.monotonic()
    stops = [h for _t, n, _sc, h in b.events if n == "PLAYBACK_STOP"]
    return {"playback_ms": int((ended - b.event_times("PLAYBACK_START")[0]) * 1000),
            "playback_status": stops[-1].get("Playback-Status") if stops else None,
            "application_response": done.get("Application-Response")}


@scenario()
def hangup_while_forking(b: BLeg) -> dict:
    """uuid_kill while a fork streams: how the module's socket closes and which events come."""
    b.execute("answer")
    conn = b.fork(mix="mono", bidi=False)
    after_frames(conn, 50)
    killed = time.monotonic()
    b.api(f"uuid_kill {b.uuid}")
    conn.closed.wait(5)
    closed = time.monotonic()
    wait_until(lambda: b.event_times("CHANNEL_HANGUP_COMPLETE"), 5, "CHANNEL_HANGUP_COMPLETE")
    names = [n if n != "CUSTOM" else sc for _t, n, sc, _h in b.events
             if n in ("CHANNEL_HANGUP", "MEDIA_BUG_STOP", "CHANNEL_HANGUP_COMPLETE")
             or (n == "CUSTOM" and sc and sc.startswith("mod_audio_fork"))]
    after = [n for n in names if n != "mod_audio_fork::connect"]
    return {"close_code": conn.close_code, "close_initiator": conn.close_initiator,
            "close_code_after_hangup_ms": int((closed - killed) * 1000),
            "events_after_connect": _dedupe(after)}


@scenario()
def module_send_buffer_overrun(b: BLeg) -> dict:
    """An app that never reads: what mod_audio_fork sends queues in the kernel's send buffer first,
    which autotunes to megabytes on loopback, so the module's own 2 s buffer does not overrun for
    minutes (none within 40 s on FreeSWITCH); here 12 s are watched."""
    b.execute("answer")
    started = time.monotonic()
    reply = b.api(f"uuid_audio_fork {b.uuid} start {b.ws.url('/slow')} mono 8k mt {{}}")
    assert reply.startswith("+OK"), reply
    try:
        wait_until(lambda: b.event_times("CUSTOM", "mod_audio_fork::buffer_overrun"), 12, "buffer_overrun")
        gevent.sleep(1.0)   # a window in which a second one must not come
    except AssertionError:
        pass                # none: what FreeSWITCH does
    overruns = b.event_times("CUSTOM", "mod_audio_fork::buffer_overrun")
    return {"buffer_overrun_events": len(overruns),
            "overrun_after_ms": int((overruns[0] - started) * 1000) if overruns else None}


@scenario()
def playback_event_timing(b: BLeg) -> dict:
    """A 1 s file: EXECUTE -> PLAYBACK_START -> PLAYBACK_STOP -> EXECUTE_COMPLETE, in ms."""
    b.execute("answer")
    path = b.work / "one-second-600.wav"
    soundfile.write(str(path), tone(600, 1.0), RATE, subtype="PCM_16")
    b.events.clear()
    b.execute("playback", str(path))
    wait_until(lambda: [1 for _t, n, _sc, h in b.events if n == "CHANNEL_EXECUTE_COMPLETE"
                        and h.get("Application") == "playback"], 5, "EXECUTE_COMPLETE")
    ex = [t for t, n, _sc, h in b.events if n == "CHANNEL_EXECUTE" and h.get("Application") == "playback"]
    start = b.event_times("PLAYBACK_START")
    stop = b.event_times("PLAYBACK_STOP")
    done = [t for t, n, _sc, h in b.events if n == "CHANNEL_EXECUTE_COMPLETE" and h.get("Application") == "playback"]
    return {"execute_to_start_ms": int((start[0] - ex[0]) * 1000),
            "playback_ms": int((stop[0] - start[0]) * 1000),
            "stop_to_complete_ms": int((done[0] - stop[0]) * 1000)}


def _dedupe(names):
    out = []
    for n in names:
        if not out or out[-1] != n:
            out.append(n)
    return out


# -- running ----------------------------------------------------------------------------------------
def run(target, name: str) -> dict:
    """Run one scenario on `target` (RealFreeSWITCH or Simulator, started); returns its result,
    with `heard_app_ms` / `heard_app_first_ms` (the app's tone in what the caller heard) and, when
    the caller talked, `upstream_caller_ms` (the caller's tone in what the module sent)."""
    fn, caller_audio, silent = SCENARIOS[name]
    work = Path(tempfile.mkdtemp(prefix="callfork-mt-"))
    os.chmod(work, 0o777)
    ws = ForkWSServer(slow_paths=("/slow",)).start()
    result = gevent.event.AsyncResult()

    def handler(session):
        b = BLeg(session, ws, work)
        try:
            result.set(fn(b))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller of run()
            result.set_exception(exc)
        finally:
            try:
                session.hangup()
            except Exception:  # noqa: BLE001
                pass

    server = OutboundESLServer(("127.0.0.1", target.socket_port), handler)
    server.start()
    control = ControlConnection(*target.esl)
    control.start()
    try:
        if not control.wait_connected(10):
            raise RuntimeError("no ESL connection to %s:%s" % target.esl[:2])
        caller = target.place_caller(control, work, caller_audio, silent)
        out = result.get(timeout=60)
        heard = target.heard(control, caller)
        out["heard_app_ms"] = tone_ms(heard, APP_HZ)
        out["heard_app_first_ms"] = first_tone_ms(heard, APP_HZ)
        if caller_audio is not None and ws.connections:
            out["upstream_caller_ms"] = tone_ms(upstream_audio(ws.connections[0])[0::2]
                                                if name.startswith("stereo") else upstream_audio(ws.connections[0]),
                                                CALLER_HZ)
        return out
    finally:
        control.stop()
        server.stop()
        ws.stop()
        shutil.rmtree(work, ignore_errors=True)


def compare(expected: dict, got: dict, label: str = "simulator") -> list:
    """Differences beyond TOLERANCES, as text (`label`: what produced `got`)."""
    problems = []
    for key, want in expected.items():
        have = got.get(key)
        if isinstance(want, (int, float)) and not isinstance(want, bool) and isinstance(have, (int, float)) \
                and not isinstance(have, bool):
            absolute, relative = TOLERANCES.get(key, (0, 0.0))
            allowed = max(absolute, relative * abs(want))
            if abs(have - want) > allowed:
                problems.append(f"{key}: captured {want}, {label} {have} (allowed ±{allowed:g})")
        elif have != want:
            problems.append(f"{key}: captured {want!r}, {label} {have!r}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    cap = sub.add_parser("capture", help="run the scenarios on a real FreeSWITCH and write the results")
    cap.add_argument("--esl", default="127.0.0.1:8021:ClueCon")
    cap.add_argument("--out", required=True)
    cap.add_argument("--repeat", type=int, default=1, help="runs per scenario (the median of numbers is kept)")
    cap.add_argument("names", nargs="*")
    sim = sub.add_parser("sim", help="run the scenarios on the simulator and print the results")
    sim.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    names = args.names or list(SCENARIOS)
    if args.cmd == "capture":
        target = RealFreeSWITCH(args.esl).start()
        results = {}
        for name in names:
            runs = [run(target, name) for _ in range(args.repeat)]
            results[name] = _median(runs)
            print(name, json.dumps(results[name]), flush=True)
        control = ControlConnection(*target.esl)
        control.start()
        control.wait_connected(10)
        version = control.api("version").strip()
        control.stop()
        doc = {"freeswitch": version, "module": "jambonz/freeswitch-modules 30f21899 mod_audio_fork",
               "scenarios": {k: {"doc": " ".join((SCENARIOS[k][0].__doc__ or "").split()), "result": v}
                             for k, v in results.items()}}
        Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return 0
    target = Simulator().start()
    try:
        for name in names:
            print(name, json.dumps(run(target, name)), flush=True)
    finally:
        target.stop()
    return 0


def _median(runs: list) -> dict:
    out = {}
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = int(np.median(values))
        else:
            out[key] = values[0]
    return out


if __name__ == "__main__":
    sys.exit(main())
