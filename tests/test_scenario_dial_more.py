"""<Dial> items of issue 13 that tests/test_scenario_dial.py does not cover, on the simulator and
(marked `freeswitch`) on a real FreeSWITCH: the DialStatus outcomes `failed` and `timeout`,
digitsMatchBLeg (the callee's digits, DialDigitsPressedBy=bleg), callerId/callerName as the
callee's call sees them, action/callbackUrl with method GET and redirect (the action's document
replaces the elements after </Dial>), confirmTimeout (an answered callee that never presses
confirmKey is dropped after it: no-answer), dialMusic="real" (ringback heard; simulator only here,
a SIP phone checks it on the real switch: callfork as a callee does not ring while it waits), and
the live-call API on a bridged call: Play legs=both heard by both parties, Speak legs=bleg by the
callee only.

As in test_scenario_dial.py the callee of a <Number> is another number of the same callfork, a
loopback call (tests/dial_support.py). The `timeout` outcome needs a far end that answers SIP 408
(FreeSWITCH's RECOVERY_ON_TIMER_EXPIRE, sofia_glue.c's SIP-to-cause table): on the real switch a
<User> rings tests/sip_phone.py's phone, made to answer 408; on the simulator a scripted callee
(`sim_callee`) refuses with that cause.
"""
import json

import pytest

from dial_support import CALLEE_HZ, CALLER_HZ, dial_stack
from dial_support import hangup_of as _hangup_of, wait_dial_events as _wait_dial_events
from harness import switch_modes
from sip_phone import SipPhone
from stream_scenarios import Calls, tone, windows_with, write_wav


@switch_modes()
def test_dial_failed_when_the_callee_rejects_and_the_document_goes_on(tmp_path, real_fs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "85", '<Response><Hangup reason="rejected"/></Response>')
        calls.add(p + "1", f'<Response><Speak>Trying</Speak><Dial action="{calls.url("/dial-action")}" '
                           f'redirect="false" callbackUrl="{calls.url("/dial-events")}"><Number>85</Number></Dial>'
                           f'<Hangup/></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30, path="/dial-action").form
        call.wait(30)
        events = _wait_dial_events(stack, 1)
        hangup = _hangup_of(stack, action["CallUUID"])
    assert action["DialStatus"] == "failed", action
    assert action["DialHangupCause"] == "CALL_REJECTED"
    assert action["DialBLegUUID"] == "" and action["DialALegUUID"] == action["CallUUID"]
    assert [e["Event"] for e in events] == ["DialHangup"]
    assert events[0]["DialBLegHangupCause"] == "CALL_REJECTED"
    assert events[0]["DialBLegTo"] == "85" and events[0]["DialBLegPosition"] == "1"
    assert hangup["HangupSource"] == "Answer XML"        # the <Hangup/> after </Dial> ran


class _Phone408(SipPhone):
    """A phone that answers every INVITE 100 Trying, then 408 Request Timeout."""

    def _new_call(self, invite, source):
        from sip_phone import Call
        call = Call(self, invite, source)
        call.requests.append("INVITE")
        self.calls.append(call)
        self._by_id[invite.call_id] = call
        self._respond(invite, source, 100, "Trying")
        self._final(call, 408, "Request Timeout", "refused")


def _timeout_dial(calls, uri):
    return (f'<Response><Speak>Trying</Speak><Dial action="{calls.url("/dial-action")}" '
            f'callbackUrl="{calls.url("/dial-events")}"><User>{uri}</User></Dial></Response>')


def _assert_timeout(action, events):
    assert action["DialStatus"] == "timeout", action
    assert action["DialHangupCause"] == "RECOVERY_ON_TIMER_EXPIRE"
    assert action["DialBLegUUID"] == ""
    assert [e["Event"] for e in events] == ["DialHangup"]
    assert events[0]["DialBLegHangupCause"] == "RECOVERY_ON_TIMER_EXPIRE"


def test_dial_timeout_when_the_far_end_answers_408_simulator(tmp_path):
    stack, _p = dial_stack(False)
    with stack:
        calls = Calls(stack)
        reply = stack.sim.run_api("sim_callee", json.dumps({"match": "sip:slow@example.com",
                                                            "reject": "RECOVERY_ON_TIMER_EXPIRE"}))
        assert reply.startswith("+OK"), reply
        calls.add("1", _timeout_dial(calls, "sip:slow@example.com"))
        stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 10.0))), hangup_after=30)
        action = stack.app.wait_event("DialAction", timeout=30, path="/dial-action").form
        call.wait(30)
        events = _wait_dial_events(stack, 1)
    _assert_timeout(action, events)


@pytest.mark.freeswitch
def test_dial_timeout_when_the_far_end_answers_408_freeswitch(tmp_path):
    with _Phone408() as phone:
        stack, p = dial_stack(True)
        with stack:
            calls = Calls(stack)
            calls.add(p + "1", _timeout_dial(calls, phone.uri))
            stack.app.document("/dial-action", "<Response><Hangup/></Response>")
            call = stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 10.0))),
                              hangup_after=30)
            action = stack.app.wait_event("DialAction", timeout=30, path="/dial-action").form
            call.wait(30)
            events = _wait_dial_events(stack, 1)
            assert phone.calls and phone.calls[0].state == "refused"
    _assert_timeout(action, events)


@switch_modes()
def test_dial_digits_match_b_leg_reports_what_the_callee_pressed(tmp_path, real_fs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 4.0))
        # the callee presses #12 once it has played a while (the bridge is up by then), then plays on
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play><DTMF>#12</DTMF><Play>{callee_tone}</Play>'
                            f'</Response>')
        calls.add(p + "1", f'<Response><Dial digitsMatch="#12" digitsMatchBLeg="*9,#12" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>77</Number></Dial></Response>')
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 15.0))
        call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        call.wait(40)
        events = _wait_dial_events(stack, 4)
    matched = [e for e in events if e["Event"] == "DialDigitsMatch"]
    # the callee's digits match digitsMatchBLeg only: the caller's digitsMatch (the same pattern) is
    # not asked about digits the caller did not press
    assert len(matched) == 1, [e["Event"] for e in events]
    assert matched[0]["DialDigitsMatch"] == "#12"
    assert matched[0]["DialDigitsPressedBy"] == "bleg"
    assert matched[0]["DialAction"] == "digits"
    assert matched[0]["DialBLegTo"] == "77"


@switch_modes()
def test_dial_caller_id_and_caller_name_reach_the_callee(tmp_path, real_fs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "77", '<Response><Speak>Hello</Speak><Hangup/></Response>')
        calls.add(p + "1", f'<Response><Dial callerId="15550002222" callerName="Sales Desk" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>77</Number></Dial></Response>')
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 10.0))), hangup_after=30)
        call.wait(40)
        events = _wait_dial_events(stack, 3)
        callee = [r.form for r in list(stack.app.requests) if r.path == "/answer" and r.form.get("To") == p + "77"]
    assert len(callee) == 1
    assert callee[0]["From"] == "15550002222"
    assert callee[0]["CallerName"] == "Sales Desk"
    assert all(e["DialBLegFrom"] == "15550002222" for e in events)


@switch_modes()
def test_dial_action_get_with_redirect_runs_its_document_not_the_next_elements(tmp_path, real_fs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "79", '<Response><Wait length="30"/></Response>')
        calls.add(p + "1", f'<Response><Speak>Trying</Speak><Dial action="{calls.url("/dial-action")}" method="GET" '
                           f'timeout="2" callbackUrl="{calls.url("/dial-events")}" callbackMethod="GET">'
                           f'<Number>79</Number></Dial><Hangup/></Response>')
        # redirect (default true): the action's document replaces the rest of the caller's document
        stack.app.document("/dial-action", '<Response><Hangup reason="busy"/></Response>')
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 10.0))), hangup_after=30)
        call.wait(40)
        action = stack.app.wait_path("/dial-action", timeout=20)[0]
        event = stack.app.wait_path("/dial-events", timeout=20)[0]
        hangup = _hangup_of(stack, action.args["CallUUID"])
    assert action.method == "GET" and action.args["DialStatus"] == "no-answer"
    assert action.args["Event"] == "DialAction"
    assert event.method == "GET" and event.args["Event"] == "DialHangup"
    assert hangup["HangupCause"] == "USER_BUSY"           # the action's <Hangup reason="busy"/>, not the <Hangup/>


def _speech_windows(samples, not_hz, rate=8000):
    """Loud 100 ms windows that are not mostly the tone `not_hz` (speech)."""
    from stream_scenarios import rms
    n = rate // 10
    return sum(1 for i in range(0, len(samples) - n + 1, n)
               if rms(samples[i:i + n]) >= 300 and not windows_with(samples[i:i + n], not_hz))


def _bridged_to_a_recording_callee(stack, p, calls):
    """The caller (silent) dials 77, which records what it hears; returns the caller's call and UUID
    once bridged."""
    calls.add(p + "77", f'<Response><Record recordSession="true" fileFormat="wav" '
                        f'callbackUrl="{calls.url("/callee-rec")}"/><Wait length="12"/></Response>')
    calls.add(p + "1", f'<Response><Dial callbackUrl="{calls.url("/dial-events")}"><Number>77</Number>'
                       f'</Dial></Response>')
    call = stack.call(to="1", keep_heard=True, hangup_after=30)
    return call, _wait_dial_events(stack, 2)[1]["CallUUID"]


def _callee_heard(stack):
    import requests
    from dial_support import channel
    rec = stack.app.wait_event("RecordStop", timeout=20, path="/callee-rec").form
    return channel(requests.get(rec["RecordUrl"], headers=stack.api_headers(), timeout=5), 0)


@switch_modes()
def test_rest_play_to_both_legs_of_a_bridge_is_heard_by_both(tmp_path, real_fs):
    import requests
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        music = calls.serve_wav("/1200.wav", tone(1200, 2.0))
        call, a_uuid = _bridged_to_a_recording_callee(stack, p, calls)
        play = requests.post(stack.api_url(f"/Call/{a_uuid}/Play/"), json={"urls": music, "legs": "both"},
                             headers=stack.api_headers(), timeout=30)
        assert play.status_code == 202, play.text
        call.wait(40)
        callee_heard = _callee_heard(stack)
        caller_heard = call.heard()
    assert windows_with(caller_heard, 1200) >= 10
    assert windows_with(callee_heard, 1200) >= 10


@switch_modes()
def test_rest_speak_to_the_callee_of_a_bridge_is_heard_by_the_callee_only(tmp_path, real_fs):
    import requests
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        call, a_uuid = _bridged_to_a_recording_callee(stack, p, calls)
        speak = requests.post(stack.api_url(f"/Call/{a_uuid}/Speak/"), headers=stack.api_headers(), timeout=30,
                              json={"text": "A supervisor is listening to this call for training.", "legs": "bleg"})
        assert speak.status_code == 202, speak.text
        call.wait(40)
        callee_heard = _callee_heard(stack)
        caller_heard = call.heard()
    assert _speech_windows(callee_heard, 1200) >= 10
    assert _speech_windows(caller_heard, 1200) <= 2


@switch_modes()
def test_dial_confirm_timeout_drops_a_callee_that_never_confirms(tmp_path, real_fs):
    stack, p = dial_stack(real_fs)
    with stack:
        calls = Calls(stack)
        prompt = calls.serve_wav("/prompt.wav", tone(500, 0.5))
        stack.app.document("/confirm", f'<Response><Play>{prompt}</Play></Response>')
        # answers, and never presses the key
        calls.add(p + "86", f'<Response><Play>{prompt}</Play><Wait length="30"/></Response>')
        calls.add(p + "1", f'<Response><Speak>Trying</Speak><Dial confirmSound="{calls.url("/confirm")}" '
                           f'confirmKey="5" confirmTimeout="2" timeout="30" action="{calls.url("/dial-action")}" '
                           f'callbackUrl="{calls.url("/dial-events")}"><Number>86</Number></Dial></Response>')
        stack.app.document("/dial-action", "<Response><Hangup/></Response>")
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 10.0))), hangup_after=40)
        answered = stack.app.wait_event("DialAnswer", timeout=30, path="/dial-events")
        action = stack.app.wait_event("DialAction", timeout=30, path="/dial-action")
        call.wait(40)
        events = _wait_dial_events(stack, 2)
    took = action.received_at - answered.received_at
    assert took <= 10, took                  # the confirm window (2 s after the prompt), not the 30 s ring timeout
    # FreeSWITCH drops the unconfirmed leg as unanswered (on both switches: no-answer, NO_ANSWER)
    assert action.form["DialStatus"] == "no-answer" and action.form["DialBLegUUID"] == "", action.form
    assert "DialConnected" not in [e["Event"] for e in events]
    assert events[-1]["Event"] == "DialHangup"



def test_dial_music_real_plays_a_ringback_while_the_callee_rings_simulator(tmp_path):
    """dialMusic="real" (the default) on the simulator, with a scripted SIP callee that rings 4 s (its
    180) then answers; on the real switch tests/test_scenario_dial_user.py checks it with a SIP phone."""
    stack, _p = dial_stack(False)
    with stack:
        calls = Calls(stack)
        callee_wav = write_wav(tmp_path / "callee.wav", tone(CALLEE_HZ, 3.0))
        reply = stack.sim.run_api("sim_callee", json.dumps({"match": "sip:ring@example.com", "answer_after": 4,
                                                            "audio": str(callee_wav), "hangup_after": 3}))
        assert reply.startswith("+OK"), reply
        calls.add("1", '<Response><Speak>Hold on</Speak><Dial dialMusic="real"><User>sip:ring@example.com</User>'
                       '</Dial></Response>')
        call = stack.call(to="1", keep_heard=True, hangup_after=30)
        call.wait(40)
        heard = call.heard()
    # the US ringback (440 + 480 Hz, 2 s on, 4 s off) while it rang, then the callee
    assert windows_with(heard, 460) >= 10, windows_with(heard, 460)
    assert windows_with(heard, CALLEE_HZ) >= 20
