"""TwiML attributes issue 14 names that no other scenario ran on a call: Gather's finishOnKey and method with nested Say/Pause/Play prompts; Record's
maxLength, playBeep and trim="do-not-trim"; Dial's timeLimit and hangupOnStar; Play's digits reaching
the far end of the call; bad TwiML in the answer document (a nesting error) ending the call with the
error in the log, the call record and the StatusCallback. On the simulator and (marked `freeswitch`)
on a real FreeSWITCH, except the bad-document test (simulator).

What each test asserts is what a Twilio app and its caller observe: the requests the app receives
(checked with the `twilio` package's RequestValidator), what the caller hears."""
import io
import logging
import re

import requests
import soundfile
from twilio.twiml.voice_response import Dial, Gather, Start, Stop, VoiceResponse

from dial_support import CALLEE_HZ, CALLER_HZ
from harness import Stack, switch_modes
from stream_scenarios import Calls, media, messages, tone, wait_until, windows_with, write_wav
from test_scenario_twiml import HANG_UP, caller_talks, executed, real_fs, twilio  # noqa: F401  (fixtures)
from test_scenario_twiml_dial import _completed, _signed, _stack
from test_scenario_twiml_stream import _completed as _stream_completed
from test_scenario_twiml_stream import _stack as _stream_stack
from test_scenario_twiml_stream import _ulaw
from wsapp import AppServer as WsApp
from twilio_support import ACCOUNT, client
from verbs.twiml import call_uuid

NEXT_HZ = 500
PROMPT_HZ = 800
BEEP_HZ = 700            # Record's beep: tone_stream://%(300,200,700) (verbs/vobiz/record.py)


# -- Gather: finishOnKey, method, nested prompts ---------------------------------------------------

@switch_modes()
def test_gather_finish_on_key_and_method_get_after_nested_say_pause_play(twilio):
    """finishOnKey="*": `*` ends the input and is not in Digits, `#` (the default key) is a digit;
    method="GET": the action is requested with GET, Digits in its query. The nested prompts ran."""
    twilio.wav("/media/prompt.wav", tone(PROMPT_HZ, 1.0))
    r = VoiceResponse()
    g = Gather(action="digits", method="GET", finish_on_key="*", timeout=6)
    g.say("Code, then star.")
    g.pause(length=1)
    g.play("media/prompt.wav")
    r.append(g)
    r.say("We did not get your code.")
    twilio.answer(r)
    twilio.app.document("/digits", HANG_UP, "text/xml")
    call = twilio.call(dtmf=[("1", 8), ("#", 9), ("2", 10), ("*", 11)])
    done = twilio.completed(call)
    (action,) = twilio.requests_to("/digits")
    assert action.method == "GET"
    assert action.args["Digits"] == "1#2" and action.args["CallSid"] == done["CallSid"]
    assert windows_with(call.heard(), PROMPT_HZ) >= 8          # the nested <Play> after the <Pause>


# -- loop="0": until the call ends ---------------------------------------------------------------------

@switch_modes()
def test_play_loop_zero_plays_until_the_caller_hangs_up(twilio):
    """https://www.twilio.com/docs/voice/twiml/play: loop="0" repeats until the call ends. A 1 s
    tone, a caller who hangs up after about 8 s: the tone for most of it, and the verb after <Play>
    never runs."""
    twilio.wav("/media/beat.wav", tone(PROMPT_HZ, 1.0))
    r = VoiceResponse()
    r.play("media/beat.wav", loop=0)
    r.redirect("/never")
    twilio.answer(r)
    call = twilio.call(hangup_after=8)
    twilio.completed(call)
    assert windows_with(call.heard(), PROMPT_HZ) >= 45        # 4.5 s and more: at least five rounds
    assert not [q for q in twilio.app.requests if q.path == "/never"]


def test_say_loop_zero_speaks_until_the_caller_hangs_up(twilio):
    apps = executed(twilio.stack)
    r = VoiceResponse()
    r.say("Again", loop=0)
    r.redirect("/never")
    twilio.answer(r)
    call = twilio.call(hangup_after=5)
    twilio.completed(call)
    assert len([data for app, data in apps if app == "speak"]) >= 3
    assert not [q for q in twilio.app.requests if q.path == "/never"]


# -- Record: maxLength, playBeep, trim ---------------------------------------------------------------

@switch_modes()
def test_record_max_length_ends_the_recording_after_the_beep(twilio, tmp_path):
    """The caller talks on and on: maxLength="3" ends the recording after 3 s (not the caller, not
    the silence timeout); the caller heard the beep first; the action gets Digits empty."""
    r = VoiceResponse()
    r.record(action="/recorded", max_length=3, timeout=10)
    twilio.answer(r)
    twilio.app.document("/recorded", HANG_UP, "text/xml")
    call = twilio.call(audio=caller_talks(tmp_path / "caller.wav", 0.5, 30, seconds=30))
    done = twilio.completed(call)
    (voice,) = twilio.requests_to("/voice")
    (action,) = twilio.requests_to("/recorded")
    form = action.form
    assert form["CallSid"] == done["CallSid"] and form["Digits"] == ""
    assert 2 <= int(form["RecordingDuration"]) <= 4, form["RecordingDuration"]
    assert action.received_at - voice.received_at < 9       # long before the caller stopped talking
    assert windows_with(call.heard(), BEEP_HZ) >= 2          # the 300 ms beep
    resp = requests.get(form["RecordingUrl"], headers=twilio.stack.api_headers(), timeout=10)
    audio, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert resp.status_code == 200 and 2.0 <= len(audio) / rate <= 4.0
    assert windows_with(audio, 300) >= 15


@switch_modes()
def test_record_do_not_trim_keeps_the_silence_and_no_beep_is_played(twilio, tmp_path):
    """trim="do-not-trim": the trailing silence that ended the recording (timeout="2") stays in it,
    so it is about 2 s longer than the 2 s the caller talked; playBeep="false": no beep heard."""
    r = VoiceResponse()
    r.record(action="/recorded", timeout=2, trim="do-not-trim", play_beep=False)
    twilio.answer(r)
    twilio.app.document("/recorded", HANG_UP, "text/xml")
    call = twilio.call(audio=caller_talks(tmp_path / "caller.wav", 1.0, 3.0, seconds=15))
    twilio.completed(call)
    (action,) = twilio.requests_to("/recorded")
    form = action.form
    assert int(form["RecordingDuration"]) >= 4, form["RecordingDuration"]
    resp = requests.get(form["RecordingUrl"], headers=twilio.stack.api_headers(), timeout=10)
    audio, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
    assert len(audio) / rate >= 3.8 and windows_with(audio, 300) >= 15
    assert windows_with(call.heard(), BEEP_HZ) == 0


# -- Dial: timeLimit, hangupOnStar -------------------------------------------------------------------

def _dial_scenario(tmp_path, real_fs, dial: Dial, press_star=False):
    """Caller -> Twilio number 1 whose TwiML is `dial` (to callee 77, which plays CALLEE_HZ for 20 s,
    its leg's statusCallback at /leg) with action /after, whose document plays NEXT_HZ and hangs up.
    With `press_star`, the caller presses * once it is bridged to the leg. (action form, heard, status)."""
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "77", f'<Response><Play>{calls.serve_wav("/700.wav", tone(CALLEE_HZ, 20.0))}</Play></Response>')
        dial.number("77", status_callback=stack.app.url("/leg"), status_callback_event="answered completed")
        stack.app.document("/voice1", str(VoiceResponse().append(dial)))
        after = VoiceResponse()
        after.play(calls.serve_wav("/next.wav", tone(NEXT_HZ, 2.0)))
        after.pause(length=1)
        after.hangup()
        stack.app.document("/after", str(after))
        caller = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 40.0))
        call = stack.call(to="1", audio=str(caller), keep_heard=True, hangup_after=45)
        if press_star:
            (voice,) = stack.app.wait_path("/voice1", timeout=30)
            caller_leg = call_uuid(voice.form["CallSid"])
            wait_until(lambda: re.fullmatch(r"[0-9a-f-]{36}", stack.service.control.api(
                f"uuid_getvar {caller_leg} bridge_uuid").strip()), 30, "the caller bridged to the callee")
            if stack.real_fs:
                stack.service.control.api(f"uuid_send_dtmf {call.a_uuid} *")
            else:
                call.channel.queue_dtmf("*")
        (action,) = stack.app.wait_path("/after", timeout=40)
        status = _completed(stack)
        heard = call.heard()
        legs = stack.app.wait_path("/leg", timeout=10, count=2)
    assert _signed(action, stack) and all(_signed(leg, stack) for leg in legs)
    assert [leg.form["CallStatus"] for leg in legs] == ["in-progress", "completed"]
    assert status["CallStatus"] == "completed"
    return action.form, heard, legs[1].form


@switch_modes()
def test_dial_time_limit_ends_the_bridge_and_the_action_runs(tmp_path, real_fs):
    action, heard, leg_end = _dial_scenario(tmp_path, real_fs, Dial(action="/after", time_limit=3))
    assert action["DialCallStatus"] == "completed" and action["DialBridged"] == "true"
    assert 2 <= int(action["DialCallDuration"]) <= 5, action["DialCallDuration"]
    assert 2 <= int(leg_end["CallDuration"]) <= 5
    assert 15 <= windows_with(heard, CALLEE_HZ) <= 60       # about 3 s of the callee's 20 s
    assert windows_with(heard, NEXT_HZ) >= 10               # then the action's document


@switch_modes()
def test_dial_hangup_on_star_hangs_the_callee_up_and_the_caller_goes_on(tmp_path, real_fs):
    action, heard, leg_end = _dial_scenario(tmp_path, real_fs, Dial(action="/after", hangup_on_star=True),
                                            press_star=True)
    assert action["DialCallStatus"] == "completed" and action["DialBridged"] == "true"
    assert int(action["DialCallDuration"]) <= 8, action["DialCallDuration"]
    assert windows_with(heard, CALLEE_HZ) <= 100            # not the callee's whole 20 s
    assert windows_with(heard, NEXT_HZ) >= 10               # the caller stayed: the action's document ran


# -- Play digits, received at the far end ------------------------------------------------------------

@switch_modes()
def test_play_digits_are_received_by_the_far_end(real_fs):
    """A call placed through the REST API (inline TwiML: pause, <Play digits="4w2#">) to a Twilio
    number of the same callfork whose <Gather> collects what arrives: its action gets Digits=42
    (the `#` finished it; `w` is a half-second pause). The originate's loopback far end runs the
    dialplan, which sends `callfork<N>` to callfork (on both switches; other numbers park there)."""
    stack = Stack(real=real_fs, env={"CALLFORK_SERVER_AUTH_ID": ACCOUNT,
                                     "CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": "loopback/callfork{to}/default"})
    stack.app.start()        # its port goes into the config
    stack.config_text = (f'[[numbers]]\nnumber = "callfork2"\napi = "twilio"\n'
                         f'answer_url = "{stack.app.url("/voice2")}"\nhangup_url = "{stack.app.url("/status2")}"\n')
    with stack:
        gather = VoiceResponse()
        gather.gather(action="/got", timeout=10)
        stack.app.document("/voice2", str(gather))
        stack.app.document("/got", HANG_UP)
        sender = VoiceResponse()
        sender.pause(length=2)
        sender.play(digits="4w2#")
        sender.pause(length=20)
        placed = client(stack).calls.create(to="2", from_="+15551230001", twiml=str(sender),
                                            status_callback=stack.app.url("/status1"))
        (got,) = stack.app.wait_path("/got", timeout=30)
        (status,) = stack.app.wait_path("/status1", timeout=30)
    assert _signed(got, stack) and got.form["Digits"] == "42"
    assert call_uuid(got.form["CallSid"]) != call_uuid(placed.sid)      # the far end's own call
    assert status.form["CallSid"] == placed.sid and status.form["CallStatus"] == "completed"


# -- bad TwiML in the answer document -----------------------------------------------------------------

def test_a_nesting_error_in_the_answer_ends_the_call_with_the_error_logged_recorded_and_called_back(
        twilio, caplog):
    doc = '<?xml version="1.0"?>\n<Response>\n  <Gather>\n    <Record/>\n  </Gather>\n</Response>'
    twilio.answer(doc)
    with caplog.at_level(logging.ERROR):
        call = twilio.call()
        done = twilio.completed(call, error=True)
        summary = call.wait(10)
    where = "line 4:5: <Record>: <Record> is not allowed inside <Gather>"
    assert where in done["ErrorMessage"] and twilio.app.url("/voice") in done["ErrorMessage"]
    # never answered (the first document was bad): hung up unanswered, as a failed call
    assert done["CallStatus"] == "failed" and done["CallDuration"] == "0" and not summary["answered"]
    record = twilio.stack.service.store.get_call(summary["uuid"])
    assert where in record["error"]
    logged = [r.getMessage() for r in caplog.records if where in r.getMessage()]
    assert len(logged) == 1 and summary["uuid"] in logged[0], logged
    assert not [r for r in twilio.app.requests if r.path not in ("/voice", "/status")]
    assert re.fullmatch(r"CA[0-9a-f]{32}", done["CallSid"])


# -- <Start><Stream track="outbound_track"> ---------------------------------------------------------

@switch_modes()
def test_start_stream_outbound_track_sends_only_what_the_caller_hears(tmp_path, real_fs):
    """track="outbound_track": the stream's `start` says tracks ["outbound"], its media are the
    outbound track only and hold what the caller hears (the <Play>), not the caller's voice."""
    app = WsApp().start()
    stack, _p = _stream_stack(real_fs)
    try:
        with stack:
            calls = Calls(stack)
            r = VoiceResponse()
            start = Start()
            start.stream(url=app.url, name="out", track="outbound_track")
            r.append(start)
            r.play(calls.serve_wav("/played.wav", tone(NEXT_HZ, 2.0)))
            stop = Stop()
            stop.stream(name="out")
            r.append(stop)
            r.hangup()
            stack.app.document("/voice", str(r))
            caller = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
            stack.call(to="2000", audio=str(caller), hangup_after=30)
            conn = app.wait_connection(15)
            _stream_completed(stack)
            conn.closed.wait(10)
    finally:
        app.stop()
    msgs = messages(conn)
    assert msgs[1]["start"]["tracks"] == ["outbound"]
    assert media(msgs) and media(msgs) == media(msgs, "outbound")
    assert windows_with(_ulaw(media(msgs)), NEXT_HZ) >= 12
    assert windows_with(_ulaw(media(msgs)), CALLER_HZ) == 0
