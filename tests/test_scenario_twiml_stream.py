"""TwiML Media Streams, on the simulator and (marked `freeswitch`) on a real FreeSWITCH: a Twilio app
(`[[numbers]] api = "twilio"`, TwiML built with the twilio package's VoiceResponse) with
`<Connect><Stream>` + <Parameter>s gets Twilio's `connected` and `start` (accountSid, the call's CA
sid, an MZ streamSid, customParameters, mu-law 8 kHz) and the caller's audio; the app's `media` is
heard by the caller; the app closing its socket lets the next verb run. `<Start><Stream>` with
both_tracks streams in the background while the next verbs play, `<Stop><Stream name>` stops it (the
app gets `stop`, nothing played after it reaches the app). Every stream statusCallback
(stream-started, stream-stopped) is signed as Twilio signs (RequestValidator). pipecat's
TwilioFrameSerializer detects a TwiML stream's start and reads the CA sid as its call_sid.
"""
import audioop
import base64
import json
import re

import gevent
import numpy as np
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, Start, Stop, Stream, VoiceResponse

from harness import Stack, switch_modes
from pipecat_support import Driver, needs_pipecat
from stream_scenarios import Calls, media, messages, payload_bytes, pcm, tone, wait_until, windows_with, write_wav
from verbs.twiml import call_sid, call_uuid
from wsapp import AppServer as WsApp

TOKEN = "test-token"          # the harness's auth_token: what signs a Twilio app's webhooks
CALLER_HZ, APP_HZ, NEXT_HZ, AFTER_STOP_HZ = 300, 1000, 700, 500


def _stack(real_fs):
    """(Stack with the Twilio number `<prefix>2000`, the prefix): on a real FreeSWITCH the caller's
    number is routed to callfork only with the `callfork` prefix."""
    prefix = "callfork" if real_fs else ""
    stack = Stack(real=real_fs)
    stack.app.start()             # its port goes into the config
    stack.config_text = (f'[[numbers]]\nnumber = "{prefix}2000"\napi = "twilio"\n'
                         f'answer_url = "{stack.app.url("/voice")}"\nhangup_url = "{stack.app.url("/status")}"\n')
    return stack, prefix


def _signed(req, stack, path) -> bool:
    url = stack.app.url(path)
    params = req.form if req.method == "POST" else {}
    return RequestValidator(TOKEN).validate(url if req.method == "POST" else f"{url}?{req.query}", params,
                                            req.headers.get("x-twilio-signature", ""))


def _completed(stack, timeout=40, error=False):
    """The call's StatusCallback `completed` (a Twilio number's end of call; unless `error`, one whose
    call had no error), and the call's UUID."""
    (status,) = stack.app.wait_path("/status", timeout=timeout)
    assert error or status.form["ErrorMessage"] == "", status.form["ErrorMessage"]
    return status, call_uuid(status.form["CallSid"])


def _ulaw(msgs) -> np.ndarray:
    return pcm(audioop.ulaw2lin(payload_bytes(msgs), 2))


def _stream_events(stack, path="/stream-status"):
    return [r for r in list(stack.app.requests) if r.path == path]


def _bidirectional_app(conn, result):
    """Wait for the start and some caller audio, send 1.5 s of APP_HZ back as Twilio media, then close."""
    conn.wait_for(lambda c: len(media(messages(c))) >= 25, 10)
    sid = json.loads(conn.texts()[1])["streamSid"]
    ulaw = audioop.lin2ulaw(tone(APP_HZ, 1.5).astype("<i2").tobytes(), 2)
    for offset in range(0, len(ulaw), 160):
        conn.send_text(json.dumps({"event": "media", "streamSid": sid,
                                   "media": {"payload": base64.b64encode(ulaw[offset:offset + 160]).decode()}}))
    conn.send_text(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "said"}}))
    conn.wait_for(lambda c: any(json.loads(m).get("event") == "mark" for m in c.texts()), 6)
    result["marked"] = True
    conn.close(1000)             # the app ends the <Connect>: the next verb runs
    conn.closed.wait(5)


@switch_modes()
def test_connect_stream_is_twilios_media_stream_and_the_next_verb_runs_when_the_app_closes(tmp_path, real_fs):
    app = WsApp().start()
    stack, p = _stack(real_fs)
    result = {}
    try:
        with stack:
            calls = Calls(stack)
            next_tone = calls.serve_wav("/next.wav", tone(NEXT_HZ, 2.0))
            r = VoiceResponse()
            connect = Connect()
            stream = Stream(url=app.url, status_callback=stack.app.url("/stream-status"))
            stream.parameter(name="customer", value="gold")
            stream.parameter(name="lang", value="en-US")
            connect.append(stream)
            r.append(connect)
            r.play(next_tone)
            r.pause(length=1)     # the end of what the caller hears is not cut by the hangup
            r.hangup()
            stack.app.document("/voice", str(r))
            caller = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 30.0))
            call = stack.call(to="2000", audio=str(caller), keep_heard=True, hangup_after=40)
            bot = gevent.spawn(_bidirectional_app, app.wait_connection(15), result)
            bot.get(timeout=30)
            status, uuid = _completed(stack)
            heard = call.heard()
            stream_events = wait_until(lambda: len(_stream_events(stack)) >= 2 and _stream_events(stack), 10,
                                       "stream-started and stream-stopped")
    finally:
        app.stop()

    conn = app.connections[0]
    msgs = messages(conn)
    assert msgs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = msgs[1]
    sid = start["streamSid"]
    assert re.fullmatch(r"MZ[0-9a-f]{32}", sid)
    assert start["start"] == {"streamSid": sid, "accountSid": stack.config.server.auth_id,
                              "callSid": call_sid(uuid), "tracks": ["inbound"],
                              "customParameters": {"customer": "gold", "lang": "en-US"},
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    assert all(m["streamSid"] == sid for m in msgs[1:])
    assert windows_with(_ulaw(media(msgs, "inbound")), CALLER_HZ) >= 10     # the app hears the caller
    assert result["marked"]
    # the caller heard the app's reply, then the verb after <Connect>
    assert windows_with(heard, APP_HZ) >= 8, windows_with(heard, APP_HZ)
    assert windows_with(heard, NEXT_HZ) >= 10, windows_with(heard, NEXT_HZ)
    assert np.argmax(_has(heard, APP_HZ)) < np.argmax(_has(heard, NEXT_HZ))
    assert status.form["CallStatus"] == "completed" and _signed(status, stack, "/status")
    assert [e.form["StreamEvent"] for e in stream_events] == ["stream-started", "stream-stopped"]
    for e in stream_events:
        assert _signed(e, stack, "/stream-status")
        assert e.form["StreamSid"] == sid and e.form["StreamName"] == sid      # unnamed: its SID
        assert e.form["CallSid"] == call_sid(uuid) and e.form["AccountSid"] == stack.config.server.auth_id
        assert e.form["Timestamp"]


def _has(samples, freq, win=800):
    """Per 100 ms window: does it hold `freq`?"""
    return np.array([windows_with(samples[i:i + win], freq) > 0 for i in range(0, len(samples) - win, win)])


@switch_modes()
def test_start_stream_runs_in_the_background_until_stop_stream_by_name(tmp_path, real_fs):
    app = WsApp().start()
    stack, p = _stack(real_fs)
    try:
        with stack:
            calls = Calls(stack)
            played = calls.serve_wav("/played.wav", tone(NEXT_HZ, 2.0))
            after = calls.serve_wav("/after.wav", tone(AFTER_STOP_HZ, 1.5))
            r = VoiceResponse()
            start = Start()
            start.stream(url=app.url, name="monitor", track="both_tracks",
                         status_callback=stack.app.url("/stream-status"))
            r.append(start)
            r.play(played)
            stop = Stop()
            stop.stream(name="monitor")
            r.append(stop)
            r.play(after)
            r.pause(length=1)
            r.hangup()
            stack.app.document("/voice", str(r))
            caller = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 30.0))
            call = stack.call(to="2000", audio=str(caller), keep_heard=True, hangup_after=40)
            conn = app.wait_connection(15)
            status, uuid = _completed(stack)
            conn.closed.wait(10)
            heard = call.heard()
            stream_events = wait_until(lambda: len(_stream_events(stack)) >= 2 and _stream_events(stack), 10,
                                       "stream-started and stream-stopped")
    finally:
        app.stop()

    msgs = messages(conn)
    start = msgs[1]["start"]
    sid = msgs[1]["streamSid"]
    assert start["tracks"] == ["inbound", "outbound"] and start["callSid"] == call_sid(uuid)
    assert start["customParameters"] == {}
    assert msgs[-1] == {"event": "stop", "sequenceNumber": msgs[-1]["sequenceNumber"],
                        "stop": {"accountSid": stack.config.server.auth_id, "callSid": call_sid(uuid)},
                        "streamSid": sid}
    inbound, outbound = _ulaw(media(msgs, "inbound")), _ulaw(media(msgs, "outbound"))
    assert windows_with(inbound, CALLER_HZ) >= 10                 # what the caller says
    assert windows_with(outbound, NEXT_HZ) >= 12                  # what the caller hears, played meanwhile
    assert windows_with(outbound, AFTER_STOP_HZ) == 0             # stopped before the next <Play>
    assert windows_with(heard, NEXT_HZ) >= 12 and windows_with(heard, AFTER_STOP_HZ) >= 8
    assert [e.form["StreamEvent"] for e in stream_events] == ["stream-started", "stream-stopped"]
    assert all(e.form["StreamName"] == "monitor" and e.form["StreamSid"] == sid for e in stream_events)
    assert all(_signed(e, stack, "/stream-status") for e in stream_events)
    assert status.form["CallStatus"] == "completed"


@needs_pipecat
def test_pipecat_twilio_serializer_reads_a_twiml_connect_stream(tmp_path):
    app = WsApp().start()
    stack, _p = _stack(False)
    driver = Driver()
    result = {}
    try:
        with stack:
            r = VoiceResponse()
            connect = Connect()
            stream = Stream(url=app.url)
            stream.parameter(name="bot", value="support")
            connect.append(stream)
            r.append(connect)
            stack.app.document("/voice", str(r))
            caller = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
            call = stack.call(to="2000", audio=str(caller), keep_heard=True, hangup_after=20)
            conn = app.wait_connection(15)
            conn.wait_for(lambda c: len(media(messages(c))) >= 25, 10)
            result["detect"] = driver(op="detect", frames=conn.texts()[:2])
            cd = result["detect"]["call_data"]
            driver(op="open", provider="twilio", stream_id=cd["stream_id"], call_id=cd["call_id"],
                   pipeline_rate=16000)
            result["parsed"] = driver(op="deserialize", messages=conn.texts())
            for text in driver(op="serialize", audio=base64.b64encode(tone(APP_HZ, 1.0, rate=16000).tobytes())
                               .decode(), sample_rate=16000)["messages"]:
                conn.send_text(text)
            wait_until(lambda: windows_with(call.heard(), APP_HZ) >= 5, 8, "the bot's reply heard")
            conn.close(1000)
            summary = call.wait(20)
    finally:
        driver.close()
        app.stop()
    cd = result["detect"]["call_data"]
    assert result["detect"]["transport"] == "twilio"
    assert cd["call_id"] == call_sid(summary["uuid"]) and re.fullmatch(r"MZ[0-9a-f]{32}", cd["stream_id"])
    assert cd["body"] == {"bot": "support"}
    got = pcm(base64.b64decode(result["parsed"]["audio"]))           # the caller, as the bot's pipeline hears it
    assert windows_with(got, CALLER_HZ, rate=result["parsed"]["sample_rate"]) >= 3


@switch_modes()
def test_a_refused_stream_reports_stream_error_and_connect_action_runs_next(tmp_path, real_fs):
    """An app that refuses the WebSocket: the <Start> stream's statusCallback gets stream-error (and no
    stream-stopped: it never started), the call goes on; the <Connect> stream fails at once and its
    action's document replaces the rest of the document."""
    refuse = WsApp(reject_status=403).start()
    stack, _p = _stack(real_fs)
    try:
        with stack:
            calls = Calls(stack)
            start = Start()
            start.stream(url=refuse.url, name="bad", status_callback=stack.app.url("/stream-status"))
            connect = Connect(action="/after-connect")
            connect.stream(url=refuse.url)
            r = VoiceResponse()
            r.append(start)
            r.append(connect)
            r.say("never said: the action's document replaces it")
            after = VoiceResponse()
            after.play(calls.serve_wav("/after.wav", tone(AFTER_STOP_HZ, 2.0)))
            after.pause(length=1)
            after.hangup()
            stack.app.document("/voice", str(r))
            stack.app.document("/after-connect", str(after))
            caller = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
            call = stack.call(to="2000", audio=str(caller), keep_heard=True, hangup_after=30)
            status, uuid = _completed(stack, error=True)
            (after_connect,) = stack.app.wait_path("/after-connect", timeout=5)
            heard = call.heard()
            events = _stream_events(stack)
    finally:
        refuse.stop()

    assert [e.form["StreamEvent"] for e in events] == ["stream-error"]
    error = events[0].form
    assert _signed(events[0], stack, "/stream-status") and error["StreamName"] == "bad"
    assert error["StreamError"] and error["CallSid"] == call_sid(uuid)
    assert re.fullmatch(r"MZ[0-9a-f]{32}", error["StreamSid"])
    assert after_connect.form["CallSid"] == call_sid(uuid) and _signed(after_connect, stack, "/after-connect")
    assert windows_with(heard, AFTER_STOP_HZ) >= 10
    assert status.form["CallStatus"] == "completed"
    assert "handshake rejected: HTTP 403" in status.form["ErrorMessage"]    # the refused streams, logged
