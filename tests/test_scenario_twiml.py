"""TwiML verbs on a call (issue 14): a `[[numbers]] api = "twilio"` number whose app answers with TwiML
built by the twilio package's VoiceResponse. What the caller HEARS (Say, Play), what the app RECEIVES
(Gather's Digits, Record's recording and callbacks, Redirect's request, the StatusCallback's
`completed`), every request's X-Twilio-Signature checked with the package's RequestValidator. Say, Play,
Gather, Record and Reject also run on a real FreeSWITCH (`switch_modes()`); the rest on the simulator.

The app's documents: /voice answers, /status is the number's StatusCallback. Relative URLs in the
documents (action="digits", <Play>tone.wav</Play>) are resolved against the document's URL, as Twilio does."""
import io
import time

import numpy as np
import pytest
import requests
import soundfile
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather, VoiceResponse

from harness import Stack, switch_modes
from stream_scenarios import tone, windows_with, write_wav
from verbs.twiml import call_sid, recording_sid

TOKEN = "test-token"        # harness.Stack's auth token: Twilio's signing key
NUMBER = "2001"
FINAL = ("completed", "busy", "no-answer", "failed", "canceled")
# (str(VoiceResponse().hangup()) would be the <Hangup> element alone: not a TwiML document)
HANG_UP = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'


@pytest.fixture
def real_fs():
    return False       # the scenarios not parametrized with switch_modes() run on the simulator


@pytest.fixture
def twilio(request, real_fs):
    stack = Stack(real=real_fs)
    base = stack.app.start().url("").rstrip("/")
    numbers = ""
    for number in (NUMBER, "callfork" + NUMBER):   # the real switch's dialplan needs the prefix
        numbers += (f'[[numbers]]\nnumber = "{number}"\napi = "twilio"\nanswer_url = "{base}/voice"\n'
                    f'hangup_url = "{base}/status"\n')
    stack.config_text = numbers
    with stack:
        yield Twilio(stack, real_fs)


class Twilio:
    def __init__(self, stack, real):
        self.stack, self.real = stack, real
        self.app = stack.app

    def answer(self, response, path="/voice"):
        self.app.document(path, str(response), "text/xml")

    def wav(self, path, samples):
        buf = io.BytesIO()
        soundfile.write(buf, samples, 8000, subtype="PCM_16", format="WAV")
        return self.app.document(path, buf.getvalue(), "audio/wav")

    def call(self, **script):
        script.setdefault("hangup_after", 30)
        if not self.real:
            script.setdefault("keep_heard", True)
        return self.stack.call(to=NUMBER, **script)

    def completed(self, call, timeout=40.0, error=False) -> dict:
        """The StatusCallback's `completed` (checked signed), once the call has ended; unless `error`,
        one that carries no error (every document of the call was good TwiML)."""
        def final():
            return [r for r in self.app.requests if r.path == "/status" and r.form.get("CallStatus") in FINAL]
        self.app.wait_for(final, timeout)
        if not self.real:
            call.wait(timeout)
        req = final()[0]
        signed(req, self.app)
        if not error:
            assert req.form["ErrorMessage"] == "", req.form["ErrorMessage"]
        return req.form

    def requests_to(self, path, timeout=15.0, count=1):
        found = self.app.wait_path(path, timeout=timeout, count=count)
        for req in found:
            signed(req, self.app)
        return found


def signed(req, app):
    """The request's X-Twilio-Signature is what Twilio would send for its URL and parameters."""
    url = app.url(req.path) + (f"?{req.query}" if req.query else "")
    params = req.form if req.method == "POST" else {}
    assert RequestValidator(TOKEN).validate(url, params, req.headers.get("x-twilio-signature", "")), \
        (req.method, url, params)


def speech_level(samples, start_s=0.0, seconds=2.0):
    chunk = samples[int(start_s * 8000):int((start_s + seconds) * 8000)].astype(np.float64)
    return float(np.sqrt(np.mean(chunk ** 2))) if len(chunk) else 0.0


# -- Say -------------------------------------------------------------------------------------------

@switch_modes()
def test_say_is_heard_and_the_status_callback_says_completed(twilio):
    r = VoiceResponse()
    r.say("Hello from callfork, a Twilio app.", voice="alice", language="en-US")
    twilio.answer(r)
    call = twilio.call()
    done = twilio.completed(call)
    heard = call.heard()
    assert speech_level(heard) > 200          # speech, not silence
    voice = twilio.requests_to("/voice")[0]
    assert voice.method == "POST"
    sid = voice.form["CallSid"]
    assert sid.startswith("CA") and len(sid) == 34
    assert voice.form["AccountSid"] == twilio.stack.config.server.auth_id
    assert voice.form["CallStatus"] == "ringing" and voice.form["Direction"] == "inbound"
    assert done["CallSid"] == sid
    assert done["CallStatus"] == "completed" and int(done["CallDuration"]) >= 1
    assert done["ErrorMessage"] == ""


# -- Play ------------------------------------------------------------------------------------------

@switch_modes()
def test_play_of_a_relative_url_is_heard_loop_times(twilio):
    twilio.wav("/media/tone.wav", tone(900, 1.0))
    r = VoiceResponse()
    r.play("media/tone.wav", loop=2)        # relative to /voice
    twilio.answer(r)
    call = twilio.call()
    twilio.completed(call)
    assert windows_with(call.heard(), 900) >= 16     # two seconds of the tone
    fetches = [q for q in twilio.app.requests if q.path == "/media/tone.wav"]
    assert fetches, "the relative URL was not fetched from the app"


def executed(stack) -> list:
    """[(application, data)] the simulated FreeSWITCH starts from now on (its CHANNEL_EXECUTE events)."""
    apps = []
    deliver = stack.sim.deliver

    def watch(ev, divert_to=None):
        if ev.name == "CHANNEL_EXECUTE":
            apps.append((ev.get("Application"), ev.get("Application-Data") or ""))
        return deliver(ev, divert_to=divert_to)
    stack.sim.deliver = watch
    return apps


def test_say_voices_map_onto_the_flite_voices_and_loop(twilio):
    apps = executed(twilio.stack)
    r = VoiceResponse()
    r.say("One", voice="man", loop=2)
    r.say("Two", voice="alice")
    r.say("Three", voice="Polly.Joanna")
    r.say("Four")
    twilio.answer(r)
    call = twilio.call()
    twilio.completed(call)
    assert [data for app, data in apps if app == "speak"] == [
        "flite|rms|One", "flite|rms|One", "flite|slt|Two", "flite|slt|Three", "flite|rms|Four"]


def test_play_digits_sends_dtmf(twilio):
    executed_apps = executed(twilio.stack)
    r = VoiceResponse()
    r.play(digits="1w2#")
    r.say("done")
    twilio.answer(r)
    call = twilio.call()
    twilio.completed(call)
    assert call.wait(5)["answered"]
    apps = [app for app, _ in executed_apps]
    assert ("send_dtmf", "1w2#") in executed_apps
    assert apps.index("send_dtmf") < apps.index("speak")     # sent before the next verb ran


# -- Pause -----------------------------------------------------------------------------------------

def test_pause_waits_its_length_before_the_next_verb(twilio):
    r = VoiceResponse()
    r.say("one")
    r.pause(length=2)
    r.redirect("/after")
    twilio.answer(r)
    twilio.app.document("/after", HANG_UP, "text/xml")
    call = twilio.call()
    twilio.completed(call)
    voice = twilio.requests_to("/voice")[0]
    after = twilio.requests_to("/after")[0]
    assert after.received_at - voice.received_at >= 2.0


# -- Gather ----------------------------------------------------------------------------------------

@switch_modes()
def test_gather_posts_digits_to_the_action_and_runs_its_twiml(twilio):
    r = VoiceResponse()
    g = Gather(action="digits", num_digits=2, timeout=8)
    g.say("Please enter two digits.")
    r.append(g)
    r.say("We did not get anything.")
    twilio.answer(r)
    twilio.wav("/media/1100.wav", tone(1100, 1.0))
    after = VoiceResponse()
    after.play("media/1100.wav")
    twilio.app.document("/digits", str(after), "text/xml")
    call = twilio.call(dtmf=[("4", 4), ("2", 5)])
    done = twilio.completed(call)
    action = twilio.requests_to("/digits")[0]
    assert action.method == "POST"
    assert action.form["Digits"] == "42"
    assert action.form["CallSid"] == done["CallSid"]
    assert action.form["CallStatus"] == "in-progress"
    assert windows_with(call.heard(), 1100) >= 8      # the action's TwiML ran


def test_gather_barge_in_false_plays_the_prompt_out_and_drops_its_digits(twilio):
    twilio.wav("/media/600.wav", tone(600, 3.0))
    r = VoiceResponse()
    r.gather(action="/g", num_digits=1, timeout=4, barge_in=False).play("media/600.wav")
    twilio.answer(r)
    twilio.app.document("/g", HANG_UP, "text/xml")
    call = twilio.call(dtmf=[("5", 1.0), ("7", 4.5)])
    twilio.completed(call)
    assert twilio.requests_to("/g")[0].form["Digits"] == "7"
    assert windows_with(call.heard(), 600) >= 27      # the whole 3 s prompt, not cut at 1 s


def test_gather_timeout_goes_on_with_the_next_verb(twilio):
    r = VoiceResponse()
    r.gather(action="/never", timeout=1).say("Say nothing")
    r.redirect("/next")
    twilio.answer(r)
    twilio.app.document("/next", HANG_UP, "text/xml")
    call = twilio.call()
    twilio.completed(call)
    twilio.requests_to("/next")
    assert not [q for q in twilio.app.requests if q.path == "/never"]


def test_gather_action_on_empty_result_posts_empty_digits(twilio):
    r = VoiceResponse()
    r.gather(action="/empty", timeout=1, action_on_empty_result=True)
    r.say("unreachable")
    twilio.answer(r)
    twilio.app.document("/empty", HANG_UP, "text/xml")
    call = twilio.call()
    twilio.completed(call)
    assert twilio.requests_to("/empty")[0].form["Digits"] == ""


def test_gather_without_action_requests_the_document_again(twilio):
    def voice(req):
        r = VoiceResponse()
        if req.form.get("Digits"):
            r.say(f"You pressed {req.form['Digits']}")
            r.hangup()
        else:
            r.gather(num_digits=1, timeout=8).say("Press a key")
        return str(r)
    twilio.app.document("/voice", voice, "text/xml")
    call = twilio.call(dtmf=[("9", 3)])
    twilio.completed(call)
    first, second = twilio.requests_to("/voice", count=2)[:2]
    assert "Digits" not in first.form and second.form["Digits"] == "9"


# -- Record ----------------------------------------------------------------------------------------

def caller_talks(path, talk_from, talk_until, seconds=12.0):
    t = np.arange(int(seconds * 8000)) / 8000
    audio = 0.3 * np.sin(2 * np.pi * 300 * t) * ((t >= talk_from) & (t < talk_until))
    return write_wav(path, (audio * 32767).astype(np.int16))


@switch_modes()
def test_record_holds_the_callers_tone_and_posts_action_and_status_callbacks(twilio, tmp_path):
    r = VoiceResponse()
    r.say("Leave a message.")
    r.record(action="recorded", max_length=15, timeout=2, recording_status_callback="/recstatus",
             recording_status_callback_event="in-progress completed")
    r.say("unreachable: the action's TwiML runs instead")
    twilio.answer(r)
    twilio.app.document("/recorded", HANG_UP, "text/xml")
    call = twilio.call(audio=caller_talks(tmp_path / "caller.wav", 3.5, 6.5))
    done = twilio.completed(call)
    action = twilio.requests_to("/recorded")[0].form
    statuses = [q.form for q in twilio.requests_to("/recstatus", count=2)]
    assert [s["RecordingStatus"] for s in statuses] == ["in-progress", "completed"]
    sid = action["RecordingSid"]
    assert sid.startswith("RE") and len(sid) == 34
    assert action["CallSid"] == done["CallSid"] and action["Digits"] == ""
    # trim-silence: about the 3 s the caller talked, not the 2 s of silence after it
    assert 2 <= int(action["RecordingDuration"]) <= 4
    completed = statuses[1]
    assert completed["RecordingSid"] == sid and completed["RecordingUrl"] == action["RecordingUrl"]
    assert completed["CallSid"] == done["CallSid"] and completed["AccountSid"] == done["AccountSid"]
    assert completed["RecordingDuration"] == action["RecordingDuration"]
    assert completed["RecordingSource"] == "RecordVerb"
    # Twilio's RecordingUrl has no extension; apps append .wav or .mp3 for the format they want
    assert recording_sid(action["RecordingUrl"].rsplit("/", 1)[1]) == sid
    for suffix, media_type in (("", "audio/wav"), (".mp3", "audio/mpeg"), (".wav", "audio/wav")):
        resp = requests.get(action["RecordingUrl"] + suffix, headers=twilio.stack.api_headers(), timeout=10)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith(media_type), suffix
        audio, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
        assert rate == 8000 and windows_with(audio, 300) >= 20, suffix
    missing = action["RecordingUrl"].rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000.mp3"
    assert requests.get(missing, headers=twilio.stack.api_headers(), timeout=10).status_code == 404


def test_record_finished_by_a_key_says_which(twilio, tmp_path):
    r = VoiceResponse()
    r.record(action="/recorded", finish_on_key="#", play_beep=False, timeout=10)
    twilio.answer(r)
    twilio.app.document("/recorded", HANG_UP, "text/xml")
    call = twilio.call(audio=caller_talks(tmp_path / "caller.wav", 0.5, 10), dtmf=[("#", 3)])
    twilio.completed(call)
    action = twilio.requests_to("/recorded")[0].form
    assert action["Digits"] == "#"


def test_record_cut_by_the_callers_hangup_still_posts_the_action(twilio, tmp_path):
    r = VoiceResponse()
    r.record(action="/recorded", play_beep=False, timeout=10)
    twilio.answer(r)
    call = twilio.call(audio=caller_talks(tmp_path / "caller.wav", 0.5, 12), hangup_after=3)
    done = twilio.completed(call)
    action = twilio.requests_to("/recorded")[0].form
    assert action["Digits"] == "hangup" and action["CallStatus"] == "completed"
    assert 1 <= int(action["RecordingDuration"]) <= 3
    assert done["CallStatus"] == "completed"


def test_an_empty_recording_requests_no_action_and_goes_on(twilio):
    r = VoiceResponse()
    r.record(action="/recorded", timeout=1, play_beep=False, recording_status_callback="/recstatus",
             recording_status_callback_event="completed absent")
    r.redirect("/next")
    twilio.answer(r)
    twilio.app.document("/next", HANG_UP, "text/xml")
    call = twilio.call()       # a silent caller
    twilio.completed(call)
    twilio.requests_to("/next")
    assert twilio.requests_to("/recstatus")[0].form["RecordingStatus"] == "absent"
    assert not [q for q in twilio.app.requests if q.path == "/recorded"]


# -- Hangup, Reject, Redirect ----------------------------------------------------------------------

def test_hangup_ends_the_answered_call(twilio):
    r = VoiceResponse()
    r.hangup()
    r.say("never")
    twilio.answer(r)
    call = twilio.call()
    done = twilio.completed(call)
    summary = call.wait(5)
    assert summary["answered"] and summary["hangup_cause"] == "NORMAL_CLEARING"
    assert done["CallStatus"] == "completed"


@switch_modes()
@pytest.mark.parametrize("reason,cause,status", [("busy", "USER_BUSY", "busy"),
                                                  ("rejected", "CALL_REJECTED", "no-answer")])
def test_reject_refuses_the_call_unanswered(twilio, reason, cause, status):
    """On FreeSWITCH the caller's originate fails with the cause callfork hung up with (the loopback
    caller never got an answer), and the `completed` callback's status and duration come from the
    channel's CHANNEL_HANGUP_COMPLETE (no answer time); the simulator also shows its events."""
    r = VoiceResponse()
    r.reject(reason=reason)
    twilio.answer(r)
    if twilio.real:
        with pytest.raises(RuntimeError, match=f"originate failed: -ERR {cause}$"):
            twilio.call()
        call = None
    else:
        call = twilio.call()
    done = twilio.completed(call)
    assert done["CallStatus"] == status and done["CallDuration"] == "0"
    assert done["HangupCause"] == cause
    if not twilio.real:
        summary = call.wait(5)
        assert not summary["answered"]
        assert summary["hangup_cause"] == cause
        assert "CHANNEL_ANSWER" not in summary["events"]


def test_redirect_fetches_the_relative_url_with_its_method(twilio):
    r = VoiceResponse()
    r.redirect("next?step=2", method="GET")
    r.say("unreachable")
    twilio.answer(r)
    there = VoiceResponse()
    there.say("there")
    twilio.app.document("/next", str(there), "text/xml")
    call = twilio.call()
    done = twilio.completed(call)
    nxt = twilio.requests_to("/next")[0]
    assert nxt.method == "GET"
    assert nxt.args["step"] == "2" and nxt.args["CallSid"] == done["CallSid"]


# -- bad TwiML at run time -------------------------------------------------------------------------

def test_bad_twiml_ends_the_call_with_the_error_in_the_callback_and_the_record(twilio):
    r = VoiceResponse()
    r.say("first")
    r.redirect("/bad")
    twilio.answer(r)
    twilio.app.document("/bad", '<Response>\n  <Say voice="robot">x</Say>\n  <Enqueue>q</Enqueue>\n</Response>',
                        "text/xml")
    call = twilio.call()
    done = twilio.completed(call, error=True)
    summary = call.wait(5)
    assert summary["answered"]
    error = done["ErrorMessage"]
    assert "line 2:3: <Say>: voice" in error and "line 3:3: <Enqueue>" in error
    record = twilio.stack.service.store.get_call(summary["uuid"])
    assert "line 2:3: <Say>: voice" in record["error"]
    assert call_sid(summary["uuid"]) == done["CallSid"]
