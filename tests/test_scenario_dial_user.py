"""<Dial><User>: the caller is handed to a SIP phone over a real FreeSWITCH's sofia profile (marked
`freeswitch`; the simulator speaks no SIP, its <User> test is in tests/test_scenario_dial.py).

The callee is tests/sip_phone.py's phone on a free UDP port of 127.0.0.1, dialled through callfork's
default `[freeswitch] sip_dialstring` (`sofia/internal/{uri}`). FreeSWITCH cannot ring itself
there: its one `internal` profile would take an INVITE from its own address as a looped call. The
caller (a loopback call, as in the other Dial scenarios) speaks 300 Hz, the phone sends 700 Hz:
the caller's heard audio must hold the phone's tone, and what the phone received the caller's.
"""
import pytest

from dial_support import CALLEE_HZ, CALLER_HZ, dial_stack
from dial_support import hangup_of as _hangup_of, wait_dial_events as _wait_dial_events
from sip_phone import SipPhone
from stream_scenarios import Calls, tone, windows_with, write_wav

pytestmark = pytest.mark.freeswitch


def _dial(calls, phone, attributes=""):
    return (f'<Response><Dial action="{calls.url("/dial-action")}" callbackUrl="{calls.url("/dial-events")}" '
            f'{attributes}><User sipHeaders="a=1,b=two">{phone.uri}</User></Dial></Response>')


def test_dial_user_connects_the_caller_and_a_sip_phone(tmp_path):
    with SipPhone(answer="answer", answer_after=1.0, tone_hz=CALLEE_HZ) as phone:
        stack, p = dial_stack(True)
        with stack:
            calls = Calls(stack)
            calls.add(p + "1", _dial(calls, phone, 'callerId="15550001111"'))
            stack.app.document("/dial-action", "<Response><Hangup/></Response>")
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 60.0))
            call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=60)
            sip = phone.wait_call(30)
            connected = _wait_dial_events(stack, 2)[1]
            assert connected["Event"] == "DialConnected"
            # the phone heard the caller (4 s of its tone): now the callee hangs up
            phone.wait(lambda: windows_with(sip.heard(), CALLER_HZ) >= 40, 20, "4 s of the caller's tone")
            bye = phone.hang_up(sip)
            # the BYE ends the bridge: the action comes long before the caller's own hangup (60 s)
            action = stack.app.wait_event("DialAction", timeout=10, path="/dial-action").form
            call.wait(30)
            heard = call.heard()
            events = _wait_dial_events(stack, 3)
            hangup = _hangup_of(stack, action["CallUUID"])

    # what the phone got: the Request-URI dialled, the caller id, the sipHeaders as X-VH- headers
    assert sip.invite.uri == phone.uri
    assert sip.header("To") == f"<{phone.uri}>"
    assert sip.header("From").startswith("<sip:15550001111@")
    assert sip.header("X-VH-a") == "1" and sip.header("X-VH-b") == "two"
    assert bye is not None and bye.status == 200         # FreeSWITCH took the callee's BYE

    a_uuid = action["CallUUID"]
    assert action["DialStatus"] == "completed"
    assert action["DialRingStatus"] == "true"
    assert action["DialALegUUID"] == a_uuid
    assert action["DialBLegUUID"] and action["DialBLegUUID"] != a_uuid
    assert action["DialHangupCause"] == "NORMAL_CLEARING"
    assert [e["Event"] for e in events] == ["DialAnswer", "DialConnected", "DialHangup"]
    for e in events:
        assert e["DialBLegUUID"] == action["DialBLegUUID"] and e["DialBLegTo"] == phone.uri
        assert e["DialBLegFrom"] == "15550001111" and e["DialBLegPosition"] == "1"
        assert e["X-VH-a"] == "1" and e["X-VH-b"] == "two"
    assert events[-1]["DialBLegHangupCause"] == "NORMAL_CLEARING"
    assert events[-1]["DialBLegHangupCauseCode"] == "4000"
    assert events[-1]["DialBLegHangupSource"] == "Callee"
    assert hangup["HangupSource"] == "Answer XML"        # the action's <Hangup/>, not the caller

    # the caller heard the phone while the phone heard it (the wait above)
    assert windows_with(heard, CALLEE_HZ) >= 30, windows_with(heard, CALLEE_HZ)


def test_dial_user_busy_phone(tmp_path):
    with SipPhone(answer="busy") as phone:
        stack, p = dial_stack(True)
        with stack:
            calls = Calls(stack)
            calls.add(p + "1", _dial(calls, phone, 'redirect="false"')[:-len("</Response>")]
                      + "<Speak>They are busy</Speak><Hangup/></Response>")
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
            call = stack.call(to="1", audio=str(caller_wav), hangup_after=30)
            action = stack.app.wait_event("DialAction", timeout=30, path="/dial-action").form
            call.wait(30)
            events = _wait_dial_events(stack, 1)
            hangup = _hangup_of(stack, action["CallUUID"])
            sip = phone.wait_call(1)
            phone.wait(lambda: "ACK" in sip.requests, 5, "the ACK of the 486")

    assert sip.state == "refused" and sip.header("X-VH-b") == "two"
    assert action["DialStatus"] == "busy"
    assert action["DialBLegUUID"] == ""
    assert action["DialHangupCause"] == "USER_BUSY"
    assert [e["Event"] for e in events] == ["DialHangup"]
    assert events[0]["DialBLegHangupCause"] == "USER_BUSY"
    assert events[0]["DialBLegHangupCauseCode"] == "3010"
    assert hangup["HangupSource"] == "Answer XML"        # the elements after </Dial> ran


def test_dial_user_phone_that_never_answers_is_cancelled_at_the_timeout(tmp_path):
    with SipPhone(answer="never") as phone:
        stack, p = dial_stack(True)
        with stack:
            calls = Calls(stack)
            # answered first (a Dial that is not answered ends in a rejected call: no caller to hear)
            calls.add(p + "1", _dial(calls, phone, 'timeout="3"').replace("<Response>", "<Response><Speak>Hold on</Speak>"))
            stack.app.document("/dial-action", "<Response><Hangup/></Response>")
            caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
            call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
            sip = phone.wait_call(30)
            action = stack.app.wait_event("DialAction", timeout=30, path="/dial-action").form
            call.wait(30)
            events = _wait_dial_events(stack, 1)
            phone.wait(lambda: "ACK" in sip.requests, 5, "the ACK of the 487")
            heard = call.heard()

    assert "CANCEL" in sip.requests and "BYE" not in sip.requests and sip.state == "cancelled"
    assert action["DialStatus"] == "no-answer"
    assert action["DialRingStatus"] == "true"             # the phone's 180
    assert action["DialHangupCause"] == "NO_ANSWER"
    assert action["DialBLegUUID"] == ""
    assert [e["Event"] for e in events] == ["DialHangup"]
    assert events[0]["DialBLegHangupCauseCode"] == "6010"
    assert events[0]["DialBLegHangupCauseName"] == "Ring Timeout Reached"
    assert events[0]["DialBLegHangupSource"] == "Vobiz"
    # while the phone rang (a 180 without SDP), the caller heard callfork's ringback (440 + 480 Hz)
    assert windows_with(heard, 460) >= 10, windows_with(heard, 460)
