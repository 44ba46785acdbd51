"""TwiML <Dial>, on the simulator and (marked `freeswitch`) on a real FreeSWITCH: a Twilio app
(`[[numbers]] api = "twilio"`, TwiML from the twilio package's VoiceResponse) dials another number
of the same callfork (a loopback leg: tests/dial_support.py), whose Vobiz document decides what the
callee does (answer and play a tone, refuse as busy, never answer). The caller speaks CALLER_HZ, the
callee plays CALLEE_HZ: the caller hears the callee, and the Dial's dual recording holds both
parties. The action URL gets Twilio's DialCallStatus / DialCallSid / DialCallDuration (and the
recording), the <Number>'s statusCallback its leg's events, all signed as Twilio signs; the action's
document replaces the rest, and without an action the next verb runs.
"""
import re
import time

import requests
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Dial, VoiceResponse

from test_scenario_conference import _windows

from dial_support import CALLEE_HZ, CALLER_HZ, channel, channels, dial_stack
from harness import switch_modes
from stream_scenarios import Calls, tone, wait_until, windows_with, write_wav
from verbs.twiml import call_sid, call_uuid

TOKEN = "test-token"        # the harness's auth_token, which signs a Twilio app's webhooks
NEXT_HZ = 500


def _stack(real_fs, numbers=("1",)):
    """(Stack whose `numbers` (with the callee prefix) are Twilio apps answered at /voice<n>, the prefix)."""
    stack, prefix = dial_stack(real_fs)
    stack.app.start()       # its port goes into the config
    stack.config_text = "".join(
        f'[[numbers]]\nnumber = "{prefix}{n}"\napi = "twilio"\nanswer_url = "{stack.app.url("/voice" + n)}"\n'
        f'hangup_url = "{stack.app.url("/status")}"\n' for n in numbers)
    return stack, prefix


def _signed(req, stack) -> bool:
    url = stack.app.url(req.path)
    return RequestValidator(TOKEN).validate(url, req.form, req.headers.get("x-twilio-signature", ""))


def _completed(stack, timeout=60):
    """The caller's StatusCallback `completed`, which says no error ended the call (good TwiML)."""
    (status,) = stack.app.wait_path("/status", timeout=timeout)
    assert status.form["ErrorMessage"] == "", status.form["ErrorMessage"]
    return status.form


@switch_modes()
def test_twiml_dial_connects_both_parties_and_reports_twilios_dial_fields(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "77", f'<Response><Play>{calls.serve_wav("/700.wav", tone(CALLEE_HZ, 6.0))}</Play></Response>')
        r = VoiceResponse()
        dial = Dial(action="/dial-action", caller_id="+15550001111", record="record-from-answer-dual", timeout=20,
                    recording_status_callback="/rec-status", recording_status_callback_event="in-progress completed")
        dial.number("77", status_callback=stack.app.url("/leg"),
                    status_callback_event="initiated ringing answered completed")
        r.append(dial)
        r.say("never said: the action's document replaces the rest")
        stack.app.document("/voice1", str(r))
        hang_up = VoiceResponse()
        hang_up.hangup()
        stack.app.document("/dial-action", str(hang_up))
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=40)
        (action,) = stack.app.wait_path("/dial-action", timeout=40)
        status = _completed(stack)
        heard = call.heard()
        wait_until(lambda: any(leg.form["CallStatus"] == "completed" for leg in stack.app.events(path="/leg")),
                   15, "the leg's completed callback")
        legs = stack.app.events(path="/leg")
        recording = requests.get(action.form["RecordingUrl"], headers=stack.api_headers(), timeout=5)
        rec_status = stack.app.wait_path("/rec-status", timeout=10, count=2)

    a = action.form
    caller_sid = status["CallSid"]
    assert _signed(action, stack) and a["CallSid"] == caller_sid
    assert a["DialCallStatus"] == "completed" and a["DialBridged"] == "true"
    assert re.fullmatch(r"CA[0-9a-f]{32}", a["DialCallSid"]) and a["DialCallSid"] != caller_sid
    assert 4 <= int(a["DialCallDuration"]) <= 10, a["DialCallDuration"]
    assert re.fullmatch(r"RE[0-9a-f]{32}", a["RecordingSid"]) and 4 <= int(a["RecordingDuration"]) <= 10
    assert status["CallStatus"] == "completed"
    assert [r.form["RecordingStatus"] for r in rec_status] == ["in-progress", "completed"]
    assert all(_signed(r, stack) and r.form["RecordingSid"] == a["RecordingSid"] for r in rec_status)
    assert rec_status[1].form["RecordingDuration"] == a["RecordingDuration"]
    assert rec_status[1].form["RecordingUrl"] == a["RecordingUrl"] and rec_status[1].form["RecordingChannels"] == "2"
    # the leg's own statusCallback: Twilio's child-call events, in order, about the dialled leg
    events = [leg.form for leg in legs]
    assert [e["CallStatus"] for e in events][0] == "initiated"
    assert "in-progress" in [e["CallStatus"] for e in events] and events[-1]["CallStatus"] == "completed"
    assert [e["SequenceNumber"] for e in events] == [str(i) for i in range(len(events))]
    for leg, e in zip(legs, events):
        assert _signed(leg, stack)
        assert e["CallSid"] == a["DialCallSid"] and e["ParentCallSid"] == caller_sid
        assert e["Direction"] == "outbound-dial" and e["From"] == "+15550001111"
    assert 4 <= int(events[-1]["CallDuration"]) <= 10
    # each party heard the other: the caller the callee's tone, the dual recording both
    assert windows_with(heard, CALLEE_HZ) >= 30, windows_with(heard, CALLEE_HZ)
    assert recording.status_code == 200 and channels(recording) == 2
    assert windows_with(channel(recording, 0), CALLER_HZ) >= 30
    assert windows_with(channel(recording, 1), CALLEE_HZ) >= 30


@switch_modes()
def test_twiml_dial_busy_and_no_answer_and_without_action_the_next_verb_runs(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "78", '<Response><Hangup reason="busy"/></Response>')
        calls.add(p + "79", '<Response><Wait length="30"/></Response>')
        busy, no_answer = Dial(action="/busy"), Dial(action="/no-answer", timeout=5)
        busy.number("78")
        no_answer.number("79")
        last = VoiceResponse()
        last.dial("79", timeout=5)                     # no action: the <Play> after it runs
        last.play(calls.serve_wav("/next.wav", tone(NEXT_HZ, 2.0)))
        last.pause(length=1)          # the end of what the caller hears is not cut by the hangup
        last.hangup()
        stack.app.document("/voice1", str(VoiceResponse().append(busy)))
        stack.app.document("/busy", str(VoiceResponse().append(no_answer)))
        stack.app.document("/no-answer", str(last))
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 40.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=50)
        (after_busy,) = stack.app.wait_path("/busy", timeout=30)
        (after_no_answer,) = stack.app.wait_path("/no-answer", timeout=30)
        status = _completed(stack)
        heard = call.heard()

    b, n = after_busy.form, after_no_answer.form
    assert _signed(after_busy, stack) and _signed(after_no_answer, stack)
    assert b["DialCallStatus"] == "busy" and b["DialBridged"] == "false" and b["DialCallDuration"] == "0"
    assert re.fullmatch(r"CA[0-9a-f]{32}", b["DialCallSid"])        # the leg that was tried
    assert n["DialCallStatus"] == "no-answer" and n["DialBridged"] == "false"
    assert call_uuid(b["CallSid"]) and b["CallSid"] == n["CallSid"] == status["CallSid"]
    assert windows_with(heard, NEXT_HZ) >= 10                     # the verb after the action-less Dial
    assert status["CallStatus"] == "completed"
    assert call_sid(call_uuid(status["CallSid"])) == status["CallSid"]


@switch_modes()
def test_twiml_dial_conference_both_members_hear_each_other_and_get_twilios_callbacks(tmp_path, real_fs):
    """The first member ends the room when it leaves (endConferenceOnExit): the second is put out and
    its Dial's action document runs, with the room's recording (record-from-start) from its join."""
    stack, p = _stack(real_fs, numbers=("1", "2"))
    with stack:
        conf = stack.app.url("/conf")
        first, second = VoiceResponse(), VoiceResponse()
        dial = Dial()
        dial.conference("Sales Room", beep="false", end_conference_on_exit=True, status_callback=conf,
                        status_callback_event="start end join leave")
        first.append(dial)
        dial = Dial(action="/left")
        dial.conference("Sales Room", beep="false", status_callback=conf, status_callback_event="join leave end",
                        record="record-from-start")
        second.append(dial)
        after = VoiceResponse()
        after.play(Calls(stack).serve_wav("/next.wav", tone(NEXT_HZ, 2.0)))
        after.pause(length=1)
        after.hangup()
        for path, doc in (("/voice1", first), ("/voice2", second), ("/left", after)):
            stack.app.document(path, str(doc))

        def joins():
            return [r for r in stack.app.events(path="/conf") if r.form["StatusCallbackEvent"] == "participant-join"]
        one = stack.call(to="1", audio=str(write_wav(tmp_path / "one.wav", tone(CALLER_HZ, 30.0, level=9000))),
                         keep_heard=True, hangup_after=9)
        wait_until(lambda: len(joins()) == 1, 20, "the first member joined")
        two = stack.call(to="2", audio=str(write_wav(tmp_path / "two.wav", tone(CALLEE_HZ, 30.0, level=9000))),
                         keep_heard=True, hangup_after=30)
        (left,) = stack.app.wait_path("/left", timeout=30)
        stack.app.wait_path("/status", timeout=30, count=2)
        heard_one, heard_two = one.heard(), two.heard()
        events = stack.app.events(path="/conf")
        recording = requests.get(left.form["RecordingUrl"], headers=stack.api_headers(), timeout=5)

    forms = [r.form for r in events]
    assert all(_signed(r, stack) for r in events)
    one_sid, two_sid = (f["CallSid"] for f in forms if f["StatusCallbackEvent"] == "participant-join")
    # in order per member (two calls' webhooks are not ordered between them)
    assert [f["StatusCallbackEvent"] for f in forms if f["CallSid"] == one_sid] == [
        "conference-start", "participant-join", "participant-leave"]
    assert [f["StatusCallbackEvent"] for f in forms if f["CallSid"] == two_sid] == [
        "participant-join", "participant-leave", "conference-end"]     # the room ended when it was put out
    assert {f["FriendlyName"] for f in forms} == {"Sales Room"}
    assert len({f["ConferenceSid"] for f in forms}) == 1 and re.fullmatch(r"CF[0-9a-f]{32}", forms[0]["ConferenceSid"])
    assert left.form["CallSid"] == two_sid and left.form["DialCallStatus"] == "completed" and _signed(left, stack)
    assert left.form["ConferenceSid"] == forms[0]["ConferenceSid"]
    assert re.fullmatch(r"RE[0-9a-f]{32}", left.form["RecordingSid"])
    assert recording.status_code == 200 and _windows(channel(recording, 0), [CALLER_HZ, CALLEE_HZ], []) >= 10
    # each heard the other, never itself; the second, put out, heard its action's document
    assert _windows(heard_one, [CALLEE_HZ], [CALLER_HZ]) >= 10
    assert _windows(heard_two, [CALLER_HZ], [CALLEE_HZ]) >= 10
    assert windows_with(heard_two, NEXT_HZ) >= 10


def _placed(stack, to, audio):
    """Place a caller; (the call, seconds from placing it to the caller's answer: on a real FreeSWITCH
    its loopback A leg answers when callfork's channel does; the simulator keeps the time)."""
    t0 = time.time()
    call = stack.call(to=to, audio=audio, keep_heard=True, hangup_after=30)
    if stack.real_fs:
        control = stack.service.control
        wait_until(lambda: '"Answer-State":"answered"' in control.api(f"uuid_dump {call.a_uuid} json")
                   .replace(" ", ""), 15, "the caller answered")
        return call, time.time() - t0
    wait_until(lambda: call.channel.answered_us, 15, "the caller answered")
    return call, call.channel.answered_us / 1e6 - t0


@switch_modes()
def test_twiml_dial_ring_tone_and_answer_on_bridge(tmp_path, real_fs):
    """A callee that answers after 3 s: the caller is answered at once and, with ringTone="uk", hears
    the UK ringback (400+450 Hz) meanwhile (and record-from-answer records both, mixed); with
    answerOnBridge it is answered only when the callee is (the bridge answers it), and hears no
    ringback of ours."""
    stack, p = _stack(real_fs, numbers=("1", "2"))
    with stack:
        calls = Calls(stack)
        calls.add(p + "77", f'<Response><Wait length="3"/><Play>{calls.serve_wav("/700.wav", tone(CALLEE_HZ, 3.0))}'
                            f'</Play></Response>')
        ringing, on_bridge = VoiceResponse(), VoiceResponse()
        ringing.dial("77", ring_tone="uk", record="record-from-answer", action="/rec-action")
        on_bridge.dial("77", answer_on_bridge=True)
        stack.app.document("/voice1", str(ringing))
        stack.app.document("/voice2", str(on_bridge))
        stack.app.document("/rec-action", '<Response><Hangup/></Response>')
        caller_wav = str(write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0)))
        first, first_answered_s = _placed(stack, "1", caller_wav)
        stack.app.wait_path("/status", timeout=30)
        second, second_answered_s = _placed(stack, "2", caller_wav)
        stack.app.wait_path("/status", timeout=30, count=2)
        heard_ringing, heard_on_bridge = first.heard(), second.heard()
        (rec_action,) = stack.app.wait_path("/rec-action", timeout=5)
        recording = requests.get(rec_action.form["RecordingUrl"], headers=stack.api_headers(), timeout=5)

    def ringback(heard):
        return windows_with(heard, 400, share=0.3) + windows_with(heard, 440, share=0.3)
    assert first_answered_s < 2.0 and second_answered_s >= 2.5, (first_answered_s, second_answered_s)
    assert ringback(heard_ringing) >= 5, ringback(heard_ringing)
    assert windows_with(heard_ringing, CALLEE_HZ) >= 20
    assert ringback(heard_on_bridge) == 0
    assert windows_with(heard_on_bridge, CALLEE_HZ) >= 20
    # record-from-answer: one channel holding both parties
    assert recording.status_code == 200 and channels(recording) == 1
    mixed = channel(recording, 0)
    assert _windows(mixed, [CALLER_HZ, CALLEE_HZ], []) >= 10


def test_twiml_dial_sip_rings_the_uri_through_the_sip_dialstring(tmp_path):
    """<Sip> on the simulator (a scripted SIP callee; the real switch has no SIP phone for it here):
    the leg goes through [freeswitch] sip_dialstring, its statusCallback follows it, the caller hears it."""
    import json as jsonlib
    stack, _p = _stack(False)
    with stack:
        callee_wav = write_wav(tmp_path / "callee.wav", tone(CALLEE_HZ, 4.0))
        reply = stack.sim.run_api("sim_callee", jsonlib.dumps({"match": "sip:agent@example.com", "answer_after": 0.5,
                                                               "audio": str(callee_wav), "hangup_after": 4}))
        assert reply.startswith("+OK"), reply
        r = VoiceResponse()
        dial = Dial(action="/dial-action")
        dial.sip("sip:agent@example.com", status_callback=stack.app.url("/leg"),
                 status_callback_event="answered completed")
        r.append(dial)
        stack.app.document("/voice1", str(r))
        stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        answered = stack.app.wait_path("/leg", timeout=20)[0]
        leg = stack.sim.get_channel(call_uuid(answered.form["CallSid"]))     # while it is up
        (answered, completed) = stack.app.wait_path("/leg", timeout=20, count=2)
        (action,) = stack.app.wait_path("/dial-action", timeout=20)
        call.wait(30)
    assert leg is not None and leg.name.startswith("sofia/internal/")
    assert [answered.form["CallStatus"], completed.form["CallStatus"]] == ["in-progress", "completed"]
    assert answered.form["To"] == "sip:agent@example.com" and _signed(answered, stack)
    assert action.form["DialCallStatus"] == "completed" and action.form["DialCallSid"] == answered.form["CallSid"]
    assert windows_with(call.heard(), CALLEE_HZ) >= 25


@switch_modes()
def test_twiml_dial_caller_hangs_up_while_ringing_is_canceled(tmp_path, real_fs):
    """The caller hangs up while the callee rings: the action is told DialCallStatus=canceled (its
    document is not run: the call is over) and the StatusCallback says completed."""
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "79", '<Response><Wait length="30"/></Response>')
        r = VoiceResponse()
        r.dial("79", action="/dial-action", timeout=20)
        stack.app.document("/voice1", str(r))
        stack.app.document("/dial-action", f'<Response><Play>{calls.serve_wav("/x.wav", tone(NEXT_HZ, 1.0))}'
                                           f'</Play></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        stack.call(to="1", audio=str(caller_wav), hangup_after=3)
        (action,) = stack.app.wait_path("/dial-action", timeout=20)
        status = _completed(stack)
    assert action.form["DialCallStatus"] == "canceled" and action.form["DialBridged"] == "false"
    assert _signed(action, stack) and status["CallStatus"] == "completed"
    assert "/x.wav" not in [r.path for r in stack.app.requests]       # the action's document did not run
