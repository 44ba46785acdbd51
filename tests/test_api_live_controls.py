"""The REST API's live-call controls (Play, Speak, DTMF, Record on `/Call/{uuid}/...`) through real
HTTP, on the simulator and (marked `freeswitch`) on a real FreeSWITCH: what the caller hears while
the document goes on, the digits the caller's side receives, the recording file and its callback
at the app; and the errors (unknown or ended call 404, bad input 400), a hangup during a Play.

The caller speaks a 300 Hz tone; documents play 900/1100 Hz prompts and wait; the API plays 700 Hz.
Checks count 100 ms windows of what the caller heard that are mostly one frequency. Each test waits
for the document to reach a verb (the call's timeline) before it asks, never for a fixed time.
"""
import io
import os
import socket
from urllib.parse import unquote

import gevent
import pytest
import requests
import soundfile

from harness import Stack, switch_modes
from sim_support import RawESL, event_headers
from stream_scenarios import Calls, rms, tone, tone_power, windows_with
from waiting import wait_until

CALLER_HZ = 300


@pytest.fixture
def scene(real_fs):
    stack = Stack(real=real_fs).start()
    try:
        yield stack
    finally:
        stack.stop()


class Docs(Calls):
    """The answer document of the call to "1" (simulator) or "callfork1" (FreeSWITCH)."""

    def add(self, to, body, content_type="application/xml"):
        super().add(to, body, content_type)
        super().add("callfork" + to, body, content_type)


def _call(stack, tmp_path, seconds=14, **kw):
    caller = tmp_path / "caller.wav"
    soundfile.write(str(caller), tone(CALLER_HZ, seconds + 2, level=3000), 8000, subtype="PCM_16")
    kw.setdefault("hangup_after", seconds)
    return stack.call(to="1", audio=str(caller), keep_heard=True, **kw)


def _live_uuid(stack, timeout=15):
    wait_until(lambda: stack.service.calls, timeout, "the call reached callfork")
    return next(iter(stack.service.calls))


def _verbs(stack, uuid):
    resp = requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(), timeout=10)
    if resp.status_code != 200:
        return []
    return [e["detail"].get("verb") for e in resp.json()["timeline"] if e["kind"] == "verb"]


def _wait_verbs(stack, uuid, count, timeout=20):
    """Until the document has started its `count`-th verb."""
    wait_until(lambda: len(_verbs(stack, uuid)) >= count, timeout, f"verb {count} started")


def _wait_app(stack, uuid, app, timeout=15):
    """Until FreeSWITCH runs `app` on the call (a verb's timeline entry comes before its media is
    fetched and its app sent)."""
    control = stack.service.control
    wait_until(lambda: control.api(f"uuid_getvar {uuid} current_application").strip() == app, timeout,
               f"{app} runs")


def _post(stack, uuid, what, body=None, method="POST"):
    return requests.request(method, stack.api_url(f"/Call/{uuid}/{what}/"), json=body,
                            headers=stack.api_headers(), timeout=30)


def _loud_windows(samples, not_freqs=(), win=800, min_rms=300.0):
    """100 ms windows loud enough and not mostly one of `not_freqs` (speech, for instance)."""
    count = 0
    for i in range(0, len(samples) - win + 1, win):
        w = samples[i:i + win]
        if rms(w) >= min_rms and not any(windows_with(w, f) for f in not_freqs):
            count += 1
    return count


# -- Play ------------------------------------------------------------------------------------------

@switch_modes()
def test_play_over_a_wait_is_heard_and_the_document_goes_on(scene, tmp_path):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                  f'<Wait length="6"/><Play>{docs.serve_wav("/900.wav", tone(900, 1.5))}</Play></Response>')
    url = docs.serve_wav("/700.wav", tone(700, 2.0))
    call = _call(stack, tmp_path)
    uuid = _live_uuid(stack)
    _wait_verbs(stack, uuid, 2)                      # the Wait runs
    resp = _post(stack, uuid, "Play", {"urls": url})
    assert resp.status_code == 202, resp.text
    assert resp.json()["message"] == "play started" and resp.json()["api_id"]
    call.wait(30)
    heard = call.heard()
    assert windows_with(heard, 700) >= 12            # the API's 2 s
    assert windows_with(heard, 900) >= 8             # the document's Play after the Wait still ran
    assert _verbs(stack, uuid) == ["Play", "Wait", "Play"]


@switch_modes()
def test_play_mix_false_replaces_a_prompt_that_then_goes_on(scene, tmp_path):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/900.wav", tone(900, 6.0))}</Play>'
                  f'<Wait length="3"/></Response>')
    url = docs.serve_wav("/700.wav", tone(700, 1.5))
    call = _call(stack, tmp_path, seconds=12)
    uuid = _live_uuid(stack)
    _wait_app(stack, uuid, "playback")
    resp = _post(stack, uuid, "Play", {"urls": url, "mix": "false"})
    assert resp.status_code == 202, resp.text
    call.wait(30)
    heard = call.heard()
    assert windows_with(heard, 700) >= 10            # replaced the prompt: 700 alone, not a mix
    assert windows_with(heard, 900) >= 25            # the prompt was not broken: it played on
    assert _verbs(stack, uuid) == ["Play", "Wait"]


@switch_modes()
def test_play_two_urls_in_order_then_delete_stops_a_loop(scene, tmp_path):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                  f'<Wait length="4"/><Wait length="6"/></Response>')
    first, second = docs.serve_wav("/700.wav", tone(700, 0.6)), docs.serve_wav("/500.wav", tone(500, 0.6))
    call = _call(stack, tmp_path)
    uuid = _live_uuid(stack)
    _wait_verbs(stack, uuid, 2)
    resp = _post(stack, uuid, "Play", {"urls": f"{first},{second}", "loop": True})
    assert resp.status_code == 202, resp.text
    _wait_verbs(stack, uuid, 3)                      # the second Wait: stop the loop
    assert _post(stack, uuid, "Play", method="DELETE").status_code == 204
    assert _post(stack, uuid, "Play", method="DELETE").status_code == 204   # nothing playing: still 204
    call.wait(30)
    heard = call.heard()
    # about 4 s of the loop (700 then 500, again and again), then 6 s without it
    assert 10 <= windows_with(heard, 700) <= 26
    assert 10 <= windows_with(heard, 500) <= 26
    first_700 = next(i for i in range(0, len(heard) - 800, 800) if windows_with(heard[i:i + 800], 700))
    first_500 = next(i for i in range(0, len(heard) - 800, 800) if windows_with(heard[i:i + 800], 500))
    assert first_700 < first_500


@switch_modes()
def test_hangup_during_a_play(scene, tmp_path):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                  f'<Wait length="30"/></Response>')
    url = docs.serve_wav("/700.wav", tone(700, 1.0))
    call = _call(stack, tmp_path, seconds=6)
    uuid = _live_uuid(stack)
    _wait_verbs(stack, uuid, 2)
    assert _post(stack, uuid, "Play", {"urls": url, "loop": "true"}).status_code == 202
    summary = call.wait(30)
    hangup = stack.app.wait_event("Hangup", timeout=15).form
    assert hangup["HangupCause"] == "NORMAL_CLEARING" and hangup["CallUUID"] == uuid
    assert summary["answered"]
    assert windows_with(call.heard(), 700) >= 15
    wait_until(lambda: uuid not in stack.service.calls, 10, "the call left the service")
    resp = _post(stack, uuid, "Play", method="DELETE")
    assert resp.status_code == 404 and resp.json()["error"] == "call not found or already ended"


# -- Speak -----------------------------------------------------------------------------------------

@switch_modes()
def test_speak_over_a_wait_is_heard_and_delete_stops_a_loop(scene, tmp_path):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                  f'<Wait length="5"/><Wait length="6"/><Play>{docs.serve_wav("/900.wav", tone(900, 1.0))}</Play>'
                  f'</Response>')
    call = _call(stack, tmp_path, seconds=16)
    uuid = _live_uuid(stack)
    _wait_verbs(stack, uuid, 2)
    resp = _post(stack, uuid, "Speak", {"text": "Your agent will be with you shortly.", "loop": "true"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["message"] == "speak started"
    _wait_verbs(stack, uuid, 3)
    assert _post(stack, uuid, "Speak", method="DELETE").status_code == 204
    call.wait(40)
    heard = call.heard()
    # the 1100 prompt is the first half second; after it, speech for the first Wait (about 5 s:
    # looping), then silence for the second Wait (the loop was stopped), then the 900 prompt
    start = 8000
    first_wait = heard[start:start + 5 * 8000]
    second_wait = heard[start + 6 * 8000:start + 10 * 8000]
    assert _loud_windows(first_wait, (1100, 900)) >= 20
    assert _loud_windows(second_wait, (1100, 900)) <= 3
    assert windows_with(heard, 900) >= 5
    assert _verbs(stack, uuid) == ["Play", "Wait", "Wait", "Play"]


@switch_modes()
def test_speak_during_a_prompt_waits_for_it_and_the_prompt_is_not_broken(scene, tmp_path):
    """Speech is an app on the channel (uuid_broadcast), queued behind the prompt running now
    (docs/decisions.md): the prompt plays to its end, then the speech, then the document goes on."""
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/900.wav", tone(900, 3.0))}</Play>'
                  f'<Wait length="5"/></Response>')
    call = _call(stack, tmp_path, seconds=11)
    uuid = _live_uuid(stack)
    _wait_app(stack, uuid, "playback")
    resp = _post(stack, uuid, "Speak", {"text": "One moment please, we are connecting you.", "voice": "MAN"})
    assert resp.status_code == 202, resp.text
    call.wait(30)
    heard = call.heard()
    assert windows_with(heard, 900) >= 25                # the whole 3 s prompt
    end_900 = max(i for i in range(0, len(heard) - 800, 800) if windows_with(heard[i:i + 800], 900))
    assert _loud_windows(heard[end_900 + 800:], (900,)) >= 8     # the speech came after it
    assert _loud_windows(heard[:end_900], (900,)) <= 2
    assert _verbs(stack, uuid) == ["Play", "Wait"]


# -- DTMF ------------------------------------------------------------------------------------------

def _digits_on_caller_leg(stack, a_uuid):
    """A second event-socket connection to the real FreeSWITCH that collects the DTMF events of the
    caller's own leg (loopback carries the digits callfork sends as DTMF, not as audio)."""
    host, port, password = os.environ["CALLFORK_FS_ESL"].split(":", 2)
    esl = RawESL.connect((host, int(port)))
    esl.frame()
    esl.command(f"auth {password}")
    esl.command("event plain DTMF")
    digits = []

    def poll():
        try:
            while True:
                headers, body, _ = esl.next_frame(timeout=0.2)
                if headers.get("Content-Type") == "text/event-plain":
                    ev = dict(event_headers(body))
                    if ev.get("Unique-ID") == a_uuid and ev.get("DTMF-Digit"):
                        digits.append(unquote(ev["DTMF-Digit"]))
        except (socket.timeout, TimeoutError):
            pass
        return "".join(digits)
    return esl, poll


def _dtmf_tone_windows(samples, low, high, win=400):
    """50 ms windows holding both tones of a DTMF digit (each a good share of the energy)."""
    return sum(1 for i in range(0, len(samples) - win + 1, win)
               if rms(samples[i:i + win]) > 300 and tone_power(samples[i:i + win], low) > 0.2
               and tone_power(samples[i:i + win], high) > 0.2)


@switch_modes()
def test_dtmf_reaches_the_caller(scene, tmp_path, real_fs):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                  f'<Wait length="8"/></Response>')
    call = _call(stack, tmp_path, seconds=10)
    esl = poll = None
    if real_fs:
        esl, poll = _digits_on_caller_leg(stack, call.a_uuid)
    try:
        uuid = _live_uuid(stack)
        _wait_verbs(stack, uuid, 2)
        resp = _post(stack, uuid, "DTMF", {"digits": "1w9#", "leg": "aleg"})
        assert resp.status_code == 202, resp.text
        assert resp.json()["message"] == "digits sent"
        if real_fs:
            wait_until(lambda: poll() == "19#", 10, "the caller's leg got the digits")
            assert poll() == "19#"
        call.wait(30)
        if not real_fs:   # the simulator plays the digits into what the caller hears
            heard = call.heard()
            assert _dtmf_tone_windows(heard, 697, 1209) >= 2      # 1
            assert _dtmf_tone_windows(heard, 852, 1477) >= 2      # 9
            assert _dtmf_tone_windows(heard, 941, 1477) >= 2      # #
    finally:
        if esl is not None:
            esl.close()


# -- Record ----------------------------------------------------------------------------------------

@switch_modes()
def test_record_then_stop_gives_the_file_and_the_callback(scene, tmp_path):
    stack = scene
    docs = Docs(stack)
    docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                  f'<Wait length="4"/><Wait length="4"/></Response>')
    call = _call(stack, tmp_path, seconds=10)
    uuid = _live_uuid(stack)
    _wait_verbs(stack, uuid, 2)
    resp = _post(stack, uuid, "Record", {"file_format": "wav", "callback_url": stack.app.url("/rec"),
                                         "time_limit": 60, "transcription_type": "auto"})
    assert resp.status_code == 202, resp.text
    started = resp.json()
    assert started["message"] == "recording started" and started["recording_id"] and started["api_id"]
    assert started["url"].endswith(f"/recordings/{started['recording_id']}.wav")
    assert "transcription" in started["note"]
    _wait_verbs(stack, uuid, 3)
    assert _post(stack, uuid, "Record", method="DELETE").status_code == 204
    cb = stack.app.wait_path("/rec", timeout=15)[0].form
    assert cb["Event"] == "RecordStop"
    assert cb["recording_id"] == cb["RecordingID"] == started["recording_id"]
    assert cb["record_url"] == cb["RecordUrl"] == started["url"]
    assert cb["api_id"] == started["api_id"] and cb["call_uuid"] == cb["CallUUID"] == uuid
    assert cb["RecordingEndReason"] == "RecordingStopped"
    assert 3000 <= int(cb["recording_duration_ms"]) <= 6000
    assert int(cb["recording_end_ms"]) - int(cb["recording_start_ms"]) == int(cb["recording_duration_ms"])
    got = requests.get(started["url"], headers=stack.api_headers(), timeout=10)
    assert got.status_code == 200
    data, rate = soundfile.read(io.BytesIO(got.content), dtype="int16", always_2d=True)
    assert windows_with(data[:, 0], CALLER_HZ, rate=rate) >= 25      # the caller, for about 4 s
    recordings = requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(),
                              timeout=10).json()["recordings"]
    assert started["recording_id"] in [r["recording_id"] for r in recordings]
    call.wait(30)


@switch_modes()
def test_record_time_limit_and_mp3(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        docs = Docs(stack)
        docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                      f'<Wait length="8"/></Response>')
        call = _call(stack, tmp_path, seconds=9)
        uuid = _live_uuid(stack)
        _wait_verbs(stack, uuid, 2)
        resp = _post(stack, uuid, "Record", {"time_limit": 2, "callback_url": stack.app.url("/rec"),
                                             "callback_method": "GET"})
        assert resp.status_code == 202, resp.text
        assert resp.json()["url"].endswith(".mp3")
        cb = stack.app.wait_path("/rec", timeout=15)[0]
        assert cb.method == "GET"
        assert cb.args["RecordingEndReason"] == "maxLength"
        # the recording ended at the limit, long before the call did (callfork stops it: FreeSWITCH's
        # own limit ends on a whole second, tests/fixtures/fs-captures/record-limit.json)
        assert 1900 <= int(cb.args["recording_duration_ms"]) <= 2200, cb.args
        got = requests.get(resp.json()["url"], headers=stack.api_headers(), timeout=10)
        assert got.status_code == 200 and got.headers["Content-Type"] == "audio/mpeg"
        # a recording still running at hangup ends with it, and its callback says so
        again = _post(stack, uuid, "Record", {"callback_url": stack.app.url("/rec2"), "file_format": "wav"})
        assert again.status_code == 202
        call.wait(30)
        assert stack.app.wait_path("/rec2", timeout=15)[0].form["RecordingEndReason"] == "HungUp"


# -- errors ----------------------------------------------------------------------------------------

@switch_modes()
def test_unknown_and_ended_calls_are_404(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        unknown = "00000000-0000-4000-8000-000000000000"
        for what, method, body in [("Play", "POST", {"urls": "http://127.0.0.1/x.wav"}), ("Play", "DELETE", None),
                                   ("Speak", "POST", {"text": "hi"}), ("Speak", "DELETE", None),
                                   ("DTMF", "POST", {"digits": "1"}), ("Record", "POST", {}),
                                   ("Record", "DELETE", None)]:
            resp = _post(stack, unknown, what, body, method)
            assert resp.status_code == 404, (what, method, resp.text)
            assert resp.json()["error"] == "call not found or already ended" and resp.json()["api_id"]
        docs = Docs(stack)
        docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play></Response>')
        call = _call(stack, tmp_path, seconds=5)
        uuid = _live_uuid(stack)
        call.wait(30)
        stack.app.wait_event("Hangup", timeout=15)
        wait_until(lambda: uuid not in stack.service.calls, 10, "the call left the service")
        assert _post(stack, uuid, "DTMF", {"digits": "1"}).status_code == 404
        assert _post(stack, uuid, "Speak", {"text": "hi"}).status_code == 404
        # a call that is not answered yet (a leading <Wait> delays the answer) is not in progress
        docs.add("2", '<Response><Wait length="4"/><Hangup/></Response>')
        # placed beside the test: on a real switch placing it waits for the answer that never comes
        ringing = gevent.spawn(stack.call, to="2", hangup_after=8)
        ringing_uuid = wait_until(lambda: [u for u in stack.service.calls if u != uuid], 15, "the call is live")[0]
        resp = _post(stack, ringing_uuid, "Play", {"urls": "http://127.0.0.1/x.wav"})
        assert resp.status_code == 404 and resp.json()["error"] == "call not in progress: it is not answered yet"
        assert _post(stack, ringing_uuid, "DTMF", {"digits": "1"}).status_code == 404
        ringing.join(30)
        if real_fs:      # the loopback originate fails with the <Hangup/>'s rejection
            assert "CALL_REJECTED" in str(ringing.exception), ringing.exception
        else:
            assert not ringing.value.wait(30)["answered"]
        # without credentials: 401 before anything else
        assert requests.post(stack.api_url(f"/Call/{uuid}/Play/"), json={}, timeout=10).status_code == 401


@switch_modes()
def test_bad_input_is_400_and_changes_nothing(tmp_path, real_fs):
    with Stack(real=real_fs) as stack:
        docs = Docs(stack)
        docs.add("1", f'<Response><Play>{docs.serve_wav("/1100.wav", tone(1100, 0.5))}</Play>'
                      f'<Wait length="6"/></Response>')
        good = docs.serve_wav("/700.wav", tone(700, 0.5))
        stack.app.document("/page.html", "<html></html>", "text/html")
        call = _call(stack, tmp_path, seconds=7)
        uuid = _live_uuid(stack)
        _wait_verbs(stack, uuid, 2)
        cases = [
            ("Play", {}, "urls is required"),
            ("Play", {"urls": "ftp://example.com/a.wav"}, "bad URL"),
            ("Play", {"urls": stack.app.url("/page.html")}, "not audio"),
            ("Play", {"urls": stack.app.url("/missing.wav")}, "cannot play"),
            ("Play", {"urls": good, "legs": "cleg"}, "legs must be one of aleg, bleg, both"),
            ("Play", {"urls": good, "legs": "bleg"}, "no B-leg: the call is not bridged"),
            ("Play", {"urls": good, "length": "ten"}, "length must be an integer"),
            ("Play", {"urls": good, "loop": "maybe"}, "loop must be true or false"),
            ("Speak", {}, "text is required"),
            ("Speak", {"text": "   "}, "text is required"),
            ("Speak", {"text": "hi", "voice": "ROBOT"}, "voice must be"),
            ("Speak", {"text": "hi", "legs": "both"}, "no B-leg: the call is not bridged"),
            ("DTMF", {}, "digits is required"),
            ("DTMF", {"digits": "12x"}, "digits may only hold"),
            ("DTMF", {"digits": "1", "leg": "bleg"}, "no B-leg: the call is not bridged"),
            ("DTMF", {"digits": "1", "leg": "up"}, "leg must be one of"),
            ("Record", {"file_format": "ogg"}, "file_format must be mp3 or wav"),
            ("Record", {"time_limit": 0}, "time_limit must be between"),
            ("Record", {"callback_url": "not a url"}, "bad callback_url"),
            ("Record", {"callback_method": "PUT"}, "callback_method must be GET or POST"),
        ]
        for what, body, message in cases:
            resp = _post(stack, uuid, what, body)
            assert resp.status_code == 400, (what, body, resp.text)
            assert message in resp.json()["error"], (what, body, resp.json())
        resp = _post(stack, uuid, "Record", {"URL": "http://127.0.0.1/recordings/nope.mp3"}, "DELETE")
        assert resp.status_code == 404
        call.wait(30)
        assert windows_with(call.heard(), 700) == 0       # no bad request played anything
        assert not [r for r in requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(),
                                            timeout=10).json()["recordings"]]
