"""The caller hangs up during each blocking verb (issue "Vobiz XML engine"): the call ends cleanly
(CallGone), the hangup webhook says Caller / 4000 Normal Hangup (1000 Canceled before answer), no
traceback is logged, nothing runs after the hangup, and a Record gets its RecordStop with HungUp and
the partial file. All calls run at once on one Stack."""
import io

import numpy as np
import pytest
import requests
import soundfile

from harness import Stack
from vobiz_scenarios import HANGUP_FIELDS, WAV, Scenarios, caller_audio

LONG = "This is a long sentence that the caller will not hear to the end at all"   # ~4.7 s

# name: (the verb(s) that block, the caller hangs up `delay` s after FreeSWITCH starts `app`)
BLOCKING = {
    "speak": (f"<Speak>{LONG}</Speak>", "speak", 0.5),
    "speak_forever": ('<Speak loop="0">Hello again</Speak>', "speak", 1.5),
    "play": ('<Play loop="0">{app}/a.wav</Play>', "playback", 0.7),
    "wait": ('<Speak>A</Speak><Wait length="10"/>', "speak", 1.0),
    "wait_silence": ('<Speak>A</Speak><Wait length="10" silence="true"/>', "wait_for_silence", 0.5),
    "gather": ('<Gather action="{app}/g" executionTimeout="10"><Speak>Hi</Speak></Gather>', "speak", 1.0),
    "gather_prompt": (f'<Gather action="{{app}}/g"><Speak>{LONG}</Speak></Gather>', "speak", 0.5),
    "dtmf_sync": ('<DTMF async="false">1W2W3W4W5</DTMF>', "send_dtmf", 0.5),
    "record": ('<Record callbackUrl="{app}/rc" action="{app}/ra" fileFormat="wav" playBeep="false"/>',
               "record", 1.0),
    "record_session": ('<Record recordSession="true" callbackUrl="{app}/rc" fileFormat="mp3"/>'
                       '<Wait length="10"/>', "record_session", 1.0),
}
UNANSWERED = {
    "preanswer": (f"<PreAnswer><Speak>{LONG}</Speak></PreAnswer>", "speak", 0.5),
    "ringing_wait": ('<Wait length="10"/>', None, 1.5),
}


@pytest.fixture(scope="module")
def s(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("caller")
    audio = caller_audio(tmp, "talker", 0.0, 10.0)
    with Stack() as stack:
        scen = Scenarios(stack)
        for name, (body, app, delay) in {**BLOCKING, **UNANSWERED}.items():
            timing = {"react": [(app, "", "hangup", delay)]} if app else {"hangup_after": delay}
            scen.add(name, f"<Response>{body}<Speak>never</Speak></Response>", audio=audio, **timing)
        scen.serve("play", "/a.wav", WAV, "audio/wav")
        # the caller leaves during the beep
        scen.add("record_beep", '<Response><Record callbackUrl="{app}/rc" action="{app}/ra"/></Response>',
                 react=[("playback", "tone_stream", "hangup", 0.1)])
        scen.start()
        yield scen
        scen.close()


def _clean_end(r):
    assert r.summary["hangup_cause"] == "NORMAL_CLEARING"
    assert "flite|slt|never" not in r.app_data("speak")
    r.no_tracebacks()
    assert not [e for e in r.errors()], r.errors()
    rec = r.record()
    assert rec["error"] == ""


@pytest.mark.parametrize("name", sorted(BLOCKING))
def test_caller_hangup_during_a_blocking_verb(s, name):
    r = s.result(name)
    h = r.hangup
    assert (h["HangupSource"], h["HangupCauseCode"], h["HangupCauseName"], h["HangupCause"]) == \
        ("Caller", "4000", "Normal Hangup", "NORMAL_CLEARING"), h
    assert h["CallStatus"] == "completed" and h["Error"] == ""
    for field in HANGUP_FIELDS:
        assert field in h, field
    assert h["AnswerTime"] and h["BillDuration"] == "60"
    assert r.summary["answered"] is True
    _clean_end(r)
    assert len(r.forms("Hangup")) == 1


@pytest.mark.parametrize("name", sorted(UNANSWERED))
def test_caller_hangup_before_answer_is_a_cancel(s, name):
    r = s.result(name)
    h = r.hangup
    assert (h["HangupSource"], h["HangupCauseCode"], h["HangupCauseName"]) == ("Caller", "1000", "Canceled"), h
    assert h["CallStatus"] == "cancel" and h["AnswerTime"] == "" and h["BillDuration"] == "0"
    assert r.summary["answered"] is False
    _clean_end(r)


def _recording(s, url):
    resp = requests.get(url, headers=s.stack.api_headers(), timeout=5)
    assert resp.status_code == 200
    return soundfile.read(io.BytesIO(resp.content), dtype="int16", always_2d=True)


def test_record_hangup_posts_record_stop_with_the_partial_file(s):
    r = s.result("record")
    stop = r.wait_event("RecordStop")
    assert stop["RecordingEndReason"] == "HungUp"
    assert 200 <= int(stop["RecordingDurationMs"]) <= 2500        # the caller left 1 s into it
    action = r.wait_event("Record")            # the action still hears about the recording
    assert action["RecordingID"] == stop["RecordingID"]
    audio, rate = _recording(s, stop["RecordUrl"])
    assert abs(len(audio) * 1000 / rate - int(stop["RecordingDurationMs"])) < 100
    assert np.abs(audio).max() > 3000


def test_record_session_hangup_posts_record_stop_after_the_hangup_webhook(s):
    r = s.result("record_session")
    stop = r.wait_event("RecordStop")
    assert stop["RecordingEndReason"] == "HungUp" and stop["RecordUrl"].endswith(".mp3")
    reqs = r.requests
    order = [q.form.get("Event") for q in reqs if q.form.get("Event") in ("Hangup", "RecordStop")]
    assert order == ["Hangup", "RecordStop"]
    audio, rate = _recording(s, stop["RecordUrl"])
    assert audio.shape[1] == 2 and 0.2 <= len(audio) / rate <= 2.5


def test_hangup_during_the_record_beep_reports_no_recording(s):
    r = s.result("record_beep")
    assert "record" not in [a for a, _ in r.apps]                    # the beep at most, never `record`
    h = r.hangup
    assert (h["HangupSource"], h["HangupCauseCode"], h["Error"]) == ("Caller", "4000", "")
    assert not r.forms("RecordStop") and not r.forms("Record")
    assert not r.errors(), r.errors()
    r.no_tracebacks()


def test_no_traceback_logged_by_any_call(s):
    for name in s.numbers:
        s.result(name)
    assert not s.logs.tracebacks(), [r.getMessage() for r in s.logs.tracebacks()]
