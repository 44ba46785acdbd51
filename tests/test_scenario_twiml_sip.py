"""TwiML <Dial><Sip> (verbs/twiml/sip.py): a Twilio app (`api = "twilio"`, TwiML from the twilio
package's VoiceResponse) dials a SIP URI.

On a real FreeSWITCH (marked `freeswitch`) the callee is tests/sip_phone.py's phone on a free UDP
port, reached through callfork's default `[freeswitch] sip_dialstring` (`sofia/internal/{uri}`), as
in tests/test_scenario_dial_user.py; the caller is a loopback call to `callfork1` (tests/harness.py
RealCall) speaking CALLER_HZ, the phone sends CALLEE_HZ. On the simulator the callee is its scripted
SIP far end (`sim_callee`, switch_sim/callees.py).

What is checked: both parties hear each other; the URI's `?X-...` headers arrive on the INVITE (the
URI dialled is without them); username/password become the leg's digest credentials; the action URL
gets DialCallStatus, DialCallSid, DialCallDuration and the SIP fields (DialSipCallId,
DialSipResponseCode, DialSipHeader_<name> of the 200's X- headers); the leg's statusCallback gets
Twilio's child-call events, all signed as Twilio signs; a busy phone is `busy` (486), one that never
answers `no-answer` (the switch CANCELs it at the timeout: 487).
"""
import re

import pytest
from twilio.twiml.voice_response import Dial, VoiceResponse

from dial_support import CALLEE_HZ, CALLER_HZ
from esl_app.config import FreeswitchConfig
from test_twiml_parser import errors_of
from verbs.dial_plan import dial_string, make_legs
from verbs.twiml.parser import parse_twiml
from sip_phone import SipPhone
from stream_scenarios import tone, wait_until, windows_with, write_wav
from test_scenario_twiml_dial import _completed, _signed, _stack
from verbs.twiml import call_uuid

HEADERS = "X-Custom=ticket%2F42&X-Other=2"        # the URI's headers part: X-Custom is "ticket/42"


class HeaderPhone(SipPhone):
    """The test phone, whose 200 OK to an INVITE also carries `X-Agent-Id: 7` (what Twilio hands
    the action URL as DialSipHeader_X-Agent-Id)."""

    def _send(self, data: bytes, to: tuple):
        if data.startswith(b"SIP/2.0 200") and re.search(rb"\r\nCSeq: *\d+ INVITE\r\n", data):
            data = data.replace(b"\r\n", b"\r\nX-Agent-Id: 7\r\n", 1)
        super()._send(data, to)


def _sip_dial(stack, uri, **dial):
    r = VoiceResponse()
    d = Dial(action="/dial-action", caller_id="+15550001111", **dial)
    d.sip(uri, status_callback=stack.app.url("/leg"), status_callback_event="initiated ringing answered completed",
          username="agent7", password="s3cret")
    r.append(d)
    r.say("never said: the action's document replaces the rest")
    return str(r)


def _hang_up_doc():
    r = VoiceResponse()
    r.hangup()
    return str(r)


def _leg_events(stack, timeout=15):
    wait_until(lambda: any(r.form["CallStatus"] in ("completed", "busy", "no-answer", "failed", "canceled")
                           for r in stack.app.events(path="/leg")), timeout, "the leg's completed callback")
    return stack.app.events(path="/leg")


def _check_connected(stack, action, status, legs, heard, leg_vars):
    a = action.form
    assert _signed(action, stack) and a["CallSid"] == status["CallSid"]
    assert a["DialCallStatus"] == "completed" and a["DialBridged"] == "true"
    assert re.fullmatch(r"CA[0-9a-f]{32}", a["DialCallSid"]) and a["DialCallSid"] != a["CallSid"]
    assert 3 <= int(a["DialCallDuration"]) <= 15, a["DialCallDuration"]
    assert a["DialSipResponseCode"] == "200"
    # the leg's own statusCallback: Twilio's child-call events, in order, signed
    events = [leg.form for leg in legs]
    names = [e["CallStatus"] for e in events]
    assert names[0] == "initiated" and "in-progress" in names and names[-1] == "completed", names
    assert [e["SequenceNumber"] for e in events] == [str(i) for i in range(len(events))]
    for leg, e in zip(legs, events):
        assert _signed(leg, stack)
        assert e["CallSid"] == a["DialCallSid"] and e["ParentCallSid"] == a["CallSid"]
        assert e["Direction"] == "outbound-dial" and e["From"] == "+15550001111"
        assert "?" not in e["To"] and e["To"].startswith("sip:")           # the URI, without its headers
    assert 3 <= int(events[-1]["CallDuration"]) <= 15
    # the leg carried the headers and the credentials as channel variables
    assert leg_vars["sip_h_X-Custom"] == "ticket/42" and leg_vars["sip_h_X-Other"] == "2"
    assert leg_vars["sip_auth_username"] == "agent7" and leg_vars["sip_auth_password"] == "s3cret"
    assert windows_with(heard, CALLEE_HZ) >= 25, windows_with(heard, CALLEE_HZ)


# -- what the parser makes of <Sip> ----------------------------------------------------------------

def test_sip_headers_and_credentials_become_the_legs_variables_and_bad_ones_are_refused():
    r = VoiceResponse()
    d = Dial()
    d.sip(f"sip:agent@example.com;transport=tcp?{HEADERS}", username="agent7", password="s3cret")
    r.append(d)
    (dial,), _warnings = parse_twiml(str(r).encode())
    plan = dial.plan()
    (target,) = plan.targets
    assert target.address == "sip:agent@example.com;transport=tcp"
    text = dial_string(plan, make_legs(plan, "1"), "A", FreeswitchConfig())
    assert text.endswith("]sofia/internal/sip:agent@example.com;transport=tcp")
    for variable in ("sip_h_X-Custom=ticket/42", "sip_h_X-Other=2", "sip_auth_username=agent7",
                     "sip_auth_password=s3cret"):
        assert variable in text.split("[", 1)[1], variable
    assert errors_of('<Response><Dial><Sip password="a,b">sip:a@b.example?User-to-User=1&amp;Bad=2&amp;'
                     'X-Ok=%7B</Sip></Dial></Response>') == [
        'line 1:17: <Sip>: SIP header "User-to-User" is not supported by callfork: only X- headers are sent',
        'line 1:17: <Sip>: "Bad" is not a custom SIP header name: custom headers start with X-',
        "line 1:17: <Sip>: SIP header X-Ok '{' cannot be dialled: it may not contain , ' \" [ ] { } | ^ $ \\ "
        "or control characters",
        "line 1:17: <Sip>: password cannot be dialled: it may not contain , ' \" [ ] { } | ^ $ \\ "
        "or control characters"]


# -- on a real FreeSWITCH, with a SIP phone ------------------------------------------------------

@pytest.mark.freeswitch
def test_sip_connects_the_caller_and_a_sip_phone_with_headers_and_sip_fields(tmp_path):
    with HeaderPhone(answer="answer", answer_after=1.0, tone_hz=CALLEE_HZ) as phone:
        stack, _p = _stack(True)
        with stack:
            stack.app.document("/voice1", _sip_dial(stack, f"{phone.uri}?{HEADERS}"))
            stack.app.document("/dial-action", _hang_up_doc())
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 60.0))
            call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=60)
            sip = phone.wait_call(30)
            answered = wait_until(lambda: [r for r in stack.app.events(path="/leg")
                                           if r.form["CallStatus"] == "in-progress"], 20, "the leg's answered")
            leg_uuid = call_uuid(answered[0].form["CallSid"])
            control = stack.service.control
            leg_vars = {name: control.api(f"uuid_getvar {leg_uuid} {name}").strip()
                        for name in ("sip_h_X-Custom", "sip_h_X-Other", "sip_auth_username", "sip_auth_password")}
            # the phone heard the caller (4 s of its tone): now the callee hangs up
            phone.wait(lambda: windows_with(sip.heard(), CALLER_HZ) >= 40, 20, "4 s of the caller's tone")
            bye = phone.hang_up(sip)
            # the BYE ends the bridge: the action comes long before the caller's own hangup (60 s)
            (action,) = stack.app.wait_path("/dial-action", timeout=15)
            status = _completed(stack)
            legs = _leg_events(stack)
            heard = call.heard()

    assert bye is not None and bye.status == 200
    # the INVITE: the URI without its headers part, the headers as SIP headers, the caller id
    assert sip.invite.uri == phone.uri
    assert sip.header("X-Custom") == "ticket/42" and sip.header("X-Other") == "2"
    assert sip.header("From").startswith("<sip:+15550001111@")
    a = action.form
    assert a["DialSipCallId"] == sip.invite.call_id
    assert a["DialSipHeader_X-Agent-Id"] == "7"
    _check_connected(stack, action, status, legs, heard, leg_vars)


@pytest.mark.freeswitch
def test_sip_busy_phone_is_busy_486(tmp_path):
    with SipPhone(answer="busy") as phone:
        stack, _p = _stack(True)
        with stack:
            stack.app.document("/voice1", _sip_dial(stack, phone.uri))
            stack.app.document("/dial-action", _hang_up_doc())
            stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 10.0))),
               hangup_after=30)
            (action,) = stack.app.wait_path("/dial-action", timeout=30)
            status = _completed(stack)
            legs = _leg_events(stack)
            sip = phone.wait_call(1)
    a = action.form
    assert sip.state == "refused" and status["CallStatus"] == "completed"
    assert _signed(action, stack)
    assert a["DialCallStatus"] == "busy" and a["DialBridged"] == "false" and a["DialCallDuration"] == "0"
    assert a["DialSipResponseCode"] == "486" and a["DialSipCallId"] == sip.invite.call_id
    assert legs[-1].form["CallStatus"] == "busy" and _signed(legs[-1], stack)


@pytest.mark.freeswitch
def test_sip_phone_that_never_answers_is_no_answer_487(tmp_path):
    with SipPhone(answer="never") as phone:
        stack, _p = _stack(True)
        with stack:
            stack.app.document("/voice1", _sip_dial(stack, phone.uri, timeout=5))
            stack.app.document("/dial-action", _hang_up_doc())
            stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 20.0))),
               hangup_after=40)
            sip = phone.wait_call(30)
            (action,) = stack.app.wait_path("/dial-action", timeout=30)
            status = _completed(stack)
            legs = _leg_events(stack)
            phone.wait(lambda: "ACK" in sip.requests, 5, "the ACK of the 487")
    a = action.form
    assert status["CallStatus"] == "completed" and _signed(action, stack)
    assert "CANCEL" in sip.requests and sip.state == "cancelled"
    assert a["DialCallStatus"] == "no-answer" and a["DialBridged"] == "false"
    assert a["DialSipResponseCode"] == "487" and a["DialSipCallId"] == sip.invite.call_id
    assert [r.form["CallStatus"] for r in legs][:2] == ["initiated", "ringing"]
    assert legs[-1].form["CallStatus"] == "no-answer"


# -- on the simulator, with its scripted SIP callee ----------------------------------------------

def _sim_callee(stack, **spec):
    import json
    reply = stack.sim.run_api("sim_callee", json.dumps({"match": "sip:agent@example.com", **spec}))
    assert reply.startswith("+OK"), reply


def test_sim_sip_connects_with_headers_and_sip_fields(tmp_path):
    stack, _p = _stack(False)
    with stack:
        _sim_callee(stack, answer_after=0.5, audio=str(write_wav(tmp_path / "callee.wav", tone(CALLEE_HZ, 5.0))),
                    hangup_after=5)
        stack.app.document("/voice1", _sip_dial(stack, f"sip:agent@example.com?{HEADERS}"))
        stack.app.document("/dial-action", _hang_up_doc())
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))),
                          keep_heard=True, hangup_after=30)
        answered = wait_until(lambda: [r for r in stack.app.events(path="/leg")
                                       if r.form["CallStatus"] == "in-progress"], 20, "the leg's answered")
        leg = stack.sim.get_channel(call_uuid(answered[0].form["CallSid"]))     # while it is up
        leg_vars = dict(leg.variables)
        (action,) = stack.app.wait_path("/dial-action", timeout=20)
        status = _completed(stack)
        legs = _leg_events(stack)
        call.wait(30)
        heard = call.heard()
    assert leg.name == "sofia/internal/agent@example.com"        # dialled without the headers part
    _check_connected(stack, action, status, legs, heard, leg_vars)


@pytest.mark.parametrize("spec, dial_status, code, leg_status", [
    ({"reject": "USER_BUSY"}, "busy", "486", "busy"),
    ({"answer_after": None}, "no-answer", "487", "no-answer"),
])
def test_sim_sip_busy_and_no_answer(tmp_path, spec, dial_status, code, leg_status):
    stack, _p = _stack(False)
    with stack:
        _sim_callee(stack, **spec)
        stack.app.document("/voice1", _sip_dial(stack, "sip:agent@example.com", timeout=5))
        stack.app.document("/dial-action", _hang_up_doc())
        call = stack.call(to="1", audio=str(write_wav(tmp_path / "c.wav", tone(CALLER_HZ, 20.0))), hangup_after=30)
        (action,) = stack.app.wait_path("/dial-action", timeout=30)
        call.wait(30)
        legs = _leg_events(stack)
    a = action.form
    assert _signed(action, stack)
    assert a["DialCallStatus"] == dial_status and a["DialBridged"] == "false"
    assert a["DialSipResponseCode"] == code
    assert legs[-1].form["CallStatus"] == leg_status
