"""What the caller hears and what the app receives, on the simulator and (marked `freeswitch`) on a
real FreeSWITCH with the jambonz mod_audio_fork: every Vobiz stream form (bidirectional playAudio,
checkpoint and clearAudio, keepCallAlive and in the background during <Wait>, streamTimeout, the
app's stop, two streams, the tracks and content types), <Record> with a nested or an earlier
<Stream> (the recording's "heard" channel holds the stream's audio), SWML stream and connect, DTMF
to the app, pipecat's Vobiz and Twilio serializers, the XML verbs, and a call FreeSWITCH answered
before callfork got it.

The caller speaks a 300 Hz tone; apps answer with other tones; what the caller heard is the
simulator's heard capture or, on FreeSWITCH, the caller leg's own recording of what it read
(harness.RealCall). Checks count 100 ms windows that are mostly one frequency."""
import base64
import io
import json
import time
import uuid as uuidlib

import numpy as np
import pytest
import requests
import soundfile

from harness import Stack, switch_modes
from pipecat_support import Driver, needs_pipecat
from stream_scenarios import Calls, b64, media, messages, payload_bytes, pcm, tone, windows_with, write_wav
from waiting import wait_until
from wsapp import AppServer as WsApp

CALLER_HZ = 300


def _caller(tmp_path, seconds=14.0):
    return write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, seconds))


def _start(conn):
    conn.wait_for(lambda c: c.texts(), 10)
    start = json.loads(conn.texts()[0])
    assert start["event"] == "start", start
    return start


def _play(conn, sid, samples, rate=8000):
    conn.send_text(json.dumps({"event": "playAudio", "streamId": sid,
                               "media": {"contentType": "audio/x-l16", "sampleRate": rate, "payload": b64(samples)}}))


def _checkpoint(conn, sid, name):
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": name}))


def _acked_at(conn, name):
    for text, at in zip(conn.texts(), [t for m, t in zip(conn.messages, conn.times) if isinstance(m, str)]):
        msg = json.loads(text)
        if msg.get("event") == "playedStream" and msg.get("name") == name:
            return at
    return None


def _after_frames(conn, count, timeout=10):
    """Wait until the app has received `count` more 20 ms frames of the caller: the call's own
    media clock, not this process's."""
    target = len(media(messages(conn))) + count
    conn.wait_for(lambda c: len(media(messages(c))) >= target, timeout)


def _twilio_mark_played(conn, sid, timeout=10):
    """A Twilio-dialect mark behind what the app sent comes back once the caller has heard it."""
    conn.send_text(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "played"}}))
    conn.wait_for(lambda c: any(json.loads(t).get("event") == "mark" for t in c.texts()), timeout)


def _timeline(stack, uuid):
    resp = requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(), timeout=10)
    return [e["kind"] for e in resp.json().get("timeline", [])] if resp.status_code == 200 else []


def _inbound_pcm(conn, track=None):
    return pcm(payload_bytes(media(messages(conn), track)))


class App:
    """One call on `stack` with its own WebSocket app."""

    def __init__(self, stack, real):
        self.stack = stack
        self.real = real
        self.ws = WsApp().start()

    def stop(self):
        self.ws.stop()


@pytest.fixture
def scene(request, tmp_path, real_fs):
    stack = Stack(real=real_fs).start()
    app = App(stack, real_fs)
    try:
        yield stack, app
    finally:
        app.stop()
        stack.stop()


class Docs(Calls):
    """One answer document per test: the call is to "1" on the simulator and to "callfork1" on
    FreeSWITCH (its dialplan routes ^callfork numbers to callfork)."""

    def add(self, to, body, content_type="application/xml"):
        super().add(to, body, content_type)
        super().add("callfork" + to, body, content_type)


def _call(stack, tmp_path, **kw):
    kw.setdefault("audio", _caller(tmp_path))
    kw.setdefault("hangup_after", 25)
    return stack.call(to="1", keep_heard=True, **kw)


# -- Vobiz <Stream bidirectional> ---------------------------------------------------------------------

@switch_modes()
def test_bidirectional_stream_is_heard_acked_after_playout_and_stopped_by_the_app(scene, tmp_path):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream bidirectional="true" keepCallAlive="true" '
                   f'statusCallbackUrl="{calls.url("/status")}">{app.ws.url}</Stream>'
                   f'<Play>{calls.serve_wav("/900.wav", tone(900, 1.0))}</Play></Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    sid = _start(conn)["start"]["streamId"]
    conn.wait_for(lambda c: len(media(messages(c))) >= 50, 10)
    sent = time.monotonic()
    _play(conn, sid, tone(700, 1.0))
    _checkpoint(conn, sid, "reply")
    conn.wait_for(lambda c: _acked_at(c, "reply"), 6)
    acked_after = _acked_at(conn, "reply") - sent
    conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
    stack.app.wait_event("StopStream", timeout=10)
    call.wait(30)
    heard = call.heard()
    # the caller's words reached the app; the app's reply reached the caller, then the next verb
    assert windows_with(_inbound_pcm(conn), CALLER_HZ) >= 8
    assert windows_with(heard, 700) >= 8
    assert windows_with(heard, 900) >= 8
    # acknowledged once it was heard: not before the second of audio played
    assert 0.8 <= acked_after <= 2.0, acked_after
    assert stack.app.wait_event("Hangup", timeout=10).form["HangupCauseCode"] == "4010"


@switch_modes()
def test_clear_audio_stops_what_the_caller_hears(scene, tmp_path):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream bidirectional="true" keepCallAlive="true" streamTimeout="6">'
                   f'{app.ws.url}</Stream></Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    sid = _start(conn)["start"]["streamId"]
    _play(conn, sid, tone(700, 3.0))
    _checkpoint(conn, sid, "never")
    _after_frames(conn, 50)   # a second into the app's audio
    conn.send_text(json.dumps({"event": "clearAudio", "streamId": sid}))
    conn.wait_for(lambda c: any(json.loads(t).get("event") == "clearedAudio" for t in c.texts()), 5)
    call.wait(30)
    heard_700 = windows_with(call.heard(), 700)
    # about a second was heard, not three; the checkpoint behind the cleared audio never comes
    assert 7 <= heard_700 <= 16, heard_700
    assert _acked_at(conn, "never") is None


@switch_modes()
def test_clear_audio_beside_a_play_leaves_the_play_alone(scene, tmp_path):
    """clearAudio while a <Play> runs next to a background stream: callfork does not send
    mod_audio_fork killAudio then (it would break the playback too): the Play is heard to its end."""
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream bidirectional="true">{app.ws.url}</Stream>'
                   f'<Play>{calls.serve_wav("/900.wav", tone(900, 3.0))}</Play></Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    sid = _start(conn)["start"]["streamId"]
    _play(conn, sid, tone(700, 2.0))
    _after_frames(conn, 25)   # half a second into it
    conn.send_text(json.dumps({"event": "clearAudio", "streamId": sid}))
    conn.wait_for(lambda c: any(json.loads(t).get("event") == "clearedAudio" for t in c.texts()), 5)
    call.wait(30)
    heard = call.heard()
    # the Play's last 2 s are heard alone, to its end
    assert windows_with(heard, 900) >= 18
    assert windows_with(heard, 700) <= 8


@switch_modes()
def test_background_stream_is_heard_during_a_wait(scene, tmp_path):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream bidirectional="true">{app.ws.url}</Stream><Wait length="4"/></Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    sid = _start(conn)["start"]["streamId"]
    _play(conn, sid, tone(700, 1.5))
    _checkpoint(conn, sid, "done")
    conn.wait_for(lambda c: _acked_at(c, "done"), 6)
    call.wait(30)
    assert windows_with(call.heard(), 700) >= 12


@switch_modes()
def test_stream_timeout_then_the_next_verb(scene, tmp_path):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream bidirectional="true" keepCallAlive="true" streamTimeout="3" '
                   f'statusCallbackUrl="{calls.url("/status")}">{app.ws.url}</Stream>'
                   f'<Play>{calls.serve_wav("/900.wav", tone(900, 1.0))}</Play></Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    _start(conn)
    stack.app.wait_event("StopStream", timeout=10)
    conn.closed.wait(5)
    assert conn.close_code == 1000
    call.wait(30)
    assert windows_with(call.heard(), 900) >= 8


@switch_modes()
def test_two_streams_at_once(scene, tmp_path):
    stack, app = scene
    listener = WsApp().start()
    try:
        calls = Docs(stack)
        calls.add("1", f'<Response><Stream>{listener.url}</Stream>'
                       f'<Stream bidirectional="true" keepCallAlive="true" streamTimeout="5">{app.ws.url}</Stream>'
                       f'</Response>')
        call = _call(stack, tmp_path)
        one_way = listener.wait_connection(20)
        bidi = app.ws.wait_connection(20)
        s1, s2 = _start(one_way)["start"]["streamId"], _start(bidi)["start"]["streamId"]
        assert s1 != s2
        _play(bidi, s2, tone(700, 1.0))
        call.wait(30)
        assert windows_with(_inbound_pcm(one_way), CALLER_HZ) >= 8
        assert windows_with(_inbound_pcm(bidi), CALLER_HZ) >= 8
        assert windows_with(call.heard(), 700) >= 8
    finally:
        listener.stop()


@switch_modes()
@pytest.mark.parametrize("track,content_type", [("both", "audio/x-mulaw;rate=8000"),
                                                ("outbound", "audio/x-l16;rate=16000"),
                                                ("inbound", "audio/x-l16;rate=8000")])
def test_stream_tracks_and_content_types(scene, tmp_path, track, content_type):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream audioTrack="{track}" contentType="{content_type}">{app.ws.url}</Stream>'
                   f'<Play>{calls.serve_wav("/900.wav", tone(900, 2.0))}</Play><Wait length="1"/></Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    start = _start(conn)
    call.wait(30)
    rate = 16000 if "16000" in content_type else 8000
    assert start["start"]["mediaFormat"]["sampleRate"] == rate
    msgs = messages(conn)

    def track_pcm(name):
        data = payload_bytes(media(msgs, name))
        if "mulaw" in content_type:
            import audioop
            data = audioop.ulaw2lin(data, 2)
        return pcm(data)
    if track in ("inbound", "both"):
        assert windows_with(track_pcm("inbound"), CALLER_HZ, rate=rate) >= 8
    if track in ("outbound", "both"):
        # what the caller hears: the <Play>
        assert windows_with(track_pcm("outbound"), 900, rate=rate) >= 8


# -- <Record> with <Stream> -----------------------------------------------------------------------

def _recording(stack, form):
    resp = requests.get(form["RecordUrl"], headers=stack.api_headers(), timeout=10)
    assert resp.status_code == 200
    data, _rate = soundfile.read(io.BytesIO(resp.content), dtype="int16", always_2d=True)
    return data


@switch_modes()
@pytest.mark.parametrize("form", ["nested", "sibling"])
def test_recording_holds_the_streams_audio(scene, tmp_path, form):
    stack, app = scene
    calls = Docs(stack)
    stream = f'<Stream bidirectional="true" keepCallAlive="true" streamTimeout="4">{app.ws.url}</Stream>'
    rec = f'fileFormat="wav" callbackUrl="{calls.url("/rec")}"'
    if form == "nested":
        calls.add("1", f'<Response><Record {rec}>{stream}</Record></Response>')
    else:
        calls.add("1", f'<Response><Record recordSession="true" {rec}/><Wait length="1"/>{stream}</Response>')
    call = _call(stack, tmp_path)
    conn = app.ws.wait_connection(20)
    start = _start(conn)["start"]
    sid = start["streamId"]
    # the recording's media bug is behind the stream's fork: started after it, or moved behind it
    behind = "recording_started" if form == "nested" else "recording_reattached"
    wait_until(lambda: behind in _timeline(stack, start["callId"]), 10, behind)
    _play(conn, sid, tone(700, 1.5))
    call.wait(30)
    stop = stack.app.wait_event("RecordStop", timeout=15).form
    data = _recording(stack, stop)
    assert data.shape[1] == 2
    # left: the caller; right: what the caller heard, with the stream's audio in it
    assert windows_with(data[:, 0], CALLER_HZ) >= 20
    assert windows_with(data[:, 1], 700) >= 12
    assert windows_with(call.heard(), 700) >= 12


# -- SWML ----------------------------------------------------------------------------------------

@switch_modes()
def test_swml_stream_and_connect(scene, tmp_path):
    stack, app = scene
    listener = WsApp().start()
    try:
        calls = Docs(stack)
        doc = {"version": "1.0.0", "sections": {"main": [
            {"stream": {"url": listener.url}},
            {"connect": {"to": f"stream:{app.ws.url}", "codec": "PCMU"}}]}}
        calls.add("1", json.dumps(doc), "application/json")
        call = _call(stack, tmp_path)
        one_way = listener.wait_connection(20)
        conn = app.ws.wait_connection(20)
        conn.wait_for(lambda c: any(json.loads(t).get("event") == "start" for t in c.texts()), 10)
        start = next(json.loads(t) for t in conn.texts() if json.loads(t).get("event") == "start")
        sid = start["streamSid"]
        import audioop
        ulaw = audioop.lin2ulaw(tone(700, 1.0).astype("<i2").tobytes(), 2)
        conn.send_text(json.dumps({"event": "media", "streamSid": sid,
                                   "media": {"payload": base64.b64encode(ulaw).decode()}}))
        _twilio_mark_played(conn, sid)
        conn.close()
        call.wait(30)
        inbound = audioop.ulaw2lin(payload_bytes(media(messages(conn))), 2)
        assert windows_with(pcm(inbound), CALLER_HZ) >= 8
        assert len(media(messages(one_way))) >= 50
        assert windows_with(call.heard(), 700) >= 8
    finally:
        listener.stop()


# -- DTMF ------------------------------------------------------------------------------------------

@switch_modes()
def test_caller_digits_reach_the_app(scene, tmp_path):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Stream bidirectional="true" keepCallAlive="true" streamTimeout="5">'
                   f'{app.ws.url}</Stream></Response>')
    call = _call(stack, tmp_path, dtmf=[("5", 2.5)])
    conn = app.ws.wait_connection(20)
    _start(conn)
    conn.wait_for(lambda c: any(json.loads(t).get("event") == "dtmf" for t in c.texts()), 10)
    dtmf = next(json.loads(t) for t in conn.texts() if json.loads(t).get("event") == "dtmf")
    assert dtmf["dtmf"]["digit"] == "5"
    call.wait(30)


# -- pipecat -----------------------------------------------------------------------------------------

@needs_pipecat
@switch_modes()
@pytest.mark.parametrize("provider", ["vobiz", "twilio"])
def test_pipecat_bot_is_heard(scene, tmp_path, provider):
    stack, app = scene
    calls = Docs(stack)
    if provider == "vobiz":
        calls.add("1", f'<Response><Stream bidirectional="true" keepCallAlive="true" streamTimeout="6" '
                       f'contentType="audio/x-l16;rate=16000">{app.ws.url}</Stream></Response>')
    else:
        doc = {"version": "1.0.0", "sections": {"main": [{"connect": {"to": f"stream:{app.ws.url}",
                                                                    "codec": "PCMU"}}]}}
        calls.add("1", json.dumps(doc), "application/json")
    driver = Driver()
    try:
        call = _call(stack, tmp_path)
        conn = app.ws.wait_connection(20)
        conn.wait_for(lambda c: len(c.texts()) >= 2, 10)
        detect = driver(op="detect", frames=conn.texts()[:2])
        if provider == "vobiz":
            vs = detect["vobiz_start"]
            driver(op="open", provider="vobiz", stream_id=vs["stream_id"], call_id=vs["call_id"],
                   encoding=vs["encoding"], sample_rate=vs["sample_rate"], l16_byte_order="le",
                   pipeline_rate=16000)
        else:
            data = detect["call_data"]
            driver(op="open", provider="twilio", stream_id=data["stream_id"], call_id=data["call_id"],
                   pipeline_rate=16000)
        for text in driver(op="serialize", audio=base64.b64encode(tone(1000, 1.5, rate=16000).tobytes()).decode(),
                           sample_rate=16000)["messages"]:
            conn.send_text(text)
        conn.wait_for(lambda c: len(media(messages(c))) >= 100, 10)
        got = driver(op="deserialize", messages=[t for t in conn.texts() if '"media"' in t])
        if provider == "twilio":
            # a mark behind the reply comes back once the caller has heard it; then the bot hangs up
            _twilio_mark_played(conn, detect["call_data"]["stream_id"])
            conn.close()
        call.wait(30)
        caller_audio = np.frombuffer(base64.b64decode(got["audio"]), dtype="<i2")
        assert windows_with(caller_audio, CALLER_HZ, rate=got["sample_rate"]) >= 8
        assert windows_with(call.heard(), 1000) >= 10
    finally:
        driver.close()


# -- XML verbs -------------------------------------------------------------------------------------

@switch_modes()
def test_speak_play_gather_wait_are_heard(scene, tmp_path):
    stack, app = scene
    calls = Docs(stack)
    calls.add("1", f'<Response><Speak>Hello from callfork.</Speak>'
                   f'<Play>{calls.serve_wav("/900.wav", tone(900, 1.0))}</Play>'
                   f'<Gather numDigits="1" executionTimeout="8" action="{calls.url("/digits")}">'
                   f'<Play>{calls.serve_wav("/1100.wav", tone(1100, 1.0))}</Play></Gather></Response>')
    stack.app.document("/digits", "<Response><Wait length=\"1\"/></Response>")
    call = _call(stack, tmp_path, dtmf=[("7", 6)])
    call.wait(30)
    heard = call.heard()
    digits = stack.app.wait_path("/digits", timeout=10)[0].form
    assert digits["Digits"] == "7"
    assert windows_with(heard, 900) >= 8
    assert windows_with(heard, 1100) >= 3
    # the Speak is the first second or two: speech, not silence
    assert float(np.sqrt(np.mean(heard[:8000].astype(np.float64) ** 2))) > 200


# -- a call FreeSWITCH answered before callfork got it ---------------------------------------------------

@switch_modes()
def test_call_answered_before_callfork_still_hears_the_stream(tmp_path, real_fs):
    """No send_silence_when_idle when media came up: park writes nothing, so callfork keeps
    FreeSWITCH's sleep app writing while the stream blocks the document."""
    with Stack(real=real_fs) as stack:
        app = WsApp().start()
        try:
            # the inline dialplan's destination is its app list: one document for any number
            stack.app.document("/answer", f'<Response><Stream bidirectional="true" keepCallAlive="true" '
                                          f'streamTimeout="4">{app.url}</Stream></Response>')
            if real_fs:
                call = _answered_first_real(stack, tmp_path)
            else:
                call = _answered_first_sim(stack, tmp_path)
            conn = app.wait_connection(20)
            sid = _start(conn)["start"]["streamId"]
            _play(conn, sid, tone(700, 1.0))
            _checkpoint(conn, sid, "m")
            conn.wait_for(lambda c: _acked_at(c, "m"), 6)
            call.wait(30)
            assert windows_with(call.heard(), 700) >= 8
        finally:
            app.stop()


def _answered_first_sim(stack, tmp_path):
    from switch_sim import CallScript
    from switch_sim.caller import CallerModel, SimCall
    script = CallScript(to="1", audio=_caller(tmp_path), keep_heard=True, hangup_after=25)
    caller = CallerModel.from_script(script)
    ch = stack.sim.create_channel(direction="inbound", caller_number=script.from_, destination="1",
                                  caller=caller, answer_first=True)
    return SimCall(ch, caller)


class _AnsweredFirst:
    """A loopback call to 9999 (answer + park in the test dialplan), its B leg then transferred to
    `socket` (callfork): it reaches callfork answered, send_silence_when_idle never set."""

    def __init__(self, stack, tmp_path):
        from harness import RealCall
        control = stack.service.control
        self.helper = RealCall.__new__(RealCall)
        self.helper.stack = stack
        self.helper.a_uuid = a_uuid = str(uuidlib.uuid4())
        self.helper.heard_path = stack.data_dir / f"heard-{a_uuid}.wav"
        apps = ["set:RECORD_READ_ONLY=true", f"record_session:{self.helper.heard_path}",
                "set:send_silence_when_idle=-1", f"playback:{_caller(tmp_path)}", "park"]
        reply = control.bgapi(f"originate {{origination_uuid={a_uuid},origination_caller_id_number=15551230001}}"
                              f"loopback/9999/default '{','.join(apps)}' inline", timeout=30)
        assert reply.startswith("+OK"), reply
        b_uuid = control.api(f"uuid_getvar {a_uuid} other_loopback_leg_uuid").strip()
        assert len(b_uuid) == 36, b_uuid
        reply = control.api(f"uuid_transfer {b_uuid} 'socket:127.0.0.1:8084 async full' inline")
        assert reply.startswith("+OK"), reply
        control.api(f"sched_hangup +25 {a_uuid} NORMAL_CLEARING")

    def wait(self, timeout=30):
        return self.helper.wait(timeout)

    def heard(self):
        return self.helper.heard()


def _answered_first_real(stack, tmp_path):
    return _AnsweredFirst(stack, tmp_path)
