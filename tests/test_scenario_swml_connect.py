"""SWML connect to numbers: the caller is handed to a callee, on the simulator and (marked
`freeswitch`) on a real FreeSWITCH; the app gets the legs' calling.call.state webhooks, and the
document goes on after the connect with vars.connect_result set.

As in test_scenario_dial.py, the callee is another number of the same callfork (the dial string is
a loopback call to it, `[freeswitch] originate_dialstring`), whose Vobiz XML answer decides what it
does: answer and play a 700 Hz tone, refuse as busy, never answer. The caller speaks 300 Hz.
"""
import json

import requests

from dial_support import CALLEE_HZ, CALLER_HZ, channel, dial_stack
from harness import switch_modes
from stream_scenarios import Calls, tone, windows_with, write_wav

ALL_STATES = ["created", "ringing", "answered", "ended"]


_stack = dial_stack


def _swml(*steps):
    return json.dumps({"version": "1.0.0", "sections": {"main": list(steps)}})


def _states(stack, path="/call-state"):
    out = []
    for req in list(stack.app.requests):
        if req.path == path:
            out.append(json.loads(req.body))
    return out


def _wait_states(stack, count, path="/call-state", timeout=30):
    assert stack.app.wait_for(lambda: len(_states(stack, path)) >= count, timeout), \
        [(b["params"]["device"]["params"], b["params"]["call_state"]) for b in _states(stack, path)]
    return _states(stack, path)


def _by_leg(bodies):
    legs = {}
    for body in bodies:
        params = body["params"]
        legs.setdefault(params["device"]["params"].get("to_number"), []).append(params)
    return legs


def _hangup_of_number(stack, number, timeout=40):
    """The Hangup webhook of the call to `number` (every callee posts one to the same URL)."""
    def find():
        return [r.form for r in list(stack.app.requests) if r.path == "/hangup" and r.form.get("To") == number]
    assert stack.app.wait_for(find, timeout), f"no Hangup webhook for {number}"
    return find()[0]


def _callee_records(calls, p, number, seconds):
    callee_tone = calls.serve_wav(f"/{number}.wav", tone(CALLEE_HZ, seconds))
    calls.add(p + number, f'<Response><Record recordSession="true" fileFormat="wav" '
                          f'callbackUrl="{calls.url("/callee-rec")}"/><Play>{callee_tone}</Play></Response>')


@switch_modes()
def test_connect_to_a_number_each_party_hears_the_other_and_the_document_goes_on(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        _callee_records(calls, p, "77", 6.0)
        cs = calls.url("/call-state")
        calls.add(p + "1", _swml(
            {"connect": {"to": "77", "from": "15550001111", "call_state_url": cs,
                         "call_state_events": ALL_STATES}},
            {"hangup": {"reason": "busy"}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 20.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=40)
        caller_hangup = _hangup_of_number(stack, p + "1")
        heard = call.heard()
        bodies = _wait_states(stack, 3)
        rec = stack.app.wait_event("RecordStop", timeout=20).form
        recording = requests.get(rec["RecordUrl"], headers=stack.api_headers(), timeout=5)

    a_uuid = caller_hangup["CallUUID"]
    states = [b["params"]["call_state"] for b in bodies]
    assert states in (["created", "answered", "ended"], ALL_STATES), states
    for body in bodies:
        assert body["event_type"] == "calling.call.state"
        assert body["event_channel"] == f"swml:{a_uuid}"
        params = body["params"]
        assert params["device"] == {"type": "phone", "params": {"from_number": "15550001111", "to_number": "77"}}
        assert params["parent"]["call_id"] == a_uuid and params["direction"] == "outbound"
        assert params["call_id"] == bodies[0]["params"]["call_id"] != a_uuid
    answered, ended = bodies[-2]["params"], bodies[-1]["params"]
    assert answered["answer_time"] > 0 and ended["peer"] == {"call_id": a_uuid, "node_id": a_uuid}
    assert ended["end_reason"] == "hangup"
    assert 4000 <= ended["end_time"] - ended["answer_time"] <= 10000
    # after the callee's 6 s tone its call ended, and the caller's document went on: hangup busy
    assert caller_hangup["HangupCause"] == "USER_BUSY", caller_hangup
    assert int(caller_hangup["Duration"]) < 20

    assert windows_with(heard, CALLEE_HZ) >= 30, windows_with(heard, CALLEE_HZ)
    assert recording.status_code == 200
    assert windows_with(channel(recording, 0), CALLER_HZ) >= 30


@switch_modes()
def test_connect_parallel_the_first_to_answer_wins_and_the_loser_is_cancelled(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 3.0))
        calls.add(p + "80", f'<Response><Wait length="1"/><Play>{callee_tone}</Play></Response>')
        calls.add(p + "81", '<Response><Wait length="30"/></Response>')
        cs = calls.url("/call-state")
        calls.add(p + "1", _swml(
            {"connect": {"parallel": [{"to": "81"}, {"to": "80"}], "call_state_url": cs,
                         "call_state_events": ALL_STATES}},
            {"hangup": {}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        caller_hangup = _hangup_of_number(stack, p + "1")
        heard = call.heard()
        legs = _by_leg(_wait_states(stack, 5))

    winner, loser = legs["80"], legs["81"]
    assert [s["call_state"] for s in winner] in (["created", "answered", "ended"], ALL_STATES), winner
    assert [s["call_state"] for s in loser] in (["created", "ended"], ["created", "ringing", "ended"]), loser
    assert loser[-1]["end_reason"] == "cancel" and loser[-1]["answer_time"] == 0 and "peer" not in loser[-1]
    assert winner[-1]["end_reason"] == "hangup" and winner[-1]["peer"]["call_id"] == caller_hangup["CallUUID"]
    assert winner[0]["call_id"] != loser[0]["call_id"]
    assert windows_with(heard, CALLEE_HZ) >= 15
    assert caller_hangup["HangupCause"] == "NORMAL_CLEARING" and int(caller_hangup["Duration"]) < 20


@switch_modes()
def test_connect_serial_tries_the_next_destination_when_the_first_is_busy(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "78", '<Response><Hangup reason="busy"/></Response>')
        callee_tone = calls.serve_wav("/700.wav", tone(CALLEE_HZ, 4.0))
        calls.add(p + "77", f'<Response><Play>{callee_tone}</Play></Response>')
        cs = calls.url("/call-state")
        calls.add(p + "1", _swml(
            {"connect": {"serial": [{"to": "78"}, {"to": "77", "timeout": 20}], "call_state_url": cs,
                         "call_state_events": ["created", "answered", "ended"]}},
            {"switch": {"variable": "vars.connect_result", "case": {"connected": [{"hangup": {}}]},
                        "default": [{"hangup": {"reason": "decline"}}]}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        caller_hangup = _hangup_of_number(stack, p + "1")
        heard = call.heard()
        bodies = _wait_states(stack, 5)

    order = [(b["params"]["device"]["params"]["to_number"], b["params"]["call_state"]) for b in bodies]
    assert order == [("78", "created"), ("78", "ended"), ("77", "created"), ("77", "answered"), ("77", "ended")]
    assert bodies[1]["params"]["end_reason"] == "busy"
    assert bodies[-1]["params"]["end_reason"] == "hangup"
    assert windows_with(heard, CALLEE_HZ) >= 20
    assert caller_hangup["HangupCause"] == "NORMAL_CLEARING" and int(caller_hangup["Duration"]) < 20


@switch_modes()
def test_connect_that_rings_out_fails_with_no_answer_and_the_document_goes_on(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "79", '<Response><Wait length="30"/><Speak>too late</Speak></Response>')
        cs = calls.url("/call-state")
        calls.add(p + "1", _swml(
            {"connect": {"to": "79", "timeout": 3, "call_state_url": cs}},
            {"play": {"url": "silence:1"}},
            {"hangup": {"reason": "decline"}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        caller_hangup = _hangup_of_number(stack, p + "1")
        (ended,) = _wait_states(stack, 1)

    params = ended["params"]
    assert params["call_state"] == "ended" and params["end_reason"] == "noAnswer"
    assert params["answer_time"] == 0 and "peer" not in params
    assert 2500 <= params["end_time"] - params["start_time"] <= 6000
    assert caller_hangup["HangupCause"] == "CALL_REJECTED", caller_hangup
    assert int(caller_hangup["Duration"]) < 12


@switch_modes()
def test_vars_after_a_failed_connect_choose_what_the_document_does(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "78", '<Response><Hangup reason="busy"/></Response>')
        on_failure = {"switch": {"variable": "connect_failed_reason",
                                 "case": {"USER_BUSY": [{"play": {"url": "silence:0.5"}},
                                                        {"hangup": {"reason": "busy"}}]},
                                 "default": [{"hangup": {}}]}}
        calls.add(p + "1", _swml(
            {"connect": {"to": "78", "answer_on_bridge": True}},
            {"switch": {"variable": "vars.connect_result",
                        "case": {"connected": [{"hangup": {}}], "failed": [on_failure]},
                        "default": [{"hangup": {"reason": "decline"}}]}},
            {"hangup": {"reason": "decline"}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        stack.call(to="1", audio=str(caller_wav), hangup_after=30)
        caller_hangup = _hangup_of_number(stack, p + "1")

    # vars.connect_result = failed, vars.connect_failed_reason = USER_BUSY: the inner case ran
    assert caller_hangup["HangupCause"] == "USER_BUSY", caller_hangup


@switch_modes()
def test_connect_ringback_file_plays_to_the_caller_while_the_callee_rings(tmp_path, real_fs):
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        ring = calls.serve_wav("/ring.wav", tone(500, 10.0))
        calls.add(p + "79", '<Response><Wait length="30"/></Response>')
        calls.add(p + "1", _swml(
            {"connect": {"to": "79", "timeout": 4, "ringback": [ring]}},
            {"hangup": {}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        caller_hangup = _hangup_of_number(stack, p + "1")
        heard = call.heard()

    assert caller_hangup["HangupCause"] == "NORMAL_CLEARING"
    # about 4 s of ringing: the ringback file (500 Hz; the default ringback is 440+480 Hz) most of it
    assert windows_with(heard, 500) >= 25, windows_with(heard, 500)


@switch_modes()
def test_connect_then_transfer_to_a_section_and_to_a_url(tmp_path, real_fs):
    """A busy callee: the document transfers to its `voicemail` section, which plays a tone and
    transfers to a URL whose document hangs up as busy; what follows each transfer never runs."""
    stack, p = _stack(real_fs)
    with stack:
        calls = Calls(stack)
        calls.add(p + "78", '<Response><Hangup reason="busy"/></Response>')
        beep = calls.serve_wav("/900.wav", tone(900, 2.0))
        stack.app.document("/after", _swml({"hangup": {"reason": "busy"}}), "application/json")
        calls.add(p + "1", json.dumps({"version": "1.0.0", "sections": {
            "main": [{"connect": {"to": "78"}},
                     {"switch": {"variable": "vars.connect_result",
                                 "case": {"failed": [{"transfer": {"dest": "voicemail"}}]}}},
                     {"hangup": {"reason": "decline"}}],
            "voicemail": [{"play": {"url": beep}},
                          {"transfer": {"dest": calls.url("/after"), "params": {"from_section": "voicemail"}}},
                          {"hangup": {}}]}}), "application/json")
        caller_wav = write_wav(tmp_path / "caller.wav", tone(CALLER_HZ, 10.0))
        call = stack.call(to="1", audio=str(caller_wav), keep_heard=True, hangup_after=30)
        caller_hangup = _hangup_of_number(stack, p + "1")
        after = stack.app.wait_path("/after", timeout=10)[0]
        heard = call.heard()
    assert caller_hangup["HangupCause"] == "USER_BUSY"          # the /after document's hangup
    assert after.form.get("from_section") == "voicemail"
    assert windows_with(heard, 900) >= 15                       # the voicemail section played
